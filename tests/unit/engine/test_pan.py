from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from posrecon.engine import pan
from posrecon.engine.currency import is_iso4217
from posrecon.engine.pan import (
    PAN_MAX_DIGITS,
    PAN_MIN_DIGITS,
    SCANNABLE_FIELDS,
    SETTLEMENT_NOTICE_STRING_FIELDS,
    TERMINAL_EVENT_STRING_FIELDS,
    fields_to_scan,
    find_pan,
    find_pan_in_record,
    has_network_prefix,
    is_pan,
    luhn_valid,
    mask_pan,
    scrub_bytes,
    scrub_text,
)
from posrecon.sim.pan import luhn_check_digit


@pytest.mark.parametrize(
    "pan",
    [
        "4111111111111111",
        "5500005555555559",
        "378282246310005",
        "4111-1111-1111-1111",
        "6011 1111 1111 1117",
        "4222222222222",
    ],
)
def test_card_numbers_are_detected(pan: str) -> None:
    assert is_pan(pan)


@pytest.mark.parametrize(
    "token", ["4111111111111112", "tok_4111111111111111", "411111111111", "12345678901234567890", "", "abcd"]
)
def test_non_card_numbers_are_not(token: str) -> None:
    assert not is_pan(token)


def test_luhn() -> None:
    assert luhn_valid("79927398713") and not luhn_valid("79927398710")


def _luhn_reference(digits: str) -> bool:
    """The textbook check: from the right, every second digit doubled (minus 9 above 9), the sum divisible by 10."""
    values = [int(c) for c in reversed(digits)]
    return sum(v if i % 2 == 0 else (2 * v - 9 if 2 * v > 9 else 2 * v) for i, v in enumerate(values)) % 10 == 0


@given(st.text(alphabet="0123456789", max_size=25))
def test_luhn_agrees_with_the_textbook_check(digits: str) -> None:
    assert luhn_valid(digits) == _luhn_reference(digits)


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


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.sampled_from(["4111111111111111", "1767226002360", "ms ", " ", "-", "--", "7", "é", "x "]), max_size=30)
)
def test_the_region_scan_of_ascii_text_masks_what_the_full_scan_does(parts: list[str]) -> None:
    """Long ASCII text goes region by region (digit, space and dash stretches of 13+ characters): the result
    must be the full scan's, separators around a run, runs glued by dashes and non-ASCII text included."""
    text = "".join(parts)
    assert scrub_text(text) == pan._RUN.sub(pan._mask_match, text)


def test_the_prefilter_starts_the_scan_at_the_first_candidate() -> None:
    card = "4111111111111111"
    text = f"id 12-34 at 1767226002360 card {card} and {card}"
    expected = f"id 12-34 at {pan._mask_run('1767226002360')} card {mask_pan(card)} and {mask_pan(card)}"
    assert scrub_text(text) == expected


# --- PAN_IN_FIELD (contract v2) ----------------------------------------------------------------------------------

#: every network prefix range of the contract, as (first, last) prefixes of one length
NETWORK_PREFIX_RANGES = [
    (4, 4),
    (51, 55),
    (2221, 2720),
    (34, 34),
    (37, 37),
    (62, 62),
    (6011, 6011),
    (644, 649),
    (65, 65),
    (3528, 3589),
    (300, 305),
    (36, 36),
    (38, 38),
]


def _card(prefix: str, length: int, body_seed: str) -> str:
    payload = (prefix + body_seed * 19)[: length - 1]
    return payload + luhn_check_digit(payload)


@st.composite
def cards(draw: st.DrawFn) -> str:
    low, high = draw(st.sampled_from(NETWORK_PREFIX_RANGES))
    prefix = str(draw(st.integers(low, high)))
    length = draw(st.integers(max(PAN_MIN_DIGITS, len(prefix) + 1), PAN_MAX_DIGITS))
    body = draw(st.text(alphabet="0123456789", min_size=length - 1 - len(prefix), max_size=length - 1 - len(prefix)))
    payload = prefix + body
    return payload + luhn_check_digit(payload)


@st.composite
def grouped(draw: st.DrawFn, digits: str) -> str:
    """``digits`` with single spaces or dashes (or nothing) between some of them."""
    out = [digits[0]]
    for digit in digits[1:]:
        out.append(draw(st.sampled_from(["", "", "", " ", "-"])) + digit)
    return "".join(out)


def reference_find_pan(value: str) -> str | None:
    """A slow, obviously correct reading of the contract's rule, for comparison."""
    runs: list[str] = []
    current, i = "", 0
    while i < len(value):
        char = value[i]
        if char in "0123456789":
            current += char
        elif char in " -" and current and i + 1 < len(value) and value[i + 1] in "0123456789":
            pass  # a single separator between two digits stays inside the run
        else:
            if current:
                runs.append(current)
            current = ""
        i += 1
    if current:
        runs.append(current)
    for digits in runs:
        prefixes = {str(p) for low, high in NETWORK_PREFIX_RANGES for p in range(low, high + 1)}
        if 13 <= len(digits) <= 19 and luhn_valid(digits) and any(digits.startswith(p) for p in prefixes):
            return "*" * (len(digits) - 4) + digits[-4:]
    return None


