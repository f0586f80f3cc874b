"""Late arrivals that close an OPEN alert (contract v2 auto-resolution), and orders the bank confirms it never
charged (NOT_CHARGED).

Each deadline the truth relies on is declared as a race, so the alert is OPEN before its clearing record arrives.
"""

from __future__ import annotations

from posrecon.sim.line import Line
from posrecon.sim.records import OrderSpec
from posrecon.sim.scenarios.base import WHOLE, Emitted, Kit
from posrecon.sim.scenarios.captures import emit_parts, plan_parts
from posrecon.sim.scenarios.refunds import refund
from posrecon.sim.timing import HOUR, MINUTE, SECOND, Timing
from posrecon.sim.vocabulary import (
    AUTH_APPROVED,
    AUTH_DECLINED,
    AUTH_TIMEOUT,
    DUPLICATE_SETTLEMENT,
    EXPIRED_ORDER,
    FAILED,
    MATCHED,
    MISSING_SETTLEMENT,
    NOT_CHARGED,
    ORDER_CREATED,
    ORPHAN_SETTLEMENT,
    PARTIALLY_REVERSED,
    REVERSED_OUTCOME,
    SETTLED,
    SETTLEMENT_FAILED,
    STATUS_CONFLICT,
    STATUS_CONFLICT_OUTCOME,
    VOIDED,
)


def missing_then_failed(kit: Kit, start: int) -> Emitted:
    """Approved; the SLA passes (MISSING_SETTLEMENT); then the bank reports FAILED: MISSING_SETTLEMENT resolves,
    the FAILED notice of an approved order gives STATUS_CONFLICT (WARNING) and SETTLEMENT_FAILED as in v1."""
    em = Emitted("missing_then_failed")
    order = kit.records.new_order()
    approved_at = kit.create_and_approve(em, order, start)
    failed = em.add(kit.records.notice(order, FAILED, approved_at + kit.delay(kit.timing.late_lag), capture=WHOLE))
    em.race(approved_at + kit.timing.rules.settlement_sla_ms, failed, order)
    em.expect(order, SETTLEMENT_FAILED, MISSING_SETTLEMENT, STATUS_CONFLICT, resolved=(MISSING_SETTLEMENT,))
    return em


def orphan_then_refused(kit: Kit, start: int) -> Emitted:
    """SETTLED; the grace passes (ORPHAN_SETTLEMENT); hours later the terminal reports AUTH_DECLINED or VOIDED:
    the orphan alert resolves and the settlement of a declined/voided order is a STATUS_CONFLICT (CRITICAL)."""
    em = Emitted("orphan_then_refused")
    order = kit.records.new_order()
    em.add(kit.records.notice(order, SETTLED, start, capture=WHOLE))
    at = start + kit.delay(kit.timing.orphan_approval_lag)
    if kit.rng.random() < 0.5:
        em.note("declined")
        answer = em.add(kit.records.terminal(order, AUTH_DECLINED, at, decline_code=kit.decline_code()))
    else:
        em.note("voided")
        answer = em.add(kit.records.terminal(order, VOIDED, at))
    em.race(start + kit.timing.rules.orphan_grace_ms, answer, order)
    em.expect(order, STATUS_CONFLICT_OUTCOME, ORPHAN_SETTLEMENT, STATUS_CONFLICT, resolved=(ORPHAN_SETTLEMENT,))
    return em


def orphan_then_refused_horizon(timing: Timing) -> int:
    return timing.orphan_approval_lag[1] + timing.terminal_ingest_delay[1]


def expired_then_answered(kit: Kit, start: int) -> Emitted:
    """Created; the TTL passes (EXPIRED_ORDER); then the authorisation answer arrives: the alert resolves.
    Approved (and settled on time after it: MATCHED), declined or voided (nothing to reconcile)."""
    em = Emitted("expired_then_answered")
    order = kit.records.new_order()
    em.add(kit.records.terminal(order, ORDER_CREATED, start))
    at = start + kit.delay(kit.timing.timeout_settle_lag)
    variant = kit.rng.choice((AUTH_APPROVED, AUTH_DECLINED, VOIDED))
    em.note(variant.lower())
    decline_code = kit.decline_code() if variant == AUTH_DECLINED else None
    answer = em.add(kit.records.terminal(order, variant, at, decline_code=decline_code))
    em.race(start + kit.timing.rules.order_ttl_ms, answer, order)
    outcome = None
    if variant == AUTH_APPROVED:
        kit.settle_on_time(em, order, at, capture=WHOLE)
        outcome = MATCHED
    em.expect(order, outcome, EXPIRED_ORDER, resolved=(EXPIRED_ORDER,))
    return em


def expired_then_answered_horizon(timing: Timing) -> int:
    return timing.timeout_settle_lag[1] + timing.settle_lag[1] + timing.settlement_ingest_delay[1]


