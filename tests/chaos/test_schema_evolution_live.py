"""Schema evolution on a live pipeline: producers on v1, v2 and a later v3 while workers run v2 or v3.

The repo's schemas are version 2 (contract v2; ``schemas/history/v1`` and ``v2`` kept). v3 is built here, in a temp
copy of ``schemas/``: TerminalEvent and SettlementNotice add one optional field, ``channel: ["null","string"]
default null`` -- a FULL-compatible bump from v2 on (the output schemas stay v2, so this process reads every
worker's outputs). The input mixes records written with v1 (SettlementNotice without the v2 capture fields, the
producers not yet upgraded), v2 and v3 (Avro single-object encoding: each carries its writer's fingerprint).
Three workers read the same input, each into its own output topics (``POSRECON_SCHEMA_DIR`` per process):

* ``stock-v2``   -- the schemas of this repo, which know v1 and v2;
* ``v2+hist-v3`` -- reader schemas v2, v3 added under ``schemas/history/v3`` (what a v2 deployment gets when the v3
  files are shipped to it before producers switch: "upgrade consumers first");
* ``v3``         -- reader schemas v3, v1 and v2 kept under ``schemas/history``.

Findings pinned by this test:

* every reader resolves v1 records to v2 (capture 1 of 1): consumers upgraded first read the old producers' data;
* v2 reader + v3 writer: works *only* if the v3 schema is present in the reader's ``schemas/history``; the wire
  carries a fingerprint, not the schema, and there is no registry to fetch it from. A stock v2 worker
  dead-letters every v3 record (DECODE_ERROR "unknown writer schema fingerprint") and goes on; nothing is lost
  for good (the dead letter keeps the original bytes) but its outputs lack those records;
* v2 reader with v3 in history: outputs == replay oracle (``channel`` is dropped by schema resolution);
* v3 reader reading v1, v2 and v3: outputs == replay oracle, INVALID_EVENT alert ids included: the id hashes the
  record's contract fields (engine/alerts.record_fingerprint), not every decoded field, so a reader's new
  optional field (``channel``) cannot mint new ids for the same input.
"""

from __future__ import annotations

import copy
import dataclasses
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
from posrecon.serde.schemas import RECORD_NAMES, strip_logical_types
from posrecon.sim.command import CONFIG_FILE

pytestmark = [pytest.mark.chaos, pytest.mark.broker]
PARTITIONS = 4
REPO_SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
EVOLVED = ("TerminalEvent", "SettlementNotice")


def schema_of(name: str, version: str) -> dict[str, Any]:
    """``name`` as version ``version``: v1 and v2 from the repo's history, v3 = v2 + ``channel`` on the inputs."""
    base = "v2" if version == "v3" else version
    doc: dict[str, Any] = json.loads((REPO_SCHEMAS / "history" / base / f"{name}.avsc").read_text())
    if version == "v3" and name in EVOLVED:
        doc = copy.deepcopy(doc)
        doc["fields"].append(
            {"name": "channel", "type": ["null", "string"], "default": None, "doc": "sales channel (v3)"}
        )
    return doc


def write_dir(root: Path, current: str, history: list[str]) -> Path:
    """A schema dir whose top level is ``current`` with ``history/<v>`` for each of ``history``."""

    def put(where: Path, version: str) -> None:
        where.mkdir(parents=True, exist_ok=True)
        base = "v2" if version == "v3" else version
        for name in RECORD_NAMES:  # every record the worker reads or writes; those added in v2 have no v1
            if (REPO_SCHEMAS / "history" / base / f"{name}.avsc").is_file():
                (where / f"{name}.avsc").write_text(json.dumps(schema_of(name, version), indent=2))

    shutil.rmtree(root, ignore_errors=True)
    put(root, current)
    for version in history:
        put(root / "history" / version, version)
    return root


def single_object(name: str, version: str, record: dict[str, Any]) -> bytes:
    """``record`` in Avro single-object encoding with writer schema ``version`` (computed here, not via the
    codec's caches, so this process keeps the repo's view). Fields the writer does not have are left out."""
    doc = schema_of(name, version)
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


def writer_version(rng: random.Random, source: str, record: dict[str, Any]) -> str:
    """v1, v2 or v3 at random; v1 only for a notice it can carry whole (the v2 capture fields at their defaults:
    TerminalEvent's v1 is its v2, same fingerprint)."""
    v1_fits = source == "settlement" and record["capture_seq"] == 1 and record["capture_count"] == 1
    return rng.choice(["v1", "v2", "v3"] if v1_fits else ["v2", "v3"])


