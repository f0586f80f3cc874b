"""The reconciliation engine: pure, deterministic, no I/O.

Shells (``posrecon replay``, the Kafka worker) decode records, pick the partition and the ingest time, and
call :meth:`ReconciliationEngine.on_terminal_event` / :meth:`on_settlement_notice` /
:meth:`advance`; the engine appends the decisions and alerts it makes to ``reconciled`` and ``alerts``,
which the shell drains with :meth:`take`.

Time: each partition has a watermark (largest event time among its valid records). A record is applied
to its order first; then the watermark it carries fires the due deadlines (a min-heap per partition, so
firing never scans the open orders) whose conditions still hold.

The engine is one class in rooms: this module applies records (the hot path), :mod:`~posrecon.engine.decisions`
decides outcomes and raises their alerts, :mod:`~posrecon.engine.timers` schedules and fires deadlines,
:mod:`~posrecon.engine.snapshot` saves and restores state (mixins, so the hot path calls no extra layer).
"""

from __future__ import annotations

from typing import Any, Final

from posrecon.config import RuleConfig
from posrecon.engine.batch_feed import BatchFeed
from posrecon.engine.batches import BatchLedger, BatchSighting
from posrecon.engine.book import NO_WATERMARK, EngineStats, PartitionBook
from posrecon.engine.cards import CardIndex, CardKey, CardSighting, duplicate_charge_alert
from posrecon.engine.currency import ISO_4217_CODES
from posrecon.engine.model import Alert, ReconciledOrder, Rejection, TerminalEvent
from posrecon.engine.order import (
    SCHEDULED_EXPIRED,
    SCHEDULED_MISSING,
    TERMINAL_EVENT_INDEX,
    TERMINAL_TRANSITIONS,
    Approval,
    TerminalPhase,
    new_tuple,
)
from posrecon.engine.pan import (
    PAN_MIN_DIGITS,
    SETTLEMENT_NOTICE_STRING_FIELDS,
    TERMINAL_EVENT_STRING_FIELDS,
    fields_to_scan,
    find_pan,
    maybe_pan,
)
from posrecon.engine.pricing import fee_pricing
from posrecon.engine.settlement_side import SettlementSide
from posrecon.engine.timers import EXPIRE, MISSING, deadline_waits
from posrecon.engine.validation import PAN_START as _PAN_START
from posrecon.engine.validation import check_terminal_event

__all__ = ["NO_WATERMARK", "EngineStats", "PartitionBook", "ReconciliationEngine"]


_VOIDED: Final = TerminalPhase.VOIDED
_TIMED_OUT: Final = TerminalPhase.TIMED_OUT


