from __future__ import annotations

import math
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from posrecon.config import RuleConfig
from posrecon.engine.pricing import expected_fee, fee_mismatch, pricing_configured, round_half_even_div, tolerance

amounts = st.integers(0, 10**12)
bps = st.integers(0, 20_000)
minors = st.integers(0, 10**6)


@settings(max_examples=500, deadline=None)
@given(amounts, st.one_of(st.none(), bps), st.one_of(st.none(), minors))
def test_expected_fee_is_exact_round_half_even(amount: int, rate: int | None, fixed: int | None) -> None:
    rules = RuleConfig(fee_rate_bps=rate, fee_fixed_minor=fixed)
    # round() of a Fraction rounds half to even, exactly
    assert expected_fee(rules, amount) == round(Fraction(amount * (rate or 0), 10_000)) + (fixed or 0)


def test_half_minor_units_round_to_even() -> None:
    rules = RuleConfig(fee_rate_bps=5_000)  # half the amount
    assert [expected_fee(rules, a) for a in (1, 3, 5, 7, 2)] == [0, 2, 2, 4, 1]
    assert [round_half_even_div(n, 2) for n in (-3, -1, 1, 3)] == [-2, 0, 0, 2]
    assert expected_fee(RuleConfig(fee_rate_bps=250, fee_fixed_minor=30), 10_000) == 280


@settings(max_examples=500, deadline=None)
@given(amounts, minors, bps)
def test_tolerance_is_the_larger_of_absolute_and_floored_bps(approved: int, absolute: int, rate: int) -> None:
    rules = RuleConfig(amount_tolerance_minor=absolute, amount_tolerance_bps=rate)
    assert tolerance(rules, approved) == max(absolute, math.floor(Fraction(approved * rate, 10_000)))


def test_v1_tolerance_is_the_absolute_one() -> None:
    assert tolerance(RuleConfig(amount_tolerance_minor=5), 10**9) == 5
    assert tolerance(RuleConfig(amount_tolerance_bps=100), 12_399) == 123  # floor of 123.99


@settings(max_examples=500, deadline=None)
@given(amounts, st.integers(0, 10**7), st.one_of(st.none(), bps), st.one_of(st.none(), minors), minors)
def test_fee_mismatch_only_with_pricing_and_beyond_the_tolerance(
    amount: int, fee: int, rate: int | None, fixed: int | None, fee_tolerance: int
) -> None:
    rules = RuleConfig(fee_rate_bps=rate, fee_fixed_minor=fixed, fee_tolerance_minor=fee_tolerance)
    configured = rate is not None or fixed is not None
    assert pricing_configured(rules) is configured
    expected = round(Fraction(amount * (rate or 0), 10_000)) + (fixed or 0)
    assert fee_mismatch(rules, amount, fee) is (configured and abs(fee - expected) > fee_tolerance)


def test_fee_mismatch_edges() -> None:
    rules = RuleConfig(fee_rate_bps=0, fee_tolerance_minor=2)  # configured: "no fee" is a price too
    assert not fee_mismatch(rules, 10_000, 2) and fee_mismatch(rules, 10_000, 3)
    assert not fee_mismatch(RuleConfig(), 10_000, 999)  # not configured: never a mismatch
    assert fee_mismatch(RuleConfig(fee_fixed_minor=10), 10_000, 9)
