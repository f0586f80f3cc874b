"""When the card index's entries may go: its expiry queue.

The index prunes every entry whose expiry is before its watermark, whenever the watermark moves. Which of
those goes first does not matter (each entry is judged alone), so the queue needs no total order, only "all
entries before t". Approvals arrive nearly in event-time order, so most entries come in nondecreasing expiry:
those are appended to a sorted run (O(1) in, O(1) out) and only the others go to a heap. A binary heap of
every entry cost each approval two O(log n) walks of tuple comparisons, 8 % of the engine's time at 1M
records (docs/performance.md).
"""

from __future__ import annotations

import heapq
from typing import Any

#: (expires_at, order_id, card key): the key's type is the index's (posrecon.engine.cards.CardKey)
Expiry = tuple[int, str, Any]

NEVER = 1 << 62
_GONE: Expiry = (0, "", None)  # a popped slot: the entry itself is released at once


class ExpiryQueue:
    __slots__ = ("_compact_at", "_head", "_late", "_run")

    def __init__(self, compact_at: int = 4096) -> None:
        self._compact_at = compact_at  # popped slots kept at the run's head before it is shifted down
        self._run: list[Expiry] = []  # nondecreasing expires_at from _head on
        self._head = 0
        self._late: list[Expiry] = []  # a heap: the entries that came after a later one

    def __len__(self) -> int:
        return len(self._run) - self._head + len(self._late)

    def push(self, entry: Expiry) -> None:
        run = self._run
        if len(run) == self._head or entry[0] >= run[-1][0]:
            run.append(entry)
        else:
            heapq.heappush(self._late, entry)

    def earliest(self) -> int:
        """The earliest expiry in the queue (NEVER when empty)."""
        run = self._run
        first = run[self._head][0] if self._head < len(run) else NEVER
        late = self._late
        if late and late[0][0] < first:
            return late[0][0]
        return first

    def pop_before(self, time: int) -> list[Expiry]:
        """Remove and return every entry with ``expires_at < time``."""
        out: list[Expiry] = []
        run = self._run
        head = self._head
        end = len(run)
        while head < end and run[head][0] < time:
            out.append(run[head])
            run[head] = _GONE
            head += 1
        if head == end:
            run.clear()
            head = 0
        elif head >= self._compact_at and head * 2 >= end:
            del run[:head]
            head = 0
        self._head = head
        late = self._late
        while late and late[0][0] < time:
            out.append(heapq.heappop(late))
        return out

    def clear(self) -> None:
        self._run.clear()
        self._head = 0
        self._late.clear()

    def load(self, entries: list[Expiry]) -> None:
        """Replace the contents (snapshot restore): one sorted run."""
        self.clear()
        self._run.extend(sorted(entries, key=_expires_at))


def _expires_at(entry: Expiry) -> int:
    return entry[0]