def test_v1_v2_v3_writers_and_v2_v3_readers(
    warm_bootstrap: str, spawn: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    bootstrap = warm_bootstrap
    rng = random.Random(3)
    # no settlement batches: their control records need their own topic, and this test is about the order inputs
    src = simulate(tmp_path / "sim", 700, seed=3, partitions=PARTITIONS, extra=["--mix", "batches=0"])
    config = tmp_path / "sim" / CONFIG_FILE  # the simulation's merchant pricing: workers and oracle alike
    inputs = fresh(bootstrap, PARTITIONS)

    # feed: every record that fits the schema written with v1, v2 or v3 at random (v3 ones carry a channel or null)
    feeder = Feeder(bootstrap, inputs)
    written: Counter[str] = Counter()
    for line in src.read_text().splitlines():
        topic, key, value, ts = feeder.encode_line(line)
        if value[:2] == b"\xc3\x01":
            doc = json.loads(line)
            record = feeder.codecs[doc["source"]].conform(doc["record"])
            version = writer_version(rng, doc["source"], record)
            if version != "v2":
                name = "TerminalEvent" if doc["source"] == "terminal" else "SettlementNotice"
                if version == "v3":
                    record["channel"] = rng.choice([None, "in_store", "e_commerce", "moto"])
                value = single_object(name, version, record)
            written[version] += 1
        else:
            written["undecodable"] += 1
        feeder.send(topic, key, value, ts)
    feeder.flush()
    assert written["v1"] > 100 and written["v2"] > 500 and written["v3"] > 500, written

    dirs = {
        "stock-v2": None,
        "v2+hist-v3": write_dir(tmp_path / "schemas-v2-hist-v3", "v2", ["v1", "v2", "v3"]),
        "v3": write_dir(tmp_path / "schemas-v3", "v3", ["v1", "v2", "v3"]),
    }
    variants: dict[str, tuple[Topics, str, WorkerProcess]] = {}
    for label, path in dirs.items():
        out = fresh(bootstrap, PARTITIONS)  # unique output names; the inputs are shared
        topics = dataclasses.replace(out, terminal=inputs.terminal, settlement=inputs.settlement)
        app = app_of(out)
        with schema_dir(path):
            worker = spawn(bootstrap, topics, app, f"w-{label}", extra=["--config", str(config)], log_dir=tmp_path)
            variants[label] = (topics, app, worker)

    oracle = replay_oracle(src, tmp_path / "replay", PARTITIONS, config=config)
    results = {}
    for label, (topics, app, worker) in variants.items():
        expected = oracle_plus(oracle, {"DECODE_ERROR": written["v3"]}) if label == "stock-v2" else oracle
        results[label] = check_exactly_once(bootstrap, topics, app, expected, alive=worker.alive)
        assert worker.stop() == 0, f"{label}:\n{worker.log()[-3000:]}"
    report = {label: check.explain() for label, check in results.items()}
    print(f"records written: {dict(written)}; verdicts: {report}")

    # 1. a v2 reader without the v3 schema cannot read v3 records: each is dead-lettered (original bytes kept),
    #    the worker goes on, commits to the end, duplicates nothing; the v1 and v2 records give the oracle's outputs
    stock = results["stock-v2"]
    unknown = [
        d
        for d in stock.outputs.deadletters
        if "unknown writer schema fingerprint" in d.headers.get("exception.message", "")
    ]
    assert len(unknown) == written["v3"] and all(d.headers["reason"] == "DECODE_ERROR" for d in unknown), report
    assert stock.verdict.duplicates == 0 and not stock.open_transactions, report
    # 2. with v3 in its history a v2 reader resolves v3 records to v2 (and v1 records to v2): outputs == oracle
    assert results["v2+hist-v3"].ok, report
    # 3. a v3 reader: decisions == oracle ...
    v3 = results["v3"]
    live_rows = {(r.value["order_id"], r.value["revision"]): r.value for r in v3.outputs.reconciled}
    assert live_rows == {(r["order_id"], r["revision"]): r for r in oracle.reconciled}, report
    live_alerts = {a.value["alert_id"] for a in v3.outputs.alerts}
    differing = Counter(a["kind"] for a in oracle.alerts if a["alert_id"] not in live_alerts)
    # ... and every alert_id the same as a v2 reader's for the same input: the contract's "the same condition
    # always gets the same id (reprocessing never mints a new one)" must survive a reader upgrade
    assert not differing and v3.ok, (
        f"v3 reader: alerts with a new alert_id for the same input: {dict(differing)}. INVALID_EVENT ids come from "
        "engine/alerts.record_fingerprint(); it must hash the contract's fields only, not a reader's new optional "
        f"field (channel=None). {report['v3']}"
    )
