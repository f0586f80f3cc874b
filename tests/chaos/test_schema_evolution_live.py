"""Schema evolution on a live pipeline: producers move to v2 while workers run v1, and the other way round.

v2 of TerminalEvent and SettlementNotice (built here, in a temp copy of ``schemas/``) adds one optional field,
``channel: ["null","string"] default null`` -- the contract's rule for a compatible bump. The input mixes
records written with v1 and with v2 (Avro single-object encoding: the v2 records carry the v2 fingerprint).
Three workers read the same input, each into its own output topics (``POSRECON_SCHEMA_DIR`` per process):

* ``stock-v1``   -- the schemas of this repo, which know only v1;
* ``v1+hist-v2`` -- reader schemas still v1, v2 added under ``schemas/history/v2`` (what a v1 deployment gets
  when the v2 files are shipped to it before producers switch);
* ``v2``         -- reader schemas v2, v1 kept under ``schemas/history/v1``.

Findings pinned by this test:

* v1 reader + v2 writer: works *only* if the v2 schema is present in the reader's ``schemas/history``; the
  wire carries a fingerprint, not the schema, and there is no registry to fetch it from. A stock v1 worker
  dead-letters every v2 record (DECODE_ERROR "unknown writer schema fingerprint") and goes on; nothing is
  lost for good (the dead letter keeps the original bytes) but its outputs lack those records.
* v1 reader with v2 in history: outputs == replay oracle (``channel`` is dropped by schema resolution).
* v2 reader reading v1 and v2: the reconciled decisions and the deadline alerts == replay oracle
  (``channel`` defaults to null for v1 records), but INVALID_EVENT alerts get *new* ``alert_id`` values:
  the id hashes the whole decoded record, and the reader's new field is part of it (fails until fixed).
"""

from __future__ import annotations

import copy
import io
import json
import os
import random
import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import fastavro
import pytest
from chaoskit import app_of, check_exactly_once, oracle_plus, simulate
from fastavro.schema import fingerprint, to_parsing_canonical_form

from conftest import fresh
from livekit import WorkerProcess, replay_oracle
from posrecon.config import Topics
from posrecon.kafka.feeder import Feeder
from posrecon.serde.schemas import strip_logical_types

pytestmark = [pytest.mark.chaos, pytest.mark.broker]
PARTITIONS = 4
REPO_SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
EVOLVED = ("TerminalEvent", "SettlementNotice")
ALL = ("TerminalEvent", "SettlementNotice", "ReconciledOrder", "Alert")


def v2_schema(name: str) -> dict[str, Any]:
    doc = json.loads((REPO_SCHEMAS / f"{name}.avsc").read_text())
    if name in EVOLVED:
        doc = copy.deepcopy(doc)
        doc["fields"].append({"name": "channel", "type": ["null", "string"], "default": None,
                              "doc": "sales channel (v2)"})  # fmt: skip
    return doc


def write_dir(root: Path, current: str, history: list[str]) -> Path:
    """A schema dir whose top level is ``current`` ('v1' | 'v2') with ``history/<v>`` for each of ``history``."""

    def put(where: Path, version: str) -> None:
        where.mkdir(parents=True, exist_ok=True)
        for name in ALL:
            doc = json.loads((REPO_SCHEMAS / f"{name}.avsc").read_text()) if version == "v1" else v2_schema(name)
            (where / f"{name}.avsc").write_text(json.dumps(doc, indent=2))

    shutil.rmtree(root, ignore_errors=True)
    put(root, current)
    for version in history:
        put(root / "history" / version, version)
    return root


def single_object(name: str, record: dict[str, Any]) -> bytes:
    """``record`` in Avro single-object encoding with the v2 writer schema (computed here, not via the codec's
    caches, so this process keeps its own v1 view)."""
    doc = v2_schema(name)
    fp = bytes.fromhex(fingerprint(to_parsing_canonical_form(fastavro.parse_schema(doc)), "CRC-64-AVRO"))
    buf = io.BytesIO()
    buf.write(b"\xc3\x01" + fp[::-1])
    fastavro.schemaless_writer(buf, fastavro.parse_schema(strip_logical_types(doc)), record)
    return buf.getvalue()


@contextmanager
def schema_dir(path: Path | None) -> Iterator[None]:
    """POSRECON_SCHEMA_DIR for the worker processes started inside (only: this process keeps its schemas)."""
    old = os.environ.get("POSRECON_SCHEMA_DIR")
    if path is not None:
        os.environ["POSRECON_SCHEMA_DIR"] = str(path)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("POSRECON_SCHEMA_DIR", None)
        else:
            os.environ["POSRECON_SCHEMA_DIR"] = old


