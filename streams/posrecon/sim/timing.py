"""Time layout of simulated traffic, derived from the rule parameters so expectations hold for any config.

Every delay here is chosen against the deadlines of the rules: approvals land long before the order TTL,
settlements long before the SLA, out-of-order arrivals well inside the orphan grace and the clock-skew
limit. ``check_rules`` refuses parameter sets for which these margins cannot be kept.
"""

from __future__ import annotations

from dataclasses import dataclass

from posrecon.config import RuleConfig

SECOND = 1_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE

#: ms, so that live traffic keeps moving the watermark past the deadlines of time-sensitive orders
DEADLINE_MARGIN_MS = 8 * HOUR

#: largest amount a simulated order pays (minor units), capped by ``max_amount_minor``
MAX_ORDER_AMOUNT = 500_000
MIN_ORDER_AMOUNT = 100
#: largest tolerance in basis points (20 %) that leaves room to build a mismatch
MAX_TOLERANCE_BPS = 2_000


def check_rules(rules: RuleConfig) -> None:
    """Raise ValueError when the rules leave no room for the simulator's time layout."""
    problems = []
    if rules.order_ttl_ms < 5 * MINUTE:
        problems.append("order_ttl_ms must be >= 5 min (approvals arrive up to ~1.5 min after creation)")
    if rules.orphan_grace_ms < 2 * MINUTE:
        problems.append("orphan_grace_ms must be >= 2 min (a settlement may arrive before its approval)")
    if rules.settlement_sla_ms < 2 * HOUR:
        problems.append("settlement_sla_ms must be >= 2 h")
    if rules.max_clock_skew_ms < 2 * MINUTE:
        problems.append("max_clock_skew_ms must be >= 2 min (ingest delays reach ~1.5 min)")
    if rules.max_amount_minor < 10 * MIN_ORDER_AMOUNT:
        problems.append(f"max_amount_minor must be >= {10 * MIN_ORDER_AMOUNT}")
    if rules.amount_tolerance_minor * 4 >= min(MAX_ORDER_AMOUNT, rules.max_amount_minor):
        problems.append("amount_tolerance_minor is too large to build a mismatch")
    bps = [rules.amount_tolerance_bps, *(t.get("amount_tolerance_bps") or 0 for t in rules.merchants.values())]
    if max(bps) > MAX_TOLERANCE_BPS:
        problems.append(f"amount_tolerance_bps must be <= {MAX_TOLERANCE_BPS} (room to build a mismatch)")
    if problems:
        raise ValueError("rule parameters outside what the simulator models: " + "; ".join(problems))


@dataclass(frozen=True, slots=True)
class Timing:
    """Delays (ms, as inclusive (low, high) ranges) used by the scenarios."""

    rules: RuleConfig

    @property
    def lateness(self) -> int:
        return self.rules.allowed_lateness_ms

    @property
    def approval_delay(self) -> tuple[int, int]:
        """ORDER_CREATED → first authorisation answer."""
        return 2 * SECOND, 20 * SECOND

    @property
    def settle_lag(self) -> tuple[int, int]:
        """Approval → settlement of an on-time order."""
        sla = self.rules.settlement_sla_ms
        return min(HOUR, sla // 8), min(6 * HOUR, sla // 4)

    @property
    def late_lag(self) -> tuple[int, int]:
        """Approval → settlement of a late order: beyond SLA (+ lateness) by 2..6 h."""
        base = self.rules.settlement_sla_ms + self.lateness
        return base + 2 * HOUR, base + 6 * HOUR

    @property
    def orphan_approval_lag(self) -> tuple[int, int]:
        """Settlement → approval of an orphan later claimed: well past the grace period."""
        base = self.rules.orphan_grace_ms + self.lateness
        return base + 110 * MINUTE, base + 230 * MINUTE

    @property
    def timeout_settle_lag(self) -> tuple[int, int]:
        """AUTH_TIMEOUT → settlement that charged anyway: after the order TTL."""
        base = self.rules.order_ttl_ms + self.lateness
        return base + 45 * MINUTE, base + 165 * MINUTE

    @property
    def duplicate_charge_gap(self) -> tuple[int, int]:
        """Approvals of two orders charging the same card twice: inside the window."""
        window = self.rules.duplicate_charge_window_ms
        return min(MINUTE, window), min(8 * MINUTE, window)

    @property
    def terminal_ingest_delay(self) -> tuple[int, int]:
        return 0, 3 * SECOND

    @property
    def settlement_ingest_delay(self) -> tuple[int, int]:
        return 0, 60 * SECOND

    @property
    def terminal_redelivery_delay(self) -> tuple[int, int]:
        """A retransmitted terminal event: still within the clock-skew limit of its event time."""
        return 10 * SECOND, self.rules.max_clock_skew_ms // 2

    @property
    def skew_fault(self) -> tuple[int, int]:
        """Clock offset of a CLOCK_SKEW fault: beyond the limit (≈ 10 min with the default 5 min)."""
        limit = self.rules.max_clock_skew_ms
        return limit + 4 * MINUTE, limit + 6 * MINUTE

    @property
    def max_amount(self) -> int:
        return min(MAX_ORDER_AMOUNT, self.rules.max_amount_minor)
