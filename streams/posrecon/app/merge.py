"""Timestamp-ordered merge of a task's two co-partitioned input partitions (as Kafka Streams does).

A task owns partition p of the terminal topic and partition p of the settlement topic. Records are taken
in Kafka-timestamp order across the two. When one side has nothing buffered the task waits for it (as
Kafka Streams does with ``max.task.idle.ms``, KIP-695):

* while that side is known (or not known not) to have records still to fetch, up to
  ``max_backlog_wait_ms`` -- a backstop against an input transaction that never ends, not a timing bet;
* else until ``max_idle_ms`` have passed since the task became blocked on it, and then only if a *fresh*
  look at the broker (``confirm_caught_up``: a ListOffsets query by the worker) still shows nothing behind
  the consumer's position. End-of-partition information can be stale: after a process stall (a VM pause,
  CPU throttling) a burst may be on the broker while the flag says "at the end".

Being at the log end is not enough to go on at once either: a producer writing both topics may simply not
have written the next record of the empty side yet. So a backlog on one topic cannot race the watermark
ahead of the other, and a silent topic stalls a task by at most ``max_idle_ms``.

Waiting time counts only while the loop runs: :meth:`TaskMerger.discount` takes a stall of the whole
process out of every wait, so a frozen worker does not wake up with all its waits expired.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import Protocol


class Record(Protocol):
    def timestamp(self) -> tuple[int, int]: ...


class TaskQueue:
    """Buffered records of one input partition, plus what is known about the broker's side of it."""

    __slots__ = ("at_end", "backlog", "end_offset", "partition", "paused", "records", "topic", "waiting_since")

    def __init__(self, topic: str = "", partition: int = 0) -> None:
        self.topic = topic
        self.partition = partition
        self.records: deque[Record] = deque()
        self.waiting_since: int | None = None  # when the other side of the task started waiting for this one
        self.at_end = False  # an end-of-partition event came after the last record
        self.end_offset = -1  # the offset that event reported
        self.backlog = True  # records known (or not known not) to wait on the broker
        self.paused = False  # fetching paused by flow control (too many records buffered)


#: asked before the other side may pass an apparently caught-up empty queue; False means "records are
#: waiting on the broker after all" (the callee then marks the queue as having a backlog)
CaughtUp = Callable[[TaskQueue], bool]


#: told when a task starts (or goes on) waiting for an empty side that looks caught up, before its idle wait
#: is over: the worker asks the broker then, so a fresh answer is there when the wait ends
WaitStarts = Callable[[TaskQueue], None]


def _always(_queue: TaskQueue) -> bool:
    return True


def _nothing(_queue: TaskQueue) -> None:
    return None


def _move(records: deque[Record], out: list[Record], limit: int) -> int:
    """Up to ``limit`` records from the front of ``records`` to ``out``; how many."""
    n = min(limit, len(records))
    if n == len(records):
        out.extend(records)
        records.clear()
    else:
        out.extend([records.popleft() for _ in range(n)])
    return n


class TaskMerger:
    def __init__(self, max_idle_ms: int, max_backlog_wait_ms: int = 60_000) -> None:
        self.max_idle_ms = max_idle_ms
        self.max_backlog_wait_ms = max_backlog_wait_ms

    def take(
        self,
        first: TaskQueue,
        second: TaskQueue,
        limit: int,
        now_ms: int,
        out: list[Record],
        confirm_caught_up: CaughtUp = _always,
        waiting: WaitStarts = _nothing,
    ) -> None:
        """Move up to ``limit`` records, in timestamp order, from the two queues to ``out``.

        Whether an empty side may be passed is decided once per call: nothing arrives on it meanwhile, and
        ``confirm_caught_up`` may ask the broker (once per record, a 50k-record backlog opposite an empty
        topic took minutes and starved the loop: no poll, no SIGTERM handling).
        """
        a, b = first.records, second.records
        taken = 0
        pass_first: bool | None = None
        pass_second: bool | None = None
        while taken < limit:
            if a and b:
                # a run of steps while both sides have records, each head's timestamp read once (two method calls
                # per record and step were a tenth of the worker's Python-level time)
                ta = a[0].timestamp()[1]
                tb = b[0].timestamp()[1]
                while True:
                    if ta <= tb:  # a tie goes to the first side
                        out.append(a.popleft())
                        taken += 1
                        if taken >= limit or not a:
                            break
                        ta = a[0].timestamp()[1]
                    else:
                        out.append(b.popleft())
                        taken += 1
                        if taken >= limit or not b:
                            break
                        tb = b[0].timestamp()[1]
            elif a:
                if pass_second is None:
                    pass_second = self.may_pass(second, now_ms, confirm_caught_up, waiting)
                if not pass_second:
                    return
                taken += _move(a, out, limit - taken)
            elif b:
                if pass_first is None:
                    pass_first = self.may_pass(first, now_ms, confirm_caught_up, waiting)
                if not pass_first:
                    return
                taken += _move(b, out, limit - taken)
            else:
                return

    def may_pass(self, empty: TaskQueue, now_ms: int, confirm_caught_up: CaughtUp, waiting: WaitStarts) -> bool:
        # the wait is timed from when the task became blocked on the empty side (as Kafka Streams does), not
        # from that side's last record: after a quiet spell the other side must still get its full wait
        if empty.waiting_since is None:
            empty.waiting_since = now_ms
        waited = now_ms - empty.waiting_since
        if waited >= self.max_backlog_wait_ms:
            return True  # backstop: e.g. an input transaction left open on the empty side
        if empty.backlog and not empty.at_end:
            return False
        if waited < self.max_idle_ms:
            waiting(empty)
            return False
        return confirm_caught_up(empty)

    @staticmethod
    def discount(queues: Iterable[TaskQueue], stalled_ms: int) -> None:
        """Take ``stalled_ms`` during which the loop did not run out of every wait in progress."""
        for queue in queues:
            if queue.waiting_since is not None:
                queue.waiting_since += stalled_ms
