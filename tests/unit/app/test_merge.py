"""The task merge: timestamp order across a task's two inputs, and when an empty side may be passed."""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from posrecon.app.merge import TaskMerger, TaskQueue


class Rec:
    def __init__(self, ts: int, name: str) -> None:
        self.ts, self.name = ts, name

    def timestamp(self) -> tuple[int, int]:
        return (1, self.ts)


def queue(*records: Rec, at_end: bool = False, backlog: bool = False) -> TaskQueue:
    q = TaskQueue("t", 0)
    q.records.extend(records)
    q.at_end, q.backlog = at_end, backlog
    return q


def confirming() -> tuple[list[TaskQueue], Callable[[TaskQueue], bool]]:
    """A ``confirm_caught_up`` that always says yes, and the list of the queues it was asked about."""
    asked: list[TaskQueue] = []

    def confirm(q: TaskQueue) -> bool:
        asked.append(q)
        return True

    return asked, confirm


def names(out: list[Rec]) -> list[str]:
    return [r.name for r in out]


def test_records_of_both_sides_are_taken_in_timestamp_order() -> None:
    a = queue(Rec(1, "a1"), Rec(5, "a5"), Rec(9, "a9"))
    b = queue(Rec(2, "b2"), Rec(5, "b5"), at_end=True)
    out: list[Rec] = []
    TaskMerger(500).take(a, b, 10, 0, out)  # type: ignore[arg-type]
    # ties go to the first side; a9 waits: b is empty now and the wait has only begun
    assert names(out) == ["a1", "b2", "a5", "b5"]
    assert a.records[0].name == "a9"  # type: ignore[attr-defined]


def test_an_empty_side_with_a_backlog_blocks_until_the_backstop() -> None:
    merger = TaskMerger(500, max_backlog_wait_ms=60_000)
    a, b = queue(Rec(1, "a1")), queue(backlog=True)
    out: list[Rec] = []
    merger.take(a, b, 10, 1_000, out)  # type: ignore[arg-type]
    merger.take(a, b, 10, 30_000, out)  # type: ignore[arg-type]
    assert out == []
    merger.take(a, b, 10, 61_000, out)  # type: ignore[arg-type]
    assert names(out) == ["a1"]


def test_a_caught_up_side_is_passed_after_the_idle_wait_once_a_fresh_look_confirms_it() -> None:
    merger = TaskMerger(500)
    a, b = queue(Rec(1, "a1")), queue(at_end=True)
    asked, confirm = confirming()
    out: list[Rec] = []
    merger.take(a, b, 10, 1_000, out, confirm)  # type: ignore[arg-type]
    merger.take(a, b, 10, 1_499, out, confirm)  # type: ignore[arg-type]
    assert out == [] and asked == []  # not asked before the idle wait is over
    merger.take(a, b, 10, 1_500, out, confirm)  # type: ignore[arg-type]
    assert names(out) == ["a1"] and asked == [b]


def test_the_broker_is_asked_once_per_take_not_once_per_record() -> None:
    """A backlog opposite an empty topic: one look at the broker lets the whole batch through (a look per
    record starved the worker's loop for minutes: no poll, no SIGTERM handling)."""
    merger = TaskMerger(500)
    a, b = queue(*(Rec(i, f"a{i}") for i in range(1000))), queue(at_end=True)
    asked, confirm = confirming()
    out: list[Rec] = []
    merger.take(a, b, 10, 0, out, confirm)  # type: ignore[arg-type]
    merger.take(a, b, 300, 600, out, confirm)  # type: ignore[arg-type]
    assert len(out) == 300 and asked == [b]
    merger.take(b, a, 300, 700, out, confirm)  # type: ignore[arg-type]  # the other way round
    assert len(out) == 600 and asked == [b, b]


def test_a_stale_end_flag_does_not_let_the_other_side_run_ahead() -> None:
    """After a stall the flag says 'at the end' but the broker holds a burst: the fresh look says so."""
    merger = TaskMerger(500)
    a, b = queue(Rec(1, "a1")), queue(at_end=True)

    def behind(q: TaskQueue) -> bool:
        q.at_end, q.backlog = False, True
        return False

    out: list[Rec] = []
    merger.take(a, b, 10, 0, out, behind)  # type: ignore[arg-type]
    merger.take(a, b, 10, 10_000, out, behind)  # type: ignore[arg-type]
    merger.take(a, b, 10, 50_000, out, behind)  # type: ignore[arg-type]
    assert out == []
    b.records.append(Rec(2, "b2"))
    b.waiting_since = None
    merger.take(a, b, 10, 50_001, out, behind)  # type: ignore[arg-type]
    assert names(out) == ["a1"]  # b2 now waits for the (empty) first side in turn


