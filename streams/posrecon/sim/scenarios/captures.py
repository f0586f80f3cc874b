"""Split captures (contract v2): an approved order settles in ``capture_count`` = n parts, capture_seq 1..n.

Parts settle at their own times, in any capture_seq order; every notice of a priced merchant carries its fee.
The order is decided when all n parts are in, by the v1 rules on their sum.
"""

from __future__ import annotations

from typing import NamedTuple

from posrecon.sim.line import Line
from posrecon.sim.records import OrderSpec
from posrecon.sim.scenarios.base import Emitted, Kit
from posrecon.sim.timing import HOUR, MINUTE
from posrecon.sim.vocabulary import (
    AMOUNT_MISMATCH,
    AMOUNT_MISMATCH_OUTCOME,
    DUPLICATE_SETTLEMENT,
    LATE_SETTLEMENT,
    MATCHED,
    MATCHED_LATE,
    MISSING_SETTLEMENT,
    PARTIALLY_SETTLED,
    SETTLED,
)

MIN_PARTS, MAX_PARTS = 2, 5


class Part(NamedTuple):
    settled_at: int
    capture_seq: int
    amount_minor: int


def plan_parts(kit: Kit, approved_at: int, amounts: list[int], lag: tuple[int, int] | None = None) -> list[Part]:
    """One part per amount (capture_seq = position + 1), settling on time, in a random capture_seq order."""
    times = sorted(approved_at + kit.delay(lag or kit.timing.settle_lag) for _ in amounts)
    seqs = list(range(1, len(amounts) + 1))
    kit.rng.shuffle(seqs)
    return [Part(at, seq, amounts[seq - 1]) for at, seq in zip(times, seqs, strict=True)]


def plan_split(kit: Kit, order: OrderSpec, approved_at: int) -> tuple[int, list[Part]]:
    """A split of the approved amount into 2-5 parts settling on time: (capture_count, parts)."""
    count = kit.rng.randint(MIN_PARTS, MAX_PARTS)
    return count, plan_parts(kit, approved_at, kit.split(order.amount_minor, count))


def emit_parts(kit: Kit, em: Emitted, order: OrderSpec, parts: list[Part], count: int) -> list[Line]:
    """SETTLED notices for ``parts`` in settled_at order (one order's stream arrives in event-time order)."""
    return [
        em.add(
            kit.records.notice(
                order, SETTLED, p.settled_at, amount_minor=p.amount_minor, capture=(p.capture_seq, count)
            )
        )
        for p in sorted(parts)
    ]


def split_capture(kit: Kit, start: int) -> Emitted:
    """All n parts in on time, summing to the approved amount: MATCHED on the sum. Some parts are redelivered."""
    em = Emitted("split_capture")
    order = kit.records.new_order()
    approved_at = kit.create_and_approve(em, order, start)
    count, parts = plan_split(kit, order, approved_at)
    lines = emit_parts(kit, em, order, parts, count)
    if kit.rng.random() < 0.25:
        em.note("redelivered")
        again = kit.rng.choice(lines)
        em.add(kit.records.redeliver(again, lines[-1].ingest_time + kit.rng.randint(MINUTE, HOUR)))
    em.expect(order, MATCHED)
    return em


def split_capture_late(kit: Kit, start: int) -> Emitted:
    """The last part lands after the SLA: MISSING_SETTLEMENT (k of n, PARTIALLY_SETTLED) at the SLA, resolved when
    the last part arrives; the sum is decided by the v1 rules: LATE_SETTLEMENT, MATCHED_LATE."""
    em = Emitted("split_capture_late")
    order = kit.records.new_order()
    approved_at = kit.create_and_approve(em, order, start)
    count, parts = plan_split(kit, order, approved_at)
    last = parts[-1]._replace(settled_at=approved_at + kit.delay(kit.timing.late_lag))
    lines = emit_parts(kit, em, order, [*parts[:-1], last], count)
    em.race(approved_at + kit.timing.rules.settlement_sla_ms, lines[-1], order)
    em.expect(order, MATCHED_LATE, LATE_SETTLEMENT, MISSING_SETTLEMENT, resolved=(MISSING_SETTLEMENT,))
    return em


def split_capture_missing(kit: Kit, start: int) -> Emitted:
    """Only k of n parts ever settle (1 <= k < n): MISSING_SETTLEMENT "k of n" at the SLA, PARTIALLY_SETTLED."""
    em = Emitted("split_capture_missing")
    order = kit.records.new_order()
    approved_at = kit.create_and_approve(em, order, start)
    count, parts = plan_split(kit, order, approved_at)
    kept = kit.rng.sample(parts, kit.rng.randint(1, count - 1))
    em.note("one_missing" if len(kept) == count - 1 else "several_missing")
    emit_parts(kit, em, order, kept, count)
    em.expect(order, PARTIALLY_SETTLED, MISSING_SETTLEMENT)
    return em


def split_capture_duplicate(kit: Kit, start: int) -> Emitted:
    """All parts in; one capture_seq settles again under another notice_id: DUPLICATE_SETTLEMENT, still MATCHED."""
    em = Emitted("split_capture_duplicate")
    order = kit.records.new_order()
    approved_at = kit.create_and_approve(em, order, start)
    count, parts = plan_split(kit, order, approved_at)
    original = kit.rng.choice(parts)
    duplicate = original._replace(settled_at=original.settled_at + kit.rng.randint(5 * MINUTE, 2 * HOUR))
    emit_parts(kit, em, order, [*parts, duplicate], count)
    em.expect(order, MATCHED, DUPLICATE_SETTLEMENT)
    return em


def split_amount_mismatch(kit: Kit, start: int) -> Emitted:
    """All parts in, their sum off the approved amount beyond the tolerance: over-capture (caught as soon as the
    counted parts exceed it) or under-capture (caught when the last part is in): AMOUNT_MISMATCH."""
    em = Emitted("split_amount_mismatch")
    order = kit.records.new_order()
    approved_at = kit.create_and_approve(em, order, start)
    count = kit.rng.randint(MIN_PARTS, MAX_PARTS)
    delta = kit.tolerance(order) + 1 + kit.rng.randint(0, order.amount_minor // 5)
    under = order.amount_minor - delta >= 4 * count and kit.rng.random() < 0.3
    em.note("under_capture" if under else "over_capture")
    total = order.amount_minor - delta if under else order.amount_minor + delta
    emit_parts(kit, em, order, plan_parts(kit, approved_at, kit.split(total, count)), count)
    em.expect(order, AMOUNT_MISMATCH_OUTCOME, AMOUNT_MISMATCH)
    return em


def split_within_tolerance(kit: Kit, start: int) -> Emitted:
    """A merchant with a tolerance (in basis points): all parts in, their sum off the approved amount by no more
    than the tolerance: MATCHED, no alert."""
    em = Emitted("split_within_tolerance")
    terms = kit.records.terms
    merchant = kit.merchant_where(lambda m: terms.tolerance(m.merchant_id, 100_000) > 0)
    order = kit.records.new_order(merchant=merchant)
    order.amount_minor = min(max(order.amount_minor, 20_000), kit.timing.max_amount)  # room for a tolerance
    approved_at = kit.create_and_approve(em, order, start)
    count = kit.rng.randint(MIN_PARTS, MAX_PARTS)
    tolerance = kit.tolerance(order)
    delta = kit.rng.choice((-1, 1)) * kit.rng.randint(1, tolerance) if tolerance > 0 else 0
    emit_parts(kit, em, order, plan_parts(kit, approved_at, kit.split(order.amount_minor + delta, count)), count)
    em.expect(order, MATCHED)
    return em
