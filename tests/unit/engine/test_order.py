"""OrderState: the "awaiting settlement" rule (one home for the engine's MISSING deadline, the pending-settlement
gauge and the ops API's /pending view)."""

from __future__ import annotations

import pytest

from posrecon.engine.order import Approval, Notice, OrderState, TerminalPhase

APPROVAL = Approval("e1", 1_000, 500, "EUR", "t1", "tok", "m1")
NOTICE = Notice("n1", 2_000, 500, "EUR")


def _order(phase: TerminalPhase = TerminalPhase.APPROVED, approved: bool = True) -> OrderState:
    order = OrderState("o1", "m1")
    order.terminal_phase = phase
    order.approval = APPROVAL if approved else None
    return order


def test_an_approved_order_without_a_notice_awaits_settlement_with_its_approval() -> None:
    assert _order().awaiting_settlement() is APPROVAL


def test_a_reversal_alone_does_not_end_the_wait() -> None:
    order = _order()
    order.reversal = NOTICE
    assert order.awaiting_settlement() is APPROVAL


@pytest.mark.parametrize("notice", ["settled", "failed"])
def test_a_settled_or_failed_notice_ends_the_wait(notice: str) -> None:
    order = _order()
    setattr(order, notice, NOTICE)
    assert order.awaiting_settlement() is None


def test_a_voided_order_awaits_nothing() -> None:
    assert _order(TerminalPhase.VOIDED).awaiting_settlement() is None


@pytest.mark.parametrize("phase", [TerminalPhase.NONE, TerminalPhase.CREATED, TerminalPhase.DECLINED])
def test_an_order_never_approved_awaits_nothing(phase: TerminalPhase) -> None:
    assert _order(phase, approved=False).awaiting_settlement() is None
