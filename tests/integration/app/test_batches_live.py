"""The live batch stage on a real broker: pos.batch-reconciled and the batch alerts equal replay's (the oracle,
``replay --partitions N``) on a mix with settlement batches and their faults, exactly once; a worker killed
with -9 comes back with its batch state; the ops API and ``posrecon lookup --batch`` show a batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from batchkit import add_batches
from livekit import (
    WorkerProcess,
    app_of,
    feed_file,
    mixed_input,
    read_all,
    replay_oracle,
    run_until_drained,
    topic_env,
    verify,
)
from livekit import drain as _drain

pytestmark = pytest.mark.broker
PARTITIONS = 4


def batch_mix(tmp_path: Path, orders: int, seed: int) -> Path:
    faults = add_batches(mixed_input(tmp_path / "orders.jsonl", orders, seed=seed), tmp_path / "input.jsonl", seed)
    assert len(faults) >= orders // 30
    return tmp_path / "input.jsonl"


def check_oracle_has_every_case(oracle: Any) -> None:
    statuses = Counter(r["status"] for r in oracle.batch_reconciled)
    kinds = Counter((a["kind"], a["status"]) for a in oracle.alerts if a.get("batch_id"))
    assert statuses["BALANCED"] and statuses["INCOMPLETE"] and statuses["MISMATCH"], statuses
    assert {
        ("BATCH_INCOMPLETE", "OPEN"),
        ("BATCH_MISMATCH", "OPEN"),
        ("BATCH_INCOMPLETE", "RESOLVED"),
        ("BATCH_MISMATCH", "RESOLVED"),
    } <= set(kinds), kinds
    assert any(r["revision"] > 1 for r in oracle.batch_reconciled)


def test_live_batches_equal_replay(bootstrap: str, fresh_topics: Any, tmp_path: Path) -> None:
    topics = fresh_topics(PARTITIONS)
    src = batch_mix(tmp_path, 600, seed=7)
    oracle = replay_oracle(src, tmp_path / "replay", PARTITIONS)
    check_oracle_has_every_case(oracle)
    feed_file(bootstrap, topics, src)
    run_until_drained(bootstrap, topics, app_of(topics), tmp_path)
    outputs = read_all(bootstrap, topics)
    verdict = verify(outputs, oracle)
    assert verdict.ok, verdict.problems
    assert len(outputs.batch_reconciled) == len(oracle.batch_reconciled) > 50
    assert oracle.deadletters["INVALID_AMOUNT"] >= 1  # the invalid control record: INVALID_EVENT + dead letter


def test_worker_killed_recovers_batch_state(bootstrap: str, fresh_topics: Any, tmp_path: Path) -> None:
    topics = fresh_topics(PARTITIONS)
    src = batch_mix(tmp_path, 500, seed=11)
    total = len(src.read_text().splitlines())
    app = app_of(topics)
    feed_file(bootstrap, topics, src, 0, total // 2)
    first = WorkerProcess(bootstrap, topics, app, "w0", tmp_path)
    _drain(bootstrap, topics, app)
    first.kill()  # no clean shutdown: the batches' state must come back from the batch changelog
    feed_file(bootstrap, topics, src, total // 2)
    second = WorkerProcess(bootstrap, topics, app, "w0", tmp_path)
    try:
        _drain(bootstrap, topics, app)
    finally:
        assert second.stop() == 0, second.log()[-3000:]
    # the worker's log file holds both runs: the last assignment is the second worker's, after the kill
    assigned = [json.loads(line) for line in second.log().splitlines() if '"partitions assigned"' in line]
    assert assigned[-1]["batches_restored"] > 0, assigned
    oracle = replay_oracle(src, tmp_path / "replay", PARTITIONS)
    verdict = verify(read_all(bootstrap, topics), oracle)
    assert verdict.ok, verdict.problems


def test_lookup_batch_from_kafka(bootstrap: str, fresh_topics: Any, tmp_path: Path) -> None:
    topics = fresh_topics(2)
    src = batch_mix(tmp_path, 200, seed=5)
    feed_file(bootstrap, topics, src)
    app = app_of(topics)
    run_until_drained(bootstrap, topics, app, tmp_path)
    oracle = replay_oracle(src, tmp_path / "replay", 2)
    last = oracle.batch_reconciled[-1]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "posrecon.cli",
            "lookup",
            "--batch",
            last["batch_id"],
            "--bootstrap",
            bootstrap,
            "--app-id",
            app,
            "--json",
        ],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **topic_env(topics)},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    view = json.loads(proc.stdout)
    assert view["records"][-1] == last
    assert view["status"] == last["status"] and view["received_count"] == last["received_count"]
    assert len(view["notices"]) == last["received_count"]
