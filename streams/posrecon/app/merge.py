"""Timestamp-ordered merge of a task's two co-partitioned input partitions (as Kafka Streams does).

A task owns partition p of the terminal topic and partition p of the settlement topic. Records are taken
in Kafka-timestamp order across the two. When one side has nothing buffered the task waits for it:
not at all when that partition is at its log end; up to ``max_backlog_wait_ms`` when it is known (or
not yet known) to have records still to fetch; up to ``max_idle_ms`` otherwise. So a backlog on one topic
cannot race the watermark ahead of the other, and a silent topic does not stall the task for long.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol


class Record(Protocol):
    def timestamp(self) -> tuple[int, int]: ...


class TaskQueue:
    """Buffered records of one input partition, plus whether the consumer is at its log end."""

    __slots__ = ("at_end", "backlog", "last_heard", "records")

    def __init__(self, now_ms: int) -> None:
        self.records: deque[Record] = deque()
        self.at_end = False
        self.backlog = True  # records known (or not known not) to wait on the broker
        self.last_heard = now_ms  # wall clock of the last record or end-of-partition event


class TaskMerger:
    def __init__(self, max_idle_ms: int, max_backlog_wait_ms: int = 10_000) -> None:
        self.max_idle_ms = max_idle_ms
        self.max_backlog_wait_ms = max_backlog_wait_ms

    def take(self, first: TaskQueue, second: TaskQueue, limit: int, now_ms: int, out: list[Record]) -> None:
        """Move up to ``limit`` records, in timestamp order, from the two queues to ``out``."""
        a, b = first.records, second.records
        taken = 0
        while taken < limit:
            if a and b:
                out.append(a.popleft() if a[0].timestamp()[1] <= b[0].timestamp()[1] else b.popleft())
            elif a:
                if not self._may_pass(second, now_ms):
                    return
                out.append(a.popleft())
            elif b:
                if not self._may_pass(first, now_ms):
                    return
                out.append(b.popleft())
            else:
                return
            taken += 1

    def _may_pass(self, empty: TaskQueue, now_ms: int) -> bool:
        if empty.at_end:
            return True
        waited = now_ms - empty.last_heard
        return waited >= (self.max_backlog_wait_ms if empty.backlog else self.max_idle_ms)
