"""Cross-order duplicate-charge detection: approvals indexed by (card_token, merchant, amount, currency).

A pair of approvals of two different orders with the same key and event times at most
``duplicate_charge_window_ms`` apart is a DUPLICATE_CHARGE on the later order (by event time; on a tie the
one processed later). An order voided before the other approval is processed no longer counts.
Entries are pruned once the index's watermark passes ``approved_at + window + allowed_lateness +
max_clock_skew``. That watermark is the minimum over the source partitions' watermarks, which every
sighting carries (as Flink aligns watermarks over input channels): in the live worker sightings from many
order partitions interleave in any order, and pruning by the largest time seen would drop entries that a
slower partition still needs.
"""

from __future__ import annotations

import heapq
from typing import Any, NamedTuple

from posrecon.config import RuleConfig
from posrecon.engine.alerts import make_alert
from posrecon.engine.model import Alert, AlertKind, Severity

CardKey = tuple[str, str, int, str]


class CardEntry:
    __slots__ = ("approved_at", "order_id", "paired", "terminal_id", "voided")

    def __init__(
        self, order_id: str, approved_at: int, terminal_id: str, voided: bool, paired: tuple[str, ...] = ()
    ) -> None:
        self.order_id = order_id
        self.approved_at = approved_at
        self.terminal_id = terminal_id
        self.voided = voided
        self.paired = paired  # other orders this approval already raised a DUPLICATE_CHARGE with


class CardSighting(NamedTuple):
    """An order's first approval (``voided`` if the order was already voided), or a later void of it."""

    key: CardKey
    order_id: str
    approved_at: int
    terminal_id: str
    voided: bool
    is_void: bool = False  # True: the order was voided after this approval was sighted
    source_partition: int = 0
    source_watermark: int = -(1 << 62)  # the order partition's watermark once this record is applied


class DuplicateCharge(NamedTuple):
    later_order_id: str
    later_terminal_id: str
    later_approved_at: int
    earlier_order_id: str
    merchant_id: str


