"""``posrecon replay``: run the engine over a JSONL file, offline, exactly as the live worker would.

Each line: ``{"source": "terminal"|"settlement"|"batch", "ingest_time": <ms, optional>, "record": {...}}``.
Records are checked strictly against the Avro schema, which is what Kafka's Avro round trip would check: lines
are parsed with orjson, which refuses a lone surrogate (a JSON ``"\\ud800"`` escape), the one string an Avro
writer cannot encode, so for a record that passes the strict check the round trip is the identity
(``AvroCodec.check``) and is not run. Lines that are not JSON or do not fit go to the dead letter (reason
DECODE_ERROR) and replay goes on. Outputs are written by orjson too: the same bytes as ``json.dumps`` with
``separators=(",", ":"), ensure_ascii=False`` (tests/unit/test_replay_json.py), at a fraction of its cost.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from posrecon.config import RuleConfig, load_rules
from posrecon.engine import BUILD as ENGINE_BUILD
from posrecon.engine.engine import ReconciliationEngine
from posrecon.engine.line_feed import LineFeed
from posrecon.engine.model import InvalidReason, Rejection, SettlementBatch, SettlementNotice, TerminalEvent
from posrecon.engine.pan import scrub_text
from posrecon.kafka.partitioner import partition_for
from posrecon.serde.codec import AvroCodec, DecodeError

SOURCES = ("terminal", "settlement", "batch")


def json_line(obj: Mapping[str, object]) -> bytes:
    """One output line: compact JSON (the bytes of ``json.dumps(obj, separators=(",", ":"), ensure_ascii=False)``)
    and a newline. A string orjson refuses (a lone surrogate, only ever in a dead letter's raw line given to
    :meth:`Replay.feed` by a caller) is written with ``\\u`` escapes instead."""
    try:
        return orjson.dumps(obj, option=orjson.OPT_APPEND_NEWLINE)
    except orjson.JSONEncodeError:
        return (json.dumps(obj, separators=(",", ":")) + "\n").encode("ascii")


@dataclass
class ReplaySummary:
    lines: int = 0
    records: int = 0
    reconciled: Counter[str] = field(default_factory=Counter)
    alerts: Counter[str] = field(default_factory=Counter)
    deadletters: Counter[str] = field(default_factory=Counter)
    batches: Counter[str] = field(default_factory=Counter)
    duplicates_dropped: int = 0
    open_orders: int = 0
    seconds: float = 0.0

    def render(self) -> str:
        rate = self.lines / self.seconds if self.seconds > 0 else 0.0
        out = [
            f"replayed {self.lines} lines ({self.records} records) in {self.seconds:.2f} s ({rate:,.0f} lines/s)",
            f"  reconciled records: {sum(self.reconciled.values())}  "
            + "  ".join(f"{k}={v}" for k, v in sorted(self.reconciled.items())),
            f"  alerts: {sum(self.alerts.values())}  " + "  ".join(f"{k}={v}" for k, v in sorted(self.alerts.items())),
            f"  batch records: {sum(self.batches.values())}  "
            + "  ".join(f"{k}={v}" for k, v in sorted(self.batches.items())),
            f"  dead letters: {sum(self.deadletters.values())}  "
            + "  ".join(f"{k}={v}" for k, v in sorted(self.deadletters.items())),
            f"  redeliveries dropped: {self.duplicates_dropped}  open orders at end: {self.open_orders}",
            f"  engine: {ENGINE_BUILD.describe()}",
        ]
        return "\n".join(out)


class Replay:
    """Feeds JSONL lines to one engine and writes the three output files."""

    def __init__(self, rules: RuleConfig, out_dir: Path, partitions: int = 1) -> None:
        if partitions < 1:
            raise ValueError("--partitions must be >= 1")
        self.engine = ReconciliationEngine(rules, partitions)
        self.partitions = partitions
        self.codecs = {
            "terminal": AvroCodec("TerminalEvent"),
            "settlement": AvroCodec("SettlementNotice"),
            "batch": AvroCodec("SettlementBatch"),
        }
        out_dir.mkdir(parents=True, exist_ok=True)
        self._reconciled: IO[bytes] = open(out_dir / "reconciled.jsonl", "wb")  # noqa: SIM115
        self._alerts: IO[bytes] = open(out_dir / "alerts.jsonl", "wb")  # noqa: SIM115
        self._dead: IO[bytes] = open(out_dir / "deadletter.jsonl", "wb")  # noqa: SIM115
        self._batches: IO[bytes] = open(out_dir / "batch-reconciled.jsonl", "wb")  # noqa: SIM115
        self.summary = ReplaySummary()
        partition_of = None if partitions == 1 else (lambda key: partition_for(key.encode("utf-8"), partitions))
        checks: dict[str, Callable[[Any], Any]] = {source: codec.check for source, codec in self.codecs.items()}
        #: the loop over lines (compiled with the engine); what it cannot take goes to _feed_decoded
        self.line_feed = LineFeed(
            self.engine, orjson.loads, checks, partition_of, self._feed_decoded, self._rejected, self._drain
        )

    def close(self) -> None:
        self.summary.lines = self.line_feed.lines
        self.summary.records = self.line_feed.records
        self.summary.duplicates_dropped = self.engine.stats.duplicates_dropped
        self.summary.open_orders = self.engine.open_orders()
        for fh in (self._reconciled, self._alerts, self._dead, self._batches):
            fh.close()

    def feed(self, lines: Iterable[str], start_line: int = 1) -> None:
        for number, line in enumerate(lines, start_line):
            self.feed_line(number, line)

    def feed_line(self, number: int, line: str) -> None:
        self.line_feed.feed(number, line)

    def _feed_decoded(self, number: int, line: str) -> None:
        """A line the loop could not take the usual way: decoded strictly, dead-lettered saying why."""
        text = line.strip()
        if not text:
            return
        try:
            source, ingest_time, record = self._decode(text)
        except DecodeError as exc:
            self._dead_letter(number, text, None, InvalidReason.DECODE_ERROR.value, str(exc))
            return
        self.line_feed.apply(number, text, source, record, ingest_time)  # e.g. Unicode spaces around the JSON

    def _rejected(self, number: int, line: str, source: str, rejection: Rejection) -> None:
        self._dead_letter(number, line.strip(), source, rejection.reason.value, rejection.detail)

    def until(self, event_time: int) -> None:
        """Advance every partition's watermark to ``event_time`` (fires due deadlines)."""
        for partition in range(self.partitions):
            self.engine.advance(partition, event_time, event_time)
        self.engine.sync_batches(event_time)
        self._drain()

    def _decode(self, text: str) -> tuple[str, int | None, TerminalEvent | SettlementNotice | SettlementBatch]:
        try:
            doc = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise DecodeError(f"line is not JSON ({exc})") from None
        if type(doc) is not dict:
            raise DecodeError("line is not a JSON object")
        source = doc.get("source")
        if source not in SOURCES:
            raise DecodeError(f"source must be 'terminal', 'settlement' or 'batch', got {source!r}")
        ingest_time = doc.get("ingest_time")
        if ingest_time is not None and type(ingest_time) is not int:
            raise DecodeError("ingest_time must be epoch milliseconds (integer) or absent")
        if "record" not in doc:
            raise DecodeError("line has no record")
        # orjson let no lone surrogate through, so the Avro round trip of a checked record is the identity
        record = self.codecs[source].check(doc["record"])
        return source, ingest_time, record  # type: ignore[return-value]

    def _dead_letter(self, number: int, text: str, source: str | None, reason: str, detail: str) -> None:
        self.summary.deadletters[reason] += 1
        entry = {
            "line": number,
            "reason": reason,
            "detail": scrub_text(detail),
            "source": source,
            "raw": scrub_text(text),
        }
        self._dead.write(json_line(entry))

    def _drain(self) -> None:
        reconciled, alerts = self.engine.take()
        for rec in reconciled:
            self.summary.reconciled[rec["outcome"]] += 1
            self._reconciled.write(json_line(rec))
        batch_records, batch_alerts = self.engine.batches.take()
        for alert in (*alerts, *batch_alerts) if batch_alerts else alerts:
            self.summary.alerts[alert["kind"]] += 1
            self._alerts.write(json_line(alert))
        for batch in batch_records:
            self.summary.batches[batch["status"]] += 1
            self._batches.write(json_line(batch))


