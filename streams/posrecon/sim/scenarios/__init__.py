"""The catalogue of scenarios: every way a simulated order can go, by name."""

from __future__ import annotations

from posrecon.sim.scenarios import authorisation, garbage, invalid, orphans, settlement
from posrecon.sim.scenarios.base import Emitted, Kit, Race, Scenario

NORMAL = "normal"
PACEMAKER = "pacemaker"

_CATALOGUE = (
    Scenario(NORMAL, settlement.normal),
    Scenario("redelivery", settlement.redelivery),
    Scenario("late", settlement.late, horizon=settlement.late_horizon),
    Scenario("missing", settlement.missing, horizon=settlement.missing_horizon),
    Scenario("amount_mismatch", settlement.amount_mismatch),
    Scenario("currency_mismatch", settlement.currency_mismatch),
    Scenario("orphan_silent", orphans.orphan_silent, horizon=orphans.orphan_horizon),
    Scenario("timeout_charged", orphans.timeout_charged, horizon=orphans.timeout_charged_horizon),
    Scenario("orphan_then_approved", orphans.orphan_then_approved, horizon=orphans.orphan_then_approved_horizon),
    Scenario("declined_settled", authorisation.declined_settled),
    Scenario("voided_settled", authorisation.voided_settled),
    Scenario("voided", authorisation.voided),
    Scenario("declined", authorisation.declined),
    Scenario("declined_then_approved", authorisation.declined_then_approved),
    Scenario("failed", settlement.failed),
    Scenario("reversed", settlement.reversed_),
    Scenario("duplicate_settlement", settlement.duplicate_settlement),
    Scenario("duplicate_charge_same_order", authorisation.duplicate_charge_same_order),
    Scenario("duplicate_charge_cross_order", authorisation.duplicate_charge_cross_order, orders=2),
    Scenario("expired", authorisation.expired, horizon=authorisation.expired_horizon),
    Scenario("invalid_empty_id", invalid.invalid_empty_id),
    Scenario("invalid_amount", invalid.invalid_amount),
    Scenario("invalid_currency", invalid.invalid_currency),
    Scenario("invalid_pan", invalid.invalid_pan),
    Scenario("invalid_clock_skew", invalid.invalid_clock_skew),
    Scenario("garbage", garbage.garbage),
)

SCENARIOS: dict[str, Scenario] = {scenario.name: scenario for scenario in _CATALOGUE}
#: every scenario but ``normal``: what the fault rate is spread over
FAULT_SCENARIOS: tuple[str, ...] = tuple(name for name in SCENARIOS if name != NORMAL)

__all__ = ["FAULT_SCENARIOS", "NORMAL", "PACEMAKER", "SCENARIOS", "Emitted", "Kit", "Race", "Scenario"]
