from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from posrecon.engine import pan
from posrecon.engine.currency import is_iso4217
from posrecon.engine.pan import is_pan, luhn_valid, mask_pan, scrub_bytes, scrub_text


@pytest.mark.parametrize("pan", ["4111111111111111", "5500005555555559", "378282246310005", "4111-1111-1111-1111",
                                 "6011 1111 1111 1117", "4222222222222"])  # fmt: skip
def test_card_numbers_are_detected(pan: str) -> None:
    assert is_pan(pan)


@pytest.mark.parametrize("token", ["4111111111111112", "tok_4111111111111111", "411111111111", "12345678901234567890",
                                   "", "abcd"])  # fmt: skip
def test_non_card_numbers_are_not(token: str) -> None:
    assert not is_pan(token)


def test_luhn() -> None:
    assert luhn_valid("79927398713") and not luhn_valid("79927398710")


def test_masking_keeps_last_four_only() -> None:
    assert mask_pan("4111 1111 1111 1111") == "************1111"
    text = 'card "4111111111111111" and id 1234567890123 and 4111-1111-1111-1111'
    scrubbed = scrub_text(text)
    assert "4111111111111111" not in scrubbed and "4111-1111-1111-1111" not in scrubbed
    assert "1234567890123" in scrubbed  # not Luhn-valid: left alone
    assert b"4111111111111111" not in scrub_bytes(b"\x02\x204111111111111111\x00")


def test_iso4217_from_pycountry() -> None:
    assert is_iso4217("EUR") and is_iso4217("CNY") and is_iso4217("JPY")
    assert not is_iso4217("eur") and not is_iso4217("XXQ") and not is_iso4217("")


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet="0123456789 -x'", max_size=60))
def test_the_prefilter_never_changes_what_is_masked(text: str) -> None:
    """scrub_text skips the full scan when a cheaper pattern finds no candidate run, and starts it at the
    first candidate: the result must be the full scan's (every Luhn-valid window masked)."""
    assert scrub_text(text) == pan._RUN.sub(pan._mask_match, text)


def test_the_prefilter_starts_the_scan_at_the_first_candidate() -> None:
    card = "4111111111111111"
    text = f"id 12-34 at 1767226002360 card {card} and {card}"
    expected = f"id 12-34 at {pan._mask_run('1767226002360')} card {mask_pan(card)} and {mask_pan(card)}"
    assert scrub_text(text) == expected