def run_replay(
    input_path: Path,
    out_dir: Path,
    rules: RuleConfig,
    until: int | None = None,
    partitions: int = 1,
    progress: bool | None = None,
) -> ReplaySummary:

    from posrecon.gcpolicy import long_lived_state

    started = time.perf_counter()
    replay = Replay(rules, out_dir, partitions)
    with long_lived_state() as collector:
        _feed_file(replay, input_path, until, progress, collector)
    replay.summary.seconds = time.perf_counter() - started
    return replay.summary


def _feed_file(replay: Replay, input_path: Path, until: int | None, progress: bool | None, collector: Any) -> None:
    from tqdm import tqdm

    try:
        size = os.path.getsize(input_path)
        with (
            open(input_path, encoding="utf-8", errors="replace") as fh,
            tqdm(
                total=size,
                unit="B",
                unit_scale=True,
                desc="replay",
                disable=not (progress if progress is not None else sys.stderr.isatty()),
            ) as bar,
        ):
            feed_line = replay.line_feed.feed
            for number, line in enumerate(fh, 1):
                feed_line(number, line)
                if not number & 4095:  # the collector's pace is per 20k records, so ticking in steps is enough
                    collector.tick(4096)
                    bar.update(fh.buffer.tell() - bar.n)  # type: ignore[attr-defined]
        if until is not None:
            replay.until(until)
    finally:
        replay.close()


def _main(args: argparse.Namespace) -> int:
    rules = load_rules(args.config)
    summary = run_replay(Path(args.input), Path(args.out), rules, args.until, args.partitions)
    print(summary.render())
    print(f"  outputs: {args.out}/reconciled.jsonl, alerts.jsonl, deadletter.jsonl, batch-reconciled.jsonl")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "replay",
        help="reconcile a JSONL file offline (same engine as live)",
        description=(
            "Run the reconciliation engine over INPUT.jsonl (one {source, ingest_time, record} object per line,\n"
            "in arrival order) and write DIR/reconciled.jsonl, DIR/alerts.jsonl and DIR/deadletter.jsonl.\n"
            "Bad lines become dead letters; replay goes on and exits 0."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("input", metavar="INPUT.jsonl", help="input file, one JSON object per line")
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory (created if missing)")
    parser.add_argument("--config", metavar="FILE.toml", help="rule parameters (TOML, contract key names)")
    parser.add_argument("--until", type=int, metavar="EPOCH_MS", help="advance the watermark to this time at the end")
    parser.add_argument(
        "--partitions",
        type=int,
        default=1,
        metavar="N",
        help="assign orders to N partitions (Kafka murmur2) with one watermark each (default 1: one global watermark)",
    )
    parser.set_defaults(func=_main)
