"""Positions.caught_up: an end-offset answer asked for near the end of the task's wait (from its start when the
wait is shorter than ``ASK_AHEAD_MS``) is a fresh look at the broker, even when the idle wait is shorter than a
loop turn (the answer takes a turn or two to come); one from the start of a long wait is not."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import TopicPartition

from posrecon.app import intake as intake_module
from posrecon.app.intake import Positions
from posrecon.app.merge import TaskQueue
from posrecon.app.worker import WorkerOptions
from posrecon.metrics import WorkerMetrics


class FakeConsumer:
    def __init__(self, position: int) -> None:
        self.at = position
        self.synchronous_looks = 0

    def position(self, tps: list[TopicPartition]) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition, self.at) for tp in tps]

    def get_watermark_offsets(self, *_args: Any, **_kwargs: Any) -> tuple[int, int]:
        self.synchronous_looks += 1  # the blocking fallback: must not be needed when an answer is there
        return 0, self.at


class KnownEnd:
    """EndOffsets with one answer: ``end``, asked for at ``asked`` (wall ms)."""

    def __init__(self, end: int, asked: int) -> None:
        self.end, self.asked = end, asked

    def answer(self, _key: tuple[str, int], asked_after: int) -> int | None:
        return self.end if self.asked >= asked_after else None


def _worker(idle_ms: int, consumer: FakeConsumer, ends: KnownEnd) -> Positions:
    options = WorkerOptions(bootstrap="unused", app_id="a", worker_id="w", max_task_idle_ms=idle_ms)
    worker = Positions(options, "a-card-sightings", WorkerMetrics(), {}, lambda _key, _offset: None)
    worker.consumer = consumer  # type: ignore[assignment]
    worker.end_offsets = ends  # type: ignore[assignment]
    return worker


@pytest.mark.parametrize("idle_ms", [0, 100, 500, 2000])
def test_an_answer_asked_near_the_end_of_the_wait_counts_whatever_the_idle_wait(
    monkeypatch: pytest.MonkeyPatch, idle_ms: int
) -> None:
    now = 100_000
    monkeypatch.setattr(intake_module, "wall_ms", lambda: now)
    queue = TaskQueue("settlements", 0)
    queue.waiting_since = now - idle_ms - 50  # the wait is over
    consumer = FakeConsumer(position=42)
    # asked when the look was due (ASK_AHEAD_MS before the wait's end, or at its start), arrived since
    due = queue.waiting_since + max(0, idle_ms - Positions.ASK_AHEAD_MS)
    worker = _worker(idle_ms, consumer, KnownEnd(end=42, asked=due))
    assert worker.caught_up(queue)
    assert consumer.synchronous_looks == 0
    # records behind the position: not caught up
    assert not _worker(idle_ms, consumer, KnownEnd(end=50, asked=due)).caught_up(queue)


def test_an_answer_from_the_start_of_a_long_wait_does_not_count_at_its_end(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 2 s wait passed on a look 1.9 s old, after the producer's next burst was on the broker (test_feed_race)."""
    now = 100_000
    monkeypatch.setattr(intake_module, "wall_ms", lambda: now)
    queue = TaskQueue("settlements", 0)
    queue.waiting_since = now - 2_000
    consumer = FakeConsumer(position=42)
    assert not _worker(2_000, consumer, KnownEnd(end=42, asked=now - 1_990)).caught_up(queue)
    assert consumer.synchronous_looks == 0


def test_an_answer_asked_before_the_wait_began_does_not_count(monkeypatch: pytest.MonkeyPatch) -> None:
    now = 100_000
    monkeypatch.setattr(intake_module, "wall_ms", lambda: now)
    queue = TaskQueue("settlements", 0)
    queue.waiting_since = now - 100
    consumer = FakeConsumer(position=42)
    assert not _worker(100, consumer, KnownEnd(end=42, asked=now - 150)).caught_up(queue)
    assert consumer.synchronous_looks == 0


class Wanting(KnownEnd):
    def __init__(self, end: int, asked: int) -> None:
        super().__init__(end, asked)
        self.known = {("settlements", 0): (end, asked)}
        self.wanted: list[tuple[str, int]] = []

    def want(self, key: tuple[str, int]) -> None:
        self.wanted.append(key)


def test_a_wait_asks_for_the_end_offset_at_once_unless_a_fresh_answer_is_known() -> None:
    queue = TaskQueue("settlements", 0)
    queue.waiting_since = 100_000
    ends = Wanting(end=42, asked=99_900)  # asked before the wait began: not fresh for it
    worker = _worker(100, FakeConsumer(position=42), ends)  # type: ignore[arg-type]
    worker.ask_end(queue)
    assert ends.wanted == [("settlements", 0)]
    ends.known[("settlements", 0)] = (42, 100_010)  # an answer asked after the wait began
    worker.ask_end(queue)
    assert ends.wanted == [("settlements", 0)]


def test_a_long_wait_asks_for_the_end_offset_only_near_its_end(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100_000]
    monkeypatch.setattr(intake_module, "wall_ms", lambda: clock[0])
    queue = TaskQueue("settlements", 0)
    queue.waiting_since = 100_000
    ends = Wanting(end=42, asked=99_900)
    worker = _worker(2_000, FakeConsumer(position=42), ends)  # type: ignore[arg-type]
    worker.ask_end(queue)
    assert ends.wanted == []  # 2 s to go: an answer now would be stale when the wait ends
    clock[0] = 100_000 + 2_000 - Positions.ASK_AHEAD_MS
    worker.ask_end(queue)
    assert ends.wanted == [("settlements", 0)]
