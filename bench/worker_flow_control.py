"""Experiment (not the product): ``posrecon run`` with flow control in the input merge, patched in at start-up.

Finding behind it (docs/performance.md): on a pre-loaded backlog the worker consumes ``consume(2000)`` per
loop turn into unbounded per-partition queues, while librdkafka prefetches up to 64 MB ahead; the records a
task needs next from its *other* topic can sit behind tens of seconds of prefetched data, and the merge
then gives up after ``max_backlog_wait_ms`` (10 s) and processes one topic ahead of the other. The partition
watermark runs ahead, deadlines fire early (ORPHAN_SETTLEMENT, EXPIRED_ORDER …) and the output diverges from
``posrecon replay``. This wrapper changes two things, as Kafka Streams does (``buffered.records.per.partition``):

* pause a partition whose queue holds more than ``--fc-high`` records (default 5000), resume it below
  ``--fc-low`` (1000) — so the fetcher serves the starving partitions;
* never pass a partition that still has a known backlog (``max_backlog_wait_ms`` = 1 h instead of 10 s).

``python bench/worker_flow_control.py run --bootstrap … --app-id … [posrecon run options]``; on exit it logs
one JSON line ``{"flow_control": {...counters...}}`` on stderr.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
from collections import Counter
from typing import Any

from confluent_kafka import TopicPartition

import posrecon.app.merge as merge
import posrecon.app.worker as worker

HIGH = int(os.environ.get("POSRECON_BENCH_FC_HIGH", "5000"))
LOW = int(os.environ.get("POSRECON_BENCH_FC_LOW", "1000"))
BACKLOG_WAIT_MS = 3_600_000

stats: Counter[str] = Counter()
_paused: set[tuple[str, int]] = set()
_merger_init = merge.TaskMerger.__init__
_merger_may_pass = merge.TaskMerger._may_pass
_worker_step = worker.Worker.step


def _init(self: Any, max_idle_ms: int, max_backlog_wait_ms: int = 10_000) -> None:
    _merger_init(self, max_idle_ms, BACKLOG_WAIT_MS)


def _may_pass(self: Any, empty: Any, now_ms: int) -> bool:
    ok = bool(_merger_may_pass(self, empty, now_ms))
    if ok:
        stats["passed_with_backlog" if empty.backlog and not empty.at_end else "passed_idle"] += 1
    return ok


def _step(self: Any) -> int:
    taken = int(_worker_step(self))
    consumer = self.consumer
    if consumer is None:
        return taken
    pause, resume = [], []
    for key, queue in self.queues.items():
        depth = len(queue.records)
        if depth > HIGH and key not in _paused:
            pause.append(TopicPartition(*key))
            _paused.add(key)
        elif depth < LOW and key in _paused:
            resume.append(TopicPartition(*key))
            _paused.discard(key)
    if pause:
        consumer.pause(pause)
        stats["pauses"] += len(pause)
    if resume:
        consumer.resume(resume)
        stats["resumes"] += len(resume)
    return taken


def _revoked(self: Any, consumer: Any, partitions: list[TopicPartition]) -> None:
    for tp in partitions:
        _paused.discard((tp.topic, tp.partition))
    _worker_on_revoke(self, consumer, partitions)


_worker_on_revoke = worker.Worker._on_revoke
merge.TaskMerger.__init__ = _init  # type: ignore[method-assign]
merge.TaskMerger._may_pass = _may_pass  # type: ignore[method-assign]
worker.Worker.step = _step  # type: ignore[method-assign]
worker.Worker._on_revoke = _revoked  # type: ignore[method-assign]


def _report() -> None:
    sys.stderr.write(json.dumps({"flow_control": {"high": HIGH, "low": LOW, **stats}}) + "\n")
    sys.stderr.flush()


if __name__ == "__main__":
    from posrecon.cli import main

    atexit.register(_report)
    sys.argv = ["posrecon", *sys.argv[1:]]
    sys.exit(main())
