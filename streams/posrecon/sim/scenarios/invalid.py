"""One record, invalid in exactly one way, for an order that has no other records.

The engine must dead-letter it with the given reason and raise INVALID_EVENT for that order.
The record's event time stays inside the normal flow of traffic.
"""

from __future__ import annotations

import dataclasses

from posrecon.sim.line import Line
from posrecon.sim.pan import sample_pan
from posrecon.sim.records import OrderSpec
from posrecon.sim.scenarios.base import Emitted, Kit
from posrecon.sim.vocabulary import (
    CLOCK_SKEW,
    EMPTY_ID,
    FAILED,
    INVALID_AMOUNT,
    INVALID_CURRENCY,
    INVALID_EVENT,
    PAN_IN_CARD_TOKEN,
    REVERSED,
    SETTLED,
    SETTLEMENT,
    TERMINAL,
    TERMINAL_EVENT_TYPES,
)

NOT_A_CURRENCY = "XXQ"


def _record_line(kit: Kit, order: OrderSpec, start: int, source: str, ingest: int | None = None) -> Line:
    if source == TERMINAL:
        return kit.records.terminal(order, kit.rng.choice(TERMINAL_EVENT_TYPES), start, ingest=ingest)
    return kit.records.notice(order, kit.rng.choice((SETTLED, SETTLED, FAILED, REVERSED)), start, ingest=ingest)


def _invalid(em: Emitted, order: OrderSpec, line: Line, reason: str, **changes: object) -> Emitted:
    assert line.record is not None
    record = {**line.record, **changes}
    em.add(dataclasses.replace(line, record=record, rejection=reason))
    em.expect(order, None, INVALID_EVENT)
    return em


def invalid_empty_id(kit: Kit, start: int) -> Emitted:
    em = Emitted("invalid_empty_id")
    order = kit.records.new_order()
    source = kit.rng.choice((TERMINAL, SETTLEMENT))
    em.note(source)
    id_field = "event_id" if source == TERMINAL else "notice_id"
    return _invalid(em, order, _record_line(kit, order, start, source), EMPTY_ID, **{id_field: ""})


def invalid_amount(kit: Kit, start: int) -> Emitted:
    em = Emitted("invalid_amount")
    order = kit.records.new_order()
    variant = kit.rng.choice(("zero", "negative", "too_large"))
    em.note(variant)
    amount = {
        "zero": 0,
        "negative": -kit.rng.randint(1, 100_000),
        "too_large": kit.timing.rules.max_amount_minor + kit.rng.randint(1, 100_000),
    }[variant]
    line = _record_line(kit, order, start, kit.rng.choice((TERMINAL, SETTLEMENT)))
    return _invalid(em, order, line, INVALID_AMOUNT, amount_minor=amount)


def invalid_currency(kit: Kit, start: int) -> Emitted:
    em = Emitted("invalid_currency")
    order = kit.records.new_order()
    line = _record_line(kit, order, start, kit.rng.choice((TERMINAL, SETTLEMENT)))
    return _invalid(em, order, line, INVALID_CURRENCY, currency=NOT_A_CURRENCY)


def invalid_pan(kit: Kit, start: int) -> Emitted:
    """A terminal event whose card_token is a (test) card number: PAN_IN_CARD_TOKEN."""
    em = Emitted("invalid_pan")
    order = kit.records.new_order()
    line = _record_line(kit, order, start, TERMINAL)
    return _invalid(em, order, line, PAN_IN_CARD_TOKEN, card_token=sample_pan(kit.rng))


def invalid_clock_skew(kit: Kit, start: int) -> Emitted:
    """A terminal event_time far behind its ingest time, or a settled_at far after its ingest time."""
    em = Emitted("invalid_clock_skew")
    order = kit.records.new_order()
    skew = kit.delay(kit.timing.skew_fault)
    if kit.rng.random() < 0.5:
        em.note(TERMINAL)
        line = _record_line(kit, order, start, TERMINAL, ingest=start + skew)
    else:
        em.note(SETTLEMENT)
        line = _record_line(kit, order, start, SETTLEMENT, ingest=start - skew)
    return _invalid(em, order, line, CLOCK_SKEW)
