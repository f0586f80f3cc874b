"""Who buys where: merchants with terminals and a home currency, card tokens, amounts — all skewed.

Merchants and cards follow a Zipf-like popularity (a few are very busy), so the same card sometimes buys
twice at the same merchant, as in real traffic. Card tokens are opaque (``tok_<hex>``), never digits.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

#: home currencies of merchants and their share
CURRENCY_MIX = (
    ("EUR", 35),
    ("USD", 30),
    ("GBP", 14),
    ("CNY", 13),
    ("JPY", 3),
    ("CHF", 2),
    ("SEK", 2),
    ("PLN", 1),
)
CURRENCIES = tuple(code for code, _ in CURRENCY_MIX)
#: share of orders paid without a card token (e.g. cash-like wallets)
NO_TOKEN_SHARE = 0.03


class ZipfPicker(Generic[T]):
    """Picks items with weight 1 / (rank + offset) ** exponent (rank 1 is the most popular)."""

    def __init__(self, items: Sequence[T], exponent: float = 1.0, offset: float = 0.0) -> None:
        if not items:
            raise ValueError("ZipfPicker needs at least one item")
        self._items = list(items)
        weights = (1.0 / (rank + offset) ** exponent for rank in range(1, len(items) + 1))
        self._cumulative = list(itertools.accumulate(weights))

    def pick(self, rng: random.Random) -> T:
        point = rng.random() * self._cumulative[-1]
        index = bisect.bisect_right(self._cumulative, point)
        return self._items[min(index, len(self._items) - 1)]


@dataclass(frozen=True, slots=True)
class Merchant:
    merchant_id: str
    currency: str
    terminals: tuple[str, ...]


class Population:
    """Merchants, terminals and cards of one simulation, sized for ``orders`` orders."""

    def __init__(self, rng: random.Random, orders: int) -> None:
        self._rng = rng
        merchant_count = max(10, min(5_000, orders // 40))
        card_count = max(50, orders // 2)
        currency_picker = _weighted(CURRENCY_MIX)
        merchants = []
        for number in range(merchant_count):
            merchant_id = f"mch-{number:05d}"
            terminals = tuple(f"trm-{number:05d}-{k:02d}" for k in range(1, rng.randint(1, 12) + 1))
            merchants.append(Merchant(merchant_id, currency_picker(rng), terminals))
        self.merchants: tuple[Merchant, ...] = tuple(merchants)
        self._merchant_picker = ZipfPicker(self.merchants, exponent=1.0, offset=2.0)
        tokens = [f"tok_{rng.getrandbits(64):016x}" for _ in range(card_count)]
        self._card_picker = ZipfPicker(tokens, exponent=1.0, offset=10.0)

    def merchant(self) -> Merchant:
        return self._merchant_picker.pick(self._rng)

    def terminal(self, merchant: Merchant) -> str:
        return self._rng.choice(merchant.terminals)

    def card_token(self) -> str | None:
        """A card token, or None for the few payments that carry none."""
        if self._rng.random() < NO_TOKEN_SHARE:
            return None
        return self._card_picker.pick(self._rng)

    def known_card_token(self) -> str:
        return self._card_picker.pick(self._rng)

    def amount(self, max_amount: int, min_amount: int = 100) -> int:
        """Log-uniform in [min_amount, max_amount]: many small tickets, a few large ones."""
        value = math.exp(self._rng.uniform(math.log(min_amount), math.log(max_amount)))
        return max(min_amount, min(max_amount, round(value)))

    def other_currency(self, currency: str) -> str:
        return self._rng.choice([code for code in CURRENCIES[:4] if code != currency])


def _weighted(mix: Sequence[tuple[str, int]]) -> Callable[[random.Random], str]:
    codes = [code for code, _ in mix]
    cumulative = list(itertools.accumulate(weight for _, weight in mix))

    def choose(rng: random.Random) -> str:
        return rng.choices(codes, cum_weights=cumulative, k=1)[0]

    return choose
