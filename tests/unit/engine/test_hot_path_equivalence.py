"""The engine's inlined fast paths (docs/performance.md, "Engine on the v2 mix") against the general code they
stand for: same answers on every input."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from posrecon.config import RuleConfig
from posrecon.engine import pan
from posrecon.engine.pricing import fee_mismatch, fee_off, fee_pricing

bps = st.integers(0, 20_000)
minors = st.integers(0, 10**6)


@settings(max_examples=500, deadline=None)
@given(st.integers(0, 10**12), st.integers(0, 10**7), st.one_of(st.none(), bps), st.one_of(st.none(), minors), minors)
def test_fee_off_is_fee_mismatch(amount: int, fee: int, rate: int | None, fixed: int | None, tol: int) -> None:
    rules = RuleConfig(fee_rate_bps=rate, fee_fixed_minor=fixed, fee_tolerance_minor=tol)
    pricing = fee_pricing(rules)
    assert (pricing is not None and fee_off(pricing, amount, fee)) is fee_mismatch(rules, amount, fee)


def test_fee_off_rounds_half_to_even() -> None:
    pricing = fee_pricing(RuleConfig(fee_rate_bps=5_000))  # half the amount
    assert pricing is not None
    assert [fee_off(pricing, a, f) for a, f in ((1, 0), (3, 2), (5, 2), (7, 4), (3, 1))] == [False] * 4 + [True]
    assert fee_pricing(RuleConfig()) is None


# digits and separators (ASCII and not: "\d" of the regex is Unicode-aware), other text, and escapes
_ALPHABET = "0123456789 -x'(),:٠١٢٣٤٥٦٧٨٩é"


@settings(max_examples=600, deadline=None)
@given(st.text(alphabet=_ALPHABET, min_size=20, max_size=160))
def test_scrub_text_prefilter_never_changes_what_is_masked(text: str) -> None:
    assert pan.scrub_text(text) == pan._RUN.sub(pan._mask_match, text)


def test_scrub_text_masks_a_card_in_a_long_reason() -> None:
    card = "4111 1111 1111 1111"
    reason = f"order ord-42-9799: settled by notice nt-42-83762 ({card}) 10 min later"
    assert pan.scrub_text(reason) == reason.replace(card, "**** **** **** 1111")
    assert pan.scrub_text(reason.replace(card, "4111 1111 1111")) == reason.replace(card, "4111 1111 1111")
