"""Fees against the merchant's configured pricing (contract v2): a SETTLED part whose fee_minor is off the
expected fee by more than fee_tolerance_minor raises FEE_MISMATCH (WARNING) once per order; the outcome stays."""

from __future__ import annotations

from posrecon.sim.records import OrderSpec
from posrecon.sim.scenarios.base import WHOLE, Emitted, Kit
from posrecon.sim.scenarios.captures import Part, plan_parts
from posrecon.sim.vocabulary import FEE_MISMATCH, MATCHED, SETTLED


def _settle_with_fees(kit: Kit, em: Emitted, order: OrderSpec, start: int, off_by: list[int]) -> None:
    """Approved and settled on time in ``len(off_by)`` parts, part i's fee off the expected one by ``off_by[i]``."""
    approved_at = kit.create_and_approve(em, order, start)
    count = len(off_by)
    amounts = kit.split(order.amount_minor, count) if count > 1 else [order.amount_minor]
    parts: list[Part] = plan_parts(kit, approved_at, amounts)
    terms = kit.records.terms
    for part in sorted(parts):
        fee = terms.fee(order.merchant_id, part.amount_minor)
        assert fee is not None
        off = off_by[part.capture_seq - 1]
        capture = (part.capture_seq, count) if count > 1 else WHOLE
        fee = fee + off if fee + off >= 0 else fee - off  # a fee is never negative: off the other way
        em.add(
            kit.records.notice(
                order, SETTLED, part.settled_at, amount_minor=part.amount_minor, capture=capture, fee_minor=fee
            )
        )


def fee_mismatch(kit: Kit, start: int) -> Emitted:
    """A priced merchant's order, one or more of its 1–4 parts with a wrong fee: FEE_MISMATCH once, MATCHED."""
    em = Emitted("fee_mismatch")
    terms = kit.records.terms
    order = kit.records.new_order(merchant=kit.merchant_where(lambda m: terms.priced(m.merchant_id)))
    tolerance = terms.fee_tolerance(order.merchant_id)
    count = kit.rng.choice((1, 1, 1, 2, 3, 4))
    wrong = kit.rng.sample(range(count), kit.rng.randint(1, count))
    em.note("split" if count > 1 else "whole")
    off_by = [0] * count
    for index in wrong:
        off_by[index] = kit.rng.choice((-1, 1)) * (tolerance + 1 + kit.rng.randint(0, 40))
    _settle_with_fees(kit, em, order, start, off_by)
    em.expect(order, MATCHED, FEE_MISMATCH)
    return em


def fee_within_tolerance(kit: Kit, start: int) -> Emitted:
    """A fee off by no more than the merchant's fee_tolerance_minor: no alert, MATCHED."""
    em = Emitted("fee_within_tolerance")
    terms = kit.records.terms
    merchant = kit.merchant_where(lambda m: terms.priced(m.merchant_id) and terms.fee_tolerance(m.merchant_id) > 0)
    order = kit.records.new_order(merchant=merchant)
    tolerance = terms.fee_tolerance(order.merchant_id)
    _settle_with_fees(kit, em, order, start, [kit.rng.choice((-1, 1)) * kit.rng.randint(1, tolerance)])
    em.expect(order, MATCHED)
    return em
