from __future__ import annotations

import pytest

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
