"""The money of a batch's decisions, for the worker's metrics: compiled with the output feed, which adds each
decision here as it encodes it (the Python loop this replaces was 2-3 % of the worker's time).

* settled and fee sums per currency of the orders decided MATCHED or MATCHED_LATE (an order reaches a matched
  outcome once, so the sums do not count an order twice; a refund's later revision is PARTIALLY_REVERSED /
  REVERSED), merged into the batch's counts as ``("matched_settled", currency)`` / ``("matched_fee", currency)``;
* the settlement lag (seconds) of each such order;
* the distance of each such order's fee from its merchant's price (merchants with pricing configured; computed on
  the order's sum, so a split order may show one minor unit of rounding per part that the per-part FEE_MISMATCH
  check does not);
* reversed / settled of every refund decision.
"""

from __future__ import annotations

from typing import Final

from posrecon.config import RuleConfig
from posrecon.engine.model import MATCHED_OUTCOMES, Outcome, ReconciledOrder
from posrecon.engine.pricing import fee_pricing, priced_fee

_REFUNDS: Final = frozenset({Outcome.PARTIALLY_REVERSED.value, Outcome.REVERSED.value})


class DecisionMoney:
    """What one batch's decisions add to the money metrics (observed by the shell after the batch)."""

    def __init__(self, rules: RuleConfig) -> None:
        #: the pricing (engine/pricing.py) of each merchant table, and of the others (None: not configured)
        self.pricing = {m: fee_pricing(rules.for_merchant(m)) for m in rules.merchants}
        self.default_pricing = fee_pricing(rules)
        self.priced = bool(self.pricing) or self.default_pricing is not None
        self.settled_by: dict[str, int] = {}  # per currency, merged into the counts once per batch
        self.fees_by: dict[str, int] = {}
        self.lags: list[float] = []  # seconds
        self.variances: list[float] = []  # minor units
        self.ratios: list[float] = []

    def add(self, rec: ReconciledOrder, outcome: str) -> None:
        if outcome in MATCHED_OUTCOMES:
            lag = rec["settlement_lag_ms"]
            if lag is not None:
                self.lags.append((lag if lag > 0 else 0) / 1000)
            settled = rec["settled_amount_minor"]
            if settled is None or settled <= 0:
                return
            currency = rec["currency"]
            self.settled_by[currency] = self.settled_by.get(currency, 0) + settled
            fee = rec["fee_minor"]
            if fee is None:
                return
            self.fees_by[currency] = self.fees_by.get(currency, 0) + fee  # 0 too: the series exists beside settled
            if self.priced:
                pricing = self.pricing.get(rec["merchant_id"], self.default_pricing)
                if pricing is not None:
                    self.variances.append(abs(fee - priced_fee(pricing, settled)))
        elif outcome in _REFUNDS:
            settled, reversed_minor = rec["settled_amount_minor"], rec["reversed_amount_minor"]
            if settled and reversed_minor is not None:
                self.ratios.append(reversed_minor / settled)

    def counted(self, counts: dict[tuple[str, ...], int]) -> None:
        """The money sums into the batch's ``counts``; the sums start again."""
        for currency, amount in self.settled_by.items():
            label = ("matched_settled", currency)
            counts[label] = counts.get(label, 0) + amount
        for currency, amount in self.fees_by.items():
            label = ("matched_fee", currency)
            counts[label] = counts.get(label, 0) + amount
        self.settled_by.clear()
        self.fees_by.clear()
