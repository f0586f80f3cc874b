"""Primary account numbers (card numbers): detection by the Luhn check, and masking (PCI DSS 3.4).

Every string that leaves posrecon through a dead letter, log line or exception and may carry input text
passes through :func:`scrub_text` / :func:`scrub_bytes` first.
"""

from __future__ import annotations

import re

PAN_MIN_DIGITS = 13
PAN_MAX_DIGITS = 19
_SEPARATORS = str.maketrans("", "", " -")
# runs of digits, optionally grouped by single spaces or dashes; every 13-19 digit window of a run is checked,
# so a card number glued to other digits (an Avro length byte that happens to be an ASCII digit) is still found
_RUN = re.compile(r"\d(?:[ -]?\d){12,}")
_RUN_BYTES = re.compile(rb"\d(?:[ -]?\d){12,}")
# every match of _RUN is a match of this cheaper pattern (13+ characters of digits, spaces and dashes, digits at
# both ends), so text without one needs no _RUN scan, and no _RUN match starts before its first match
_MAYBE_RUN = re.compile(r"\d[\d -]{11,}\d")


_LUHN_PLAIN = {str(d): d for d in range(10)}
_LUHN_DOUBLED = {str(d): 2 * d - 9 if 2 * d > 9 else 2 * d for d in range(10)}


def luhn_valid(digits: str) -> bool:
    if digits.isascii() and digits.isdigit():  # the usual case, summed in C (same result as the loop)
        total = sum(map(_LUHN_PLAIN.__getitem__, digits[-1::-2])) + sum(map(_LUHN_DOUBLED.__getitem__, digits[-2::-2]))
        return total % 10 == 0
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if position & 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
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


def scrub_text(text: str) -> str:
    """Mask every card number inside free text (length-preserving)."""
    first = _MAYBE_RUN.search(text)
    if first is None:  # the usual case (alert reasons, log lines): ~30 % of the cost of the full scan
        return text
    start = first.start()
    return text[:start] + _RUN.sub(_mask_match, text[start:]) if start else _RUN.sub(_mask_match, text)


def scrub_bytes(data: bytes) -> bytes:
    """Mask every ASCII card number inside raw bytes (length-preserving, so an Avro body still decodes)."""
    return _RUN_BYTES.sub(_mask_match_bytes, data)
