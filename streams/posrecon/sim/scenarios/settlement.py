"""Approved orders and what the settlement side makes of them."""

from __future__ import annotations

from posrecon.sim.records import OrderSpec
from posrecon.sim.scenarios.base import Emitted, Kit
from posrecon.sim.timing import HOUR, MINUTE, SECOND, Timing
from posrecon.sim.vocabulary import (
    AMOUNT_MISMATCH,
    AMOUNT_MISMATCH_OUTCOME,
    AUTH_APPROVED,
    DUPLICATE_SETTLEMENT,
    FAILED,
    LATE_SETTLEMENT,
    MATCHED,
    MATCHED_LATE,
    MISSING_SETTLEMENT,
    ORDER_CREATED,
    REVERSED,
    REVERSED_OUTCOME,
    SETTLED,
    SETTLEMENT_FAILED,
    STATUS_CONFLICT,
)

#: share of normal orders whose settlement arrives before their approval
OUT_OF_ORDER_SHARE = 0.10


def normal(kit: Kit, start: int) -> Emitted:
    """Created, approved, settled for the same amount: MATCHED. Some settlements overtake the approval."""
    em = Emitted("normal")
    order = kit.records.new_order()
    if kit.rng.random() < OUT_OF_ORDER_SHARE:
        _settlement_first(kit, em, order, start)
    else:
        kit.settle_on_time(em, order, kit.create_and_approve(em, order, start))
    em.expect(order, MATCHED)
    return em


def _settlement_first(kit: Kit, em: Emitted, order: OrderSpec, start: int) -> None:
    em.note("out_of_order")
    em.add(kit.records.terminal(order, ORDER_CREATED, start))
    approved_at = start + kit.delay(kit.timing.approval_delay)
    settled_at = approved_at + kit.rng.randint(1 * SECOND, 20 * SECOND)
    settlement_ingest = settled_at + kit.rng.randint(0, 5 * SECOND)
    approval_ingest = settlement_ingest + kit.rng.randint(1 * SECOND, 10 * SECOND)
    em.add(kit.records.notice(order, SETTLED, settled_at, ingest=settlement_ingest))
    em.add(kit.records.terminal(order, AUTH_APPROVED, approved_at, ingest=approval_ingest))


def redelivery(kit: Kit, start: int) -> Emitted:
    """A normal order with a terminal event and/or the notice delivered again verbatim: MATCHED."""
    em = Emitted("redelivery")
    order = kit.records.new_order()
    kit.create_and_approve(em, order, start)
    created, approved = em.lines
    notice = kit.settle_on_time(em, order, approved.event_time or start)
    variant = kit.rng.choice(("terminal", "notice", "both"))
    em.note(variant)
    if variant in ("terminal", "both"):
        original = kit.rng.choice((created, approved))
        at = (original.event_time or start) + kit.delay(kit.timing.terminal_redelivery_delay)
        em.add(kit.records.redeliver(original, max(at, original.ingest_time + 1)))
    if variant in ("notice", "both"):
        em.add(kit.records.redeliver(notice, notice.ingest_time + kit.rng.randint(MINUTE, 6 * HOUR)))
    em.expect(order, MATCHED)
    return em


def late(kit: Kit, start: int) -> Emitted:
    """Settled beyond the SLA: MISSING_SETTLEMENT when the SLA passes, then LATE_SETTLEMENT: MATCHED_LATE.
    Contract v2: the late settlement resolves the MISSING_SETTLEMENT."""
    em = Emitted("late")
    order = kit.records.new_order()
    approved_at = kit.create_and_approve(em, order, start)
    notice = em.add(kit.records.notice(order, SETTLED, approved_at + kit.delay(kit.timing.late_lag)))
    em.race(approved_at + kit.timing.rules.settlement_sla_ms, notice, order)
    em.expect(order, MATCHED_LATE, LATE_SETTLEMENT, MISSING_SETTLEMENT, resolved=(MISSING_SETTLEMENT,))
    return em


