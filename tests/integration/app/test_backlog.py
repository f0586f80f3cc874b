"""A large backlog on the broker before the worker starts: flow control keeps live == replay.

With unbounded buffers librdkafka prefetches one topic far ahead of the other, the records a blocked task
waits for sit behind thousands of others, and the merge could let one topic's watermark run hours ahead
(orphans and expiries fired early). The worker pauses a partition with more than ``--max-buffered-records``
waiting and resumes it below a fifth of that. Here the marks are tiny (200) so that a small, fast backlog
pauses partitions hundreds of times; the outputs must still equal replay exactly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from livekit import WorkerProcess, app_of, feed_file, read_all, replay_oracle, simulate, verify
from livekit import drain as _drain

pytestmark = pytest.mark.broker
PARTITIONS = 4


def test_backlog_with_flow_control_equals_replay(bootstrap: str, fresh_topics: Any, tmp_path: Path) -> None:
    topics = fresh_topics(PARTITIONS)
    src = simulate(tmp_path / "sim", 6000, seed=31, partitions=PARTITIONS)
    feed_file(bootstrap, topics, src)
    app = app_of(topics)
    worker = WorkerProcess(
        bootstrap,
        topics,
        app,
        "w0",
        tmp_path,
        ["--no-wall-clock-advance", "--max-buffered-records", "200", "--batch", "500"],
    )
    try:
        _drain(bootstrap, topics, app, timeout=180)
    finally:
        assert worker.stop() == 0, worker.log()[-3000:]
    stopped = [json.loads(line) for line in worker.log().splitlines() if '"worker stopped"' in line]
    assert stopped and stopped[-1]["input_pauses"] > 0, "flow control never paused a partition"
    verdict = verify(read_all(bootstrap, topics), replay_oracle(src, tmp_path / "replay", PARTITIONS))
    assert verdict.ok, verdict.problems
