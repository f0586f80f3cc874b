"""Primary account numbers (card numbers): detection by the Luhn check, and masking (PCI DSS 3.4).

Every string that leaves posrecon through a dead letter, log line or exception and may carry input text
passes through :func:`scrub_text` / :func:`scrub_bytes` first.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

PAN_MIN_DIGITS: Final = 13
PAN_MAX_DIGITS: Final = 19
_SEPARATORS: Final = str.maketrans("", "", " -")
# runs of digits, optionally grouped by single spaces or dashes; every 13-19 digit window of a run is checked,
# so a card number glued to other digits (an Avro length byte that happens to be an ASCII digit) is still found
_RUN: Final = re.compile(r"\d(?:[ -]?\d){12,}")
_RUN_BYTES: Final = re.compile(rb"\d(?:[ -]?\d){12,}")
# every match of _RUN is a match of this cheaper pattern (13+ characters of digits, spaces and dashes, digits at
# both ends), so text without one needs no _RUN scan, and no _RUN match starts before its first match
_MAYBE_RUN: Final = re.compile(r"\d[\d -]{11,}\d")


def luhn_valid(digits: str) -> bool:
    # a plain loop: compiled, ~8x faster than summing two maps over a lookup dict (docs/performance.md);
    # a non-digit counts as its code point - 48, as it always has (callers pass digits)
    total = 0
    double = False
    i = len(digits) - 1
    while i >= 0:
        value = ord(digits[i]) - 48
        if double:
            value *= 2
            if value > 9:
                value -= 9
        total += value
        double = not double
        i -= 1
    return total % 10 == 0


def is_pan(value: str) -> bool:
    """True when ``value`` is a card number: 13-19 digits (spaces/dashes allowed) passing Luhn."""
    digits = value.translate(_SEPARATORS)
    return PAN_MIN_DIGITS <= len(digits) <= PAN_MAX_DIGITS and digits.isdigit() and luhn_valid(digits)


def mask_pan(value: str) -> str:
    """Mask a card number, keeping only its last four digits: ``************1111``."""
    digits = value.translate(_SEPARATORS)
    return "*" * (len(digits) - 4) + digits[-4:]


def _mask_run(run: str) -> str:
    """Mask (all but the last four digits of) every Luhn-valid 13-19 digit window of a digit run."""
    positions: range | list[int]
    if run.isdigit():  # no separators (the usual case)
        positions = range(len(run))
        digits = run
    else:
        positions = [i for i, c in enumerate(run) if c.isdigit()]
        digits = "".join(run[i] for i in positions)
    hidden: set[int] = set()
    for length in range(min(PAN_MAX_DIGITS, len(digits)), PAN_MIN_DIGITS - 1, -1):
        for start in range(len(digits) - length + 1):
            if luhn_valid(digits[start : start + length]):
                hidden.update(range(start, start + length - 4))
    if not hidden:
        return run
    chars = list(run)
    for k in hidden:
        chars[positions[k]] = "*"
    return "".join(chars)


def _mask_match(match: re.Match[str]) -> str:
    return _mask_run(match.group(0))


def _mask_match_bytes(match: re.Match[bytes]) -> bytes:
    return _mask_run(match.group(0).decode("ascii")).encode("ascii")


# for ASCII text, a necessary condition of a _MAYBE_RUN match (``\d`` is [0-9] there): 13 characters of digits,
# spaces and dashes in a row. Checked in C on the bytes (translate + substring search): ~0.35 µs for an alert
# reason instead of ~1.7 µs for the regex search, which goes from each of the reason's many digits
_RUN_BYTE_MAP: Final = bytes(49 if 48 <= b <= 57 or b in (32, 45) else 48 for b in range(256))  # run char -> "1"
_THIRTEEN_RUN_BYTES: Final = b"1" * PAN_MIN_DIGITS
_SHORT_TEXT: Final = 24  # below this the regex search is as cheap


def scrub_text(text: str) -> str:
    """Mask every card number inside free text (length-preserving)."""
    if len(text) >= _SHORT_TEXT and text.isascii():
        mapped = text.encode("ascii").translate(_RUN_BYTE_MAP)
        if _THIRTEEN_RUN_BYTES not in mapped:  # the usual case (alert reasons, log lines)
            return text
        return _scrub_ascii_runs(text, mapped)
    first = _MAYBE_RUN.search(text)
    if first is None:  # the usual case (alert reasons, log lines): ~30 % of the cost of the full scan
        return text
    start = first.start()
    return text[:start] + _RUN.sub(_mask_match, text[start:]) if start else _RUN.sub(_mask_match, text)


def _scrub_ascii_runs(text: str, mapped: bytes) -> str:
    """:func:`scrub_text` of ASCII text, region by region: a _RUN match lies inside one maximal stretch of digits,
    spaces and dashes (``mapped`` marks them ``1``), and only stretches of 13+ characters can hold one, so the
    regex runs on those alone (the reasons' 13-digit timestamps made scanning the whole text cost ~7 µs). A
    stretch that is digits alone, once trimmed, is one match: masked without the regex."""
    out: list[str] = []
    done = 0
    pos = mapped.find(_THIRTEEN_RUN_BYTES)
    while pos >= 0:
        start = mapped.rfind(b"0", 0, pos) + 1
        end = mapped.find(b"0", pos)
        if end < 0:
            end = len(text)
        region = text[start:end]
        core = region.strip(" -")
        if core.isdigit():
            lead = region.index(core[0])
            masked = region[:lead] + _mask_run(core) + region[lead + len(core) :]
        else:
            masked = _RUN.sub(_mask_match, region)
        if masked != region:
            out.append(text[done:start])
            out.append(masked)
            done = end
        pos = mapped.find(_THIRTEEN_RUN_BYTES, end)
    if not out:
        return text
    out.append(text[done:])
    return "".join(out)


def scrub_bytes(data: bytes) -> bytes:
    """Mask every ASCII card number inside raw bytes (length-preserving, so an Avro body still decodes)."""
    return _RUN_BYTES.sub(_mask_match_bytes, data)


# --- PAN_IN_FIELD (contract v2): a card number anywhere in a string field of an input record -------------------

#: the string fields of each input record that PAN_IN_FIELD scans. Not Avro enums (their symbols are fixed by the
#: schema) and not card_token: v1's whole-value rule (PAN_IN_CARD_TOKEN) covers it, and scanning opaque tokens for
#: runs inside them would reject ~1 in 8,000 random ``tok_<16 hex>`` tokens, changing v1's decisions on v1 input
TERMINAL_EVENT_STRING_FIELDS = ("event_id", "order_id", "merchant_id", "terminal_id", "currency", "decline_code")
SETTLEMENT_NOTICE_STRING_FIELDS = ("notice_id", "order_id", "merchant_id", "currency", "batch_id")
SETTLEMENT_BATCH_STRING_FIELDS = ("batch_id", "merchant_id", "currency")
#: every field name ``pan_scan_fields`` may list (its default: all of them)
SCANNABLE_FIELDS: Final = tuple(
    dict.fromkeys(TERMINAL_EVENT_STRING_FIELDS + SETTLEMENT_NOTICE_STRING_FIELDS + SETTLEMENT_BATCH_STRING_FIELDS)
)

# issuer identification prefixes of the contract's networks, by prefix length (checked after Luhn, so cheap)
_PREFIX_2: Final = frozenset(
    ["34", "37", "36", "38", "62", "65"] + [str(p) for p in range(51, 56)]  # Amex, Diners, UnionPay, Discover, MC
)
_PREFIX_3: Final = frozenset(str(p) for p in [*range(644, 650), *range(300, 306)])  # Discover, Diners
_PREFIX_4: Final = frozenset(str(p) for p in ["6011", *range(2221, 2721), *range(3528, 3590)])  # Discover, MC, JCB


_NETWORK_FIRST_DIGITS: Final = frozenset("23456")


def has_network_prefix(digits: str) -> bool:
    """True when ``digits`` starts with a prefix of Visa, Mastercard, Amex, UnionPay, Discover, JCB or Diners."""
    return digits[:1] == "4" or digits[:2] in _PREFIX_2 or digits[:3] in _PREFIX_3 or digits[:4] in _PREFIX_4


# ASCII digits only (a card number on the wire is ASCII); the run is maximal: greedy from the first digit of a run
_PAN_RUN = re.compile(r"[0-9](?:[ -]?[0-9]){12,}")  # not Final: tests/unit/engine/test_pan.py replaces it
# a necessary condition for a _PAN_RUN match (13 run characters in a row); its first match starts where a
# maximal sequence of run characters starts, so no run is entered in its middle from there
_RUN_CHARS: Final = re.compile(r"[0-9 -]{13}")
#: find_pan's first test, for a hot path to make before calling it: None means no card number in the string
maybe_pan = _RUN_CHARS.search


def find_pan(value: str) -> str | None:
    """The masked form (``************1111``) of the first card number in ``value``, or None.

    A card number is a *maximal* run of 13-19 digits (single spaces or dashes may separate them) that passes Luhn
    and starts with a network prefix: a window inside a longer run is not one (20 digits are an id, not a PAN).
    """
    if len(value) < PAN_MIN_DIGITS:  # the usual short id (``ord-00012345``) ends here
        return None
    first = _RUN_CHARS.search(value)  # most longer ids (UUIDs) end here
    if first is None:
        return None
    for match in _PAN_RUN.finditer(value, first.start()):
        run = match.group(0)
        if run[0] not in _NETWORK_FIRST_DIGITS:  # e.g. a millisecond timestamp in an id (``ord-1767226002360-7``)
            continue
        digits = run if run.isdigit() else run.translate(_SEPARATORS)
        if len(digits) <= PAN_MAX_DIGITS and has_network_prefix(digits) and luhn_valid(digits):
            return mask_pan(digits)
    return None


def fields_to_scan(record_fields: tuple[str, ...], pan_scan_fields: tuple[str, ...]) -> tuple[str, ...]:
    """The string fields of one record type that the configured ``pan_scan_fields`` select (compute once)."""
    selected = set(pan_scan_fields)
    return tuple(name for name in record_fields if name in selected)


def find_pan_in_record(record: Mapping[str, object], fields: tuple[str, ...]) -> tuple[str, str] | None:
    """``(field name, masked card number)`` of the first of ``fields`` holding a card number, or None.

    Null fields, non-strings and strings shorter than 13 characters cost one check each; longer ones one
    precompiled regex search (measured: faster here than one C-level pass over all fields joined)."""
    for name in fields:
        value = record.get(name)
        if type(value) is str and len(value) >= PAN_MIN_DIGITS:
            masked = find_pan(value)
            if masked is not None:
                return name, masked
    return None
