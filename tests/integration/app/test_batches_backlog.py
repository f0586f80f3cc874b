"""A pre-loaded backlog of the simulator's v2 mix with settlement batches (75k orders, over 1,000 batches with
every batch fault, their own control records, 12 partitions), one worker: every output, batches and batch alerts
included, equals ``replay --partitions 12``, and scored against the simulation's truth it is perfect (precision =
recall = 1.0 for every alert kind and status, batch statuses included; outcome accuracy 1.0).

The worker reads the control records' topic beside the order inputs, and the batch stage merges them all by
timestamp (app/batch_stage.py, ``merge_owned``). Before that merge began at the start of a pre-loaded backlog
(it waited for the first batch record), the first batches were chosen task by task and ran a partition hours
ahead of the others: a late notice was counted before its batch was decided (BALANCED at once instead of
INCOMPLETE then BALANCED; MISMATCH at once instead of BALANCED then MISMATCH). 1-5 batches differed in every run
at 20k orders (the bench's batches step found it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from livekit import WorkerProcess, app_of, drain, feed_file, read_all, replay_oracle, simulate, verify
from posrecon.sim.evaluate import render
from posrecon.sim.scoring import evaluate
from posrecon.sim.truth import read_truth

pytestmark = pytest.mark.broker
PARTITIONS = 12


def test_a_preloaded_batch_mix_equals_replay_and_the_truth(bootstrap: str, fresh_topics: Any, tmp_path: Path) -> None:
    src = simulate(tmp_path / "sim", 75_000, seed=42, partitions=PARTITIONS)
    config = tmp_path / "sim" / "posrecon.toml"
    oracle = replay_oracle(src, tmp_path / "replay", PARTITIONS, config=config)
    batches = {r["batch_id"] for r in oracle.batch_reconciled}
    later = [r for r in oracle.batch_reconciled if r["revision"] > 1]
    assert len(batches) >= 1000 and len(later) > 40, (len(batches), len(later))
    topics = fresh_topics(PARTITIONS)
    feed_file(bootstrap, topics, src)  # all of it before the worker starts: a backlog
    app = app_of(topics)
    worker = WorkerProcess(bootstrap, topics, app, "w0", tmp_path, config=config)
    try:
        drain(bootstrap, topics, app, timeout=600)
    finally:
        assert worker.stop() == 0, worker.log()[-3000:]
    out = read_all(bootstrap, topics)
    verdict = verify(out, oracle)
    assert verdict.ok, verdict.problems
    result = evaluate(
        read_truth(tmp_path / "sim" / "truth.json"),
        [r.value for r in out.reconciled],
        [a.value for a in out.alerts],
        [{"reason": d.headers.get("reason")} for d in out.deadletters],
        [b.value for b in out.batch_reconciled],
    )
    assert result.perfect, render(result)
