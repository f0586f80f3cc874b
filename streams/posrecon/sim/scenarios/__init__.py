"""The catalogue of scenarios: every way a simulated order can go, by name."""

from __future__ import annotations

from posrecon.sim.scenarios import (
    authorisation,
    captures,
    fees,
    garbage,
    invalid,
    orphans,
    pan_fields,
    refunds,
    resolution,
    settlement,
)
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
#: contract v2 scenarios, after v1's so that a mix without them draws exactly as v1 did
_CATALOGUE_V2 = (
    Scenario("split_capture", captures.split_capture),
    Scenario("split_capture_late", captures.split_capture_late, horizon=settlement.late_horizon),
    Scenario("split_capture_missing", captures.split_capture_missing, horizon=settlement.missing_horizon),
    Scenario("split_capture_duplicate", captures.split_capture_duplicate),
    Scenario("split_amount_mismatch", captures.split_amount_mismatch),
    Scenario("split_within_tolerance", captures.split_within_tolerance),
    Scenario("partial_refund", refunds.partial_refund),
    Scenario("over_refund", refunds.over_refund),
    Scenario("fee_mismatch", fees.fee_mismatch),
    Scenario("fee_within_tolerance", fees.fee_within_tolerance),
    Scenario("not_charged", resolution.not_charged, horizon=resolution.not_charged_horizon),
    Scenario("missing_then_failed", resolution.missing_then_failed, horizon=settlement.late_horizon),
    Scenario("orphan_then_refused", resolution.orphan_then_refused, horizon=resolution.orphan_then_refused_horizon),
    Scenario(
        "expired_then_answered", resolution.expired_then_answered, horizon=resolution.expired_then_answered_horizon
    ),
    Scenario("conflict_refunded", resolution.conflict_refunded),
    Scenario("duplicate_refunded", resolution.duplicate_refunded),
    Scenario("duplicate_charge_voided", resolution.duplicate_charge_voided, orders=2),
    Scenario("pan_in_field", pan_fields.pan_in_field),
    Scenario("pan_lookalike_id", pan_fields.pan_lookalike_id),
)

SCENARIOS: dict[str, Scenario] = {scenario.name: scenario for scenario in (*_CATALOGUE, *_CATALOGUE_V2)}
#: every scenario but ``normal``: what the fault rate is spread over
FAULT_SCENARIOS: tuple[str, ...] = tuple(name for name in SCENARIOS if name != NORMAL)
#: the fault scenarios of contract v2 (a v1 simulation never draws them)
V2_SCENARIOS: tuple[str, ...] = tuple(scenario.name for scenario in _CATALOGUE_V2)
V1_FAULT_SCENARIOS: tuple[str, ...] = tuple(name for name in FAULT_SCENARIOS if name not in V2_SCENARIOS)

__all__ = [
    "FAULT_SCENARIOS",
    "NORMAL",
    "PACEMAKER",
    "SCENARIOS",
    "V1_FAULT_SCENARIOS",
    "V2_SCENARIOS",
    "Emitted",
    "Kit",
    "Race",
    "Scenario",
]
