"""The settlement side of the engine's input: settlement notices (the per-record hot path) and, in place,
settlement batch control records with the watermarks the batch ledger needs.

A mixin of :class:`~posrecon.engine.engine.ReconciliationEngine` (which holds the state it uses); the terminal
side, the constructor and the public helpers stay in :mod:`posrecon.engine.engine`.
"""

from __future__ import annotations

from typing import Any, Final

from posrecon.engine.batch_feed import BatchFeed
from posrecon.engine.batches import BatchLedger, BatchSighting
from posrecon.engine.book import PartitionBook
from posrecon.engine.currency import ISO_4217_CODES
from posrecon.engine.model import Rejection, SettlementBatch, SettlementNotice
from posrecon.engine.order import (
    FIRED_FEE,
    SCHEDULED_ORPHAN,
    SETTLEMENT_STATUS_INDEX,
    SETTLEMENT_TRANSITIONS,
    Notice,
    Part,
    TerminalPhase,
    new_tuple,
)
from posrecon.engine.pan import (
    PAN_MIN_DIGITS,
    find_pan,
    maybe_pan,
)
from posrecon.engine.pricing import Pricing, fee_off
from posrecon.engine.snapshot import Snapshots
from posrecon.engine.timers import ORPHAN
from posrecon.engine.validation import check_settlement_batch, check_settlement_notice

_VOIDED: Final = TerminalPhase.VOIDED
_TIMED_OUT: Final = TerminalPhase.TIMED_OUT


