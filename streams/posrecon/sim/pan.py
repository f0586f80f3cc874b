"""Card numbers for the PAN_IN_CARD_TOKEN fault: test BINs with a valid Luhn check digit."""

from __future__ import annotations

import random

#: issuer prefixes reserved for testing (Visa, Mastercard test ranges)
TEST_BINS = ("411111", "400000", "555555", "222300")


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


def sample_pan(rng: random.Random, length: int = 16) -> str:
    """A Luhn-valid card number of ``length`` digits from a test BIN."""
    bin_ = rng.choice(TEST_BINS)
    body = "".join(str(rng.randrange(10)) for _ in range(length - len(bin_) - 1))
    payload = bin_ + body
    return payload + luhn_check_digit(payload)