@settings(max_examples=600, deadline=None)
@given(cards().flatmap(lambda card: st.tuples(st.just(card), grouped(card))), st.sampled_from(["ord-", "", "id "]))
def test_a_card_number_of_every_network_is_found_in_any_field(card_and_text: tuple[str, str], before: str) -> None:
    card, text = card_and_text
    value = f"{before}{text}/x"
    assert find_pan(value) == "*" * (len(card) - 4) + card[-4:]
    assert find_pan_in_record({"order_id": "ord-1", "batch_id": value}, ("order_id", "batch_id")) == (
        "batch_id",
        "*" * (len(card) - 4) + card[-4:],
    )
    # the scrubber of dead letters and logs masks it too, separators and all: at most its last 4 digits remain
    scrubbed = scrub_text(value)
    assert sum(c.isdigit() for c in scrubbed) <= 4 and scrubbed[-6:] == text[-4:] + "/x"
    assert sum(chr(b).isdigit() for b in scrub_bytes(value.encode())) <= 4


@settings(max_examples=600, deadline=None)
@given(cards(), st.integers(0, 8), st.sampled_from(["", " ", "-"]))
def test_a_run_longer_than_19_digits_or_luhn_failing_or_off_prefix_is_not_a_card(
    card: str, extra: int, separator: str
) -> None:
    wrong_check = card[:-1] + str((int(card[-1]) + 1) % 10)
    assert find_pan(f"ord-{wrong_check}") is None
    off_prefix = "1" + card[1:]  # no network starts with 1
    assert find_pan(f"ord-{off_prefix[:-1] + luhn_check_digit(off_prefix[:-1])}") is None
    longer = card + separator + "7" * max(1, PAN_MAX_DIGITS + 1 - len(card) + extra)
    assert find_pan(f"ord-{longer}") is None  # 20+ digits: an id, and no 13-19 digit window of it counts
    assert find_pan(f"ord-{card}--7") is not None  # a double separator ends the run


@pytest.mark.parametrize(
    "payload",
    # 15 digits just outside a prefix range (or no network's prefix at all); the Luhn check digit is added
    [
        "222099999999999",
        "272100000000000",
        "352799999999999",
        "359000000000000",
        "306000000000000",
        "500000000000000",
        "560000000000000",
        "601000000000000",
        "643000000000000",
        "390000000000000",
        "700000000000000",
        "123456781234567",
        "000000000000000",
    ],
)
def test_luhn_valid_numbers_outside_the_network_prefixes_pass(payload: str) -> None:
    number = payload + luhn_check_digit(payload)
    assert luhn_valid(number) and not has_network_prefix(number)
    assert find_pan(number) is None and find_pan(f"ord-{number[:4]}-{number[4:]}") is None


@settings(max_examples=1500, deadline=None)
@given(st.text(alphabet="0123456789 -x4", max_size=50), st.one_of(st.none(), cards()), st.text("x -1", max_size=3))
def test_find_pan_agrees_with_the_reference(text: str, card: str | None, glue: str) -> None:
    value = text if card is None else text + glue + card + glue + text[::-1]
    assert find_pan(value) == reference_find_pan(value)


def test_fields_to_scan_narrows_and_keeps_schema_order() -> None:
    assert fields_to_scan(TERMINAL_EVENT_STRING_FIELDS, SCANNABLE_FIELDS) == TERMINAL_EVENT_STRING_FIELDS
    assert fields_to_scan(SETTLEMENT_NOTICE_STRING_FIELDS, ("batch_id", "order_id", "event_id")) == (
        "order_id",
        "batch_id",
    )
    record = {"order_id": "4111111111111111", "batch_id": None, "terminal_id": 7, "notice_id": ""}
    assert find_pan_in_record(record, ("batch_id", "order_id")) == ("order_id", "************1111")
    assert find_pan_in_record(record, ("batch_id", "notice_id", "terminal_id")) is None  # nulls, "" and non-strings
    assert find_pan_in_record({"order_id": "x\ud800" + "4111111111111111"}, ("order_id",)) == (
        "order_id",
        "************1111",
    )


class _NoRunScan:
    def finditer(self, value: str, pos: int = 0) -> Iterator[re.Match[str]]:
        raise AssertionError(f"run scan of {value!r}")


def test_common_records_are_cleared_by_the_pre_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The usual record never reaches the run scan (the hot path's cost: a length check or one regex search)."""
    note = {
        "notice_id": "7f3c9a2e-b41d-4c8e-9a1f-2e6b8d0c4a51",
        "order_id": "ord-00012345",
        "merchant_id": "m-0042",
        "currency": "EUR",
        "batch_id": "b-m-0042-20454",
    }
    event = {"event_id": "ev-42-123456", "card_token": "tok_9f3a2b7c1d4e5f60", "decline_code": None}
    monkeypatch.setattr(pan, "_PAN_RUN", _NoRunScan())
    assert find_pan_in_record(note, SETTLEMENT_NOTICE_STRING_FIELDS) is None
    assert find_pan_in_record(event, TERMINAL_EVENT_STRING_FIELDS) is None
    with pytest.raises(AssertionError, match="run scan"):  # 13 run characters in a row: scanned
        find_pan_in_record({**note, "batch_id": "b-m-0042-2045412"}, SETTLEMENT_NOTICE_STRING_FIELDS)
