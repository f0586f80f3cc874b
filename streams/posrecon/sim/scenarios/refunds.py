"""Refunds (contract v2): REVERSED notices add up; a partial refund is PARTIALLY_REVERSED, one beyond the
settled amount (plus tolerance) raises AMOUNT_MISMATCH "refund exceeds settlement" and the order is REVERSED."""

from __future__ import annotations

from posrecon.sim.line import Line
from posrecon.sim.records import OrderSpec
from posrecon.sim.scenarios.base import WHOLE, Emitted, Kit
from posrecon.sim.scenarios.captures import emit_parts, plan_parts
from posrecon.sim.timing import HOUR, MINUTE
from posrecon.sim.vocabulary import AMOUNT_MISMATCH, PARTIALLY_REVERSED, REVERSED, REVERSED_OUTCOME


def settle(kit: Kit, em: Emitted, order: OrderSpec, start: int, split_share: float) -> list[Line]:
    """Created, approved and settled on time, in one part or (``split_share`` of the time) in 2–3 parts."""
    approved_at = kit.create_and_approve(em, order, start)
    count = kit.rng.randint(2, 3) if kit.rng.random() < split_share else 1
    if count == 1:
        return [kit.settle_on_time(em, order, approved_at, capture=WHOLE)]
    em.note("split")
    return emit_parts(kit, em, order, plan_parts(kit, approved_at, kit.split(order.amount_minor, count)), count)


def refund(kit: Kit, em: Emitted, order: OrderSpec, after: Line, amounts: list[int]) -> list[Line]:
    """REVERSED notices for ``amounts``, the first 1–2 h after ``after``, the others minutes to an hour apart."""
    at = (after.event_time or 0) + kit.rng.randint(HOUR, 2 * HOUR)
    lines = []
    for amount in amounts:
        lines.append(em.add(kit.records.notice(order, REVERSED, at, amount_minor=amount, capture=WHOLE)))
        at += kit.rng.randint(MINUTE, HOUR)
    return lines


def cut(kit: Kit, total: int, pieces: int) -> list[int]:
    """``total`` in ``pieces`` positive amounts at random cut points (``total`` >= ``pieces``)."""
    points = sorted(kit.rng.sample(range(1, total), pieces - 1)) if pieces > 1 else []
    return [b - a for a, b in zip([0, *points], [*points, total], strict=True)]


def partial_refund(kit: Kit, start: int) -> Emitted:
    """1–3 refunds: short of the settled sum (PARTIALLY_REVERSED) or adding up to it (REVERSED); no alert.
    A refund is sometimes redelivered (same notice_id: counted once)."""
    em = Emitted("partial_refund")
    order = kit.records.new_order()
    settled = order.amount_minor
    parts = settle(kit, em, order, start, split_share=0.3)
    pieces = kit.rng.randint(1, 3)
    full = pieces > 1 and kit.rng.random() < 0.3
    em.note("to_full" if full else "partial")
    total = settled if full else kit.rng.randint(pieces, settled - 1)
    refunds = refund(kit, em, order, parts[-1], cut(kit, total, pieces))
    if kit.rng.random() < 0.2:
        em.note("redelivered")
        em.add(kit.records.redeliver(refunds[0], refunds[-1].ingest_time + kit.rng.randint(MINUTE, HOUR)))
    em.expect(order, REVERSED_OUTCOME if full else PARTIALLY_REVERSED)
    return em


def over_refund(kit: Kit, start: int) -> Emitted:
    """Refunds adding up to more than the settled amount: beyond the tolerance AMOUNT_MISMATCH ("refund exceeds
    settlement"), within it none; the order is REVERSED either way."""
    em = Emitted("over_refund")
    within = kit.rng.random() < 0.25
    terms = kit.records.terms
    merchant = kit.merchant_where(lambda m: terms.tolerance(m.merchant_id, 100_000) > 0) if within else None
    order = kit.records.new_order(merchant=merchant)
    settled = order.amount_minor
    tolerance = kit.tolerance(order)
    within = within and tolerance > 0
    em.note("within_tolerance" if within else "beyond_tolerance")
    excess = kit.rng.randint(1, tolerance) if within else tolerance + 1 + kit.rng.randint(0, settled // 5)
    parts = settle(kit, em, order, start, split_share=0.2)
    total = settled + excess
    if total > kit.timing.rules.max_amount_minor:  # in two even refunds, each a valid amount
        amounts = kit.split(total, 2)
    else:
        amounts = cut(kit, total, kit.rng.randint(1, 2))
    refund(kit, em, order, parts[-1], amounts)
    if within:
        em.expect(order, REVERSED_OUTCOME)
    else:
        em.expect(order, REVERSED_OUTCOME, AMOUNT_MISMATCH)
    return em
