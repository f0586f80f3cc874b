"""When the card index's entries may go: its expiry queues.

The index prunes every entry approved before ``watermark - keep`` whenever the watermark moves. Which of those
goes first does not matter (each entry is judged alone), so a queue needs no total order, only "all entries
approved before t". Approvals arrive roughly in event-time order, so many entries come in nondecreasing
``approved_at``: those are appended to a sorted run (O(1) in, O(1) out) and only the others go to a heap. A
binary heap of every entry cost each approval two O(log n) walks of tuple comparisons (docs/performance.md).

The queues hold the entries themselves, ordered by their ``approved_at``: an ``(expires_at, order_id, key)``
tuple per approval, as before, cost 96 bytes per open order (the tuple and its boxed time).
"""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:  # (cards imports this module)
    from posrecon.engine.cards import CardEntry

NEVER: Final = 1 << 62


class ExpiryQueue:
    __slots__ = ("_compact_at", "_head", "_late", "_run")

    def __init__(self, compact_at: int = 4096) -> None:
        self._compact_at = compact_at  # popped slots kept at the run's head before it is shifted down
        self._run: list[CardEntry | None] = []  # nondecreasing approved_at from _head on; None: popped
        self._head = 0
        self._late: list[CardEntry] = []  # a heap (CardEntry orders by approved_at): entries after a later one

    def __len__(self) -> int:
        return len(self._run) - self._head + len(self._late)

    def push(self, entry: CardEntry) -> None:
        run = self._run
        if len(run) == self._head:
            run.append(entry)
            return
        last = run[-1]
        assert last is not None
        if entry.approved_at >= last.approved_at:
            run.append(entry)
        else:
            heapq.heappush(self._late, entry)

    def earliest(self) -> int:
        """The earliest ``approved_at`` in the queue (NEVER when empty)."""
        first = NEVER
        run = self._run
        if self._head < len(run):
            entry = run[self._head]
            assert entry is not None
            first = entry.approved_at
        late = self._late
        if late and late[0].approved_at < first:
            return late[0].approved_at
        return first

    def pop_before(self, time: int) -> list[CardEntry]:
        """Remove and return every entry with ``approved_at < time``."""
        out: list[CardEntry] = []
        run = self._run
        head = self._head
        end = len(run)
        while head < end:
            entry = run[head]
            assert entry is not None
            if entry.approved_at >= time:
                break
            out.append(entry)
            run[head] = None  # released at once, not when the run is next shifted down
            head += 1
        if head == end:
            run.clear()
            head = 0
        elif head >= self._compact_at and head * 2 >= end:
            del run[:head]
            head = 0
        self._head = head
        late = self._late
        while late and late[0].approved_at < time:
            out.append(heapq.heappop(late))
        return out

    def clear(self) -> None:
        self._run.clear()
        self._head = 0
        self._late.clear()

    def load(self, entries: list[CardEntry]) -> None:
        """Replace the contents (snapshot restore): one sorted run."""
        self.clear()
        ordered: list[CardEntry] = sorted(entries, key=_approved_at)
        self._run.extend(ordered)


def _approved_at(entry: CardEntry) -> int:
    return entry.approved_at
