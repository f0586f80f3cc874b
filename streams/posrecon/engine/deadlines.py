"""The deadline index of one partition: which order deadlines are due once the watermark reaches T.

Deadlines are kept in one-minute buckets (a dict) and only the bucket keys are in a min-heap, so adding a
deadline is O(1) and the heap stays small (one entry per minute with pending deadlines) instead of one
entry per deadline. Within a bucket, deadlines fire in (due, kind, order_id) order, so firing order is a
total order that does not depend on insertion order (snapshot + restore gives the same output).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from typing import Final

Deadline = tuple[int, int, str]  # (due incl. allowed lateness, kind, order_id)

BUCKET_MS: Final = 60_000


class DeadlineIndex:
    __slots__ = ("_buckets", "_hint", "_keys", "_sorted", "count")

    def __init__(self) -> None:
        self._buckets: dict[int, list[Deadline]] = {}
        self._keys: list[int] = []
        #: the key of the one bucket known to be sorted (descending): only the earliest bucket is ever
        #: sorted, and a push into it or a new earlier bucket makes it unknown again
        self._sorted: int | None = None
        self._hint: int | None = None  # the exact earliest due, when known
        self.count = 0

    def __len__(self) -> int:
        return self.count

    def __bool__(self) -> bool:
        return self.count > 0

    def clear(self) -> None:
        self._buckets.clear()
        self._keys.clear()
        self._sorted = None
        self._hint = None
        self.count = 0

    def push(self, deadline: Deadline) -> None:
        due = deadline[0]
        hint = self._hint
        if hint is not None and due < hint:
            self._hint = due
        key = due // BUCKET_MS
        bucket = self._buckets.get(key)
        if bucket is None:
            self._buckets[key] = [deadline]
            heapq.heappush(self._keys, key)
        else:
            bucket.append(deadline)
            if key == self._sorted:
                self._sorted = None
        self.count += 1

    def next_due(self) -> int | None:
        """Lower bound of the earliest pending deadline (exact when known, else its bucket's start)."""
        if self._hint is not None:
            return self._hint
        return self._keys[0] * BUCKET_MS if self._keys else None

    def due(self, watermark: int) -> Iterator[Deadline]:
        """Pop the deadlines with due <= watermark, earliest first; deadlines pushed while iterating are taken
        into account (firing may re-schedule an eviction). The one walk of the index: see :meth:`pop_due`."""
        keys = self._keys
        buckets = self._buckets
        while keys:
            key = keys[0]
            if key * BUCKET_MS > watermark:
                return
            bucket = buckets[key]
            if not bucket:
                heapq.heappop(keys)
                del buckets[key]
                if key == self._sorted:
                    self._sorted = None
                continue
            if key != self._sorted:
                bucket.sort(reverse=True)  # earliest last, popped from the end
                self._sorted = key
            last = bucket[-1]
            if last[0] > watermark:
                self._hint = last[0]
                return
            self.count -= 1
            self._hint = None
            yield bucket.pop()

    def pop_due(self, watermark: int) -> Deadline | None:
        """The earliest deadline with due <= watermark, removed; None when nothing is due. (The walk of
        :meth:`due` stopped after one step: each step is complete before it yields.)"""
        return next(self.due(watermark), None)