def test_a_stall_of_the_process_does_not_count_as_waiting() -> None:
    merger = TaskMerger(500)
    a, b = queue(Rec(1, "a1")), queue(at_end=True)
    out: list[Rec] = []
    merger.take(a, b, 10, 1_000, out)  # type: ignore[arg-type]
    TaskMerger.discount([a, b], 20_000)  # the loop did not run for 20 s
    merger.take(a, b, 10, 21_100, out)  # type: ignore[arg-type]
    assert out == []  # 100 ms of real waiting
    merger.take(a, b, 10, 21_500, out)  # type: ignore[arg-type]
    assert names(out) == ["a1"]


def test_the_broker_is_asked_while_the_idle_wait_runs_not_only_when_it_ends() -> None:
    merger = TaskMerger(max_idle_ms=100)
    first, second = queue(Rec(1, "a")), queue(at_end=True)
    told: list[TaskQueue] = []
    asked, confirm = confirming()
    out: list[Rec] = []
    merger.take(first, second, 10, 1_000, out, confirm, told.append)  # the wait begins
    merger.take(first, second, 10, 1_050, out, confirm, told.append)
    assert told == [second, second] and asked == [] and out == []
    merger.take(first, second, 10, 1_100, out, confirm, told.append)  # the wait is over: confirm, not told
    assert told == [second, second] and asked == [second] and names(out) == ["a"]


def test_a_side_with_records_on_the_broker_is_not_asked_about() -> None:
    merger = TaskMerger(max_idle_ms=100)
    first, second = queue(Rec(1, "a")), queue(backlog=True)  # not at its end: records are coming
    told: list[TaskQueue] = []
    merger.take(first, second, 10, 1_000, [], confirming()[1], told.append)
    assert told == []


def _reference_take(
    first: TaskQueue, second: TaskQueue, limit: int, may_pass_first: bool, may_pass_second: bool
) -> list[Rec]:
    """The merge one record at a time (the loop before the runs and bulk moves), with each side's verdict fixed."""
    a, b = first.records, second.records
    out: list[Rec] = []
    while len(out) < limit:
        if a and b:
            out.append(a.popleft() if a[0].timestamp()[1] <= b[0].timestamp()[1] else b.popleft())  # type: ignore[arg-type]
        elif a and may_pass_second:
            out.append(a.popleft())  # type: ignore[arg-type]
        elif b and may_pass_first:
            out.append(b.popleft())  # type: ignore[arg-type]
        else:
            break
    return out


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.integers(0, 20), max_size=30),
    st.lists(st.integers(0, 20), max_size=30),
    st.integers(0, 70),
    st.booleans(),
    st.booleans(),
)
def test_take_equals_the_one_record_at_a_time_merge(
    first_ts: list[int], second_ts: list[int], limit: int, first_passable: bool, second_passable: bool
) -> None:
    def queues() -> tuple[TaskQueue, TaskQueue]:
        # a side that may be passed is at its end and long waited for; one that may not has a backlog
        first = queue(*(Rec(t, f"a{i}") for i, t in enumerate(sorted(first_ts))), at_end=first_passable)
        second = queue(*(Rec(t, f"b{i}") for i, t in enumerate(sorted(second_ts))), at_end=second_passable)
        first.backlog, second.backlog = not first_passable, not second_passable
        return first, second

    expected_first, expected_second = queues()
    expected = _reference_take(expected_first, expected_second, limit, first_passable, second_passable)
    first, second = queues()
    out: list[Rec] = []
    TaskMerger(0).take(first, second, limit, 1_000, out)  # type: ignore[arg-type]
    assert names(out) == names(expected)
    assert names(list(first.records)) == names(list(expected_first.records))  # type: ignore[arg-type]
    assert names(list(second.records)) == names(list(expected_second.records))  # type: ignore[arg-type]
