"""The reconciliation engine: pure, deterministic, no I/O.

Shells (``posrecon replay``, the Kafka worker) decode records, pick the partition and the ingest time, and
call :meth:`ReconciliationEngine.on_terminal_event` / :meth:`on_settlement_notice` /
:meth:`advance`; the engine appends the decisions and alerts it makes to ``reconciled`` and ``alerts``,
which the shell drains with :meth:`take`.

Time: each partition has a watermark (largest event time among its valid records). A record is applied
to its order first; then the watermark it carries fires the due deadlines (a min-heap per partition, so
firing never scans the open orders) whose conditions still hold.
"""

from __future__ import annotations

from typing import Any

from posrecon.config import RuleConfig
from posrecon.engine.alerts import make_alert, record_fingerprint
from posrecon.engine.cards import CardIndex, CardKey, CardSighting, duplicate_charge_alert
from posrecon.engine.currency import ISO_4217_CODES
from posrecon.engine.deadlines import Deadline, DeadlineIndex
from posrecon.engine.model import (
    Alert,
    AlertKind,
    Outcome,
    ReconciledOrder,
    Rejection,
    SettlementNotice,
    Severity,
    TerminalEvent,
)
from posrecon.engine.order import (
    FIRED_CONFLICT,
    FIRED_EXPIRED,
    FIRED_FAILED_CONFLICT,
    FIRED_LATE,
    FIRED_MISMATCH,
    FIRED_MISSING,
    FIRED_ORPHAN,
    SCHEDULED_EXPIRED,
    SCHEDULED_MISSING,
    SCHEDULED_ORPHAN,
    SETTLEMENT_STATUS_INDEX,
    SETTLEMENT_TRANSITIONS,
    TERMINAL_EVENT_INDEX,
    TERMINAL_TRANSITIONS,
    UNRESOLVED_TERMINAL,
    Approval,
    Notice,
    OrderState,
    RecordFields,
    SettlementPhase,
    TerminalPhase,
)
from posrecon.engine.validation import PAN_START as _PAN_START
from posrecon.engine.validation import check_settlement_notice, check_terminal_event

NO_WATERMARK = -(1 << 62)

# deadline kinds, in the order they fire when due at the same instant
EXPIRE = 0
ORPHAN = 1
MISSING = 2
EVICT = 9

#: ``tuple.__new__``: builds an Approval / Notice without the NamedTuple's Python-level ``__new__``
_new_tuple: Any = tuple.__new__

_MATCHED = Outcome.MATCHED
_REVERSED = Outcome.REVERSED
_OUTCOME_VALUE = {o: o.value for o in Outcome}
_DECLINED = TerminalPhase.DECLINED
_VOIDED = TerminalPhase.VOIDED
_CREATED = TerminalPhase.CREATED
_TIMED_OUT = TerminalPhase.TIMED_OUT
_REVERSED_PHASE = SettlementPhase.REVERSED


class PartitionBook:
    """The orders of one input partition, its watermark and its deadline index."""

    __slots__ = ("deadlines", "dirty", "orders", "partition", "watermark")

    def __init__(self, partition: int = 0) -> None:
        self.partition = partition
        self.orders: dict[str, OrderState] = {}
        #: order ids changed (or evicted) since the shell last persisted this book; None: not tracked
        self.dirty: set[str] | None = None
        self.deadlines = DeadlineIndex()
        self.watermark = NO_WATERMARK


class EngineStats:
    __slots__ = ("duplicates_dropped", "evicted", "invalid", "records")

    def __init__(self) -> None:
        self.records = 0
        self.duplicates_dropped = 0
        self.invalid = 0
        self.evicted = 0


