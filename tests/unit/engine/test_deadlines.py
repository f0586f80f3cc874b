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