def late_horizon(timing: Timing) -> int:
    return timing.approval_delay[1] + timing.late_lag[1] + timing.settlement_ingest_delay[1]


def missing(kit: Kit, start: int) -> Emitted:
    """Approved, never settled: MISSING_SETTLEMENT, no reconciled record."""
    em = Emitted("missing")
    order = kit.records.new_order()
    kit.create_and_approve(em, order, start)
    em.expect(order, None, MISSING_SETTLEMENT)
    return em


def missing_horizon(timing: Timing) -> int:
    return timing.approval_delay[1] + timing.rules.settlement_sla_ms + timing.lateness


def amount_mismatch(kit: Kit, start: int) -> Emitted:
    """Settled for another amount (beyond the tolerance): AMOUNT_MISMATCH."""
    em = Emitted("amount_mismatch")
    order = kit.records.new_order()
    approved_at = kit.create_and_approve(em, order, start)
    rules = kit.timing.rules
    delta = kit.tolerance(order) + 1 + kit.rng.randint(0, order.amount_minor // 5)  # the merchant's (v2)
    up = order.amount_minor + delta <= rules.max_amount_minor
    down = order.amount_minor - delta >= 1
    settled_amount = (
        order.amount_minor + delta if up and (not down or kit.rng.random() < 0.5) else order.amount_minor - delta
    )
    settled_at = approved_at + kit.delay(kit.timing.settle_lag)
    em.add(kit.records.notice(order, SETTLED, settled_at, amount_minor=settled_amount))
    em.expect(order, AMOUNT_MISMATCH_OUTCOME, AMOUNT_MISMATCH)
    return em


def currency_mismatch(kit: Kit, start: int) -> Emitted:
    """Settled for the same amount in another currency: AMOUNT_MISMATCH."""
    em = Emitted("currency_mismatch")
    order = kit.records.new_order()
    approved_at = kit.create_and_approve(em, order, start)
    settled_at = approved_at + kit.delay(kit.timing.settle_lag)
    other = kit.records.population.other_currency(order.currency)
    em.add(kit.records.notice(order, SETTLED, settled_at, currency=other))
    em.expect(order, AMOUNT_MISMATCH_OUTCOME, AMOUNT_MISMATCH)
    return em


def failed(kit: Kit, start: int) -> Emitted:
    """Approved, the bank reports FAILED: STATUS_CONFLICT alert, SETTLEMENT_FAILED."""
    em = Emitted("failed")
    order = kit.records.new_order()
    kit.settle_on_time(em, order, kit.create_and_approve(em, order, start), status=FAILED)
    em.expect(order, SETTLEMENT_FAILED, STATUS_CONFLICT)
    return em


def reversed_(kit: Kit, start: int) -> Emitted:
    """Settled, then REVERSED 1–2 h later: MATCHED, then REVERSED; no alert."""
    em = Emitted("reversed")
    order = kit.records.new_order()
    settled = kit.settle_on_time(em, order, kit.create_and_approve(em, order, start))
    reversed_at = (settled.event_time or start) + kit.rng.randint(HOUR, 2 * HOUR)
    em.add(kit.records.notice(order, REVERSED, reversed_at))
    em.expect(order, REVERSED_OUTCOME)
    return em


def duplicate_settlement(kit: Kit, start: int) -> Emitted:
    """Settled twice under two notice ids: DUPLICATE_SETTLEMENT, still MATCHED."""
    em = Emitted("duplicate_settlement")
    order = kit.records.new_order()
    settled = kit.settle_on_time(em, order, kit.create_and_approve(em, order, start))
    again_at = (settled.event_time or start) + kit.rng.randint(5 * MINUTE, 2 * HOUR)
    em.add(kit.records.notice(order, SETTLED, again_at))
    em.expect(order, MATCHED, DUPLICATE_SETTLEMENT)
    return em
