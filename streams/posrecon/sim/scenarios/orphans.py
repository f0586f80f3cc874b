"""Settlements the terminal side cannot account for (at least not in time)."""

from __future__ import annotations

from posrecon.sim.scenarios.base import Emitted, Kit
from posrecon.sim.timing import SECOND, Timing
from posrecon.sim.vocabulary import (
    AUTH_APPROVED,
    AUTH_TIMEOUT,
    EXPIRED_ORDER,
    MATCHED,
    ORDER_CREATED,
    ORPHAN_SETTLEMENT,
    SETTLED,
    UNMATCHED_SETTLEMENT,
)


def orphan_silent(kit: Kit, start: int) -> Emitted:
    """Only a SETTLED notice, the terminal never speaks: ORPHAN_SETTLEMENT, UNMATCHED_SETTLEMENT."""
    em = Emitted("orphan_silent")
    order = kit.records.new_order()
    em.add(kit.records.notice(order, SETTLED, start))
    em.expect(order, UNMATCHED_SETTLEMENT, ORPHAN_SETTLEMENT)
    return em


def orphan_horizon(timing: Timing) -> int:
    return timing.rules.orphan_grace_ms + timing.lateness


def orphan_then_approved(kit: Kit, start: int) -> Emitted:
    """SETTLED first; the approval turns up hours later: ORPHAN_SETTLEMENT, then MATCHED (revision 2).
    Contract v2: the approval resolves the ORPHAN_SETTLEMENT."""
    em = Emitted("orphan_then_approved")
    order = kit.records.new_order()
    em.add(kit.records.notice(order, SETTLED, start))
    approval = em.add(kit.records.terminal(order, AUTH_APPROVED, start + kit.delay(kit.timing.orphan_approval_lag)))
    em.race(start + kit.timing.rules.orphan_grace_ms, approval, order)
    em.expect(order, MATCHED, ORPHAN_SETTLEMENT, resolved=(ORPHAN_SETTLEMENT,))
    return em


def orphan_then_approved_horizon(timing: Timing) -> int:
    return timing.orphan_approval_lag[1] + timing.terminal_ingest_delay[1]


def timeout_charged(kit: Kit, start: int) -> Emitted:
    """The authorisation timed out yet the card was charged: EXPIRED_ORDER and ORPHAN_SETTLEMENT."""
    em = Emitted("timeout_charged")
    order = kit.records.new_order()
    em.add(kit.records.terminal(order, ORDER_CREATED, start))
    timed_out_at = start + kit.rng.randint(25 * SECOND, 35 * SECOND)
    em.add(kit.records.terminal(order, AUTH_TIMEOUT, timed_out_at))
    em.add(kit.records.notice(order, SETTLED, timed_out_at + kit.delay(kit.timing.timeout_settle_lag)))
    em.expect(order, UNMATCHED_SETTLEMENT, EXPIRED_ORDER, ORPHAN_SETTLEMENT)
    return em


def timeout_charged_horizon(timing: Timing) -> int:
    return 35 * SECOND + timing.timeout_settle_lag[1] + timing.rules.orphan_grace_ms + timing.lateness
