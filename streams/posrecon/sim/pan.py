"""Card numbers: test PANs for the faults, and the contract's own PAN test, written here independently of the
engine (``posrecon.engine.pan``) so the simulator can check that its look-alike ids really are not card numbers
and that no output carries one.

The contract v2 rule: a maximal run of 13–19 digits (single spaces or dashes between digits allowed; the run as
a whole) that passes Luhn and starts with a card network's prefix.
"""

from __future__ import annotations

import random
import re

#: issuer prefixes reserved for testing (Visa, Mastercard test ranges)
TEST_BINS = ("411111", "400000", "555555", "222300")
#: one test-like prefix per network of the contract, for PAN_IN_FIELD faults
NETWORK_BINS = ("411111", "555555", "222300", "378282", "620000", "601111", "353011", "305693", "650000")

#: a maximal run of digits joined by at most one space or dash between two digits
_RUN = re.compile(r"\d(?:[ -]?\d)*")
_NETWORK_RANGES = (
    (1, 4, 4),  # Visa
    (2, 51, 55),  # Mastercard
    (4, 2221, 2720),
    (2, 34, 34),  # Amex
    (2, 37, 37),
    (2, 62, 62),  # UnionPay
    (4, 6011, 6011),  # Discover
    (3, 644, 649),
    (2, 65, 65),
    (4, 3528, 3589),  # JCB
    (3, 300, 305),  # Diners
    (2, 36, 36),
    (2, 38, 38),
)


def luhn_check_digit(payload: str) -> str:
    """The digit that makes ``payload + digit`` pass the Luhn check."""
    total = 0
    for index, char in enumerate(reversed(payload)):
        digit = int(char)
        if index % 2 == 0:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return str((10 - total % 10) % 10)


def luhn_valid(number: str) -> bool:
    return number.isdigit() and len(number) >= 2 and luhn_check_digit(number[:-1]) == number[-1]


def has_network_prefix(digits: str) -> bool:
    return any(low <= int(digits[:width]) <= high for width, low, high in _NETWORK_RANGES if len(digits) >= width)


def is_card_number(digits: str) -> bool:
    return 13 <= len(digits) <= 19 and luhn_valid(digits) and has_network_prefix(digits)


def card_number_runs(value: str) -> list[str]:
    """The runs of ``value`` (as written, separators kept) that are card numbers by the contract v2 rule."""
    return [m.group() for m in _RUN.finditer(value) if is_card_number(re.sub(r"[ -]", "", m.group()))]


def mask_runs(value: str) -> str:
    """``value`` with every digit of each card-number run but its last 4 replaced by ``*`` (separators kept)."""

    def mask(match: re.Match[str]) -> str:
        run = match.group()
        digits = re.sub(r"[ -]", "", run)
        if not is_card_number(digits):
            return run
        keep = len(digits) - 4
        out = []
        for char in run:
            if char.isdigit() and keep > 0:
                out.append("*")
                keep -= 1
            else:
                out.append(char)
        return "".join(out)

    return _RUN.sub(mask, value)


def sample_pan(rng: random.Random, length: int = 16, bins: tuple[str, ...] = TEST_BINS) -> str:
    """A Luhn-valid card number of ``length`` digits from a test BIN."""
    bin_ = rng.choice(bins)
    body = "".join(str(rng.randrange(10)) for _ in range(length - len(bin_) - 1))
    payload = bin_ + body
    return payload + luhn_check_digit(payload)
