from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from posrecon.engine.deadlines import DeadlineIndex


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 10 * 60_000), st.integers(0, 9)), max_size=80))
def test_pops_exactly_the_due_deadlines_in_sorted_order(ops: list[tuple[bool, int, int]]) -> None:
    index, model, watermark = DeadlineIndex(), [], 0
    for i, (is_push, t, kind) in enumerate(ops):
        if is_push:
            deadline = (t, kind, f"o{i}")
            index.push(deadline)
            model.append(deadline)
        else:
            watermark = max(watermark, t)
            popped = []
            while (d := index.pop_due(watermark)) is not None:
                popped.append(d)
            due = sorted(d for d in model if d[0] <= watermark)
            assert popped == due
            model = [d for d in model if d[0] > watermark]
        assert len(index) == len(model)
        nxt = index.next_due()
        assert (nxt is None) == (not model)
        if model:
            assert nxt is not None and nxt <= min(model)[0]


def test_many_deadlines_in_one_bucket_fire_in_order() -> None:
    index = DeadlineIndex()
    items = [(1_000 + random.Random(i).randrange(50_000), i % 3, f"o{i}") for i in range(500)]
    for d in items:
        index.push(d)
    out = []
    while (d := index.pop_due(10**9)) is not None:
        out.append(d)
    assert out == sorted(items)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 5 * 60_000), st.integers(0, 9)), max_size=60),
    st.integers(0, 5 * 60_000),
    st.lists(st.integers(0, 6 * 60_000), max_size=10),
)
def test_due_iterates_like_repeated_pop_due(
    items: list[tuple[int, int]], watermark: int, pushed_while_firing: list[int]
) -> None:
    """``due()`` (the engine's loop) pops the same sequence as ``pop_due`` until None, also when deadlines are
    pushed while firing (an EVICT deadline re-scheduled), and leaves the index in the same state."""
    a, b = DeadlineIndex(), DeadlineIndex()
    for i, (t, kind) in enumerate(items):
        a.push((t, kind, f"o{i}"))
        b.push((t, kind, f"o{i}"))
    extra_a, extra_b = list(pushed_while_firing), list(pushed_while_firing)
    out_a = []
    for d in a.due(watermark):
        out_a.append(d)
        if extra_a:
            a.push((extra_a.pop(), 9, f"x{len(out_a)}"))
    out_b = []
    while (d := b.pop_due(watermark)) is not None:
        out_b.append(d)
        if extra_b:
            b.push((extra_b.pop(), 9, f"x{len(out_b)}"))
    assert out_a == out_b
    assert len(a) == len(b) and a.next_due() == b.next_due()
    assert list(a.due(10**9)) == list(iter(lambda: b.pop_due(10**9), None))


def test_pop_due_takes_exactly_one_step_of_the_walk() -> None:
    """``pop_due`` is ``due()`` stopped after one step: that step is complete (count, next due) and the rest of
    the walk is still there."""
    index = DeadlineIndex()
    items = [(t, 2, f"o{t}") for t in (5_000, 70_000, 1_000, 130_000, 70_000 - 1)]
    for d in items:
        index.push(d)
    assert index.pop_due(70_000) == (1_000, 2, "o1000")
    assert len(index) == 4
    assert index.pop_due(70_000) == (5_000, 2, "o5000")
    assert list(index.due(70_000)) == [(69_999, 2, "o69999"), (70_000, 2, "o70000")]
    assert index.pop_due(70_000) is None
    assert len(index) == 1 and index.pop_due(10**9) == (130_000, 2, "o130000")