class CardIndex:
    def __init__(self, rules: RuleConfig, sources: int = 1) -> None:
        self.window = rules.duplicate_charge_window_ms
        self.keep_for = rules.duplicate_charge_window_ms + rules.allowed_lateness_ms + rules.max_clock_skew_ms
        self.sources = sources
        self.entries: dict[CardKey, list[CardEntry]] = {}
        self.expiry: list[tuple[int, str, CardKey]] = []
        self.source_watermarks: dict[int, int] = {}
        self.watermark = -(1 << 62)
        #: card keys changed since the shell last persisted this index; None: not tracked
        self.dirty: set[CardKey] | None = None

    def __len__(self) -> int:
        return sum(len(v) for v in self.entries.values())

    def on_sighting(self, sighting: CardSighting) -> list[DuplicateCharge]:
        return self.on_approval(*sighting[:5], sighting.source_partition, sighting.source_watermark)

    def on_approval(
        self, key: CardKey, order_id: str, approved_at: int, terminal_id: str, voided: bool, source: int, mark: int
    ) -> list[DuplicateCharge]:
        """An approval of ``order_id``; returns the duplicate charges it completes."""
        found: list[DuplicateCharge] = []
        paired: tuple[str, ...] = ()
        bucket = self.entries.get(key)
        if bucket is None:  # the common case: a card key not seen within the window
            self.entries[key] = [CardEntry(order_id, approved_at, terminal_id, voided, paired)]
        else:
            self._pair(bucket, key, order_id, approved_at, terminal_id, voided, found)
        if self.dirty is not None:
            self.dirty.add(key)
        heapq.heappush(self.expiry, (approved_at + self.keep_for, order_id, key))
        # = self._observe(source, mark), inlined
        marks = self.source_watermarks
        if mark > marks.get(source, -(1 << 62)):
            marks[source] = mark
            if len(marks) >= self.sources:
                aligned = mark if self.sources == 1 else min(marks.values())
                if aligned > self.watermark:
                    self.watermark = aligned
                    if self.expiry[0][0] < aligned:
                        self._prune()
        return found

    def _pair(
        self,
        bucket: list[CardEntry],
        key: CardKey,
        order_id: str,
        approved_at: int,
        terminal_id: str,
        voided: bool,
        found: list[DuplicateCharge],
    ) -> None:
        paired: tuple[str, ...] = ()
        if not voided:
            # each pair of orders raises at most one alert, whichever of their approvals meet first
            done = {o for e in bucket if e.order_id == order_id for o in e.paired}
            done.update(e.order_id for e in bucket if order_id in e.paired)
            for entry in bucket:
                other = entry.order_id
                if (
                    entry.voided
                    or other == order_id
                    or other in done
                    or abs(entry.approved_at - approved_at) > self.window
                ):
                    continue
                done.add(other)
                entry.paired += (order_id,)
                paired += (other,)
                if entry.approved_at > approved_at:
                    found.append(DuplicateCharge(other, entry.terminal_id, entry.approved_at, order_id, key[1]))
                else:
                    found.append(DuplicateCharge(order_id, terminal_id, approved_at, other, key[1]))
        bucket.append(CardEntry(order_id, approved_at, terminal_id, voided, paired))

    def _observe(self, source: int, mark: int) -> None:
        marks = self.source_watermarks
        if mark > marks.get(source, -(1 << 62)):
            marks[source] = mark
            if len(marks) >= self.sources:
                aligned = mark if self.sources == 1 else min(marks.values())
                if aligned > self.watermark:
                    self.watermark = aligned
                    if self.expiry and self.expiry[0][0] < aligned:
                        self._prune()

    def on_void(self, sighting: CardSighting) -> None:
        for entry in self.entries.get(sighting.key, ()):
            if entry.order_id == sighting.order_id:
                entry.voided = True
                if self.dirty is not None:
                    self.dirty.add(sighting.key)
        self._observe(sighting.source_partition, sighting.source_watermark)

    def apply(self, sighting: CardSighting) -> list[DuplicateCharge]:
        """Route a sighting received from elsewhere (live card stage)."""
        if sighting.is_void:
            self.on_void(sighting)
            return []
        return self.on_sighting(sighting)

    def _prune(self) -> None:
        expiry = self.expiry
        entries = self.entries
        watermark = self.watermark
        keep_for = self.keep_for
        heappop = heapq.heappop
        while expiry and expiry[0][0] < watermark:
            _, order_id, key = heappop(expiry)
            bucket = entries.get(key)
            if bucket is None:
                continue
            if len(bucket) == 1:  # the common case, without building a new list
                entry = bucket[0]
                if entry.order_id == order_id and entry.approved_at + keep_for < watermark:
                    del entries[key]
            else:
                bucket[:] = [e for e in bucket if not (e.order_id == order_id and e.approved_at + keep_for < watermark)]
                if not bucket:
                    del entries[key]
            if self.dirty is not None:
                self.dirty.add(key)

    # --- snapshot --------------------------------------------------------------------------------------

    def to_rows(self) -> list[list[object]]:
        return [
            [list(key), [[e.order_id, e.approved_at, e.terminal_id, e.voided, list(e.paired)] for e in bucket]]
            for key, bucket in self.entries.items()
        ]

    def load_rows(self, rows: list[list[Any]], watermark: int, source_watermarks: dict[int, int] | None = None) -> None:
        self.entries.clear()
        self.expiry.clear()
        for raw_key, raw_entries in rows:
            key: CardKey = tuple(raw_key)
            bucket = [CardEntry(str(o), int(t), str(tid), bool(v), tuple(p)) for o, t, tid, v, p in raw_entries]
            self.entries[key] = bucket
            for entry in bucket:
                self.expiry.append((entry.approved_at + self.keep_for, entry.order_id, key))
        heapq.heapify(self.expiry)
        self.watermark = watermark
        self.source_watermarks = dict(source_watermarks or {})


def duplicate_charge_alert(dup: DuplicateCharge, rules: RuleConfig, detected_at: int) -> Alert:
    window_min = rules.duplicate_charge_window_ms // 60_000
    return make_alert(
        AlertKind.DUPLICATE_CHARGE,
        Severity.WARNING,
        (dup.later_order_id, "card", dup.earlier_order_id, str(dup.later_approved_at)),
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