class ReconciliationEngine(SettlementSide):
    """Applies records to the orders of their partition: the public API and the per-record hot path."""

    def __init__(
        self,
        rules: RuleConfig | None = None,
        partitions: int = 1,
        *,
        collect_card_sightings: bool = False,
        collect_auth_latencies: bool = False,
        collect_batch_sightings: bool = False,
        count_batches: bool = True,
    ) -> None:
        """``collect_card_sightings``: hand approvals and voids out in ``card_sightings`` instead of checking
        them against ``cards`` here (the worker routes them to the card stage); ``collect_auth_latencies``:
        record ORDER_CREATED -> authorisation result latencies (ms, event time) in ``auth_latencies``, and
        alert -> RESOLVED record latencies ((kind, ms), event time) in ``resolve_latencies``;
        ``collect_batch_sightings``: hand notices with a batch_id out in ``batch_sightings`` instead of counting
        them in ``batches`` here (the worker routes them to the batch stage); ``count_batches`` False: notices'
        batch_ids are not counted at all (a worker without a control-records topic can decide no batch)."""
        rules = self.rules = rules or RuleConfig()
        self._waits = deadline_waits(rules)
        self._uniform_tolerance = not rules.merchants and not rules.amount_tolerance_bps
        #: each merchant table's rules, looked up directly on the hot path (a merchant without one: ``rules``)
        self._merchant_rules = {m: rules.for_merchant(m) for m in rules.merchants}
        # a SETTLED part's fee is checked only where pricing is configured (fee_mismatch is False elsewhere): the
        # pricing of each merchant table, else the top-level one (None: not configured)
        self._pricing = {m: fee_pricing(r) for m, r in self._merchant_rules.items()}
        self._default_pricing = fee_pricing(rules)
        #: the deadline waits of each merchant with a table (the others: ``_waits``)
        self._merchant_waits = {m: deadline_waits(r) for m, r in self._merchant_rules.items()}
        self._terminal_full_scan = fields_to_scan(TERMINAL_EVENT_STRING_FIELDS, rules.pan_scan_fields)
        self._notice_full_scan = fields_to_scan(SETTLEMENT_NOTICE_STRING_FIELDS, rules.pan_scan_fields)
        # the hot path's scans: an open order's order_id passed the scan when the order opened (only valid records
        # open one), and a currency that passes v1's ISO 4217 check cannot hold a card number (one that fails it
        # goes to the full check, which scans every field)
        self._terminal_scan = _hot(self._terminal_full_scan, "currency")
        self._notice_scan = _hot(self._notice_full_scan, "currency")
        self._terminal_scan_known = _hot(self._terminal_scan, "order_id")
        self._notice_scan_known = _hot(self._notice_scan, "order_id")
        self.books: dict[int, PartitionBook] = {}
        self.cards = CardIndex(rules, sources=partitions)
        self.batches = BatchLedger(rules, sources=partitions)
        self.batch_sightings: list[BatchSighting] | None = [] if collect_batch_sightings else None
        self._count_batches = count_batches
        #: in place (not collected): the engine's own batch stage; None when the worker routes the sightings
        self._batch_feed = None if collect_batch_sightings else BatchFeed(self.batches, rules.state_retention_ms)
        #: None unless collected (see above): the hot path tests ``is not None``
        self.card_sightings: list[CardSighting] | None = [] if collect_card_sightings else None
        self.auth_latencies: list[int] | None = [] if collect_auth_latencies else None
        self.resolve_latencies: list[tuple[str, int]] | None = [] if collect_auth_latencies else None
        self.reconciled: list[ReconciledOrder] = []
        self.alerts: list[Alert] = []
        self.stats = EngineStats()

    @classmethod
    def restore(
        cls, snapshot: dict[str, Any], rules: RuleConfig | None = None, partitions: int = 1
    ) -> ReconciliationEngine:
        engine = cls(rules, partitions)
        engine.load_snapshot(snapshot)
        return engine

    # --- public API ------------------------------------------------------------------------------------

    def take(self) -> tuple[list[ReconciledOrder], list[Alert]]:
        """Hand over the outputs produced since the last call."""
        reconciled, alerts = self.reconciled, self.alerts
        self.reconciled, self.alerts = [], []
        return reconciled, alerts

    def open_orders(self) -> int:
        return sum(len(b.orders) for b in self.books.values())

    def on_terminal_event(
        self, event: TerminalEvent, partition: int = 0, ingest_time: int | None = None, now: int | None = None
    ) -> Rejection | None:
        """Apply one decoded TerminalEvent. Returns the rejection when the record is invalid."""
        # The hot path: the validation's common case, the order lookup and the first approval's card sighting
        # are inlined here (check_terminal_event decides the rest; deadlines go through _schedule).
        rules = self.rules
        self.stats.records += 1
        event_id = event["event_id"]
        order_id = event["order_id"]
        merchant_id = event["merchant_id"]
        terminal_id = event["terminal_id"]
        event_time = event["event_time"]
        amount = event["amount_minor"]
        token = event["card_token"]
        book = self.books.get(partition)
        order = book.orders.get(order_id) if book is not None else None
        # PAN_IN_FIELD's scan (pan.find_pan_in_record, inlined): a known order's id was scanned when it opened
        pan = False
        for name in self._terminal_scan if order is None else self._terminal_scan_known:
            value = event[name]  # type: ignore[literal-required]  # schema fields: a decoded record has them all
            if (
                value is not None
                and len(value) >= PAN_MIN_DIGITS
                and maybe_pan(value) is not None
                and find_pan(value) is not None
            ):
                pan = True
                break
        if (
            not (event_id and order_id and merchant_id and terminal_id)
            or (token is not None and token[:1] in _PAN_START)
            or amount <= 0
            or amount > rules.max_amount_minor
            or event["currency"] not in ISO_4217_CODES
            or (ingest_time is not None and abs(event_time - ingest_time) > rules.max_clock_skew_ms)
            or pan
        ):  # possibly invalid: the full check decides (and says why)
            rejection = check_terminal_event(event, ingest_time, rules, self._terminal_full_scan)
            if rejection is not None:
                self._invalid("terminal", event, event_id, event_time, rejection, now)
                return rejection
        if book is None:
            book = self.book(partition)
        if order is None:
            order = self._open_order(book, order_id, merchant_id, event_time)
        elif event_id in order.seen_events:
            self.stats.duplicates_dropped += 1
            self._advance(book, event_time, now)
            return None
        order.seen_events += (event_id,)
        if book.dirty is not None:
            book.dirty[order_id] = order
        if not order.terminal_merchant:
            order.merchant_id = merchant_id
            order.terminal_merchant = True
        if order.terminal_id is None:
            order.terminal_id = terminal_id
        event_type = event["event_type"]
        previous = order.terminal_phase
        phase = order.terminal_phase = TERMINAL_TRANSITIONS[previous][TERMINAL_EVENT_INDEX[event_type]]
        if phase is not previous:
            order.phase_time = event_time
            if (
                previous <= _TIMED_OUT  # unresolved (NONE, CREATED, TIMED_OUT) …
                and phase > _TIMED_OUT  # … to an authorisation result
                and order.created_at is not None
                and self.auth_latencies is not None
            ):
                self.auth_latencies.append(event_time - order.created_at)
        if event_type == "AUTH_APPROVED":
            currency = event["currency"]
            # the input's int objects go into the state tuples as they are: compiled, a native int put in a
            # tuple is boxed anew (32 B each; see docs/performance.md, "Compiled engine")
            boxed: Any = event
            boxed_amount = boxed["amount_minor"]
            if order.approval is None:
                order.approval = new_tuple(
                    Approval, (event_id, boxed["event_time"], boxed_amount, currency, terminal_id, token, merchant_id)
                )
                if not order.scheduled & SCHEDULED_MISSING and order.awaiting_settlement() is not None:
                    self._schedule(book, order, MISSING, event_time)
            else:
                self._duplicate_charge(order, event, now, book)
            if token is not None:  # the card stage: here (CardIndex), or the worker's (card_sightings)
                watermark = book.watermark
                mark = watermark if watermark > event_time else event_time
                key: CardKey = new_tuple(CardKey, (token, merchant_id, boxed_amount, currency))
                voided = phase is _VOIDED
                void_time = order.phase_time if voided else 0  # the card index judges voids by event time
                if self.card_sightings is not None:
                    self.card_sightings.append(
                        new_tuple(
                            CardSighting,
                            (
                                key,
                                order_id,
                                event_time,
                                terminal_id,
                                voided,
                                False,
                                book.partition,
                                mark,
                                "",
                                void_time,
                            ),
                        )
                    )
                else:
                    found = self.cards.on_approval(
                        key, order_id, event_time, terminal_id, voided, book.partition, mark, void_time
                    )
                    for dup in found:
                        self.alerts.append(duplicate_charge_alert(dup, rules, self._now(now, book)))
        elif event_type == "ORDER_CREATED":
            if order.created_at is None:
                order.created_at = event_time
                # a deadline whose condition can no longer become true is not scheduled (phases only move on)
                if not order.scheduled & SCHEDULED_EXPIRED and phase <= _TIMED_OUT:
                    self._schedule(book, order, EXPIRE, event_time)
        elif event_type == "VOIDED" and previous is not _VOIDED and order.approval is not None:
            approval = order.approval
            if approval.card_token is not None:
                fields = (
                    _card_key(approval),
                    order_id,
                    approval.event_time,
                    approval.terminal_id,
                    True,
                    True,
                    partition,
                    max(book.watermark, event_time),
                    event_id,
                    event_time,
                )
                void: CardSighting = new_tuple(CardSighting, fields)
                if self.card_sightings is not None:
                    self.card_sightings.append(void)
                else:
                    for resolved in self.cards.on_void(void):
                        self.alerts.append(duplicate_charge_alert(resolved, rules, self._now(now, book)))
        if order.settled is not None or order.failed is not None:  # no decision without a notice
            self._decide(order, now, book)
        if order.open_alerts:
            self._resolve(order, event_id, event_time, now, book)
        watermark = book.watermark
        if event_time > watermark:
            book.watermark = watermark = event_time
            feed = self._batch_feed  # in place: a batch deadline due at the new watermark fires now
            if feed is not None and feed.due <= watermark:
                self.sync_batches(now)
        next_due = book.deadlines.next_due()
        if next_due is not None and next_due <= watermark:
            self._advance(book, event_time, now)
            watermark = book.watermark
        order.last_seen = watermark
        return None


def _hot(fields: tuple[str, ...], skipped: str) -> tuple[str, ...]:
    return tuple(name for name in fields if name != skipped)


def _card_key(approval: Approval) -> CardKey:
    assert approval.card_token is not None
    key: CardKey = new_tuple(
        CardKey, (approval.card_token, approval.merchant_id, approval.amount_minor, approval.currency)
    )
    return key
