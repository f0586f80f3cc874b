"""The card index decides by event time: feeding the sightings of several source partitions in any interleaving
that keeps each partition's own order gives the same DUPLICATE_CHARGE alerts and RESOLVED records (ids and
fields) as the file order.

Voids are generated where event time decides them whatever the interleaving: a separate void sighting comes
after every approval of its card key (by event time), and a void that arrived before its order's approval
(the approval sighting is ``voided``, with the void's time) may fall anywhere. A void with an earlier event
time processed after the alert it should have prevented cannot take the alert back, so such inputs are left out.
"""

from __future__ import annotations

import json
from typing import NamedTuple

from hypothesis import given, settings
from hypothesis import strategies as st

from posrecon.config import RuleConfig
from posrecon.engine.cards import CardIndex, CardKey, CardSighting, duplicate_charge_alert

RULES = RuleConfig()  # window 10 min; entries kept 15 min past their approval
STEP = 1_000
LAST = 900_000  # every event time: pruning (15 min past an approval) never starts inside one example
SOURCES = 3


class Order(NamedTuple):
    source: int
    token: str
    approved_at: int
    void: str  # "" | "after" (a void sighting later) | "before" (the approval sighting is already voided)
    void_at: int


def _orders() -> st.SearchStrategy[list[Order]]:
    times = st.lists(st.integers(0, 600_000 // STEP).map(lambda t: t * STEP), min_size=2, max_size=8, unique=True)
    return times.flatmap(
        lambda ts: st.tuples(*(_order(t) for t in ts)).map(list)  # distinct approval times: no ties
    )


def _order(approved_at: int) -> st.SearchStrategy[Order]:
    return st.builds(
        Order,
        st.integers(0, SOURCES - 1),
        st.sampled_from(["tok_a", "tok_b"]),
        st.just(approved_at),
        st.sampled_from(["", "", "after", "before"]),
        st.integers(1, LAST // STEP).map(lambda t: t * STEP + 1),  # "after": replaced by a time after the key's
    )


def _partitions(orders: list[Order]) -> list[list[CardSighting]]:
    """Each source partition's sightings in its own order: an order's approval, its void (if any) right after."""
    last_approval = {o.token: max(p.approved_at for p in orders if p.token == o.token) for o in orders}
    parts: list[list[CardSighting]] = [[] for _ in range(SOURCES)]
    marks = [0] * SOURCES
    for n, o in enumerate(orders):
        key = CardKey(o.token, "m-1", 1250, "EUR")
        order_id = f"ord-{n}"
        void_at = o.void_at if o.void == "before" else max(o.void_at, last_approval[o.token] + STEP)
        void_at = min(void_at, LAST)
        marks[o.source] = max(marks[o.source], o.approved_at)
        voided = o.void == "before"
        parts[o.source].append(
            CardSighting(
                key,
                order_id,
                o.approved_at,
                "t-1",
                voided,
                False,
                o.source,
                marks[o.source],
                f"void-{n}" if voided else "",
                void_at if voided else 0,
            )
        )
        if o.void == "after":
            marks[o.source] = max(marks[o.source], void_at)
            parts[o.source].append(
                CardSighting(
                    key, order_id, o.approved_at, "t-1", True, True, o.source, marks[o.source], f"void-{n}", void_at
                )
            )
    return parts


def _records(parts: list[list[CardSighting]], schedule: list[int]) -> list[str]:
    """The alert records of feeding ``parts`` to one index, taking the next sighting of ``schedule[i]``'s
    partition at step i (sorted: which sighting completes a pair depends on the interleaving, not the record)."""
    index = CardIndex(RULES, sources=SOURCES)
    cursors = [0] * SOURCES
    records: list[str] = []
    for source in schedule:
        sighting = parts[source][cursors[source]]
        cursors[source] += 1
        records.extend(json.dumps(duplicate_charge_alert(d, RULES, 0), sort_keys=True) for d in index.apply(sighting))
    return sorted(records)


@settings(max_examples=400, deadline=None)
@given(orders=_orders(), data=st.data())
def test_alerts_and_resolutions_do_not_depend_on_the_interleaving_of_the_sources(
    orders: list[Order], data: st.DataObject
) -> None:
    parts = _partitions(orders)
    file_order = [source for source, part in enumerate(parts) for _ in part]
    schedule = data.draw(st.permutations(file_order), label="interleaving")
    assert _records(parts, schedule) == _records(parts, file_order)
