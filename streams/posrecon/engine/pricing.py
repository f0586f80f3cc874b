"""Money rules of contract v2: the amount tolerance and the merchant's fee, in exact integer arithmetic.

All amounts are minor units; rates are basis points (1 bps = 1/10000). No floats: a fee of 1.5 minor units
rounds to 2 and 2.5 to 2 (round half to even, the banker's rounding of the contract) on every platform.
"""

from __future__ import annotations

from typing import Final

from posrecon.config import RuleConfig

BPS: Final = 10_000


def tolerance(rules: RuleConfig, approved_minor: int) -> int:
    """How far a settled sum may differ from the approved amount: max(absolute, ⌊approved × bps / 10000⌋)."""
    bps = rules.amount_tolerance_bps
    if not bps:  # the v1 case: only the absolute tolerance
        return rules.amount_tolerance_minor
    return max(rules.amount_tolerance_minor, approved_minor * bps // BPS)


def round_half_even_div(numerator: int, denominator: int) -> int:
    """``numerator / denominator`` rounded half to even (``denominator`` > 0)."""
    quotient, remainder = divmod(numerator, denominator)  # floor division: 0 <= remainder < denominator
    twice = 2 * remainder
    if twice > denominator or (twice == denominator and quotient & 1):
        quotient += 1
    return quotient


def pricing_configured(rules: RuleConfig) -> bool:
    """Merchant pricing is configured when a fee rate or a fixed fee is set (None means not configured)."""
    return rules.fee_rate_bps is not None or rules.fee_fixed_minor is not None


def expected_fee(rules: RuleConfig, amount_minor: int) -> int:
    """round_half_even(amount × fee_rate_bps / 10000) + fee_fixed_minor (an unset part counts as 0)."""
    return priced_fee((rules.fee_rate_bps or 0, rules.fee_fixed_minor or 0, 0), amount_minor)


def fee_mismatch(rules: RuleConfig, amount_minor: int, fee_minor: int) -> bool:
    """True when pricing is configured and a SETTLED part's fee is off by more than ``fee_tolerance_minor``."""
    if not pricing_configured(rules):
        return False
    return abs(fee_minor - expected_fee(rules, amount_minor)) > rules.fee_tolerance_minor


#: (fee_rate_bps, fee_fixed_minor, fee_tolerance_minor) of configured pricing, unset parts as 0 (see fee_pricing)
Pricing = tuple[int, int, int]


def fee_pricing(rules: RuleConfig) -> Pricing | None:
    """The pricing :func:`fee_off` needs, computed once per rule table; None when pricing is not configured."""
    if not pricing_configured(rules):
        return None
    return rules.fee_rate_bps or 0, rules.fee_fixed_minor or 0, rules.fee_tolerance_minor


def priced_fee(pricing: Pricing, amount_minor: int) -> int:
    """:func:`expected_fee` for the rules ``pricing`` came from."""
    rate, fixed, _ = pricing
    return round_half_even_div(amount_minor * rate, BPS) + fixed


def fee_off(pricing: Pricing, amount_minor: int, fee_minor: int) -> bool:
    """:func:`fee_mismatch` for the rules ``pricing`` came from, in one call (it runs for every SETTLED part)."""
    rate, fixed, tol = pricing
    quotient, remainder = divmod(amount_minor * rate, BPS)  # = round_half_even_div(amount × rate, BPS), inlined
    twice = 2 * remainder
    if twice > BPS or (twice == BPS and quotient & 1):
        quotient += 1
    return abs(fee_minor - (quotient + fixed)) > tol
