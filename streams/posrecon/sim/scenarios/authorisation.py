"""Orders shaped by the terminal side: declines, voids, double charges, orders that never complete."""

from __future__ import annotations

from posrecon.sim.scenarios.base import Emitted, Kit
from posrecon.sim.timing import MINUTE, SECOND, Timing
from posrecon.sim.vocabulary import (
    AUTH_APPROVED,
    DUPLICATE_CHARGE,
    EXPIRED_ORDER,
    MATCHED,
    ORDER_CREATED,
    SETTLED,
    STATUS_CONFLICT,
    STATUS_CONFLICT_OUTCOME,
    VOIDED,
)


def declined(kit: Kit, start: int) -> Emitted:
    """Created, declined: nothing to reconcile, no alert."""
    return _declined(kit, start, "declined")


def pacemaker(kit: Kit, start: int, order_id: str) -> Emitted:
    """A declined order placed to carry the watermark past a deadline (added only when traffic is thin)."""
    return _declined(kit, start, "pacemaker", order_id)


def _declined(kit: Kit, start: int, scenario: str, order_id: str | None = None) -> Emitted:
    em = Emitted(scenario)
    order = kit.records.new_order(order_id=order_id)
    kit.create_and_decline(em, order, start)
    em.expect(order, None)
    return em


def declined_then_approved(kit: Kit, start: int) -> Emitted:
    """Declined on attempt 1, approved on attempt 2, settled: MATCHED, no alert."""
    em = Emitted("declined_then_approved")
    order = kit.records.new_order()
    declined_at = kit.create_and_decline(em, order, start)
    approved_at = declined_at + kit.rng.randint(25 * SECOND, 35 * SECOND)
    em.add(kit.records.terminal(order, AUTH_APPROVED, approved_at, attempt=2))
    kit.settle_on_time(em, order, approved_at)
    em.expect(order, MATCHED)
    return em


def declined_settled(kit: Kit, start: int) -> Emitted:
    """Declined at the terminal, yet the bank settles: STATUS_CONFLICT."""
    em = Emitted("declined_settled")
    order = kit.records.new_order()
    declined_at = kit.create_and_decline(em, order, start)
    kit.settle_on_time(em, order, declined_at)
    em.expect(order, STATUS_CONFLICT_OUTCOME, STATUS_CONFLICT)
    return em


def voided(kit: Kit, start: int) -> Emitted:
    """Approved then voided, never settled: no alert, nothing to reconcile."""
    em = Emitted("voided")
    order = kit.records.new_order()
    approved_at = kit.create_and_approve(em, order, start)
    em.add(kit.records.terminal(order, VOIDED, approved_at + kit.rng.randint(MINUTE, 5 * MINUTE)))
    em.expect(order, None)
    return em


def voided_settled(kit: Kit, start: int) -> Emitted:
    """Approved, voided, settled anyway: STATUS_CONFLICT."""
    em = Emitted("voided_settled")
    order = kit.records.new_order()
    approved_at = kit.create_and_approve(em, order, start)
    em.add(kit.records.terminal(order, VOIDED, approved_at + kit.rng.randint(MINUTE, 5 * MINUTE)))
    kit.settle_on_time(em, order, approved_at)
    em.expect(order, STATUS_CONFLICT_OUTCOME, STATUS_CONFLICT)
    return em


def expired(kit: Kit, start: int) -> Emitted:
    """ORDER_CREATED and nothing else: EXPIRED_ORDER once the TTL passes."""
    em = Emitted("expired")
    order = kit.records.new_order()
    em.add(kit.records.terminal(order, ORDER_CREATED, start))
    em.expect(order, None, EXPIRED_ORDER)
    return em


def expired_horizon(timing: Timing) -> int:
    return timing.rules.order_ttl_ms + timing.lateness


def duplicate_charge_same_order(kit: Kit, start: int) -> Emitted:
    """Approved twice (two event ids, attempt 2), settled once: DUPLICATE_CHARGE, MATCHED."""
    em = Emitted("duplicate_charge_same_order")
    order = kit.records.new_order()
    approved_at = kit.create_and_approve(em, order, start)
    again_at = approved_at + kit.rng.randint(10 * SECOND, 60 * SECOND)
    em.add(kit.records.terminal(order, AUTH_APPROVED, again_at, attempt=2))
    kit.settle_on_time(em, order, approved_at)
    em.expect(order, MATCHED, DUPLICATE_CHARGE)
    return em


def duplicate_charge_cross_order(kit: Kit, start: int) -> Emitted:
    """Two orders charge the same card, merchant, amount and currency minutes apart; both settle.

    Both are MATCHED; the DUPLICATE_CHARGE on the later one is added by the oracle (``sim.oracle``),
    which finds every cross-order double charge in the final arrival order.
    """
    em = Emitted("duplicate_charge_cross_order")
    first = kit.records.new_order()
    if first.card_token is None:
        first.card_token = kit.records.population.known_card_token()
    second = kit.records.new_order(like=first)
    first_approved = kit.create_and_approve(em, first, start)
    kit.settle_on_time(em, first, first_approved)
    second_approved = first_approved + kit.delay(kit.timing.duplicate_charge_gap)
    second_created = second_approved - kit.delay(kit.timing.approval_delay)
    em.add(kit.records.terminal(second, ORDER_CREATED, second_created))
    em.add(kit.records.terminal(second, AUTH_APPROVED, second_approved))
    kit.settle_on_time(em, second, second_approved, status=SETTLED)
    em.expect(first, MATCHED)
    em.expect(second, MATCHED)
    return em
