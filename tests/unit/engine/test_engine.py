"""ReconciliationEngine's constructor options: the modes a shell chooses (the worker collects card sightings
for its card stage and authorisation latencies for its metrics; replay collects neither)."""

from __future__ import annotations

from typing import Any

import pytest

from posrecon.config import RuleConfig
from posrecon.engine.engine import ReconciliationEngine
from posrecon.engine.order import OpenAlert, OrderState
from scenario import HOUR, MIN, T0, term


def _apply(engine: ReconciliationEngine, *lines: dict[str, Any]) -> None:
    for line in lines:
        engine.on_terminal_event(line["record"])


def test_by_default_cards_are_checked_in_place_and_nothing_is_collected() -> None:
    engine = ReconciliationEngine(RuleConfig())
    assert engine.card_sightings is None and engine.auth_latencies is None
    _apply(engine, term("o1", "AUTH_APPROVED", T0, eid="e1"), term("o2", "AUTH_APPROVED", T0 + MIN, eid="e2"))
    assert [a["kind"] for a in engine.take()[1]] == ["DUPLICATE_CHARGE"]


def test_collect_card_sightings_hands_approvals_and_voids_out_instead() -> None:
    engine = ReconciliationEngine(RuleConfig(), collect_card_sightings=True)
    _apply(
        engine,
        term("o1", "AUTH_APPROVED", T0, eid="e1"),
        term("o2", "AUTH_APPROVED", T0 + MIN, eid="e2"),
        term("o2", "VOIDED", T0 + 2 * MIN, eid="e3"),
    )
    assert engine.take()[1] == []  # the card stage decides, not the engine
    assert engine.card_sightings is not None
    assert [(s.order_id, s.is_void) for s in engine.card_sightings] == [("o1", False), ("o2", False), ("o2", True)]
    assert len(engine.cards) == 0  # the engine's own index saw nothing
    assert engine.auth_latencies is None


def test_collect_auth_latencies_records_created_to_result_in_event_time() -> None:
    engine = ReconciliationEngine(RuleConfig(), collect_auth_latencies=True)
    _apply(
        engine,
        term("o1", "ORDER_CREATED", T0),
        term("o1", "AUTH_APPROVED", T0 + 5_000),
        term("o2", "ORDER_CREATED", T0),
        term("o2", "AUTH_TIMEOUT", T0 + 30_000),  # not a result: no latency yet
        term("o2", "AUTH_DECLINED", T0 + 31_000),
    )
    assert engine.auth_latencies == [5_000, 31_000]
    assert engine.card_sightings is None


def test_collected_latencies_include_alert_to_resolution_in_event_time() -> None:
    engine = ReconciliationEngine(RuleConfig(), collect_auth_latencies=True)
    assert ReconciliationEngine(RuleConfig()).resolve_latencies is None
    _apply(engine, term("o1", "ORDER_CREATED", T0))
    engine.advance(0, T0 + HOUR)  # EXPIRED_ORDER at created + 15 min
    _apply(engine, term("o1", "AUTH_APPROVED", T0 + HOUR + MIN))  # clears it
    alerts = engine.take()[1]
    assert [(a["kind"], a["status"]) for a in alerts] == [("EXPIRED_ORDER", "OPEN"), ("EXPIRED_ORDER", "RESOLVED")]
    assert engine.resolve_latencies == [("EXPIRED_ORDER", alerts[1]["event_time"] - alerts[0]["event_time"])]


def test_an_open_alert_row_written_before_opened_at_was_kept_still_loads() -> None:
    order = OrderState("o1", "m1")
    order.open_alerts = (OpenAlert("MISSING_SETTLEMENT", "a1", "m1", "t1", 0, T0),)
    row = order.to_row()
    row[25] = [alert[:5] for alert in row[25]]  # the five fields such rows had
    (restored,) = OrderState.from_row(row).open_alerts
    assert restored == OpenAlert("MISSING_SETTLEMENT", "a1", "m1", "t1", 0, 0)
    row[25] = [["MISSING_SETTLEMENT", "a1", "m1"]]  # a field without a default missing: refused
    with pytest.raises(ValueError):
        OrderState.from_row(row)


def test_the_mode_options_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        ReconciliationEngine(RuleConfig(), 1, True)  # type: ignore[call-arg]
