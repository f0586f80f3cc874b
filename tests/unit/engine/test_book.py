"""PartitionBook.count_awaiting_settlement: the pending-settlement gauge's buckets (compiled, walked every few
seconds over every open order)."""

from __future__ import annotations

from posrecon.engine.book import PartitionBook
from posrecon.engine.order import Approval, Notice, OrderState, TerminalPhase

HOUR = 3_600_000


def _approved(book: PartitionBook, order_id: str, approved_at: int) -> OrderState:
    order = book.orders[order_id] = OrderState(order_id, "m1")
    order.terminal_phase = TerminalPhase.APPROVED
    order.approval = Approval("e-" + order_id, approved_at, 500, "EUR", "t1", "tok", "m1")
    return order


def test_orders_awaiting_settlement_by_age_bucket() -> None:
    book = PartitionBook(3)
    book.watermark = 30 * HOUR
    _approved(book, "fresh", 30 * HOUR - 1)  # 1 ms old
    _approved(book, "edge", 29 * HOUR)  # exactly 1 h: not below the first bound
    _approved(book, "mid", 20 * HOUR)  # 10 h
    _approved(book, "old", 0)  # 30 h: past the last bound
    _approved(book, "settled", 0).settled = Notice("n1", 1, 500, "EUR")  # not awaiting
    voided = _approved(book, "voided", 0)
    voided.terminal_phase = TerminalPhase.VOIDED
    book.orders["created"] = OrderState("created", "m1")  # no approval
    counts = [0, 0, 0, 0]
    book.count_awaiting_settlement([HOUR, 6 * HOUR, 12 * HOUR], counts)
    assert counts == [1, 1, 1, 1]
    book.count_awaiting_settlement([HOUR, 6 * HOUR, 12 * HOUR], counts)  # adds to the counts (one list per book)
    assert counts == [2, 2, 2, 2]


def test_no_bounds_counts_every_waiting_order_in_the_one_bucket() -> None:
    book = PartitionBook()
    book.watermark = 5
    for n in range(3):
        _approved(book, f"o{n}", n)
    counts = [0]
    book.count_awaiting_settlement([], counts)
    assert counts == [3]