class SettlementSide(Snapshots):
    """Applies settlement notices and batch control records (see the module docstring)."""

    books: dict[int, PartitionBook]
    batches: BatchLedger
    batch_sightings: list[BatchSighting] | None
    _batch_feed: BatchFeed | None
    _count_batches: bool
    #: the settlement fields scanned for card numbers (per rules.pan_scan_fields; see ReconciliationEngine)
    _notice_scan: tuple[str, ...]
    _notice_scan_known: tuple[str, ...]
    _notice_full_scan: tuple[str, ...]
    #: merchant pricing (pricing.fee_pricing) of each merchant table, and of the others (None: not configured)
    _pricing: dict[str, Pricing | None]
    _default_pricing: Pricing | None

    def on_settlement_notice(
        self, notice: SettlementNotice, partition: int = 0, ingest_time: int | None = None, now: int | None = None
    ) -> Rejection | None:
        """Apply one decoded SettlementNotice. Returns the rejection when the record is invalid."""
        rules = self.rules
        self.stats.records += 1
        notice_id = notice["notice_id"]
        order_id = notice["order_id"]
        merchant_id = notice["merchant_id"]
        settled_at = notice["settled_at"]
        amount = notice["amount_minor"]
        currency = notice["currency"]
        capture_seq = notice.get("capture_seq", 1)
        capture_count = notice.get("capture_count", 1)
        book = self.books.get(partition)
        order = book.orders.get(order_id) if book is not None else None
        pan = False  # as in on_terminal_event
        for name in self._notice_scan if order is None else self._notice_scan_known:
            value = notice[name]  # type: ignore[literal-required]
            if (
                value is not None
                and len(value) >= PAN_MIN_DIGITS
                and maybe_pan(value) is not None
                and find_pan(value) is not None
            ):
                pan = True
                break
        if (
            not (notice_id and order_id and merchant_id)
            or amount <= 0
            or amount > rules.max_amount_minor
            or currency not in ISO_4217_CODES
            or (ingest_time is not None and settled_at - ingest_time > rules.max_clock_skew_ms)
            or not 0 < capture_seq <= capture_count
            or pan
        ):  # possibly invalid: the full check decides (and says why)
            rejection = check_settlement_notice(notice, ingest_time, rules, self._notice_full_scan)
            if rejection is not None:
                self._invalid("settlement", notice, notice_id, settled_at, rejection, now)
                return rejection
        if book is None:
            book = self.book(partition)
        if order is None:
            order = self._open_order(book, order_id, merchant_id, settled_at)
        elif notice_id in order.seen_notices:
            self.stats.duplicates_dropped += 1
            self._advance(book, settled_at, now)
            return None
        order.seen_notices += (notice_id,)
        if book.dirty is not None:
            book.dirty[order_id] = order
        status = notice["status"]
        order.settlement_phase = SETTLEMENT_TRANSITIONS[order.settlement_phase][SETTLEMENT_STATUS_INDEX[status]]
        boxed: Any = notice  # the input's int objects into the state as they are (as in on_terminal_event)
        settled_obj, amount_obj = boxed["settled_at"], boxed["amount_minor"]
        facts: Notice = new_tuple(Notice, (notice_id, settled_obj, amount_obj, currency))
        if status == "SETTLED":
            settled = order.settled
            if settled is None and capture_count == 1:  # a whole settlement (v1)
                order.settled = facts
                order.fee_sum = fee = notice["fee_minor"]
                if not order.scheduled & SCHEDULED_ORPHAN and order.terminal_phase <= _TIMED_OUT:
                    self._schedule(book, order, ORPHAN, settled_at)
                pricing = self._pricing.get(order.merchant_id, self._default_pricing)
                if pricing is not None and not order.fired & FIRED_FEE and fee_off(pricing, amount, fee):
                    self._check_fee(order, notice_id, amount, fee, settled_at, now, book)
            elif settled is not None and order.parts is None:
                self._duplicate_settlement(order, settled, facts, now, book)
            else:
                fee = notice["fee_minor"]
                part = new_tuple(Part, (capture_seq, *facts, boxed["fee_minor"]))
                if self._settle_part(order, part, capture_count, now, book):
                    # the grace runs from the earliest part (so from the same time after a restore, and whatever
                    # the parts' arrival order): a part earlier than all before it schedules again (the later
                    # deadline then finds the alert fired)
                    parts = order.parts
                    assert parts is not None
                    if order.terminal_phase <= _TIMED_OUT and settled_at == min(p.settled_at for p in parts):
                        self._schedule(book, order, ORPHAN, settled_at)
                    pricing = self._pricing.get(order.merchant_id, self._default_pricing)
                    if pricing is not None and not order.fired & FIRED_FEE and fee_off(pricing, amount, fee):
                        self._check_fee(order, notice_id, amount, fee, settled_at, now, book)
        elif status == "FAILED":
            if order.failed is None:
                order.failed = facts
        else:  # REVERSED: refunds add up; the decision names the latest (by settled_at, notice_id)
            order.reversed_sum += amount
            reversal = order.reversal
            if reversal is None or (settled_at, notice_id) > (reversal.settled_at, reversal.notice_id):
                order.reversal = facts
        self._decide(order, now, book)
        if order.open_alerts:
            self._resolve(order, notice_id, settled_at, now, book)
        watermark = book.watermark
        batch_id = notice["batch_id"]
        if batch_id is not None and self._count_batches:  # counted by the batch stage, then its watermark moves
            # a BatchSighting's fields after batch_id (inlined: every simulated notice has a batch_id)
            sighting = (
                notice_id,
                status,
                amount_obj,
                boxed["fee_minor"],
                currency,
                merchant_id,
                settled_obj,
                book.partition,
                settled_obj if settled_at > watermark else watermark,
                order_id,
            )
            feed = self._batch_feed
            if feed is not None:  # in place: the engine's own batch stage
                # = feed.notice(batch_id, sighting, now), inlined for its usual case (a batch still waiting)
                unsent = feed.unsent.get(batch_id) if batch_id not in feed.ledger.batches else None
                if unsent is not None:
                    unsent += sighting
                else:
                    feed.notice(batch_id, sighting, now)
            else:  # live: handed out to the worker's batch stage
                assert self.batch_sightings is not None
                self.batch_sightings.append(new_tuple(BatchSighting, (batch_id, *sighting)))
        if settled_at > watermark:
            book.watermark = watermark = settled_at
            feed = self._batch_feed  # in place: a batch deadline due at the new watermark fires now
            if feed is not None and feed.due <= watermark:
                self.sync_batches(now)
        next_due = book.deadlines.next_due()
        if next_due is not None and next_due <= watermark:
            self._advance(book, settled_at, now)
            watermark = book.watermark
        order.last_seen = watermark
        return None

    def _batch_watermark_moved(self, watermark: int, now: int | None) -> None:
        """A partition's watermark moved to ``watermark``: in place, the ledger takes every partition's watermark
        once one of its deadlines may be due (its watermark is their minimum, so each move that can fire one
        syncs: the ledger fires exactly what following every move would)."""
        feed = self._batch_feed
        if feed is not None and feed.due <= watermark:
            self.sync_batches(now)

    def sync_batches(self, now: int | None = None) -> None:
        """In place: pass every partition's watermark on to the batch ledger (also at the end of a replay)."""
        feed = self._batch_feed
        if feed is None:
            return
        batches = self.batches
        for partition, book in self.books.items():
            batches.advance(partition, book.watermark, now)
        feed.fire(now)

    def on_settlement_batch(
        self, batch: SettlementBatch, partition: int = 0, ingest_time: int | None = None, now: int | None = None
    ) -> Rejection | None:
        """Apply one decoded SettlementBatch control record to ``batches`` (in place). Returns the rejection when
        it is invalid (INVALID_EVENT alert as for every invalid record). Control records do not move order
        partition watermarks: their closed_at is the batch's event time, not an order's."""
        self.stats.records += 1
        rejection = check_settlement_batch(batch, ingest_time, self.rules)
        if rejection is not None:
            self._invalid("batch", batch, batch["batch_id"], batch["closed_at"], rejection, now)
            return rejection
        if self._batch_feed is None:
            raise ValueError("control records go to the batch stage: this engine collects batch sightings")
        self.sync_batches(now)
        self._batch_feed.control(batch, now)
        return None
