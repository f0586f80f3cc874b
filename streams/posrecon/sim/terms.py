"""Merchant terms of contract v2 as the simulator computes them: the amount tolerance and the merchant's fee.

Read from the rule config (top-level keys, overridden by ``[merchants."<id>"]``) and computed here, apart from
the engine: fee = round-half-even(amount × fee_rate_bps / 10000) + fee_fixed_minor when pricing is configured
(a rate or a fixed fee set); tolerance = max(amount_tolerance_minor, ⌊approved × amount_tolerance_bps / 10000⌋).
``draw_pricing`` gives a simulation its merchant pricing tables (its own random source: the traffic's stays
untouched).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any

from posrecon.config import RuleConfig

BPS = 10_000
#: share of merchants given pricing tables, and of those a tolerance in basis points
PRICED_SHARE = 0.35
BPS_TOLERANCE_SHARE = 0.25


class MerchantTerms:
    """Fee and tolerance of each merchant under ``rules`` (contract v2); ``None`` fee: pricing not configured."""

    def __init__(self, rules: RuleConfig, v2: bool = True) -> None:
        self._rules = rules
        self._v2 = v2

    def _value(self, merchant_id: str, key: str) -> Any:
        table = self._rules.merchants.get(merchant_id, {}) if self._v2 else {}
        return table[key] if key in table else getattr(self._rules, key)

    def priced(self, merchant_id: str) -> bool:
        if not self._v2:
            return False
        return self._value(merchant_id, "fee_rate_bps") is not None or (
            self._value(merchant_id, "fee_fixed_minor") is not None
        )

    def fee(self, merchant_id: str, amount_minor: int) -> int | None:
        """The fee a correct SETTLED notice of this merchant carries; None when pricing is not configured."""
        if not self.priced(merchant_id):
            return None
        rate = self._value(merchant_id, "fee_rate_bps") or 0
        fixed = self._value(merchant_id, "fee_fixed_minor") or 0
        return round(Fraction(amount_minor * rate, BPS)) + fixed  # Fraction rounds half to even

    def fee_tolerance(self, merchant_id: str) -> int:
        return int(self._value(merchant_id, "fee_tolerance_minor")) if self._v2 else 0

    def tolerance(self, merchant_id: str, approved_minor: int) -> int:
        absolute = int(self._value(merchant_id, "amount_tolerance_minor"))
        if not self._v2:
            return absolute
        return max(absolute, approved_minor * int(self._value(merchant_id, "amount_tolerance_bps")) // BPS)


def draw_pricing(seed: int, merchant_ids: Sequence[str]) -> dict[str, dict[str, int]]:
    """``[merchants."<id>"]`` tables for about a third of the merchants (always the two most popular: the first
    with an exact fee and a tolerance in bps, the second with a fee tolerance)."""
    rng = random.Random(f"posrecon-sim-pricing-{seed}")
    tables: dict[str, dict[str, int]] = {}
    for rank, merchant_id in enumerate(merchant_ids):
        if rank > 1 and rng.random() >= PRICED_SHARE:
            continue
        table = {
            "fee_rate_bps": rng.choice((0, 50, 90, 120, 150, 175, 199, 250, 290)),
            "fee_fixed_minor": rng.choice((0, 0, 5, 10, 25, 30)),
            "fee_tolerance_minor": rng.choice((0, 0, 1, 2, 5)) if rank > 1 else rank * 3,
        }
        if rank == 0 or rng.random() < BPS_TOLERANCE_SHARE:
            table["amount_tolerance_bps"] = rng.choice((10, 25, 50, 100))
        tables[merchant_id] = table
    return tables


def with_pricing(rules: RuleConfig, tables: Mapping[str, Mapping[str, int]]) -> RuleConfig:
    """``rules`` plus the simulation's pricing tables; a merchant the user's config already has keeps its table."""
    merged: dict[str, Mapping[str, int | None]] = {**tables, **rules.merchants}
    return dataclasses.replace(rules, merchants=merged)
