"""The worker's ``GET /orders/{id}`` view of a decided order: its decision has every field of the record (the
view once zipped the order's kept fields with the 11 names of v1 and failed on every decided order)."""

from __future__ import annotations

from posrecon.app.ops_api import RECORD_FIELDS, order_view
from posrecon.engine.engine import ReconciliationEngine
from posrecon.engine.model import ReconciledOrder
from scenario import note, term


def test_a_settled_order_shows_its_timeline_and_its_decision() -> None:
    engine = ReconciliationEngine()
    for line in (term("o-1", "ORDER_CREATED", 1000), term("o-1", "AUTH_APPROVED", 2000)):
        engine.on_terminal_event(line["record"], 0, 2000, 2000)  # type: ignore[arg-type]
    engine.on_settlement_notice(note("o-1", "SETTLED", 9000)["record"], 0, 9000, 9000)  # type: ignore[arg-type]
    book = engine.book(0)
    view = order_view(book.orders["o-1"], 0, book.watermark)
    assert [item["what"] for item in view["timeline"]] == ["ORDER_CREATED", "AUTH_APPROVED", "SETTLED"]
    decision = view["decision"]
    assert set(decision) == set(ReconciledOrder.__annotations__) and RECORD_FIELDS[0] == "order_id"
    assert decision["outcome"] == "MATCHED" and decision["settled_amount_minor"] == 1000
    assert decision["revision"] == 1 and decision["settled_parts"] == 1 and decision["net_amount_minor"] == 1000
