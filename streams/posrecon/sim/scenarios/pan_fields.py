"""Card numbers in id and other string fields (contract v2 PAN_IN_FIELD), and numeric order ids that only look
like card numbers (they fail Luhn, the network prefixes or the 13–19 length, so the order reconciles normally).

Checked against the simulator's own reading of the rule (``sim.pan``), so a fault is always a card number and a
look-alike never is.
"""

from __future__ import annotations

import dataclasses

from posrecon.sim.pan import NETWORK_BINS, card_number_runs, luhn_check_digit, mask_runs, sample_pan
from posrecon.sim.records import OrderSpec
from posrecon.sim.scenarios.base import WHOLE, Emitted, Kit
from posrecon.sim.vocabulary import (
    FAILED,
    INVALID_EVENT,
    MATCHED,
    PAN_IN_FIELD,
    REVERSED,
    SETTLED,
    SETTLEMENT,
    SETTLEMENT_ID_FIELDS,
    TERMINAL,
    TERMINAL_EVENT_TYPES,
    TERMINAL_ID_FIELDS,
)

#: first digits no card network of the contract starts with
_NO_NETWORK_DIGITS = "01789"


def _formatted(kit: Kit, digits: str) -> str:
    """``digits`` as written: plain, or in groups of four joined by single spaces or dashes."""
    style = kit.rng.choice(("plain", "plain", "spaces", "dashes"))
    if style == "plain":
        return digits
    groups = [digits[i : i + 4] for i in range(0, len(digits), 4)]
    return (" " if style == "spaces" else "-").join(groups)


def pan_in_field(kit: Kit, start: int) -> Emitted:
    """One record (the order's only one) with a card number in an id or other string field: dead letter
    PAN_IN_FIELD and INVALID_EVENT; a card number in order_id makes the outputs carry that id masked."""
    em = Emitted("pan_in_field")
    order = kit.records.new_order()
    source = kit.rng.choice((TERMINAL, SETTLEMENT))
    field = kit.rng.choice(TERMINAL_ID_FIELDS if source == TERMINAL else SETTLEMENT_ID_FIELDS)
    em.note(field)
    if source == TERMINAL:
        line = kit.records.terminal(order, kit.rng.choice(TERMINAL_EVENT_TYPES), start)
    else:
        status = kit.rng.choice((SETTLED, SETTLED, FAILED, REVERSED))
        line = kit.records.notice(order, status, start, capture=WHOLE)
    pan = _formatted(kit, sample_pan(kit.rng, kit.rng.randint(13, 19), NETWORK_BINS))
    # the order id keeps its unique ``ord-`` stem so masked ids stay distinct; a letter ends the digit run before it
    value = f"{order.order_id}x{pan}" if field == "order_id" else kit.rng.choice((pan, f"T{pan}", f"{pan}Z"))
    assert card_number_runs(value) == [pan], value
    assert line.record is not None
    em.add(dataclasses.replace(line, record={**line.record, field: value}, rejection=PAN_IN_FIELD))
    em.expect(order, None, INVALID_EVENT, key=mask_runs(value) if field == "order_id" else None)
    return em


def _lookalike(kit: Kit) -> str:
    variant = kit.rng.choice(("luhn_fail", "no_network", "too_long", "too_short"))
    if variant == "luhn_fail":
        valid = sample_pan(kit.rng, 16, NETWORK_BINS)
        digits = valid[:-1] + str((int(valid[-1]) + kit.rng.randint(1, 9)) % 10)
    elif variant == "no_network":
        payload = kit.rng.choice(_NO_NETWORK_DIGITS) + "".join(str(kit.rng.randrange(10)) for _ in range(14))
        digits = payload + luhn_check_digit(payload)
    elif variant == "too_long":  # a card number inside a longer run: the run as a whole is what counts
        digits = sample_pan(kit.rng, 16, NETWORK_BINS) + "".join(str(kit.rng.randrange(10)) for _ in range(4))
    else:
        digits = sample_pan(kit.rng, 12, NETWORK_BINS)
    return f"{variant}:{_formatted(kit, digits)}"


def pan_lookalike_id(kit: Kit, start: int) -> Emitted:
    """A normal order (created, approved, settled) whose order_id is all digits that look like a card number but
    are not one by the contract's rule: MATCHED, nothing dead-lettered."""
    em = Emitted("pan_lookalike_id")
    while True:
        variant, _, order_id = _lookalike(kit).partition(":")
        if not card_number_runs(order_id) and kit.records.ids.claim(order_id):
            break
    em.note(variant)
    order: OrderSpec = kit.records.new_order(order_id=order_id)
    kit.settle_on_time(em, order, kit.create_and_approve(em, order, start), capture=WHOLE)
    em.expect(order, MATCHED)
    return em
