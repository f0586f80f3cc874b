"""What a ledger reads off each order's final record (contract v2): settled_parts, settled_amount_minor,
fee_minor, reversed_amount_minor and net_amount_minor, computed from the records in arrival order.

A SETTLED part counts once per capture_seq: the first to arrive (a repeat under another notice_id is a duplicate,
not counted; a redelivery repeats the notice_id). REVERSED notices count once per notice_id. Orders with nothing
settled have no amounts to check (the fields are null until something settled).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from posrecon.sim.line import Line
from posrecon.sim.vocabulary import REVERSED, SETTLED, SETTLEMENT

#: the ReconciledOrder fields this checks, in Amounts order
AMOUNT_FIELDS = ("settled_parts", "settled_amount_minor", "fee_minor", "reversed_amount_minor", "net_amount_minor")


class Amounts(NamedTuple):
    settled_parts: int
    settled_amount_minor: int
    fee_minor: int
    reversed_amount_minor: int
    net_amount_minor: int


def ledger_amounts(lines: Iterable[Line]) -> dict[str, Amounts]:
    parts: dict[str, dict[int, tuple[int, int]]] = {}
    refunds: dict[str, dict[str, int]] = {}
    for line in lines:
        record = line.record
        if not line.valid or line.source != SETTLEMENT or record is None:
            continue
        order_id: str = record["order_id"]
        if record["status"] == SETTLED:
            counted = parts.setdefault(order_id, {})
            counted.setdefault(record.get("capture_seq", 1), (record["amount_minor"], record["fee_minor"]))
        elif record["status"] == REVERSED:
            refunds.setdefault(order_id, {})[record["notice_id"]] = record["amount_minor"]
    amounts = {}
    for order_id, counted in parts.items():
        settled = sum(amount for amount, _ in counted.values())
        fee = sum(fee for _, fee in counted.values())
        reversed_ = sum(refunds.get(order_id, {}).values())
        amounts[order_id] = Amounts(len(counted), settled, fee, reversed_, settled - fee - reversed_)
    return amounts