class ReconciliationEngine:
    def __init__(self, rules: RuleConfig | None = None, partitions: int = 1) -> None:
        self.rules = rules or RuleConfig()
        self.books: dict[int, PartitionBook] = {}
        self.cards = CardIndex(self.rules, sources=partitions)
        #: when a list, approvals and voids are handed out here instead of checked against ``cards``
        self.card_sightings: list[CardSighting] | None = None
        #: when a list, ORDER_CREATED -> authorisation result latencies (ms, event time) for metrics
        self.auth_latencies: list[int] | None = None
        self.reconciled: list[ReconciledOrder] = []
        self.alerts: list[Alert] = []
        self.stats = EngineStats()

    # --- public API ------------------------------------------------------------------------------------

    def take(self) -> tuple[list[ReconciledOrder], list[Alert]]:
        """Hand over the outputs produced since the last call."""
        reconciled, alerts = self.reconciled, self.alerts
        self.reconciled, self.alerts = [], []
        return reconciled, alerts

    def book(self, partition: int) -> PartitionBook:
        book = self.books.get(partition)
        if book is None:
            book = self.books[partition] = PartitionBook(partition)
        return book

    def watermark(self, partition: int = 0) -> int:
        return self.book(partition).watermark

    def open_orders(self) -> int:
        return sum(len(b.orders) for b in self.books.values())

    def on_terminal_event(
        self, event: TerminalEvent, partition: int = 0, ingest_time: int | None = None, now: int | None = None
    ) -> Rejection | None:
        """Apply one decoded TerminalEvent. Returns the rejection when the record is invalid."""
        # The hot path: validation, order lookup/opening, scheduling and the first approval are inlined
        # (same steps, same order of effects as the helper methods they mirror).
        rules = self.rules
        self.stats.records += 1
        event_id = event["event_id"]
        order_id = event["order_id"]
        merchant_id = event["merchant_id"]
        terminal_id = event["terminal_id"]
        event_time = event["event_time"]
        amount = event["amount_minor"]
        token = event["card_token"]
        if (
            not (event_id and order_id and merchant_id and terminal_id)
            or (token is not None and token[:1] in _PAN_START)
            or amount <= 0
            or amount > rules.max_amount_minor
            or event["currency"] not in ISO_4217_CODES
            or (ingest_time is not None and abs(event_time - ingest_time) > rules.max_clock_skew_ms)
        ):  # possibly invalid: the full check decides (and says why)
            rejection = check_terminal_event(event, ingest_time, rules)
            if rejection is not None:
                self._invalid("terminal", event, event_id, event_time, rejection, now)
                return rejection
        book = self.books.get(partition) or self.book(partition)
        order = book.orders.get(order_id)
        if order is None:
            order = self._open_order(book, order_id, merchant_id, event_time)
        elif event_id in order.seen_events:
            self.stats.duplicates_dropped += 1
            self._advance(book, event_time, now)
            return None
        order.seen_events += (event_id,)
        if book.dirty is not None:
            book.dirty.add(order_id)
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
            if order.approval is None:
                order.approval = _new_tuple(
                    Approval, (event_id, event_time, amount, currency, terminal_id, token, merchant_id)
                )
                if (
                    not order.scheduled & SCHEDULED_MISSING
                    and order.settled is None
                    and order.failed is None
                    and phase is not _VOIDED
                ):
                    order.scheduled |= SCHEDULED_MISSING
                    due = event_time + rules.settlement_sla_ms + rules.allowed_lateness_ms
                    if due > order.pending_due:
                        order.pending_due = due
                    book.deadlines.push((due, MISSING, order_id))
            else:
                self._duplicate_charge(order, event, now, book)
            if token is not None:  # = self._sight_card(book, order, <this approval>, now), inlined
                watermark = book.watermark
                mark = watermark if watermark > event_time else event_time
                key = (token, merchant_id, amount, currency)
                if self.card_sightings is not None:
                    self.card_sightings.append(
                        CardSighting(
                            key, order_id, event_time, terminal_id, phase is _VOIDED, False, book.partition, mark
                        )
                    )
                else:
                    found = self.cards.on_approval(
                        key, order_id, event_time, terminal_id, phase is _VOIDED, book.partition, mark
                    )
                    for dup in found:
                        self.alerts.append(duplicate_charge_alert(dup, rules, self._now(now, book)))
        elif event_type == "ORDER_CREATED":
            if order.created_at is None:
                order.created_at = event_time
                # a deadline whose condition can no longer become true is not scheduled (phases only move on)
                if not order.scheduled & SCHEDULED_EXPIRED and phase <= _TIMED_OUT:
                    order.scheduled |= SCHEDULED_EXPIRED
                    due = event_time + rules.order_ttl_ms + rules.allowed_lateness_ms
                    if due > order.pending_due:
                        order.pending_due = due
                    book.deadlines.push((due, EXPIRE, order_id))
        elif event_type == "VOIDED" and previous is not _VOIDED and order.approval is not None:
            approval = order.approval
            if approval.card_token is not None:
                void = CardSighting(
                    _card_key(approval), order_id, approval.event_time, approval.terminal_id, True, True,
                    partition, max(book.watermark, event_time),
                )  # fmt: skip
                if self.card_sightings is not None:
                    self.card_sightings.append(void)
                else:
                    self.cards.on_void(void)
        if order.settled is not None or order.failed is not None:  # no decision without a notice
            self._decide(order, now, book)
        watermark = book.watermark
        if event_time > watermark:
            book.watermark = watermark = event_time
        next_due = book.deadlines.next_due()
        if next_due is not None and next_due <= watermark:
            self._advance(book, event_time, now)
            watermark = book.watermark
        order.last_seen = watermark
        return None

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
        if (
            not (notice_id and order_id and merchant_id)
            or amount <= 0
            or amount > rules.max_amount_minor
            or currency not in ISO_4217_CODES
            or (ingest_time is not None and settled_at - ingest_time > rules.max_clock_skew_ms)
        ):  # possibly invalid: the full check decides (and says why)
            rejection = check_settlement_notice(notice, ingest_time, rules)
            if rejection is not None:
                self._invalid("settlement", notice, notice_id, settled_at, rejection, now)
                return rejection
        book = self.books.get(partition) or self.book(partition)
        order = book.orders.get(order_id)
        if order is None:
            order = self._open_order(book, order_id, merchant_id, settled_at)
        elif notice_id in order.seen_notices:
            self.stats.duplicates_dropped += 1
            self._advance(book, settled_at, now)
            return None
        order.seen_notices += (notice_id,)
        if book.dirty is not None:
            book.dirty.add(order_id)
        status = notice["status"]
        order.settlement_phase = SETTLEMENT_TRANSITIONS[order.settlement_phase][SETTLEMENT_STATUS_INDEX[status]]
        facts: Notice = _new_tuple(Notice, (notice_id, settled_at, amount, currency))
        if status == "SETTLED":
            if order.settled is None:
                order.settled = facts
                if not order.scheduled & SCHEDULED_ORPHAN and order.terminal_phase <= _TIMED_OUT:
                    order.scheduled |= SCHEDULED_ORPHAN
                    due = settled_at + rules.orphan_grace_ms + rules.allowed_lateness_ms
                    if due > order.pending_due:
                        order.pending_due = due
                    book.deadlines.push((due, ORPHAN, order_id))
            else:
                self._duplicate_settlement(order, order.settled, facts, now, book)
        elif status == "FAILED":
            if order.failed is None:
                order.failed = facts
        elif order.reversal is None:
            order.reversal = facts
        self._decide(order, now, book)
        watermark = book.watermark
        if settled_at > watermark:
            book.watermark = watermark = settled_at
        next_due = book.deadlines.next_due()
        if next_due is not None and next_due <= watermark:
            self._advance(book, settled_at, now)
            watermark = book.watermark
        order.last_seen = watermark
        return None

    def advance(self, partition: int, event_time: int, now: int | None = None) -> None:
        """Move a partition's watermark forward (``--until``, or wall-clock advance of an idle partition)."""
        self._advance(self.book(partition), event_time, now)

    def advance_all(self, event_time: int, now: int | None = None) -> None:
        for partition in sorted(self.books):
            self._advance(self.books[partition], event_time, now)

    # --- rules -----------------------------------------------------------------------------------------

    def _open_order(self, book: PartitionBook, order_id: str, merchant_id: str, event_time: int) -> OrderState:
        order = book.orders[order_id] = OrderState(order_id, merchant_id)
        watermark = book.watermark
        last_seen = order.last_seen = watermark if watermark > event_time else event_time
        # = _evict_at(order): nothing is scheduled yet (pending_due 0)
        evict_at = order.evict_at = (last_seen if last_seen > 0 else 0) + self.rules.state_retention_ms
        book.deadlines.push((evict_at, EVICT, order_id))
        return order

    def _evict_at(self, order: OrderState) -> int:
        return max(order.last_seen, order.pending_due) + self.rules.state_retention_ms

    def _duplicate_charge(self, order: OrderState, event: TerminalEvent, now: int | None, book: PartitionBook) -> None:
        first = order.approval
        assert first is not None
        self.alerts.append(
            make_alert(
                AlertKind.DUPLICATE_CHARGE,
                Severity.WARNING,
                (order.order_id, "approval", event["event_id"]),
                order_id=order.order_id,
                merchant_id=order.merchant_id,
                terminal_id=event["terminal_id"],
                reason=(
                    f"order {order.order_id} approved again by event {event['event_id']} "
                    f"(first approval {first.event_id}, attempt {event['attempt']})"
                ),
                event_time=max(first.event_time, event["event_time"]),
                detected_at=self._now(now, book),
                related_ids=[first.event_id, event["event_id"]],
            )
        )

    def _duplicate_settlement(
        self, order: OrderState, first: Notice, second: Notice, now: int | None, book: PartitionBook
    ) -> None:
        self.alerts.append(
            make_alert(
                AlertKind.DUPLICATE_SETTLEMENT,
                Severity.CRITICAL,
                (order.order_id, second.notice_id),
                order_id=order.order_id,
                merchant_id=order.merchant_id,
                terminal_id=order.terminal_id,
                reason=(
                    f"order {order.order_id} settled twice: notice {second.notice_id} "
                    f"({second.amount_minor} {second.currency}) after {first.notice_id}"
                ),
                event_time=max(first.settled_at, second.settled_at),
                detected_at=self._now(now, book),
                related_ids=[first.notice_id, second.notice_id],
            )
        )

    def _decide(self, order: OrderState, now: int | None, book: PartitionBook) -> None:
        # OrderState.base_outcome + record_fields + next_revision in one pass (same results)
        settled = order.settled
        approval = order.approval
        phase = order.terminal_phase
        notice: Notice
        if settled is not None:
            notice = settled
            if phase is _DECLINED or phase is _VOIDED:
                base = Outcome.STATUS_CONFLICT
            elif approval is not None:
                rules = self.rules
                if (
                    settled.currency != approval.currency
                    or abs(settled.amount_minor - approval.amount_minor) > rules.amount_tolerance_minor
                ):
                    base = Outcome.AMOUNT_MISMATCH
                elif settled.settled_at - approval.event_time > rules.settlement_sla_ms:
                    base = Outcome.MATCHED_LATE
                else:
                    base = _MATCHED
            elif order.fired & FIRED_ORPHAN:
                base = Outcome.UNMATCHED_SETTLEMENT
            else:
                return
        else:
            failed = order.failed
            if failed is None or approval is None or phase is _VOIDED:
                return
            notice = failed
            base = Outcome.SETTLEMENT_FAILED
        if base is not _MATCHED:
            self._outcome_alert(order, base, now, book)
        if order.settlement_phase is _REVERSED_PHASE:
            outcome = _REVERSED
            reversal = order.reversal
            notice_id = reversal.notice_id if reversal is not None else notice.notice_id
        else:
            outcome = base
            notice_id = notice.notice_id
        if approval is not None:
            terminal_id: str | None = approval.terminal_id
            currency = approval.currency
            approved_amount: int | None = approval.amount_minor
            approved_at: int | None = approval.event_time
        else:
            terminal_id = order.terminal_id
            currency = notice.currency
            approved_amount = approved_at = None
        if settled is not None:
            settled_amount: int | None = settled.amount_minor
            settled_at: int | None = settled.settled_at
            lag = settled.settled_at - approved_at if approved_at is not None else None
        else:
            settled_amount = settled_at = lag = None
        fields: RecordFields = (
            order.order_id, order.merchant_id, terminal_id, _OUTCOME_VALUE[outcome], currency, approved_amount,
            settled_amount, approved_at, settled_at, lag, notice_id,
        )  # fmt: skip
        if fields == order.last_fields:
            return
        order.last_fields = fields
        revision = order.revision = order.revision + 1
        self.reconciled.append(
            {
                "order_id": fields[0],
                "merchant_id": fields[1],
                "terminal_id": terminal_id,
                "outcome": fields[3],
                "currency": currency,
                "approved_amount_minor": approved_amount,
                "settled_amount_minor": settled_amount,
                "approved_at": approved_at,
                "settled_at": settled_at,
                "settlement_lag_ms": lag,
                "notice_id": notice_id,
                "revision": revision,
            }
        )

    def _outcome_alert(self, order: OrderState, outcome: Outcome, now: int | None, book: PartitionBook) -> None:
        approval, settled = order.approval, order.settled
        if outcome is Outcome.MATCHED_LATE:
            assert approval is not None and settled is not None
            if order.fired & FIRED_LATE:
                return
            order.fired |= FIRED_LATE
            lag_h = (settled.settled_at - approval.event_time) / 3_600_000
            self._order_alert(
                order, AlertKind.LATE_SETTLEMENT, Severity.WARNING, ("late", settled.notice_id),
                f"settled {lag_h:.1f} h after approval (SLA {self.rules.settlement_sla_ms / 3_600_000:.1f} h)",
                settled.settled_at, [approval.event_id, settled.notice_id], now, book,
            )  # fmt: skip
        elif outcome is Outcome.AMOUNT_MISMATCH:
            assert approval is not None and settled is not None
            if order.fired & FIRED_MISMATCH:
                return
            order.fired |= FIRED_MISMATCH
            self._order_alert(
                order, AlertKind.AMOUNT_MISMATCH, Severity.CRITICAL, ("amount", settled.notice_id),
                f"approved {approval.amount_minor} {approval.currency} but settled "
                f"{settled.amount_minor} {settled.currency} (tolerance {self.rules.amount_tolerance_minor})",
                max(approval.event_time, settled.settled_at), [approval.event_id, settled.notice_id], now, book,
            )  # fmt: skip
        elif outcome is Outcome.STATUS_CONFLICT:
            assert settled is not None
            if order.fired & FIRED_CONFLICT:
                return
            order.fired |= FIRED_CONFLICT
            state = "declined" if order.terminal_phase is TerminalPhase.DECLINED else "voided"
            related = [approval.event_id, settled.notice_id] if approval is not None else [settled.notice_id]
            self._order_alert(
                order, AlertKind.STATUS_CONFLICT, Severity.CRITICAL, ("settled", state),
                f"settled by notice {settled.notice_id} but the terminal {state} the order",
                max(order.phase_time, settled.settled_at), related, now, book,
            )  # fmt: skip
        elif outcome is Outcome.SETTLEMENT_FAILED:
            failed = order.failed
            assert approval is not None and failed is not None
            if order.fired & FIRED_FAILED_CONFLICT:
                return
            order.fired |= FIRED_FAILED_CONFLICT
            self._order_alert(
                order, AlertKind.STATUS_CONFLICT, Severity.WARNING, ("failed", failed.notice_id),
                f"approved by the terminal but settlement notice {failed.notice_id} FAILED",
                max(approval.event_time, failed.settled_at), [approval.event_id, failed.notice_id], now, book,
            )  # fmt: skip

    def _order_alert(
        self,
        order: OrderState,
        kind: AlertKind,
        severity: Severity,
        condition: tuple[str, ...],
        reason: str,
        event_time: int,
        related_ids: list[str],
        now: int | None,
        book: PartitionBook,
    ) -> None:
        approval = order.approval
        self.alerts.append(
            make_alert(
                kind,
                severity,
                (order.order_id, *condition),
                order_id=order.order_id,
                merchant_id=order.merchant_id,
                terminal_id=approval.terminal_id if approval is not None else order.terminal_id,
                reason=f"order {order.order_id}: {reason}",
                event_time=event_time,
                detected_at=self._now(now, book),
                related_ids=related_ids,
            )
        )

    def _invalid(
        self,
        source: str,
        record: TerminalEvent | SettlementNotice,
        record_id: str,
        event_time: int,
        rejection: Rejection,
        now: int | None,
    ) -> None:
        self.stats.invalid += 1
        order_id = record["order_id"] or None
        self.alerts.append(
            make_alert(
                AlertKind.INVALID_EVENT,
                Severity.WARNING,
                (source, rejection.reason.value, record_fingerprint(record)),
                order_id=order_id,
                merchant_id=record["merchant_id"] or None,
                terminal_id=str(record.get("terminal_id") or "") or None,
                reason=f"invalid {source} record {record_id or '<empty id>'}: "
                f"{rejection.reason.value}: {rejection.detail}",
                event_time=event_time,
                detected_at=now if now is not None else event_time,
                related_ids=[record_id] if record_id else [],
            )
        )

    # --- time ------------------------------------------------------------------------------------------

    @staticmethod
    def _now(now: int | None, book: PartitionBook) -> int:
        return now if now is not None else max(book.watermark, 0)

    def _advance(self, book: PartitionBook, event_time: int, now: int | None) -> None:
        if event_time > book.watermark:
            book.watermark = event_time
        orders = book.orders
        for due, kind, order_id in book.deadlines.due(book.watermark):
            order = orders.get(order_id)
            if order is not None:
                if book.dirty is not None:
                    book.dirty.add(order_id)
                # the common no-op fires (condition already gone) are told apart here, without the call
                if kind == EXPIRE:
                    if order.fired & FIRED_EXPIRED or not (order.terminal_phase is _CREATED
                                                           or order.terminal_phase is _TIMED_OUT):  # fmt: skip
                        continue
                elif kind == MISSING and (
                    order.settled is not None or order.failed is not None or order.fired & FIRED_MISSING
                ):
                    continue
                self._fire(book, order, kind, due, now)

    def _fire(self, book: PartitionBook, order: OrderState, kind: int, due: int, now: int | None) -> None:
        rules = self.rules
        deadline = due - rules.allowed_lateness_ms
        if kind == EVICT:
            evict_at = self._evict_at(order)
            if evict_at > due:
                order.evict_at = evict_at
                book.deadlines.push((evict_at, EVICT, order.order_id))
            else:
                del book.orders[order.order_id]
                self.stats.evicted += 1
        elif kind == MISSING:
            approval = order.approval
            if (
                approval is not None
                and not order.fired & FIRED_MISSING
                and order.terminal_phase is not TerminalPhase.VOIDED
                and order.settled is None
                and order.failed is None
            ):
                order.fired |= FIRED_MISSING
                self._order_alert(
                    order, AlertKind.MISSING_SETTLEMENT, Severity.WARNING, ("missing",),
                    f"no settlement {rules.settlement_sla_ms / 3_600_000:.1f} h after approval {approval.event_id}",
                    deadline, [approval.event_id], now, book,
                )  # fmt: skip
        elif kind == ORPHAN:
            settled = order.settled
            if settled is not None and not order.fired & FIRED_ORPHAN and order.terminal_phase in UNRESOLVED_TERMINAL:
                order.fired |= FIRED_ORPHAN
                self._order_alert(
                    order, AlertKind.ORPHAN_SETTLEMENT, Severity.CRITICAL, ("orphan", settled.notice_id),
                    f"settled by notice {settled.notice_id} ({settled.amount_minor} {settled.currency}) "
                    f"but no approval, decline or void {rules.orphan_grace_ms // 60_000} min later "
                    f"(terminal state {order.terminal_phase.name})",
                    deadline, [settled.notice_id], now, book,
                )  # fmt: skip
                self._decide(order, now, book)
        elif kind == EXPIRE:
            if not order.fired & FIRED_EXPIRED and order.terminal_phase in (
                TerminalPhase.CREATED,
                TerminalPhase.TIMED_OUT,
            ):
                order.fired |= FIRED_EXPIRED
                self._order_alert(
                    order, AlertKind.EXPIRED_ORDER, Severity.INFO, ("expired",),
                    f"created but neither approved, declined nor voided within "
                    f"{rules.order_ttl_ms // 60_000} min (terminal state {order.terminal_phase.name})",
                    deadline, [order.order_id], now, book,
                )  # fmt: skip

    # --- snapshot / restore ----------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Everything needed to continue exactly where this engine is (JSON-able)."""
        return {
            "version": 1,
            "partitions": {
                str(p): {"watermark": b.watermark, "orders": [o.to_row() for o in b.orders.values()]}
                for p, b in sorted(self.books.items())
            },
            "cards": {
                "watermark": self.cards.watermark,
                "sources": {str(k): v for k, v in self.cards.source_watermarks.items()},
                "rows": self.cards.to_rows(),
            },
        }

    @classmethod
    def restore(
        cls, snapshot: dict[str, Any], rules: RuleConfig | None = None, partitions: int = 1
    ) -> ReconciliationEngine:
        engine = cls(rules, partitions)
        for key, part in snapshot["partitions"].items():
            book = engine.book(int(key))
            book.watermark = part["watermark"]
            for row in part["orders"]:
                engine.load_order(book, OrderState.from_row(row))
        cards = snapshot["cards"]
        engine.cards.load_rows(cards["rows"], cards["watermark"], {int(k): v for k, v in cards["sources"].items()})
        return engine

    def load_order(self, book: PartitionBook, order: OrderState) -> None:
        """Install a restored order and rebuild its deadlines (already-settled ones re-check harmlessly)."""
        rules = self.rules
        book.orders[order.order_id] = order
        pending: list[Deadline] = [(order.evict_at, EVICT, order.order_id)]
        lateness = rules.allowed_lateness_ms
        if order.scheduled & SCHEDULED_EXPIRED and order.created_at is not None:
            pending.append((order.created_at + rules.order_ttl_ms + lateness, EXPIRE, order.order_id))
        if order.scheduled & SCHEDULED_ORPHAN and order.settled is not None:
            pending.append((order.settled.settled_at + rules.orphan_grace_ms + lateness, ORPHAN, order.order_id))
        if order.scheduled & SCHEDULED_MISSING and order.approval is not None:
            pending.append((order.approval.event_time + rules.settlement_sla_ms + lateness, MISSING, order.order_id))
        for deadline in pending:
            book.deadlines.push(deadline)


def _card_key(approval: Approval) -> CardKey:
    assert approval.card_token is not None
    return (approval.card_token, approval.merchant_id, approval.amount_minor, approval.currency)
