"""Settlement batches of a simulation (contract v2): control records, the faults put in, and the truth.

``plan_batches`` runs once the orders' traffic is generated, with a random source of its own (the orders'
draws stay as they were): it cuts the notices into batches (sim/batch_files.py), writes each batch's control
record as a ``"source": "batch"`` line and puts a fault in ``fault_rate`` of the batches (drawn by the
``batch_*`` weights of the mix). A fault never changes what an order receives: a missing notice is one the
control record counts and nobody sends, an extra notice one the control record leaves out.

Faults (fault: what happens → final status, batch alerts that open, those that resolve):

- none: the control record on time, its totals the notices' → BALANCED;
- batch_missing_notice: the control counts one notice more → INCOMPLETE, BATCH_INCOMPLETE;
- batch_extra_notice: the control leaves one SETTLED notice out → MISMATCH, BATCH_MISMATCH;
- batch_amount_off, batch_fee_off: the control's gross or fee off by a little → MISMATCH, BATCH_MISMATCH;
- batch_late_control: the control after the deadline → BALANCED (variant balanced), or, counting one notice
  more, INCOMPLETE, BATCH_INCOMPLETE at once (variant short);
- batch_repeated_control: the same control record again (a redelivery) → BALANCED;
- batch_replaced_control: a wrong control replaced by the right one before the deadline → BALANCED (variant
  before_decision), or after it → BALANCED, BATCH_INCOMPLETE / BATCH_MISMATCH opened and resolved (variants
  incomplete, mismatch);
- batch_late_notice: one notice arrives after the deadline → BALANCED, BATCH_INCOMPLETE opened and resolved
  (variant included), or one the control leaves out, after the batch balanced → MISMATCH, BATCH_MISMATCH
  (variant extra).

Where the contract is open the truth follows the batch ledger's decisions (notes/H8_batches.md): after the
decision the status follows the totals at once; an alert opens once per kind until the batch balances, which
resolves every open one. Only cases whose result does not hang on a close race are generated: whatever must
happen after a batch's deadline (closed_at + batch_grace_ms) arrives an hour or more after it, with a race
declared for every partition (the batch watermark is their minimum; sim/pacing.py adds pacemakers where a
partition's traffic is thin), and everything else arrives long before it.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from posrecon.config import RuleConfig
from posrecon.sim.batch_files import BatchFile, cut_batches
from posrecon.sim.line import Line
from posrecon.sim.scenarios import Race
from posrecon.sim.terms import MerchantTerms
from posrecon.sim.timing import HOUR, MINUTE, Timing
from posrecon.sim.truth import BatchExpectation
from posrecon.sim.vocabulary import (
    AUTH_APPROVED,
    BALANCED,
    BATCH,
    BATCH_INCOMPLETE,
    BATCH_MISMATCH,
    INCOMPLETE,
    MISMATCH,
    SETTLED,
    TERMINAL,
)

#: control record on time: this long after closed_at
CONTROL_DELAY = (1 * MINUTE, 10 * MINUTE)
#: a repeated control record: this long after the first
REPEAT_DELAY = (5 * MINUTE, 3 * HOUR)
#: a replacement before the decision: this long after closed_at (well inside the grace)
EARLY_REPLACEMENT = (12 * MINUTE, 20 * MINUTE)
#: whatever must come after the decision: this long after the deadline (+ allowed lateness)
AFTER_DEADLINE = (1 * HOUR, 2 * HOUR)
#: a delayed notice still arrives this long before its order's settlement SLA passes
SLA_MARGIN = 2 * HOUR
#: room the grace must leave: a control record or a replacement on time arrives up to EARLY_REPLACEMENT late
MIN_GRACE_ROOM = 25 * MINUTE

Totals = tuple[int, int, int]  # (count, gross, fee)


def check_batch_rules(rules: RuleConfig) -> None:
    """Raise ValueError when batch_grace_ms leaves no room for on-time control records."""
    if rules.batch_grace_ms < rules.max_clock_skew_ms + MIN_GRACE_ROOM:
        raise ValueError(
            "rule parameters outside what the simulator models: batch_grace_ms must be >= max_clock_skew_ms + 25 min"
            " (control records and their replacements arrive up to 20 min after closed_at)"
        )


@dataclass(slots=True)
class BatchPlan:
    """All lines (control records added, delayed notices moved; sorted by ingest time), the races the truth relies
    on, and the truth per batch."""

    lines: list[Line]
    races: list[Race] = field(default_factory=list)
    batches: dict[str, BatchExpectation] = field(default_factory=dict)


@dataclass(slots=True)
class _Outcome:
    """What one batch gets: its control lines, lines moved (old → new), races and expectation."""

    controls: list[Line]
    expectation: BatchExpectation
    moved: dict[int, Line] = field(default_factory=dict)
    races: list[Race] = field(default_factory=list)


class _Faults:
    def __init__(
        self, rng: random.Random, timing: Timing, terms: MerchantTerms, approvals: Mapping[str, int], room_until: int
    ) -> None:
        self.rng = rng
        self.timing = timing
        self.terms = terms
        self.approvals = approvals  # approved_at of the normal orders (their only notice may be delayed)
        self.room_until = room_until  # deadlines after this are too near the end of the traffic for a race
        self.rules = timing.rules

    # --- building blocks ----------------------------------------------------------------------------------

    def deadline(self, batch: BatchFile) -> int:
        return batch.closed_at + self.rules.batch_grace_ms

    def after_deadline(self, batch: BatchFile) -> int:
        return self.deadline(batch) + self.timing.lateness + self.rng.randint(*AFTER_DEADLINE)

    def on_time(self, batch: BatchFile) -> int:
        return batch.closed_at + self.rng.randint(*CONTROL_DELAY)

    def control(self, batch: BatchFile, totals: Totals, ingest: int) -> Line:
        count, gross, fee = totals
        record = {
            "batch_id": batch.batch_id,
            "merchant_id": batch.merchant_id,
            "currency": batch.currency,
            "notice_count": count,
            "gross_amount_minor": gross,
            "fee_amount_minor": fee,
            "closed_at": batch.closed_at,
        }
        return Line(BATCH, ingest, record)

    def race(self, batch: BatchFile, line: Line) -> Race:
        return Race(self.deadline(batch), line, batch.batch_id, everywhere=True)

    def phantom(self, batch: BatchFile) -> Totals:
        """A notice the control record counts and nobody sends."""
        amount = self.rng.randint(100, self.timing.max_amount)
        fee = self.terms.fee(batch.merchant_id, amount) if batch.merchant_id is not None else None
        return 1, amount, amount * self.rng.randint(5, 30) // 1000 if fee is None else fee

    @staticmethod
    def without(totals: Totals, line: Line) -> Totals:
        """``totals`` leaving out the SETTLED notice of ``line``."""
        assert line.record is not None
        return totals[0] - 1, totals[1] - line.record["amount_minor"], totals[2] - line.record["fee_minor"]

    @staticmethod
    def plus(totals: Totals, extra: Totals) -> Totals:
        return totals[0] + extra[0], totals[1] + extra[1], totals[2] + extra[2]

    @staticmethod
    def expect(
        totals: Totals,
        received: Totals,
        status: str,
        *alerts: str,
        resolved: Sequence[str] = (),
        fault: str = "",
        variant: str = "",
    ) -> BatchExpectation:
        flat = (totals[0], received[0], totals[1], received[1], totals[2], received[2])
        return BatchExpectation(status, alerts, tuple(resolved), flat, fault, variant)

    def settled(self, batch: BatchFile) -> list[Line]:
        return [line for line in batch.counted if line.record is not None and line.record["status"] == SETTLED]

    def racing_room(self, batch: BatchFile) -> bool:
        return self.deadline(batch) + self.timing.lateness + AFTER_DEADLINE[1] <= self.room_until

    def delayable(self, batch: BatchFile, single: set[str]) -> Line | None:
        """The batch's latest SETTLED notice of a normal order that can arrive after the deadline and still before
        its order's SLA (so the order's own truth stays as it is); None if there is none."""
        latest_arrival = self.deadline(batch) + self.timing.lateness + AFTER_DEADLINE[1]
        sla = self.rules.settlement_sla_ms + self.timing.lateness
        for line in reversed(self.settled(batch)):
            record = line.record
            assert record is not None
            approved_at = self.approvals.get(record["order_id"])
            if approved_at is not None and record["notice_id"] in single:
                if latest_arrival + SLA_MARGIN <= approved_at + sla:
                    return line
        return None

    # --- the faults ----------------------------------------------------------------------------------------

    def none(self, batch: BatchFile, got: Totals) -> _Outcome:
        return _Outcome([self.control(batch, got, self.on_time(batch))], self.expect(got, got, BALANCED))

    def batch_missing_notice(self, batch: BatchFile, got: Totals) -> _Outcome:
        claimed = self.plus(got, self.phantom(batch))
        exp = self.expect(claimed, got, INCOMPLETE, BATCH_INCOMPLETE, fault="batch_missing_notice")
        return _Outcome([self.control(batch, claimed, self.on_time(batch))], exp)

    def batch_extra_notice(self, batch: BatchFile, got: Totals) -> _Outcome:
        claimed = self.without(got, self.rng.choice(self.settled(batch)))
        exp = self.expect(claimed, got, MISMATCH, BATCH_MISMATCH, fault="batch_extra_notice")
        return _Outcome([self.control(batch, claimed, self.on_time(batch))], exp)

    def batch_amount_off(self, batch: BatchFile, got: Totals) -> _Outcome:
        claimed = (got[0], got[1] + self.rng.choice((-1, 1)) * self.rng.randint(1, 5_000), got[2])
        exp = self.expect(claimed, got, MISMATCH, BATCH_MISMATCH, fault="batch_amount_off")
        return _Outcome([self.control(batch, claimed, self.on_time(batch))], exp)

    def batch_fee_off(self, batch: BatchFile, got: Totals) -> _Outcome:
        off = self.rng.randint(1, 500)
        claimed = (got[0], got[1], got[2] - off if got[2] >= off and self.rng.random() < 0.5 else got[2] + off)
        exp = self.expect(claimed, got, MISMATCH, BATCH_MISMATCH, fault="batch_fee_off")
        return _Outcome([self.control(batch, claimed, self.on_time(batch))], exp)

    def batch_late_control(self, batch: BatchFile, got: Totals) -> _Outcome:
        late = self.control(batch, got, self.after_deadline(batch))
        if self.rng.random() < 0.5:
            exp = self.expect(got, got, BALANCED, fault="batch_late_control", variant="balanced")
        else:  # counting one notice more: decided at once when it comes
            claimed = self.plus(got, self.phantom(batch))
            late = self.control(batch, claimed, late.ingest_time)
            exp = self.expect(claimed, got, INCOMPLETE, BATCH_INCOMPLETE, fault="batch_late_control", variant="short")
        return _Outcome([late], exp, races=[self.race(batch, late)])

    def batch_repeated_control(self, batch: BatchFile, got: Totals) -> _Outcome:
        first = self.control(batch, got, self.on_time(batch))
        again = self.control(batch, got, first.ingest_time + self.rng.randint(*REPEAT_DELAY))
        return _Outcome([first, again], self.expect(got, got, BALANCED, fault="batch_repeated_control"))

    def batch_replaced_control(self, batch: BatchFile, got: Totals) -> _Outcome:
        variant = self.rng.choice(("before_decision", "incomplete", "mismatch"))
        if variant == "mismatch":
            wrong = (got[0], got[1] + self.rng.randint(1, 5_000), got[2])
        else:
            wrong = self.plus(got, self.phantom(batch))
        first = self.control(batch, wrong, self.on_time(batch))
        if variant == "before_decision":
            fixed = self.control(batch, got, batch.closed_at + self.rng.randint(*EARLY_REPLACEMENT))
            exp = self.expect(got, got, BALANCED, fault="batch_replaced_control", variant=variant)
            return _Outcome([first, fixed], exp)
        fixed = self.control(batch, got, self.after_deadline(batch))
        kind = BATCH_MISMATCH if variant == "mismatch" else BATCH_INCOMPLETE
        exp = self.expect(got, got, BALANCED, kind, resolved=(kind,), fault="batch_replaced_control", variant=variant)
        return _Outcome([first, fixed], exp, races=[self.race(batch, fixed)])

    def batch_late_notice(self, batch: BatchFile, got: Totals, late: Line) -> _Outcome:
        moved = dataclasses.replace(late, ingest_time=self.after_deadline(batch))
        if self.rng.random() < 0.5:
            exp = self.expect(
                got,
                got,
                BALANCED,
                BATCH_INCOMPLETE,
                resolved=(BATCH_INCOMPLETE,),
                fault="batch_late_notice",
                variant="included",
            )
            claimed = got
        else:  # a notice the control leaves out, after the batch balanced without it
            claimed = self.without(got, late)
            exp = self.expect(claimed, got, MISMATCH, BATCH_MISMATCH, fault="batch_late_notice", variant="extra")
        control = self.control(batch, claimed, self.on_time(batch))
        return _Outcome([control], exp, moved={id(late): moved}, races=[self.race(batch, moved)])


def plan_batches(
    lines: Sequence[Line],
    seed: int,
    timing: Timing,
    terms: MerchantTerms,
    home_currency: Mapping[str, str],
    normal_orders: Iterable[str],
    fault_rate: float,
    weights: Mapping[str, float],
    room_until: int,
) -> BatchPlan:
    """Batches for ``lines`` (their notices' batch_ids are set in place), with control records and faults."""
    check_batch_rules(timing.rules)
    rng = random.Random(f"posrecon-sim-batches-{seed}")
    batches = cut_batches(lines, rng, seed, home_currency)
    normal = set(normal_orders)
    approvals = {
        line.record["order_id"]: line.record["event_time"]
        for line in lines
        if line.source == TERMINAL
        and line.valid
        and line.record is not None
        and line.record["event_type"] == AUTH_APPROVED
        and line.record["order_id"] in normal
    }
    single = _single_copy_notices(lines)
    faults = _Faults(rng, timing, terms, approvals, room_until)
    plan = BatchPlan([])
    moved: dict[int, Line] = {}
    controls: list[Line] = []
    for batch in batches:
        got = batch.received()
        outcome = _draw(faults, batch, got, single, fault_rate, weights)
        controls += outcome.controls
        moved.update(outcome.moved)
        plan.races += outcome.races
        plan.batches[batch.batch_id] = outcome.expectation
    plan.lines = [moved.get(id(line), line) for line in lines] + controls
    plan.lines.sort(key=lambda line: line.ingest_time)
    return plan


def _draw(
    faults: _Faults, batch: BatchFile, got: Totals, single: set[str], fault_rate: float, weights: Mapping[str, float]
) -> _Outcome:
    """The batch's fault, among those it has room for (none for 1 − fault_rate of the batches)."""
    rng = faults.rng
    if rng.random() >= fault_rate:
        return faults.none(batch, got)
    racing = faults.racing_room(batch)
    late = faults.delayable(batch, single) if racing and weights.get("batch_late_notice", 0) > 0 else None
    feasible: dict[str, Callable[[], _Outcome]] = {
        "batch_missing_notice": lambda: faults.batch_missing_notice(batch, got),
        "batch_amount_off": lambda: faults.batch_amount_off(batch, got),
        "batch_fee_off": lambda: faults.batch_fee_off(batch, got),
        "batch_repeated_control": lambda: faults.batch_repeated_control(batch, got),
    }
    if faults.settled(batch):
        feasible["batch_extra_notice"] = lambda: faults.batch_extra_notice(batch, got)
    if racing:
        feasible["batch_late_control"] = lambda: faults.batch_late_control(batch, got)
        feasible["batch_replaced_control"] = lambda: faults.batch_replaced_control(batch, got)
    if late is not None:
        feasible["batch_late_notice"] = lambda: faults.batch_late_notice(batch, got, late)
    names = [name for name in weights if weights[name] > 0 and name in feasible]
    if not names:
        return faults.none(batch, got)
    name = rng.choices(names, weights=[weights[name] for name in names], k=1)[0]
    return feasible[name]()


def _single_copy_notices(lines: Iterable[Line]) -> set[str]:
    """Notice ids that appear on exactly one line (no redelivery): the only ones a fault may delay."""
    seen: dict[str, int] = {}
    for line in lines:
        if line.source != TERMINAL and line.source != BATCH and line.record is not None:
            notice_id = line.record.get("notice_id")
            if isinstance(notice_id, str):
                seen[notice_id] = seen.get(notice_id, 0) + 1
    return {notice_id for notice_id, n in seen.items() if n == 1}
