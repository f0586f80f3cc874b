"""Cross-order duplicate-charge detection: approvals indexed by (card_token, merchant, amount, currency).

A pair of approvals of two different orders with the same key and event times at most
``duplicate_charge_window_ms`` apart is a DUPLICATE_CHARGE on the later order (by event time; on a tie the
one processed later), unless either order was voided at or before the later approval's EVENT time. A void
after that (by event time) does not prevent the alert; a void of the later order resolves it (contract v2) —
at once when the void is already known. Voids are judged by event time, not by when their sighting is
processed, so the decisions do not depend on how the source partitions interleave (only a void processed
after the alert it should have prevented cannot take it back: it then resolves it, or, for the earlier order,
nothing).
Entries are pruned once the index's watermark passes ``approved_at + window + allowed_lateness +
max_clock_skew``. That watermark is the minimum over the source partitions' watermarks, which every
sighting carries (as Flink aligns watermarks over input channels): in the live worker sightings from many
order partitions interleave in any order, and pruning by the largest time seen would drop entries that a
slower partition still needs.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from posrecon.config import RuleConfig
from posrecon.engine.alerts import make_alert, make_resolution
from posrecon.engine.expiry import ExpiryQueue
from posrecon.engine.model import Alert, AlertKind, Severity


class CardKey(NamedTuple):
    """The card key of the duplicate-charge rule. A class, not a ``tuple[str, str, int, str]`` alias: compiled
    (posrecon/native.py), a fixed-length tuple type is kept unboxed and boxed anew at each use, so the index's
    dict and each entry would hold their own copy (about 100 bytes per open order)."""

    token: str
    merchant_id: str
    amount_minor: int
    currency: str


class CardEntry:
    __slots__ = (
        "approved_at",
        "key",
        "order_id",
        "paired",
        "raised",
        "terminal_id",
        "void_event_id",
        "void_time",
        "voided",
    )

    def __init__(
        self,
        order_id: str,
        approved_at: int,
        terminal_id: str,
        voided: bool,
        paired: tuple[str, ...] = (),
        raised: tuple[str, ...] = (),
        void_time: int = 0,
        void_event_id: str = "",
        key: CardKey | None = None,
    ) -> None:
        self.key = key  # the index's key of this entry (set by the index: its expiry queues hold entries)
        self.order_id = order_id
        self.approved_at = approved_at
        self.terminal_id = terminal_id
        self.voided = voided
        self.paired = paired  # other orders this approval already raised a DUPLICATE_CHARGE with
        #: the earlier orders of the DUPLICATE_CHARGE alerts raised on this (the later) order that are still open:
        #: a void of this order resolves them (contract v2)
        self.raised = raised
        #: when ``voided``: the void's event time (0: unknown, as in rows written before it was kept: before
        #: anything) and event id
        self.void_time = void_time
        self.void_event_id = void_event_id

    def __lt__(self, other: CardEntry) -> bool:
        """By approval time (the expiry queue's heap; nothing else compares entries)."""
        return self.approved_at < other.approved_at

    def voided_by(self, when: int) -> bool:
        """Voided at or before event time ``when``."""
        return self.voided and self.void_time <= when

    def row(self) -> list[object]:
        """The snapshot / changelog row of this entry (v1 rows had the first five fields, then six). Its tuples go
        in as they are: orjson writes them as arrays, as it would lists (see OrderState.to_row)."""
        return [
            self.order_id,
            self.approved_at,
            self.terminal_id,
            self.voided,
            self.paired,
            self.raised,
            self.void_time,
            self.void_event_id,
        ]

    @classmethod
    def of_row(cls, row: list[Any], key: CardKey | None = None) -> CardEntry:
        raised = tuple(row[5]) if len(row) > 5 else ()
        void_time, void_event_id = (int(row[6]), str(row[7])) if len(row) > 7 else (0, "")
        return cls(
            str(row[0]), int(row[1]), str(row[2]), bool(row[3]), tuple(row[4]), raised, void_time, void_event_id, key
        )


class CardSighting(NamedTuple):
    """An order's approval (``voided`` if the order was already voided: then with its void's time), or a later
    void of it."""

    key: CardKey
    order_id: str
    approved_at: int
    terminal_id: str
    voided: bool
    is_void: bool = False  # True: the order was voided after this approval was sighted
    source_partition: int = 0
    source_watermark: int = -(1 << 62)  # the order partition's watermark once this record is applied
    void_event_id: str = ""  # a void: the VOIDED event (it resolves the alerts raised on this order)
    void_time: int = 0  # a void, or an approval of an already voided order: the void's event time


class DuplicateCharge(NamedTuple):
    """A DUPLICATE_CHARGE on the later order; with ``resolved_by`` set, the void of the later order that
    resolves it (``resolved_at``: the void's event time)."""

    later_order_id: str
    later_terminal_id: str
    later_approved_at: int
    earlier_order_id: str
    merchant_id: str
    resolved_by: str | None = None
    resolved_at: int = 0


class CardIndex:
    def __init__(self, rules: RuleConfig, sources: int = 1) -> None:
        self.window = rules.duplicate_charge_window_ms
        self.keep_for = rules.duplicate_charge_window_ms + rules.allowed_lateness_ms + rules.max_clock_skew_ms
        #: an entry with open DUPLICATE_CHARGE alerts is kept this long, so a later void can still resolve them
        self.keep_raised_for = max(self.keep_for, rules.state_retention_ms)
        self.sources = sources
        self.entries: dict[CardKey, list[CardEntry]] = {}
        self.expiry = ExpiryQueue()  # every entry, due at approved_at + keep_for
        self.raised_expiry = ExpiryQueue()  # the entries kept past that for their open alerts
        self.source_watermarks: dict[int, int] = {}
        self.watermark = -(1 << 62)
        #: card keys changed since the shell last persisted this index; None: not tracked
        self.dirty: set[CardKey] | None = None

    def __len__(self) -> int:
        return sum(len(v) for v in self.entries.values())

    def on_sighting(self, sighting: CardSighting) -> list[DuplicateCharge]:
        return self.on_approval(
            *sighting[:5],
            sighting.source_partition,
            sighting.source_watermark,
            sighting.void_time,
            sighting.void_event_id,
        )

    def on_approval(
        self,
        key: CardKey,
        order_id: str,
        approved_at: int,
        terminal_id: str,
        voided: bool,
        source: int,
        mark: int,
        void_time: int = 0,
        void_event_id: str = "",
    ) -> list[DuplicateCharge]:
        """An approval of ``order_id`` (``voided``: at ``void_time``); returns the duplicate charges it completes,
        each followed by its RESOLVED record when the later order's void is already known."""
        found: list[DuplicateCharge] = []
        entry = CardEntry(order_id, approved_at, terminal_id, voided, (), (), void_time, void_event_id, key)
        bucket = self.entries.get(key)
        if bucket is None:  # the common case: a card key not seen within the window
            self.entries[key] = [entry]
        else:
            self._pair(bucket, key, entry, found)
        if self.dirty is not None:
            self.dirty.add(key)
        self.expiry.push(entry)
        # = self._observe(source, mark), inlined
        marks = self.source_watermarks
        if mark > marks.get(source, -(1 << 62)):
            marks[source] = mark
            if len(marks) >= self.sources:
                aligned = mark if self.sources == 1 else min(marks.values())
                if aligned > self.watermark:
                    self.watermark = aligned
                    if self._prune_due(aligned):
                        self._prune()
        return found

    def _pair(self, bucket: list[CardEntry], key: CardKey, new: CardEntry, found: list[DuplicateCharge]) -> None:
        order_id = new.order_id
        approved_at = new.approved_at
        # each pair of orders raises at most one alert, whichever of their approvals meet first
        done = {o for e in bucket if e.order_id == order_id for o in e.paired}
        done.update(e.order_id for e in bucket if order_id in e.paired)
        # by event time (then order id), not by arrival: the records of one call come out in the same order
        # whatever the interleaving of the sources
        for entry in sorted(bucket, key=_by_approval) if len(bucket) > 1 else bucket:
            other = entry.order_id
            if other == order_id or other in done or abs(entry.approved_at - approved_at) > self.window:
                continue
            later, earlier = (entry, new) if entry.approved_at > approved_at else (new, entry)
            if entry.voided_by(later.approved_at) or new.voided_by(later.approved_at):
                continue
            done.add(other)
            entry.paired += (order_id,)
            new.paired += (other,)
            dup = DuplicateCharge(later.order_id, later.terminal_id, later.approved_at, earlier.order_id, key[1])
            found.append(dup)
            if later.voided:  # voided after the alert's event time: resolved by that void at once
                found.append(
                    dup._replace(resolved_by=later.void_event_id or later.order_id, resolved_at=later.void_time)
                )
            else:
                later.raised += (earlier.order_id,)
        bucket.append(new)

    def _observe(self, source: int, mark: int) -> None:
        marks = self.source_watermarks
        if mark > marks.get(source, -(1 << 62)):
            marks[source] = mark
            if len(marks) >= self.sources:
                aligned = mark if self.sources == 1 else min(marks.values())
                if aligned > self.watermark:
                    self.watermark = aligned
                    if self._prune_due(aligned):
                        self._prune()

    def on_void(self, sighting: CardSighting) -> list[DuplicateCharge]:
        """The order was voided: it no longer counts, and the DUPLICATE_CHARGE alerts raised on it resolve
        (returned with ``resolved_by``; each once)."""
        resolved: list[DuplicateCharge] = []
        key = sighting.key
        for entry in self.entries.get(key, ()):
            if entry.order_id == sighting.order_id and not entry.voided:
                entry.voided = True
                entry.void_time = sighting.void_time
                entry.void_event_id = sighting.void_event_id
                for earlier in entry.raised:
                    resolved.append(
                        DuplicateCharge(
                            entry.order_id,
                            entry.terminal_id,
                            entry.approved_at,
                            earlier,
                            key[1],
                            sighting.void_event_id or entry.order_id,
                            sighting.void_time,
                        )
                    )
                entry.raised = ()
                if self.dirty is not None:
                    self.dirty.add(key)
        self._observe(sighting.source_partition, sighting.source_watermark)
        return resolved

    def apply(self, sighting: CardSighting) -> list[DuplicateCharge]:
        """Route a sighting received from elsewhere (live card stage)."""
        if sighting.is_void:
            return self.on_void(sighting)
        return self.on_sighting(sighting)

    def _prune_due(self, watermark: int) -> bool:
        return (
            self.expiry.earliest() + self.keep_for < watermark
            or self.raised_expiry.earliest() + self.keep_raised_for < watermark
        )

    def _prune(self) -> None:
        """Drop the entries whose time is up: ``approved_at + keep_for < watermark``, or with ``keep_raised_for``
        while the entry has open alerts (it moves to the second queue at its first expiry)."""
        watermark = self.watermark
        for entry in self.expiry.pop_before(watermark - self.keep_for):
            self._expire(entry, watermark)
        for entry in self.raised_expiry.pop_before(watermark - self.keep_raised_for):
            self._expire(entry, watermark)

    def _expire(self, entry: CardEntry, watermark: int) -> None:
        key = entry.key
        assert key is not None
        bucket = self.entries.get(key)
        if bucket is None:
            return
        if len(bucket) == 1 and bucket[0] is entry and not entry.raised:  # the common case
            del self.entries[key]
        elif entry in bucket:
            if entry.raised and entry.approved_at + self.keep_raised_for >= watermark:
                self.raised_expiry.push(entry)  # kept for its open alerts: comes up again at its own expiry
            else:
                bucket.remove(entry)
                if not bucket:
                    del self.entries[key]
        if self.dirty is not None:
            self.dirty.add(key)

    # --- snapshot --------------------------------------------------------------------------------------

    def to_rows(self) -> list[list[object]]:
        return [[list(key), bucket_rows(bucket)] for key, bucket in self.entries.items()]

    def load_rows(self, rows: list[list[Any]], watermark: int, source_watermarks: dict[int, int] | None = None) -> None:
        self.entries.clear()
        loaded: list[CardEntry] = []
        for raw_key, raw_entries in rows:
            key = CardKey(*raw_key)
            bucket = [CardEntry.of_row(row, key) for row in raw_entries]
            self.entries[key] = bucket
            loaded.extend(bucket)
        self.expiry.load(loaded)  # a raised entry moves to the second queue at its first expiry, as it did live
        self.raised_expiry.clear()
        self.watermark = watermark
        self.source_watermarks = dict(source_watermarks or {})


def _by_approval(entry: CardEntry) -> tuple[int, str]:
    return entry.approved_at, entry.order_id


def bucket_rows(bucket: list[CardEntry]) -> list[list[object]]:
    """The rows of one card key's entries (snapshot and changelog)."""
    return [entry.row() for entry in bucket]


def duplicate_charge_alert(dup: DuplicateCharge, rules: RuleConfig, detected_at: int) -> Alert:
    """The DUPLICATE_CHARGE alert of ``dup``, or, when ``dup.resolved_by`` is set, the RESOLVED record closing it."""
    opened = _opened_alert(dup, rules, detected_at)
    if dup.resolved_by is None:
        return opened
    original = opened["alert_id"]
    return make_resolution(
        AlertKind.DUPLICATE_CHARGE,
        original,
        order_id=dup.later_order_id,
        merchant_id=dup.merchant_id,
        terminal_id=dup.later_terminal_id,
        reason=f"DUPLICATE_CHARGE {original} resolved: order {dup.later_order_id} was voided ({dup.resolved_by})",
        event_time=dup.resolved_at,
        detected_at=detected_at,
        related_ids=[dup.resolved_by],
    )


def _opened_alert(dup: DuplicateCharge, rules: RuleConfig, detected_at: int) -> Alert:
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
