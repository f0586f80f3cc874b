"""Cross-order duplicate-charge detection: approvals indexed by (card_token, merchant, amount, currency).

A pair of approvals of two different orders with the same key and event times at most
``duplicate_charge_window_ms`` apart is a DUPLICATE_CHARGE on the later order (by event time; on a tie the
one processed later). An order voided before the other approval is processed no longer counts.
Entries are pruned once the index's own watermark (largest approval time seen) passes
``approved_at + window + allowed_lateness``, so the index stays bounded.
"""

from __future__ import annotations

import heapq
from typing import NamedTuple

from posrecon.config import RuleConfig
from posrecon.engine.alerts import make_alert
from posrecon.engine.model import Alert, AlertKind, Severity

CardKey = tuple[str, str, int, str]


class CardEntry:
    __slots__ = ("approved_at", "order_id", "terminal_id", "voided")

    def __init__(self, order_id: str, approved_at: int, terminal_id: str, voided: bool) -> None:
        self.order_id = order_id
        self.approved_at = approved_at
        self.terminal_id = terminal_id
        self.voided = voided


class CardSighting(NamedTuple):
    """An order's first approval (``voided`` if the order was already voided), or a later void of it."""

    key: CardKey
    order_id: str
    approved_at: int
    terminal_id: str
    voided: bool
    is_void: bool = False  # True: the order was voided after this approval was sighted


class DuplicateCharge(NamedTuple):
    later_order_id: str
    later_terminal_id: str
    later_approved_at: int
    earlier_order_id: str
    merchant_id: str


class CardIndex:
    def __init__(self, rules: RuleConfig) -> None:
        self.window = rules.duplicate_charge_window_ms
        self.keep_for = rules.duplicate_charge_window_ms + rules.allowed_lateness_ms
        self.entries: dict[CardKey, list[CardEntry]] = {}
        self.expiry: list[tuple[int, str, CardKey]] = []
        self.watermark = -(1 << 62)
        #: card keys changed since the shell last persisted this index; None: not tracked
        self.dirty: set[CardKey] | None = None

    def __len__(self) -> int:
        return sum(len(v) for v in self.entries.values())

    def on_sighting(self, sighting: CardSighting) -> list[DuplicateCharge]:
        key, order_id, approved_at, terminal_id, voided, _ = sighting
        found: list[DuplicateCharge] = []
        bucket = self.entries.get(key)
        if bucket is None:
            bucket = self.entries[key] = []
        elif not voided:
            for entry in bucket:
                if entry.voided or entry.order_id == order_id or abs(entry.approved_at - approved_at) > self.window:
                    continue
                if entry.approved_at > approved_at:
                    found.append(DuplicateCharge(entry.order_id, entry.terminal_id, entry.approved_at, order_id, key[1]))
                else:
                    found.append(DuplicateCharge(order_id, terminal_id, approved_at, entry.order_id, key[1]))
        bucket.append(CardEntry(order_id, approved_at, terminal_id, voided))
        if self.dirty is not None:
            self.dirty.add(key)
        heapq.heappush(self.expiry, (approved_at + self.keep_for, order_id, key))
        if approved_at > self.watermark:
            self.watermark = approved_at
            self._prune()
        return found

    def on_void(self, sighting: CardSighting) -> None:
        for entry in self.entries.get(sighting.key, ()):
            if entry.order_id == sighting.order_id:
                entry.voided = True
                if self.dirty is not None:
                    self.dirty.add(sighting.key)

    def apply(self, sighting: CardSighting) -> list[DuplicateCharge]:
        """Route a sighting received from elsewhere (live card stage)."""
        if sighting.is_void:
            self.on_void(sighting)
            return []
        return self.on_sighting(sighting)

    def _prune(self) -> None:
        expiry = self.expiry
        while expiry and expiry[0][0] < self.watermark:
            _, order_id, key = heapq.heappop(expiry)
            bucket = self.entries.get(key)
            if bucket is None:
                continue
            bucket[:] = [e for e in bucket if not (e.order_id == order_id and e.approved_at + self.keep_for < self.watermark)]
            if not bucket:
                del self.entries[key]
            if self.dirty is not None:
                self.dirty.add(key)

    # --- snapshot --------------------------------------------------------------------------------------

    def to_rows(self) -> list[list[object]]:
        return [
            [list(key), [[e.order_id, e.approved_at, e.terminal_id, e.voided] for e in bucket]]
            for key, bucket in self.entries.items()
        ]

    def load_rows(self, rows: list[list[object]], watermark: int) -> None:
        self.entries.clear()
        self.expiry.clear()
        for raw_key, raw_entries in rows:
            key: CardKey = tuple(raw_key)  # type: ignore[call-overload,assignment]
            bucket = [CardEntry(str(o), int(t), str(tid), bool(v)) for o, t, tid, v in raw_entries]  # type: ignore[attr-defined]
            self.entries[key] = bucket
            for entry in bucket:
                self.expiry.append((entry.approved_at + self.keep_for, entry.order_id, key))
        heapq.heapify(self.expiry)
        self.watermark = watermark


def duplicate_charge_alert(dup: DuplicateCharge, rules: RuleConfig, detected_at: int) -> Alert:
    window_min = rules.duplicate_charge_window_ms // 60_000
    return make_alert(
        AlertKind.DUPLICATE_CHARGE,
        Severity.WARNING,
        (dup.later_order_id, "card", dup.earlier_order_id),
        order_id=dup.later_order_id,
        merchant_id=dup.merchant_id,
        terminal_id=dup.later_terminal_id,
        reason=(
            f"same card charged the same amount at merchant {dup.merchant_id} by orders "
            f"{dup.earlier_order_id} and {dup.later_order_id} within {window_min} min"
        ),
        event_time=dup.later_approved_at,
        detected_at=detected_at,
        related_ids=[dup.earlier_order_id],
    )
