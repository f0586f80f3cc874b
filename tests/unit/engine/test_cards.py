"""CardIndex judges voids by event time, whichever sighting is processed first: a pair of approvals is a
DUPLICATE_CHARGE unless either order was voided at or before the later approval; a later void of the order that
got the alert resolves it, a void of the earlier order resolves nothing."""

from __future__ import annotations

import pytest

from posrecon.config import RuleConfig
from posrecon.engine.cards import CardEntry, CardIndex, CardKey, CardSighting, DuplicateCharge
from posrecon.engine.engine import ReconciliationEngine
from scenario import MIN, T0, run, term

RULES = RuleConfig()  # window 10 min
KEY = CardKey("tok_1", "m-1", 1250, "EUR")
A_AT = 1_000 * MIN  # order A approved first, order B 2 min later (within the window)
B_AT = A_AT + 2 * MIN


def _approval(order_id: str, at: int, source: int, void_at: int = 0) -> CardSighting:
    """An approval sighting; ``void_at``: the order was already voided (its void arrived first) at that time."""
    voided = void_at != 0
    return CardSighting(
        KEY, order_id, at, "t-1", voided, False, source, at, f"void-{order_id}" if voided else "", void_at
    )


def _void(order_id: str, approved_at: int, at: int, source: int) -> CardSighting:
    return CardSighting(KEY, order_id, approved_at, "t-1", True, True, source, at, f"void-{order_id}", at)


def _feed(*sightings: CardSighting) -> list[list[DuplicateCharge]]:
    index = CardIndex(RULES, sources=2)
    return [index.apply(s) for s in sightings]


ALERT = DuplicateCharge("B", "t-1", B_AT, "A", "m-1")
RESOLVED = ALERT._replace(resolved_by="void-B", resolved_at=B_AT + 5 * MIN)


# --- the later order voided after the alert's event time: alert and RESOLVED, in every processing order ------


def test_a_void_of_the_later_order_processed_after_the_pair_resolves_the_alert() -> None:
    calls = _feed(_approval("A", A_AT, 0), _approval("B", B_AT, 1), _void("B", B_AT, B_AT + 5 * MIN, 1))
    assert calls == [[], [ALERT], [RESOLVED]]


def test_a_void_of_the_later_order_processed_before_the_earlier_approval_still_raises_and_resolves() -> None:
    calls = _feed(_approval("B", B_AT, 1), _void("B", B_AT, B_AT + 5 * MIN, 1), _approval("A", A_AT, 0))
    assert calls == [[], [], [ALERT, RESOLVED]]


def test_a_later_approval_sighted_already_voided_after_it_raises_and_resolves() -> None:
    calls = _feed(_approval("A", A_AT, 0), _approval("B", B_AT, 1, void_at=B_AT + 5 * MIN))
    assert calls == [[], [ALERT, RESOLVED]]


def test_a_void_of_the_earlier_order_after_the_later_approval_neither_prevents_nor_resolves() -> None:
    void_a = _void("A", A_AT, B_AT + MIN, 0)
    assert _feed(_approval("A", A_AT, 0), void_a, _approval("B", B_AT, 1)) == [[], [], [ALERT]]
    assert _feed(_approval("A", A_AT, 0), _approval("B", B_AT, 1), void_a) == [[], [ALERT], []]


# --- an order voided at or before the later approval (event time): no alert, in every processing order ------


def test_an_order_voided_before_the_other_approval_raises_nothing() -> None:
    void_a = _void("A", A_AT, A_AT + MIN, 0)
    assert _feed(_approval("A", A_AT, 0), void_a, _approval("B", B_AT, 1)) == [[], [], []]
    assert _feed(_approval("B", B_AT, 1), _approval("A", A_AT, 0, void_at=A_AT + MIN)) == [[], []]


def test_a_void_at_the_later_approvals_own_time_counts_as_before() -> None:
    assert _feed(_approval("B", B_AT, 1), _approval("A", A_AT, 0, void_at=B_AT)) == [[], []]
    assert _feed(_approval("A", A_AT, 0), _approval("B", B_AT, 1, void_at=B_AT)) == [[], []]


# --- records of one call: by event time, not by arrival ------------------------------------------------------


def test_one_approval_completing_several_pairs_reports_them_by_event_time_whatever_came_first() -> None:
    c_at = B_AT + MIN
    expected = [DuplicateCharge("C", "t-1", c_at, "A", "m-1"), DuplicateCharge("C", "t-1", c_at, "B", "m-1")]
    assert _feed(_approval("A", A_AT, 0), _approval("B", B_AT, 1), _approval("C", c_at, 0))[2] == expected
    assert _feed(_approval("B", B_AT, 1), _approval("A", A_AT, 0), _approval("C", c_at, 0))[2] == expected


