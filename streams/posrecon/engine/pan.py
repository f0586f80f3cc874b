"""Primary account numbers (card numbers): detection by the Luhn check, and masking (PCI DSS 3.4).

Every string that leaves posrecon through a dead letter, log line or exception and may carry input text
passes through :func:`scrub_text` / :func:`scrub_bytes` first.
"""

from __future__ import annotations

import re

PAN_MIN_DIGITS = 13
PAN_MAX_DIGITS = 19
_SEPARATORS = str.maketrans("", "", " -")
# candidate runs: 13-19 digits, optionally grouped by single spaces or dashes
_CANDIDATE = re.compile(r"(?<!\d)\d(?:[ -]?\d){12,18}(?!\d)")
_CANDIDATE_BYTES = re.compile(rb"(?<!\d)\d(?:[ -]?\d){12,18}(?!\d)")


def luhn_valid(digits: str) -> bool:
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


def _mask_match(match: re.Match[str]) -> str:
    text = match.group(0)
    return mask_pan(text) if is_pan(text) else text


def _mask_match_bytes(match: re.Match[bytes]) -> bytes:
    text = match.group(0).decode("ascii")
    return (mask_pan(text) if is_pan(text) else text).encode("ascii")


def scrub_text(text: str) -> str:
    """Mask every card number inside free text."""
    return _CANDIDATE.sub(_mask_match, text)


def scrub_bytes(data: bytes) -> bytes:
    """Mask every ASCII card number inside raw bytes (Avro strings are UTF-8, so digits stay ASCII)."""
    return _CANDIDATE_BYTES.sub(_mask_match_bytes, data)
