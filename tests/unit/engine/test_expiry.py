"""The card index's expiry queue against a plain list: pop_before(t) takes exactly the entries approved before t."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from posrecon.engine.cards import CardEntry
from posrecon.engine.expiry import NEVER, ExpiryQueue


class ExpiryQueueMachine(RuleBasedStateMachine):
    """Entries arrive mostly in order (the sorted run) with some late ones (the heap), are popped by moving
    times, and the queue is sometimes replaced by a restore; small compaction thresholds are exercised too."""

    @initialize(compact_at=st.sampled_from([1, 2, 4096]))
    def start(self, compact_at: int) -> None:
        self.queue = ExpiryQueue(compact_at)
        self.model: list[CardEntry] = []
        self.clock = 0
        self.serial = 0

    def _entry(self, at: int) -> CardEntry:
        self.serial += 1
        return CardEntry(f"o{self.serial}", at, "t-1", False)

    @rule(step=st.integers(0, 5))
    def push_in_order(self, step: int) -> None:
        self.clock += step
        entry = self._entry(self.clock)
        self.queue.push(entry)
        self.model.append(entry)

    @rule(back=st.integers(1, 20))
    def push_late(self, back: int) -> None:
        """An entry at the clock, then one before it: the second goes to the heap."""
        for entry in (self._entry(self.clock), self._entry(self.clock - back)):
            self.queue.push(entry)
            self.model.append(entry)

    @rule(offset=st.integers(-10, 10))
    def pop_before(self, offset: int) -> None:
        time = self.clock + offset
        got = self.queue.pop_before(time)
        expected = [e for e in self.model if e.approved_at < time]
        self.model = [e for e in self.model if e.approved_at >= time]
        assert sorted(map(id, got)) == sorted(map(id, expected))

    @rule()
    def restore(self) -> None:
        self.queue.load(list(self.model))

    @invariant()
    def agrees(self) -> None:
        if not hasattr(self, "queue"):
            return
        assert len(self.queue) == len(self.model)
        assert self.queue.earliest() == min((e.approved_at for e in self.model), default=NEVER)


TestExpiryQueue = ExpiryQueueMachine.TestCase
TestExpiryQueue.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)


def test_a_popped_entry_is_not_kept_by_the_queue() -> None:
    """The run keeps its popped slots until it is shifted down; they must not hold the entries (state size)."""
    queue = ExpiryQueue()
    entries = [CardEntry(f"o{t}", t, "t-1", False) for t in range(10)]
    for entry in entries:
        queue.push(entry)
    popped = queue.pop_before(5)
    assert [e.approved_at for e in popped] == [0, 1, 2, 3, 4]
    assert not any(e is p for e in queue._run for p in popped)
