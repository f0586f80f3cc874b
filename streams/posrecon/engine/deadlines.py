"""The deadline index of one partition: which order deadlines are due once the watermark reaches T.

Deadlines are kept in one-minute buckets (a dict) and only the bucket keys are in a min-heap, so adding a
deadline is O(1) and the heap stays small (one entry per minute with pending deadlines) instead of one
entry per deadline. Within a bucket, deadlines fire in (due, kind, order_id) order, so firing order is a
total order that does not depend on insertion order (snapshot + restore gives the same output).
"""

from __future__ import annotations

import heapq

Deadline = tuple[int, int, str]  # (due incl. allowed lateness, kind, order_id)

BUCKET_MS = 60_000


class DeadlineIndex:
    __slots__ = ("_buckets", "_hint", "_keys", "_unsorted", "count")

    def __init__(self) -> None:
        self._buckets: dict[int, list[Deadline]] = {}
        self._keys: list[int] = []
        self._unsorted: set[int] = set()
        self._hint: int | None = None  # the exact earliest due, when known
        self.count = 0

    def __len__(self) -> int:
        return self.count

    def __bool__(self) -> bool:
        return self.count > 0

    def clear(self) -> None:
        self._buckets.clear()
        self._keys.clear()
        self._unsorted.clear()
        self._hint = None
        self.count = 0

    def push(self, deadline: Deadline) -> None:
        due = deadline[0]
        if self._hint is not None and due < self._hint:
            self._hint = due
        key = due // BUCKET_MS
        bucket = self._buckets.get(key)
        if bucket is None:
            self._buckets[key] = [deadline]
            heapq.heappush(self._keys, key)
        else:
            bucket.append(deadline)
            self._unsorted.add(key)
        self.count += 1

    def next_due(self) -> int | None:
        """Lower bound of the earliest pending deadline (exact when known, else its bucket's start)."""
        if self._hint is not None:
            return self._hint
        return self._keys[0] * BUCKET_MS if self._keys else None

    def pop_due(self, watermark: int) -> Deadline | None:
        """The earliest deadline with due <= watermark, removed; None when nothing is due."""
        keys = self._keys
        while keys:
            key = keys[0]
            if key * BUCKET_MS > watermark:
                return None
            bucket = self._buckets[key]
            if not bucket:
                heapq.heappop(keys)
                del self._buckets[key]
                self._unsorted.discard(key)
                continue
            if key in self._unsorted:
                bucket.sort(reverse=True)  # earliest last, popped from the end
                self._unsorted.discard(key)
            if bucket[-1][0] > watermark:
                self._hint = bucket[-1][0]
                return None
            self.count -= 1
            self._hint = None
            return bucket.pop()
        return None
