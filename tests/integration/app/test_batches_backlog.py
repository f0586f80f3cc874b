"""A pre-loaded backlog of the simulator's v2 mix with settlement batches (its own control records, 12 partitions),
one worker: every output, batches and batch alerts included, equals ``replay --partitions 12``.

The worker reads the control records' topic beside the order inputs, and the batch stage merges them all by
timestamp (app/batch_stage.py, ``merge_owned``). When it passed an empty control-record queue whose records were
still on the broker, a control record came after notices that replay counts after it: a late notice was counted
before its batch was decided (BALANCED at once instead of INCOMPLETE then BALANCED; MISMATCH at once instead of
BALANCED then MISMATCH). 1-4 of ~280 batches differed in every run at this size (the bench's batches step found it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from livekit import WorkerProcess, drain, feed_file, read_all, replay_oracle, simulate, verify

pytestmark = pytest.mark.broker
PARTITIONS = 12


def test_a_preloaded_batch_mix_equals_replay(bootstrap: str, fresh_topics: Any, tmp_path: Path) -> None:
    src = simulate(tmp_path / "sim", 20_000, seed=42, partitions=PARTITIONS)
    config = tmp_path / "sim" / "posrecon.toml"
    oracle = replay_oracle(src, tmp_path / "replay", PARTITIONS, config=config)
    late = [r for r in oracle.batch_reconciled if r["revision"] > 1]
    assert len(oracle.batch_reconciled) > 250 and len(late) > 10, (len(oracle.batch_reconciled), len(late))
    topics = fresh_topics(PARTITIONS)
    feed_file(bootstrap, topics, src)  # all of it before the worker starts: a backlog
    app = f"app-{topics.reconciled.rsplit('.', 1)[-1]}"
    worker = WorkerProcess(bootstrap, topics, app, "w0", tmp_path, config=config)
    try:
        drain(bootstrap, topics, app, timeout=300)
    finally:
        assert worker.stop() == 0, worker.log()[-3000:]
    verdict = verify(read_all(bootstrap, topics), oracle)
    assert verdict.ok, verdict.problems