# --- snapshot rows -------------------------------------------------------------------------------------------


def test_an_entry_row_keeps_the_void_and_an_older_row_counts_its_void_as_before_anything() -> None:
    entry = CardEntry("B", B_AT, "t-1", True, ("A",), (), B_AT + MIN, "void-B")
    back = CardEntry.of_row(entry.row())
    assert (back.void_time, back.void_event_id, back.voided_by(B_AT), back.voided_by(B_AT + MIN)) == (
        B_AT + MIN,
        "void-B",
        False,
        True,
    )
    assert CardEntry.of_row(["B", B_AT, "t-1", True, [], []]).voided_by(0)


# --- the engine's sightings: a void that arrived before its order's approval carries its event time ---------


@pytest.mark.parametrize("void_after_the_alert", [True, False])
def test_the_engine_judges_a_void_that_arrived_before_the_approval_by_its_event_time(
    void_after_the_alert: bool,
) -> None:
    void_at = T0 + (6 if void_after_the_alert else 4) * MIN  # o2 approved at T0 + 5 min
    lines = [
        term("o1", "AUTH_APPROVED", T0, card="tok_x"),
        term("o2", "VOIDED", void_at, eid="v2"),
        term("o2", "AUTH_APPROVED", T0 + 5 * MIN, card="tok_x"),
    ]
    res = run(lines)  # in place
    engine = ReconciliationEngine(collect_card_sightings=True)  # through sightings, as the worker's card stage
    for line in lines:
        engine.on_terminal_event(line["record"])
    assert engine.card_sightings is not None
    found = [(d.later_order_id, d.resolved_at) for s in engine.card_sightings for d in engine.cards.apply(s)]
    expected = [("o2", 0), ("o2", void_at)] if void_after_the_alert else []
    assert found == expected
    assert [a["status"] for a in res.alerts if a["kind"] == "DUPLICATE_CHARGE"] == ["OPEN", "RESOLVED"][: len(expected)]


# --- pruning: an entry goes at approved_at + keep_for, or at + keep_raised_for while its alert is open -------


def _tick(index: CardIndex, at: int) -> None:
    """Move the index's watermark to ``at`` (an approval of another card, alone in its key)."""
    index.on_approval(CardKey(f"tok_{at}", "m-9", 1, "EUR"), f"tick-{at}", at, "t-9", False, 0, at)


def _orders(index: CardIndex) -> list[str]:
    return sorted(e.order_id for e in index.entries.get(KEY, ()))


@pytest.mark.parametrize("restored", [False, True])
def test_an_entry_with_an_open_alert_outlives_the_window_until_its_retention(restored: bool) -> None:
    index = CardIndex(RULES)
    index.on_approval(KEY, "A", A_AT, "t-1", False, 0, A_AT)
    assert index.on_approval(KEY, "B", B_AT, "t-1", False, 0, B_AT) == [ALERT]
    keep, retention = index.keep_for, index.keep_raised_for
    assert retention > keep + 2 * MIN
    _tick(index, A_AT + keep)  # not yet past A's expiry: approved_at + keep_for < watermark
    assert _orders(index) == ["A", "B"]
    _tick(index, A_AT + keep + 1)
    assert _orders(index) == ["B"]
    _tick(index, B_AT + keep + 1)  # B is past the window, kept for its open alert
    if restored:
        back = CardIndex(RULES)
        back.load_rows(index.to_rows(), index.watermark, index.source_watermarks)
        index = back
    assert _orders(index) == ["B"]
    _tick(index, B_AT + retention)
    assert _orders(index) == ["B"]
    _tick(index, B_AT + retention + 1)
    assert _orders(index) == []


def test_an_entry_whose_alert_resolved_goes_at_its_next_expiry() -> None:
    index = CardIndex(RULES)
    index.on_approval(KEY, "A", A_AT, "t-1", False, 0, A_AT)
    index.on_approval(KEY, "B", B_AT, "t-1", False, 0, B_AT)
    _tick(index, B_AT + index.keep_for + 1)
    assert _orders(index) == ["B"]
    void = CardSighting(KEY, "B", B_AT, "t-1", True, True, 0, B_AT + index.keep_for + 2, "void-B", B_AT + 3 * MIN)
    assert [d.resolved_by for d in index.on_void(void)] == ["void-B"]
    _tick(index, B_AT + index.keep_raised_for)
    assert _orders(index) == ["B"]  # the second queue's time: raised or not, the entry is looked at then
    _tick(index, B_AT + index.keep_raised_for + 1)
    assert _orders(index) == []
