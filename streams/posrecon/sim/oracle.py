"""Cross-order double charges, found independently of the scenarios from the final arrival order.

For each valid AUTH_APPROVED in arrival order (a retransmitted event_id counts once), every earlier-arrived
approval of a different order with the same (card_token, merchant_id, amount_minor, currency) and event
times at most ``window_ms`` apart is a double charge, unless either order's (first) VOIDED event arrived
before it and has an event time at or before the later approval's (voids count by event time, as the card
index judges them; a void arriving after the pair met cannot take the alert back). It is reported once per
pair of orders, on the order whose approval has the later event time (ties: the one arriving later).

Contract v2: the alert resolves when the order that got it is VOIDED — by a void that arrived before (its event
time then after the alert's) or after the alert (``resolved``; each alert on that order resolves).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from posrecon.sim.line import Line
from posrecon.sim.vocabulary import AUTH_APPROVED, TERMINAL, VOIDED


class DoubleCharge(NamedTuple):
    order_id: str  # gets the DUPLICATE_CHARGE alert
    earlier_order_id: str
    resolved: bool = False  # the order that got it was VOIDED afterwards (contract v2)


def cross_order_double_charges(lines: Iterable[Line], window_ms: int) -> list[DoubleCharge]:
    seen_events: set[str] = set()
    voided: dict[str, int] = {}  # order -> its first VOIDED event's event time
    approvals: dict[tuple[str, str, int, str], list[tuple[str, int]]] = {}
    reported: set[frozenset[str]] = set()
    found: list[DoubleCharge] = []
    voided_after: dict[str, list[int]] = {}  # order with an alert -> indexes into ``found`` awaiting its void
    for line in lines:
        record = line.record
        if not line.valid or line.source != TERMINAL or record is None or record["event_id"] in seen_events:
            continue
        seen_events.add(record["event_id"])
        order_id: str = record["order_id"]
        if record["event_type"] == VOIDED:
            voided.setdefault(order_id, record["event_time"])
            for index in voided_after.pop(order_id, ()):
                found[index] = found[index]._replace(resolved=True)
            continue
        if record["event_type"] != AUTH_APPROVED or record["card_token"] is None:
            continue
        key = (record["card_token"], record["merchant_id"], record["amount_minor"], record["currency"])
        event_time: int = record["event_time"]
        earlier = approvals.setdefault(key, [])
        for other_id, other_time in earlier:
            pair = frozenset((order_id, other_id))
            if other_id == order_id or pair in reported or abs(event_time - other_time) > window_ms:
                continue
            later = max(event_time, other_time)
            if voided.get(order_id, later + 1) <= later or voided.get(other_id, later + 1) <= later:
                continue
            reported.add(pair)
            charge = DoubleCharge(other_id, order_id) if other_time > event_time else DoubleCharge(order_id, other_id)
            if charge.order_id in voided:  # voided after the alert's event time
                charge = charge._replace(resolved=True)
            else:
                voided_after.setdefault(charge.order_id, []).append(len(found))
            found.append(charge)
        earlier.append((order_id, event_time))
    return found
