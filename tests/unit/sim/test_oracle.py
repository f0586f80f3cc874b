"""Cross-order double charges found from arrival order, independently of the scenarios."""

from __future__ import annotations

from typing import Any

from posrecon.sim.line import Line
from posrecon.sim.oracle import DoubleCharge, cross_order_double_charges

WINDOW = 600_000
T0 = 1_767_225_600_000


def approval(
    order: str,
    t: int,
    *,
    eid: str | None = None,
    card: str | None = "tok_a",
    amount: int = 1000,
    event_type: str = "AUTH_APPROVED",
    ingest: int | None = None,
) -> Line:
    record: dict[str, Any] = {
        "event_id": eid or f"{order}-{event_type}-{t}",
        "order_id": order,
        "merchant_id": "m1",
        "terminal_id": "t1",
        "event_type": event_type,
        "amount_minor": amount,
        "currency": "EUR",
        "card_token": card,
        "event_time": t,
        "attempt": 1,
        "decline_code": None,
    }
    return Line("terminal", ingest if ingest is not None else t, record)


def test_the_later_approval_gets_the_alert() -> None:
    lines = [approval("a", T0), approval("b", T0 + 60_000)]
    assert cross_order_double_charges(lines, WINDOW) == [DoubleCharge("b", "a")]


def test_arrival_order_does_not_decide_which_order_is_later() -> None:
    lines = [approval("b", T0 + 60_000, ingest=T0 + 61_000), approval("a", T0, ingest=T0 + 62_000)]
    assert cross_order_double_charges(lines, WINDOW) == [DoubleCharge("b", "a")]


def test_ties_go_to_the_later_arrival() -> None:
    lines = [approval("a", T0), approval("b", T0)]
    assert cross_order_double_charges(lines, WINDOW) == [DoubleCharge("b", "a")]


def test_outside_the_window_or_other_amount_or_no_token_is_no_double_charge() -> None:
    assert cross_order_double_charges([approval("a", T0), approval("b", T0 + WINDOW + 1)], WINDOW) == []
    assert cross_order_double_charges([approval("a", T0), approval("b", T0, amount=1001)], WINDOW) == []
    assert cross_order_double_charges([approval("a", T0, card=None), approval("b", T0, card=None)], WINDOW) == []
    assert cross_order_double_charges([approval("a", T0), approval("b", T0 + WINDOW)], WINDOW) != []


def test_a_voided_order_no_longer_counts() -> None:
    lines = [approval("a", T0), approval("a", T0 + 1_000, event_type="VOIDED"), approval("b", T0 + 2_000)]
    assert cross_order_double_charges(lines, WINDOW) == []


def test_a_void_arriving_after_the_second_approval_does_not_undo_the_alert() -> None:
    lines = [approval("a", T0), approval("b", T0 + 2_000), approval("a", T0 + 3_000, event_type="VOIDED")]
    assert cross_order_double_charges(lines, WINDOW) == [DoubleCharge("b", "a")]


def test_redeliveries_invalid_lines_and_same_order_repeats_do_not_count() -> None:
    first = approval("a", T0, eid="e1")
    invalid = Line("terminal", T0 + 5, dict(approval("c", T0 + 5).record or {}), rejection="CLOCK_SKEW")
    lines = [first, Line(first.source, T0 + 10, first.record), approval("a", T0 + 20, eid="e2"), invalid]
    assert cross_order_double_charges(lines, WINDOW) == []


def test_one_alert_per_pair_of_orders() -> None:
    lines = [approval("a", T0, eid="a1"), approval("a", T0 + 10, eid="a2"), approval("b", T0 + 20)]
    assert cross_order_double_charges(lines, WINDOW) == [DoubleCharge("b", "a")]


def test_a_void_arriving_first_counts_only_at_or_before_the_later_approval_by_event_time() -> None:
    void_a = approval("a", T0 + 3_000, event_type="VOIDED")  # after b's approval by event time
    assert cross_order_double_charges([approval("a", T0), void_a, approval("b", T0 + 2_000)], WINDOW) == [
        DoubleCharge("b", "a")
    ]  # the earlier order's void resolves nothing
    void_at_b = approval("a", T0 + 2_000, event_type="VOIDED")
    assert cross_order_double_charges([approval("a", T0), void_at_b, approval("b", T0 + 2_000)], WINDOW) == []


def test_the_later_orders_void_arriving_first_but_after_its_approval_resolves_the_alert_at_once() -> None:
    lines = [approval("b", T0 + 2_000), approval("b", T0 + 3_000, event_type="VOIDED"), approval("a", T0)]
    assert cross_order_double_charges(lines, WINDOW) == [DoubleCharge("b", "a", resolved=True)]
