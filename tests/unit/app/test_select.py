"""Intake.select behind a backlog: the task (and card partition) served first rotates from batch to batch,
so no partition waits for all the others to be worked off (always starting at partition 0, at a start behind
a 3 s backlog 1 % of the decisions waited 10 s), while a batch still takes each task's records in one run
(equal shares per batch made every transaction write to every output partition: 15-20 % less throughput)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from posrecon.app.intake import Intake
from posrecon.app.merge import TaskQueue
from posrecon.app.worker import WorkerOptions
from posrecon.kafka.topics import Topics
from posrecon.metrics import WorkerMetrics

SIGHTINGS = "app-card-sightings"


@dataclass
class Rec:
    topic_name: str
    part: int
    ts: int

    def timestamp(self) -> tuple[int, int]:
        return (0, self.ts)


def _worker(tasks: int, backlog: int, sightings: int = 0, batch: int = 1000) -> Intake:
    options = WorkerOptions(bootstrap="unused", app_id="app", worker_id="w", batch_max_records=batch)
    cards = dict.fromkeys(range(tasks))
    worker = Intake(options, Topics(), SIGHTINGS, WorkerMetrics(), cards, lambda _key, _offset: None)  # type: ignore[arg-type]
    worker.tasks.update(range(tasks))
    for p in range(tasks):
        for topic in (worker.topics.terminal, worker.topics.settlement, SIGHTINGS):
            queue = TaskQueue(topic, p)
            _add(queue, sightings if topic == SIGHTINGS else backlog)
            worker.queues[(topic, p)] = queue
    return worker


def _add(queue: TaskQueue, n: int, ts0: int = 0) -> None:
    queue.records.extend(Rec(queue.topic, queue.partition, ts) for ts in range(ts0, ts0 + n))  # type: ignore[misc]


def test_every_task_is_served_within_one_rotation_while_all_keep_receiving() -> None:
    # 12 tasks, a backlog of 2,000 records each, and every task receives 100 new ones per batch: 1,200 of the
    # 1,000-record batch's room. Starting at task 0 each time, tasks 1-11 would never be served.
    worker = _worker(tasks=12, backlog=1000, batch=1000)
    last_served = dict.fromkeys(range(12), 0)
    for turn in range(1, 61):
        for p in range(12):
            for topic in (worker.topics.terminal, worker.topics.settlement):
                _add(worker.queues[(topic, p)], 50, ts0=10_000 * turn)
        served = {r.part for r in worker.select(now=1_000)}  # type: ignore[attr-defined]
        for p in served:
            last_served[p] = turn
        if turn >= 12:
            assert min(last_served.values()) > turn - 12, (turn, last_served)


def test_a_batch_takes_each_task_in_one_run_in_timestamp_order() -> None:
    worker = _worker(tasks=12, backlog=10_000, batch=1000)
    batch = worker.select(now=1_000)
    assert len(batch) == 1000
    assert len({r.part for r in batch}) == 1  # type: ignore[attr-defined]  # few output partitions per txn
    ts = [r.ts for r in batch]  # type: ignore[attr-defined]
    assert ts == sorted(ts)


def test_card_sightings_rotate_too() -> None:
    worker = _worker(tasks=6, backlog=0, sightings=5000, batch=600)
    firsts = [worker.select(now=1_000)[0].part for _ in range(6)]  # type: ignore[attr-defined]
    assert sorted(firsts) == list(range(6))
    assert Counter(firsts).most_common(1)[0][1] == 1
