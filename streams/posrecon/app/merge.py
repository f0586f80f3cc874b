"""Timestamp-ordered merge of a task's two co-partitioned input partitions (as Kafka Streams does).

A task owns partition p of the terminal topic and partition p of the settlement topic. Records are taken
in Kafka-timestamp order across the two. When one side has nothing buffered the task waits for it (as
Kafka Streams does with ``max.task.idle.ms``): up to ``max_backlog_wait_ms`` when that partition is known
(or not yet known) to have records still to fetch, else until ``max_idle_ms`` have passed since it last
delivered a record or reached its log end. Being at the log end is not enough to go on at once: a
producer writing both topics may simply not have written the next record of the empty side yet. So a
backlog on one topic cannot race the watermark ahead of the other, and a silent topic stalls a task by
at most ``max_idle_ms``.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol


class Record(Protocol):
    def timestamp(self) -> tuple[int, int]: ...


class TaskQueue:
    """Buffered records of one input partition, plus whether the consumer is at its log end."""

    __slots__ = ("at_end", "backlog", "last_heard", "records", "waiting_since")

    def __init__(self, now_ms: int) -> None:
        self.records: deque[Record] = deque()
        self.waiting_since: int | None = None  # when the other side of the task started waiting for this one
        self.at_end = False
        self.backlog = True  # records known (or not known not) to wait on the broker
        self.last_heard = now_ms  # wall clock of the last record or end-of-partition event


class TaskMerger:
    def __init__(self, max_idle_ms: int, max_backlog_wait_ms: int = 60_000) -> None:
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
        # the wait is timed from when the task became blocked on the empty side (as Kafka Streams does), not
        # from that side's last record: after a quiet spell the other side must still get its full wait
        if empty.waiting_since is None:
            empty.waiting_since = now_ms
        waited = now_ms - empty.waiting_since
        if empty.backlog and not empty.at_end:
            return waited >= self.max_backlog_wait_ms
        return waited >= self.max_idle_ms
