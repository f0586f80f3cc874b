"""Timestamp-ordered merge of a task's two co-partitioned input partitions (as Kafka Streams does).

A task owns partition p of the terminal topic and partition p of the settlement topic. Records are taken
in Kafka-timestamp order across the two; when one side has nothing buffered and is not known to be at
its log end, the task waits up to ``max_idle_ms`` for it, so that a backlog on one topic cannot race the
watermark ahead of the other.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol


class Record(Protocol):
    def timestamp(self) -> tuple[int, int]: ...


class TaskQueue:
    """Buffered records of one input partition, plus whether the consumer is at its log end."""

    __slots__ = ("at_end", "last_heard", "records")

    def __init__(self, now_ms: int) -> None:
        self.records: deque[Record] = deque()
        self.at_end = False
        self.last_heard = now_ms  # wall clock of the last record or end-of-partition event


class TaskMerger:
    def __init__(self, max_idle_ms: int) -> None:
        self.max_idle_ms = max_idle_ms

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
        return empty.at_end or now_ms - empty.last_heard >= self.max_idle_ms
