"""Snapshot and restore: a restored engine fires the deadlines the original had scheduled, at the same times."""

from __future__ import annotations

import json

from posrecon.config import RuleConfig
from posrecon.engine.engine import ReconciliationEngine
from scenario import HOUR, MIN, T0, note, term


def _fired(engine: ReconciliationEngine, until: int) -> list[tuple[str, str | None, int]]:
    engine.advance(0, until, until)
    return sorted((a["kind"], a["order_id"], a["event_time"]) for a in engine.take()[1])


def test_a_restored_engine_fires_the_scheduled_deadlines_like_the_original() -> None:
    rules = RuleConfig(allowed_lateness_ms=MIN)
    original = ReconciliationEngine(rules)
    original.on_terminal_event(term("approved", "AUTH_APPROVED", T0)["record"])
    original.on_terminal_event(term("created", "ORDER_CREATED", T0)["record"])
    original.on_settlement_notice(note("orphan", "SETTLED", T0)["record"])
    assert original.take()[1] == []
    restored = ReconciliationEngine.restore(json.loads(json.dumps(original.snapshot())), rules)
    until = T0 + 25 * HOUR
    expected = [
        ("EXPIRED_ORDER", "created", T0 + rules.order_ttl_ms),
        ("MISSING_SETTLEMENT", "approved", T0 + rules.settlement_sla_ms),
        ("ORPHAN_SETTLEMENT", "orphan", T0 + rules.orphan_grace_ms),
    ]
    assert _fired(original, until) == expected
    assert _fired(restored, until) == expected