def test_v1_and_v2_writers_and_readers(
    warm_bootstrap: str, spawn: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    bootstrap = warm_bootstrap
    rng = random.Random(3)
    src = simulate(tmp_path / "sim", 700, seed=3, partitions=PARTITIONS)
    inputs = fresh(bootstrap, PARTITIONS)

    # feed: every valid record written with v1 or v2 at random (v2 ones carry a channel or null)
    feeder = Feeder(bootstrap, inputs)
    written: Counter[str] = Counter()
    for line in src.read_text().splitlines():
        topic, key, value, ts = feeder.encode_line(line)
        doc = json.loads(line) if value[:2] == b"\xc3\x01" else None
        if doc is not None and rng.random() < 0.5:
            name = "TerminalEvent" if doc["source"] == "terminal" else "SettlementNotice"
            record = feeder.codecs[doc["source"]].conform(doc["record"])
            record["channel"] = rng.choice([None, "in_store", "e_commerce", "moto"])
            value = single_object(name, record)
            written["v2"] += 1
        else:
            written["v1" if value[:2] == b"\xc3\x01" else "undecodable"] += 1
        feeder.send(topic, key, value, ts)
    feeder.flush()
    assert written["v2"] > 500 and written["v1"] > 500, written

    dirs = {
        "stock-v1": None,
        "v1+hist-v2": write_dir(tmp_path / "schemas-v1-hist-v2", "v1", ["v1", "v2"]),
        "v2": write_dir(tmp_path / "schemas-v2", "v2", ["v1", "v2"]),
    }
    variants: dict[str, tuple[Topics, str, WorkerProcess]] = {}
    for label, path in dirs.items():
        out = fresh(bootstrap, PARTITIONS)  # unique output names; the inputs are shared
        topics = Topics(terminal=inputs.terminal, settlement=inputs.settlement, reconciled=out.reconciled,
                        alerts=out.alerts, deadletter=out.deadletter)  # fmt: skip
        app = app_of(out)
        with schema_dir(path):
            variants[label] = (topics, app, spawn(bootstrap, topics, app, f"w-{label}", log_dir=tmp_path))

    oracle = replay_oracle(src, tmp_path / "replay", PARTITIONS)
    results = {}
    for label, (topics, app, worker) in variants.items():
        expected = oracle_plus(oracle, {"DECODE_ERROR": written["v2"]}) if label == "stock-v1" else oracle
        results[label] = check_exactly_once(bootstrap, topics, app, expected, alive=worker.alive)
        assert worker.stop() == 0, f"{label}:\n{worker.log()[-3000:]}"
    report = {label: check.explain() for label, check in results.items()}
    print(f"records written: {dict(written)}; verdicts: {report}")

    # 1. a v1 reader without the v2 schema cannot read v2 records: each is dead-lettered (original bytes kept),
    #    the worker goes on, commits to the end, duplicates nothing
    stock = results["stock-v1"]
    unknown = [d for d in stock.outputs.deadletters
               if "unknown writer schema fingerprint" in d.headers.get("exception.message", "")]  # fmt: skip
    assert len(unknown) == written["v2"] and all(d.headers["reason"] == "DECODE_ERROR" for d in unknown), report
    assert stock.verdict.duplicates == 0 and not stock.open_transactions, report
    # 2. with v2 in its history a v1 reader resolves v2 records to v1: outputs == oracle, exactly once
    assert results["v1+hist-v2"].ok, report
    # 3. a v2 reader resolves v1 records to v2: decisions and deadline alerts == oracle ...
    v2 = results["v2"]
    live_rows = {(r.value["order_id"], r.value["revision"]): r.value for r in v2.outputs.reconciled}
    assert live_rows == {(r["order_id"], r["revision"]): r for r in oracle.reconciled}, report
    live_alerts = {a.value["alert_id"] for a in v2.outputs.alerts}
    differing = Counter(a["kind"] for a in oracle.alerts if a["alert_id"] not in live_alerts)
    assert set(differing) <= {"INVALID_EVENT"}, differing
    # ... and every alert_id must be the same as a v1 reader's for the same input: the contract's "the same
    # condition always gets the same id (reprocessing never mints a new one)" must survive a reader upgrade
    assert v2.ok, (
        f"v2 reader: {differing['INVALID_EVENT']} INVALID_EVENT alerts got a new alert_id for the same input "
        "record. engine/alerts.record_fingerprint() hashes every field of the decoded record, so the reader "
        "schema's new optional field (channel=None) changes the id; reprocessing after an upgrade re-alerts. "
        f"{report['v2']}"
    )
