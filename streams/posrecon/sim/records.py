"""Builds the contract records of simulated orders, with ids and arrival (ingest) times.

Every field of the v1 schema is present in every record; notices of contract v2 scenarios also carry the v2
fields capture_seq and capture_count (v1 scenarios leave them to their defaults, so v1 traffic stays
byte-identical). Within one order, each stream (terminal, settlement) arrives in event-time order; ingest follows
event time by a small delay.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from posrecon.sim.line import Line, Record
from posrecon.sim.population import Merchant, Population
from posrecon.sim.terms import MerchantTerms
from posrecon.sim.timing import Timing
from posrecon.sim.vocabulary import SETTLED, SETTLEMENT, TERMINAL, Source


@dataclass(slots=True)
class OrderSpec:
    """What one order is about: who pays whom, how much, in which currency."""

    order_id: str
    merchant_id: str
    terminal_id: str
    card_token: str | None
    amount_minor: int
    currency: str
    last_ingest: dict[str, int] = field(default_factory=dict)


class IdMint:
    """Ids unique within a simulation and across seeds: ``ord-<seed>-<n>``, ``ev-…``, ``nt-…``."""

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._orders = 0
        self._events = 0
        self._notices = 0
        self._claimed: set[str] = set()

    def order(self) -> str:
        self._orders += 1
        return f"ord-{self._seed}-{self._orders}"

    def event(self) -> str:
        self._events += 1
        return f"ev-{self._seed}-{self._events}"

    def notice(self) -> str:
        self._notices += 1
        return f"nt-{self._seed}-{self._notices}"

    def claim(self, order_id: str) -> bool:
        """Reserve an order id made outside the ``ord-`` scheme (numeric look-alikes); False if already taken."""
        if order_id in self._claimed:
            return False
        self._claimed.add(order_id)
        return True


class RecordFactory:
    """Creates orders and the lines (records + ingest time) that describe them."""

    def __init__(
        self, rng: random.Random, population: Population, ids: IdMint, timing: Timing, terms: MerchantTerms
    ) -> None:
        self.rng = rng
        self.population = population
        self.ids = ids
        self.timing = timing
        self.terms = terms

    def new_order(
        self, like: OrderSpec | None = None, order_id: str | None = None, merchant: Merchant | None = None
    ) -> OrderSpec:
        """A fresh order; ``like`` copies merchant, card, amount and currency (a second charge)."""
        order_id = self.ids.order() if order_id is None else order_id
        if like is not None:
            return OrderSpec(
                order_id,
                like.merchant_id,
                like.terminal_id,
                like.card_token,
                like.amount_minor,
                like.currency,
            )
        merchant = self.population.merchant() if merchant is None else merchant
        return OrderSpec(
            order_id=order_id,
            merchant_id=merchant.merchant_id,
            terminal_id=self.population.terminal(merchant),
            card_token=self.population.card_token(),
            amount_minor=self.population.amount(self.timing.max_amount),
            currency=merchant.currency,
        )

    def terminal(
        self,
        order: OrderSpec,
        event_type: str,
        event_time: int,
        *,
        attempt: int = 1,
        decline_code: str | None = None,
        ingest: int | None = None,
    ) -> Line:
        record: Record = {
            "event_id": self.ids.event(),
            "order_id": order.order_id,
            "merchant_id": order.merchant_id,
            "terminal_id": order.terminal_id,
            "event_type": event_type,
            "amount_minor": order.amount_minor,
            "currency": order.currency,
            "card_token": order.card_token,
            "event_time": event_time,
            "attempt": attempt,
            "decline_code": decline_code,
        }
        delay = self.timing.terminal_ingest_delay
        return Line(TERMINAL, self._arrival(order, TERMINAL, event_time, delay, ingest), record)

    def notice(
        self,
        order: OrderSpec,
        status: str,
        settled_at: int,
        *,
        amount_minor: int | None = None,
        currency: str | None = None,
        ingest: int | None = None,
        capture: tuple[int, int] | None = None,
        fee_minor: int | None = None,
    ) -> Line:
        """A settlement notice; ``capture`` (capture_seq, capture_count) adds the v2 fields (v1 records lack them);
        a SETTLED notice of a priced merchant carries its correct fee unless ``fee_minor`` says otherwise."""
        amount = order.amount_minor if amount_minor is None else amount_minor
        if fee_minor is None and status == SETTLED:
            fee_minor = self.terms.fee(order.merchant_id, amount)
        record: Record = {
            "notice_id": self.ids.notice(),
            "order_id": order.order_id,
            "merchant_id": order.merchant_id,
            "status": status,
            "amount_minor": amount,
            "currency": order.currency if currency is None else currency,
            "settled_at": settled_at,
            "batch_id": self._batch_id(order, settled_at),
            "fee_minor": fee_minor if fee_minor is not None else self._unpriced_fee(status, amount),
        }
        if capture is not None:
            record["capture_seq"], record["capture_count"] = capture
        delay = self.timing.settlement_ingest_delay
        return Line(SETTLEMENT, self._arrival(order, SETTLEMENT, settled_at, delay, ingest), record)

    def _unpriced_fee(self, status: str, amount: int) -> int:
        return amount * self.rng.randint(5, 30) // 1000 if status == SETTLED else 0

    @staticmethod
    def redeliver(line: Line, ingest: int) -> Line:
        """The same record again (same id), arriving at ``ingest`` (after the original)."""
        if line.record is None or ingest <= line.ingest_time:
            raise ValueError("a redelivery repeats a record, after it")
        return Line(line.source, ingest, dict(line.record))

    def _arrival(
        self, order: OrderSpec, source: Source, event_time: int, delay: tuple[int, int], ingest: int | None
    ) -> int:
        at = event_time + self.rng.randint(*delay) if ingest is None else ingest
        at = max(at, order.last_ingest.get(source, at - 1) + 1)
        order.last_ingest[source] = at
        return at

    def _batch_id(self, order: OrderSpec, settled_at: int) -> str | None:
        if self.rng.random() < 0.1:
            return None
        return f"b-{order.merchant_id}-{settled_at // 86_400_000}"