def not_charged(kit: Kit, start: int) -> Emitted:
    """A FAILED notice for an order never approved: NOT_CHARGED. Silent terminal: nothing else. Created only or
    timed out: EXPIRED_ORDER at the TTL, resolved by the FAILED notice that arrives after it."""
    em = Emitted("not_charged")
    order = kit.records.new_order()
    variant = kit.rng.choice(("silent", "created", "timed_out"))
    em.note(variant)
    if variant == "silent":
        em.add(kit.records.notice(order, FAILED, start, capture=WHOLE))
        em.expect(order, NOT_CHARGED)
        return em
    em.add(kit.records.terminal(order, ORDER_CREATED, start))
    last = start
    if variant == "timed_out":
        last = start + kit.rng.randint(25 * SECOND, 35 * SECOND)
        em.add(kit.records.terminal(order, AUTH_TIMEOUT, last))
    failed = em.add(kit.records.notice(order, FAILED, last + kit.delay(kit.timing.timeout_settle_lag), capture=WHOLE))
    em.race(start + kit.timing.rules.order_ttl_ms, failed, order)
    em.expect(order, NOT_CHARGED, EXPIRED_ORDER, resolved=(EXPIRED_ORDER,))
    return em


def not_charged_horizon(timing: Timing) -> int:
    return 35 * SECOND + timing.timeout_settle_lag[1] + timing.settlement_ingest_delay[1]


def conflict_refunded(kit: Kit, start: int) -> Emitted:
    """Declined (or voided) yet settled: STATUS_CONFLICT (CRITICAL); the bank refunds it all (in 1–2 notices):
    the conflict resolves, the order is REVERSED."""
    em = Emitted("conflict_refunded")
    order = kit.records.new_order()
    if kit.rng.random() < 0.5:
        em.note("declined")
        em.add(kit.records.terminal(order, ORDER_CREATED, start))
        refused_at = start + kit.delay(kit.timing.approval_delay)
        em.add(kit.records.terminal(order, AUTH_DECLINED, refused_at, decline_code=kit.decline_code()))
    else:
        em.note("voided")
        refused_at = kit.create_and_approve(em, order, start)
        em.add(kit.records.terminal(order, VOIDED, refused_at + kit.rng.randint(MINUTE, 5 * MINUTE)))
    settled = kit.settle_on_time(em, order, refused_at, capture=WHOLE)
    amount = order.amount_minor
    refund(kit, em, order, settled, kit.split(amount, 2) if kit.rng.random() < 0.3 else [amount])
    em.expect(order, REVERSED_OUTCOME, STATUS_CONFLICT, resolved=(STATUS_CONFLICT,))
    return em


def duplicate_refunded(kit: Kit, start: int) -> Emitted:
    """A settlement (or one part of a split one) is duplicated; the bank refunds the duplicate's amount: the
    DUPLICATE_SETTLEMENT alert resolves. The refund counts against the settled sum (the duplicate is not counted):
    a whole order is then REVERSED, a split one PARTIALLY_REVERSED."""
    em = Emitted("duplicate_refunded")
    order = kit.records.new_order()
    approved_at = kit.create_and_approve(em, order, start)
    count = kit.rng.choice((1, 2, 3, 4))
    em.note("split" if count > 1 else "whole")
    amounts = kit.split(order.amount_minor, count) if count > 1 else [order.amount_minor]
    parts = plan_parts(kit, approved_at, amounts)
    original = kit.rng.choice(parts)
    duplicate = original._replace(settled_at=original.settled_at + kit.rng.randint(5 * MINUTE, 2 * HOUR))
    lines: list[Line] = emit_parts(kit, em, order, [*parts, duplicate], count)
    refund(kit, em, order, lines[-1], [duplicate.amount_minor])
    outcome = PARTIALLY_REVERSED if count > 1 else REVERSED_OUTCOME
    em.expect(order, outcome, DUPLICATE_SETTLEMENT, resolved=(DUPLICATE_SETTLEMENT,))
    return em


def duplicate_charge_voided(kit: Kit, start: int) -> Emitted:
    """Two orders charge the same card, merchant, amount and currency minutes apart; the later one is VOIDED a few
    minutes after: its DUPLICATE_CHARGE (found and resolved by ``sim.oracle``) resolves; the first is MATCHED."""
    em = Emitted("duplicate_charge_voided")
    first = kit.records.new_order()
    if first.card_token is None:
        first.card_token = kit.records.population.known_card_token()
    second: OrderSpec = kit.records.new_order(like=first)
    first_approved = kit.create_and_approve(em, first, start)
    kit.settle_on_time(em, first, first_approved, capture=WHOLE)
    second_approved = first_approved + kit.delay(kit.timing.duplicate_charge_gap)
    em.add(kit.records.terminal(second, ORDER_CREATED, second_approved - kit.delay(kit.timing.approval_delay)))
    em.add(kit.records.terminal(second, AUTH_APPROVED, second_approved))
    em.add(kit.records.terminal(second, VOIDED, second_approved + kit.rng.randint(MINUTE, 5 * MINUTE)))
    em.expect(first, MATCHED)
    em.expect(second, None)
    return em
