"""Worker._select behind a backlog: every task and card partition gets an equal share of a batch and the
first one served rotates, so no partition waits for all the others to be worked off (at a start behind a
3 s backlog, filling batches in partition order made 1 % of decisions wait 10 s)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from posrecon.app.merge import TaskMerger, TaskQueue
from posrecon.app.worker import Worker, WorkerOptions
from posrecon.kafka.topics import Topics

SIGHTINGS = "app-card-sightings"


@dataclass
class Rec:
    topic_name: str
    part: int
    ts: int

    def timestamp(self) -> tuple[int, int]:
        return (0, self.ts)

    def topic(self) -> str:
        return self.topic_name

    def partition(self) -> int:
        return self.part


def _worker(tasks: int, backlog: int, sightings: int = 0, batch: int = 1000) -> Worker:
    worker = Worker.__new__(Worker)
    worker.options = WorkerOptions(bootstrap="unused", app_id="app", worker_id="w", batch_max_records=batch)
    worker.topics = Topics()
    worker.sightings_topic = SIGHTINGS
    worker.merger = TaskMerger(max_idle_ms=100)
    worker.last_activity = {}
    worker._turn = 0
    worker.tasks = set(range(tasks))  # type: ignore[assignment]
    worker.cards = dict.fromkeys(range(tasks))  # type: ignore[assignment]
    worker.queues = {}
    for p in range(tasks):
        for topic in (worker.topics.terminal, worker.topics.settlement, SIGHTINGS):
            queue = TaskQueue(topic, p)
            n = sightings if topic == SIGHTINGS else backlog
            queue.records.extend(Rec(topic, p, ts) for ts in range(n))  # type: ignore[misc]
            worker.queues[(topic, p)] = queue
    return worker


def _by_task(batch: list[Rec], topic: str | None = None) -> Counter[int]:
    return Counter(r.part for r in batch if topic is None or r.topic_name != SIGHTINGS)


def test_a_backlog_is_shared_equally_between_tasks() -> None:
    worker = _worker(tasks=12, backlog=10_000)
    batch = worker._select(now=1_000)
    assert len(batch) == 1000
    counts = _by_task(batch)  # type: ignore[arg-type]
    assert sorted(counts) == list(range(12))
    assert max(counts.values()) - min(counts.values()) <= 84  # ceil(1000 / 12) = 84 for all but the last


def test_the_first_task_served_rotates() -> None:
    worker = _worker(tasks=12, backlog=10_000, batch=1000)
    seen = Counter[int]()
    for _ in range(24):
        seen.update(_by_task(worker._select(now=1_000)))  # type: ignore[arg-type]
    # 24 batches of 1000: every task got its 2,000 (the remainder of 1000/12 moves round the tasks)
    assert max(seen.values()) - min(seen.values()) <= 84


def test_room_left_by_short_tasks_goes_to_the_others() -> None:
    worker = _worker(tasks=4, backlog=0)
    worker.queues[(worker.topics.terminal, 2)].records.extend(
        Rec(worker.topics.terminal, 2, ts)
        for ts in range(5000)  # type: ignore[misc]
    )
    worker.queues[(worker.topics.settlement, 2)].records.extend(
        Rec(worker.topics.settlement, 2, ts)
        for ts in range(5000)  # type: ignore[misc]
    )
    batch = worker._select(now=1_000)
    assert len(batch) == 1000 and set(_by_task(batch)) == {2}  # type: ignore[arg-type]
    ts = [r.ts for r in batch]  # type: ignore[attr-defined]
    assert ts == sorted(ts)  # one task's records stay in timestamp order across the two passes


def test_card_sightings_are_shared_equally_too() -> None:
    worker = _worker(tasks=6, backlog=0, sightings=5000, batch=600)
    batch = worker._select(now=1_000)
    assert len(batch) == 600  # half first, then the room the tasks left
    assert set(Counter(r.part for r in batch).values()) == {100}  # type: ignore[attr-defined]
