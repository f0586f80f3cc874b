"""What a scenario is: a function emitting one order's lines and expectations, plus shared steps."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from posrecon.sim.line import Line
from posrecon.sim.population import Merchant
from posrecon.sim.records import OrderSpec, RecordFactory
from posrecon.sim.timing import Timing
from posrecon.sim.truth import Expectation
from posrecon.sim.vocabulary import AUTH_APPROVED, AUTH_DECLINED, ORDER_CREATED, SETTLED

#: capture fields of a notice that settles in one part (contract v2 records carry them explicitly)
WHOLE = (1, 1)

DECLINE_CODES = ("05", "51", "54", "61", "65", "91")


@dataclass(eq=False, slots=True)
class Race:
    """``deadline`` must have fired (the watermark of other traffic passed it) before ``line`` arrives: on the
    partition of ``order_id``, or with ``everywhere`` on every partition (a settlement batch's watermark is the
    minimum over them; ``order_id`` then names the batch)."""

    deadline: int
    line: Line
    order_id: str
    everywhere: bool = False


@dataclass(slots=True)
class Emitted:
    """The lines of one scenario instance and what a correct engine must make of them."""

    scenario: str
    lines: list[Line] = field(default_factory=list)
    expectations: dict[str, Expectation] = field(default_factory=dict)
    races: list[Race] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, line: Line) -> Line:
        self.lines.append(line)
        return line

    def expect(
        self,
        order: OrderSpec,
        outcome: str | None,
        *alerts: str,
        resolved: tuple[str, ...] = (),
        key: str | None = None,
    ) -> None:
        """What ``order`` must end as: outcome, OPEN alert kinds, the kinds of those that resolve. ``key``: the
        order id the outputs carry when it differs from the record's (a masked card number)."""
        self.expectations[order.order_id if key is None else key] = Expectation(
            outcome, alerts, self.scenario, resolved
        )

    def race(self, deadline: int, line: Line, order: OrderSpec) -> None:
        self.races.append(Race(deadline, line, order.order_id))

    def note(self, variant: str) -> None:
        self.notes.append(f"{self.scenario}.{variant}")


class Kit:
    """What scenarios build with: the record factory, the random source and the time layout."""

    def __init__(self, records: RecordFactory) -> None:
        self.records = records
        self.rng: random.Random = records.rng
        self.timing: Timing = records.timing

    def delay(self, span: tuple[int, int]) -> int:
        return self.rng.randint(*span)

    def decline_code(self) -> str:
        return self.rng.choice(DECLINE_CODES)

    def create_and_approve(self, em: Emitted, order: OrderSpec, start: int) -> int:
        """ORDER_CREATED at ``start``, AUTH_APPROVED a few seconds later; returns the approval time."""
        em.add(self.records.terminal(order, ORDER_CREATED, start))
        approved_at = start + self.delay(self.timing.approval_delay)
        em.add(self.records.terminal(order, AUTH_APPROVED, approved_at))
        return approved_at

    def create_and_decline(self, em: Emitted, order: OrderSpec, start: int) -> int:
        """ORDER_CREATED at ``start``, AUTH_DECLINED (with a decline code) a few seconds later; returns its time."""
        em.add(self.records.terminal(order, ORDER_CREATED, start))
        declined_at = start + self.delay(self.timing.approval_delay)
        em.add(self.records.terminal(order, AUTH_DECLINED, declined_at, decline_code=self.decline_code()))
        return declined_at

    def settle_on_time(
        self,
        em: Emitted,
        order: OrderSpec,
        approved_at: int,
        status: str = SETTLED,
        capture: tuple[int, int] | None = None,
    ) -> Line:
        return em.add(
            self.records.notice(order, status, approved_at + self.delay(self.timing.settle_lag), capture=capture)
        )

    # contract v2 helpers

    def merchant_where(self, wanted: Callable[[Merchant], bool]) -> Merchant:
        """A merchant (by popularity) meeting ``wanted``; the first such in the population if the draws miss."""
        population = self.records.population
        for _ in range(64):
            merchant = population.merchant()
            if wanted(merchant):
                return merchant
        return next(m for m in population.merchants if wanted(m))

    def tolerance(self, order: OrderSpec) -> int:
        return self.records.terms.tolerance(order.merchant_id, order.amount_minor)

    def split(self, total: int, parts: int) -> list[int]:
        """``total`` in ``parts`` positive amounts, each within ±25 % of an even share."""
        share = total // parts
        jitter = share // (4 * (parts - 1))  # the last part takes the others' jitter: it stays within ±25 % too
        amounts = [share + self.rng.randint(-jitter, jitter) for _ in range(parts - 1)]
        amounts.append(total - sum(amounts))
        if min(amounts) < 1:
            raise ValueError(f"cannot split {total} in {parts} parts")
        return amounts


Build = Callable[[Kit, int], Emitted]


@dataclass(frozen=True, slots=True)
class Scenario:
    """A named way an order can go. ``horizon`` is set for deadline-sensitive scenarios: how long after
    its start the order's last record or deadline lies (they are only started early enough in the span
    that other traffic carries the watermark past their deadlines)."""

    name: str
    build: Build
    horizon: Callable[[Timing], int] | None = None
    orders: int = 1
