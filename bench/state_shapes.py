"""Engine state per open order for two fixed shapes, beside engine_bench's simulated mix.

* a v1 order: approved at the terminal, awaiting its settlement (the shape the ≤ 1 KB target is about), first
  while its approval is still in the card index (the 15 min of the duplicate-charge window, lateness and skew),
  then after: an order waits up to the 24 h settlement SLA, so most open orders hold no card-index entry;
* a v2 split order: approved, two of its three captures settled (each capture part is kept until the order is
  complete, with its notice id, amount and fee).

Every order has its own ids and card token (nothing shared between orders but merchant and terminal names), so the
figure is an upper bound of what a real mix holds per order.
"""

from __future__ import annotations

from typing import Any

from posrecon.config import RuleConfig
from posrecon.serde.codec import AvroCodec

T0 = 1_767_225_600_000
Records = list[tuple[bool, dict[str, Any], int | None]]


def _approval(i: int) -> dict[str, Any]:
    return {
        "event_id": f"ev-{i}",
        "order_id": f"ord-{i:07d}",
        "terminal_id": f"T{i % 500:04d}",
        "merchant_id": f"mch-{i % 50:05d}",
        "event_type": "AUTH_APPROVED",
        "amount_minor": 9000 + i % 1000,
        "currency": "EUR",
        "card_token": f"tok_{i:012d}",
        "event_time": T0 + i * 10,
    }


def _capture(i: int, seq: int, count: int) -> dict[str, Any]:
    return {
        "notice_id": f"nt-{i}-{seq}",
        "order_id": f"ord-{i:07d}",
        "merchant_id": f"mch-{i % 50:05d}",
        "status": "SETTLED",
        "amount_minor": 3000,
        "currency": "EUR",
        "settled_at": T0 + i * 10 + 1000 + seq,
        "batch_id": f"bt-{i % 300}",
        "fee_minor": 5,
        "capture_seq": seq,
        "capture_count": count,
    }


def shapes(orders: int) -> dict[str, Records]:
    terminal, settlement = AvroCodec("TerminalEvent"), AvroCodec("SettlementNotice")
    v1: Records = [(True, terminal.conform(_approval(i)), T0 + i * 10) for i in range(orders)]
    # one approval 16 min after the last moves the card index's watermark past every other entry's window
    # (16 min is within every deadline of those orders: their MISSING_SETTLEMENT is due after 24 h)
    later = dict(_approval(orders), event_time=T0 + orders * 10 + 16 * 60_000)
    past_window: Records = [*v1, (True, terminal.conform(later), later["event_time"])]
    split: Records = []
    for i in range(orders):
        split.append((True, terminal.conform(_approval(i)), T0 + i * 10))
        split += [(False, settlement.conform(_capture(i, seq, 3)), T0 + i * 10 + 1000 + seq) for seq in (1, 2)]
    return {
        "v1 order awaiting settlement": v1,
        "  the same past the duplicate-charge window": past_window,
        "v2 split order, 2 of 3 captures": split,
    }


def shaped_state_bytes(rules: RuleConfig, orders: int = 50_000) -> dict[str, float]:
    from engine_bench import state_bytes_per_open_order

    return {name: state_bytes_per_open_order(records, rules)[0] for name, records in shapes(orders).items()}
