"""The Quix Streams peer: terminal events ⋈ settlement notices by order_id, written as a Quix Streams user would.

Runs in its own venv (``.venv-quix``: quixstreams 3.28.1 pins an older confluent-kafka than posrecon's), so it
imports nothing from posrecon: the schemas are read from ``schemas/*.avsc`` with fastavro.

The app, Quix's own way, every setting a default unless said here:

* ``Application(processing_guarantee="exactly-once", consumer_group=…, auto_offset_reset="earliest")``: one
  Kafka transaction per checkpoint (Quix's default ``commit_interval`` of 5 s), the input offsets sent in it;
* two input topics with a custom :class:`SingleObjectAvro` deserializer: checks the Avro single-object header
  (``C3 01`` + the schema's CRC-64-AVRO fingerprint, little-endian) and fastavro-decodes the body (logical types
  stripped from the schema, as posrecon's wire schema does: timestamps stay epoch ms). A record that does not
  decode becomes ``{"_error": …}`` and is filtered out: had the deserializer raised, Quix would skip it without
  storing its offset, and the group would never commit the partition's last record;
* the two ``StreamingDataFrame``\\ s merged with ``sdf.concat`` (both topics are keyed by order_id with Kafka's
  murmur2 partitioner, 12 partitions each: co-partitioned; Quix then aligns the two topics by timestamp), one
  ``apply(stateful=True)``: Quix's State (RocksDB store + changelog topic) keyed by the message key, and
  ``to_topic`` of the decisions as JSON.

The join (:func:`reconcile`) is deliberately the minimum a reconciliation needs, far less than posrecon:

* does: keep per order the latest approval (AUTH_APPROVED: amount, currency, time) and the latest settlement
  notice (a redelivered notice, same notice_id, is ignored); once both sides are present emit a decision —
  MATCHED (same amount and currency), AMOUNT_MISMATCH, SETTLEMENT_FAILED (a FAILED notice), REVERSED (a
  REVERSED notice) — and again whenever that decision changes (revision + 1); records that do not decode or
  have no key are dropped (counted nowhere, no dead-letter topic);
* does not: alerts of any kind (no TTL/deadline timers: Quix has no wall-clock or event-time punctuation
  outside windows, so no missing/orphan/expired/late-settlement alerts), duplicate charge or settlement
  detection, declines/voids/status conflicts, MATCHED_LATE, split (v2 multi-capture) settlements, fees and net
  amounts, clock-skew handling, settlement batches, card sightings, dead letters, state expiry (the store
  grows with every order), watermarks/ordering across the two topics beyond Quix's timestamp alignment.

``<.venv-quix>/bin/python bench/quix_join.py --bootstrap HOST:PORT --group G --out TOPIC --state-dir DIR
[--terminal T --settlement S]`` runs until SIGTERM/SIGINT (Quix commits its open checkpoint on a clean stop).
``bench/steps/quix.py`` measures it from the group's committed offsets.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

try:
    from quixstreams.models import Deserializer
except ImportError:  # the unit tests import the pure parts from posrecon's venv, which has no quixstreams
    Deserializer = object  # type: ignore[assignment,misc]

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"
MAGIC = b"\xc3\x01"


def _strip_logical(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip_logical(v) for k, v in node.items() if k != "logicalType"}
    if isinstance(node, list):
        return [_strip_logical(v) for v in node]
    return node


class SingleObjectAvro(Deserializer):  # type: ignore[misc]
    """Avro single-object encoded bytes → dict (``_side`` added: which input it came from)."""

    def __init__(self, name: str, side: str, schemas: Path = SCHEMAS) -> None:
        super().__init__()
        doc = json.loads((schemas / f"{name}.avsc").read_text())
        canonical = to_parsing_canonical_form(fastavro.parse_schema(doc))
        self.header = MAGIC + bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))[::-1]
        self.schema = fastavro.parse_schema(_strip_logical(doc))
        self.side = side

    def __call__(self, value: bytes, ctx: Any = None) -> dict[str, Any]:
        if not value.startswith(self.header):
            return {"_error": "not single-object encoded with the expected schema", "_side": self.side}
        buf = io.BytesIO(value)
        buf.seek(len(self.header))
        try:
            record: dict[str, Any] = fastavro.schemaless_reader(buf, self.schema)  # type: ignore[assignment]
        except Exception as exc:  # fastavro raises many types on truncated or garbage bodies
            return {"_error": type(exc).__name__, "_side": self.side}
        if buf.tell() != len(value):
            return {"_error": "trailing bytes", "_side": self.side}
        record["_side"] = self.side
        return record


def _decide(auth: dict[str, Any], notice: dict[str, Any]) -> str:
    if notice["status"] == "FAILED":
        return "SETTLEMENT_FAILED"
    if notice["status"] == "REVERSED":
        return "REVERSED"
    same = notice["amount_minor"] == auth["amount_minor"] and notice["currency"] == auth["currency"]
    return "MATCHED" if same else "AMOUNT_MISMATCH"


def reconcile(value: dict[str, Any], state: Any) -> dict[str, Any] | None:
    """One input record into the order's state; the decision to emit, or None. ``state``: Quix's State (the
    order's key prefixed to every state key), of which only ``get``/``set`` of JSON-able values are used."""
    if value["_side"] == "terminal":
        if value["event_type"] != "AUTH_APPROVED":
            return None
        auth = {k: value[k] for k in ("amount_minor", "currency", "event_time", "merchant_id", "terminal_id")}
        state.set("auth", auth)
        notice = state.get("notice")
    else:
        previous = state.get("notice")
        if previous is not None and previous["notice_id"] == value["notice_id"]:
            return None  # a redelivery
        notice = {k: value[k] for k in ("notice_id", "status", "amount_minor", "currency", "settled_at")}
        state.set("notice", notice)
        auth = state.get("auth")
    if auth is None or notice is None:
        return None
    outcome = _decide(auth, notice)
    last = state.get("decided")
    if last is not None and last[0] == outcome and last[1] == notice["notice_id"]:
        return None
    revision = 1 if last is None else last[2] + 1
    decided = [outcome, notice["notice_id"], revision]
    state.set("decided", decided)
    return {
        "order_id": value["order_id"],
        "merchant_id": auth["merchant_id"],
        "terminal_id": auth["terminal_id"],
        "outcome": outcome,
        "currency": auth["currency"],
        "approved_amount_minor": auth["amount_minor"],
        "settled_amount_minor": notice["amount_minor"],
        "approved_at": auth["event_time"],
        "settled_at": notice["settled_at"],
        "notice_id": notice["notice_id"],
        "revision": revision,
    }


def build_app(args: argparse.Namespace) -> tuple[Any, Any]:
    from quixstreams import Application

    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        processing_guarantee="exactly-once",
        state_dir=args.state_dir,
        loglevel=args.loglevel,
    )
    terminal = app.topic(args.terminal, value_deserializer=SingleObjectAvro("TerminalEvent", "terminal"))
    settlement = app.topic(args.settlement, value_deserializer=SingleObjectAvro("SettlementNotice", "settlement"))
    out = app.topic(args.out, value_serializer="json", key_serializer="bytes")
    sdf = app.dataframe(terminal).concat(app.dataframe(settlement))
    sdf = sdf.filter(lambda value, key, _ts, _headers: key is not None and "_error" not in value, metadata=True)
    sdf = sdf.apply(reconcile, stateful=True)
    sdf = sdf.filter(lambda decision: decision is not None)
    sdf.to_topic(out)
    return app, sdf


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--group", required=True, help="Quix consumer group")
    parser.add_argument("--terminal", default="pos.terminal-events")
    parser.add_argument("--settlement", default="pos.settlement-notices")
    parser.add_argument("--out", required=True)
    parser.add_argument("--state-dir", required=True, help="Quix's RocksDB state directory")
    parser.add_argument("--loglevel", default="INFO")
    args = parser.parse_args(argv)
    app, _sdf = build_app(args)
    app.run()  # until SIGTERM/SIGINT; a clean stop commits the open checkpoint
    return 0


if __name__ == "__main__":
    sys.exit(main())
