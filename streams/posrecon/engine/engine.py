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
    SettlementPhase,
    TerminalPhase,
)
from posrecon.engine.validation import check_settlement_notice, check_terminal_event

NO_WATERMARK = -(1 << 62)

# deadline kinds, in the order they fire when due at the same instant
EXPIRE = 0
ORPHAN = 1
MISSING = 2
EVICT = 9


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
        rules = self.rules
        self.stats.records += 1
        rejection = check_terminal_event(event, ingest_time, rules)
        if rejection is not None:
            self._invalid("terminal", event, event["event_id"], event["event_time"], rejection, now)
            return rejection
        book = self.books.get(partition) or self.book(partition)
        order_id = event["order_id"]
        event_time = event["event_time"]
        order = book.orders.get(order_id)
        if order is None:
            order = self._open_order(book, order_id, event["merchant_id"], event_time)
        event_id = event["event_id"]
        if event_id in order.seen_events:
            self.stats.duplicates_dropped += 1
            self._advance(book, event_time, now)
            return None
        order.seen_events += (event_id,)
        if book.dirty is not None:
            book.dirty.add(order_id)
        if not order.terminal_merchant:
            order.merchant_id = event["merchant_id"]
            order.terminal_merchant = True
        if order.terminal_id is None:
            order.terminal_id = event["terminal_id"]
        event_type = event["event_type"]
        previous = order.terminal_phase
        phase = order.terminal_phase = TERMINAL_TRANSITIONS[previous][TERMINAL_EVENT_INDEX[event_type]]
        if phase is not previous:
            order.phase_time = event_time
            if (
                previous <= TerminalPhase.TIMED_OUT  # unresolved (NONE, CREATED, TIMED_OUT) …
                and phase > TerminalPhase.TIMED_OUT  # … to an authorisation result
                and order.created_at is not None
                and self.auth_latencies is not None
            ):
                self.auth_latencies.append(event_time - order.created_at)
        if event_type == "AUTH_APPROVED":
            if order.approval is None:
                self._first_approval(book, order, event, now)
            else:
                self._duplicate_charge(order, event, now, book)
                self._sight_card(book, order, _approval_of(event), now)
        elif event_type == "ORDER_CREATED":
            if order.created_at is None:
                order.created_at = event_time
                # a deadline whose condition can no longer become true is not scheduled (phases only move on)
                if not order.scheduled & SCHEDULED_EXPIRED and phase <= TerminalPhase.TIMED_OUT:
                    order.scheduled |= SCHEDULED_EXPIRED
                    self._schedule(book, order, event_time + rules.order_ttl_ms, EXPIRE)
        elif event_type == "VOIDED" and previous is not TerminalPhase.VOIDED and order.approval is not None:
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
        if event_time > book.watermark:
            book.watermark = event_time
        next_due = book.deadlines.next_due()
        if next_due is not None and next_due <= book.watermark:
            self._advance(book, event_time, now)
        order.last_seen = book.watermark
        return None

    def on_settlement_notice(
        self, notice: SettlementNotice, partition: int = 0, ingest_time: int | None = None, now: int | None = None
    ) -> Rejection | None:
        """Apply one decoded SettlementNotice. Returns the rejection when the record is invalid."""
        rules = self.rules
        self.stats.records += 1
        rejection = check_settlement_notice(notice, ingest_time, rules)
        if rejection is not None:
            self._invalid("settlement", notice, notice["notice_id"], notice["settled_at"], rejection, now)
            return rejection
        book = self.books.get(partition) or self.book(partition)
        order_id = notice["order_id"]
        settled_at = notice["settled_at"]
        order = book.orders.get(order_id)
        if order is None:
            order = self._open_order(book, order_id, notice["merchant_id"], settled_at)
        notice_id = notice["notice_id"]
        if notice_id in order.seen_notices:
            self.stats.duplicates_dropped += 1
            self._advance(book, settled_at, now)
            return None
        order.seen_notices += (notice_id,)
        if book.dirty is not None:
            book.dirty.add(order_id)
        status = notice["status"]
        order.settlement_phase = SETTLEMENT_TRANSITIONS[order.settlement_phase][SETTLEMENT_STATUS_INDEX[status]]
        facts = Notice(notice_id, settled_at, notice["amount_minor"], notice["currency"])
        if status == "SETTLED":
            if order.settled is None:
                order.settled = facts
                if not order.scheduled & SCHEDULED_ORPHAN and order.terminal_phase <= TerminalPhase.TIMED_OUT:
                    order.scheduled |= SCHEDULED_ORPHAN
                    self._schedule(book, order, settled_at + rules.orphan_grace_ms, ORPHAN)
            else:
                self._duplicate_settlement(order, order.settled, facts, now, book)
        elif status == "FAILED":
            if order.failed is None:
                order.failed = facts
        elif order.reversal is None:
            order.reversal = facts
        self._decide(order, now, book)
        if settled_at > book.watermark:
            book.watermark = settled_at
        next_due = book.deadlines.next_due()
        if next_due is not None and next_due <= book.watermark:
            self._advance(book, settled_at, now)
        order.last_seen = book.watermark
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
        order.last_seen = max(book.watermark, event_time)
        order.evict_at = self._evict_at(order)
        book.deadlines.push((order.evict_at, EVICT, order_id))
        return order

    def _evict_at(self, order: OrderState) -> int:
        return max(order.last_seen, order.pending_due) + self.rules.state_retention_ms

    def _schedule(self, book: PartitionBook, order: OrderState, deadline: int, kind: int) -> None:
        due = deadline + self.rules.allowed_lateness_ms
        if due > order.pending_due:
            order.pending_due = due
        book.deadlines.push((due, kind, order.order_id))

    def _first_approval(self, book: PartitionBook, order: OrderState, event: TerminalEvent, now: int | None) -> None:
        approval = order.approval = _approval_of(event)
        if (
            not order.scheduled & SCHEDULED_MISSING
            and order.settled is None
            and order.failed is None
            and order.terminal_phase is not TerminalPhase.VOIDED
        ):
            order.scheduled |= SCHEDULED_MISSING
            self._schedule(book, order, approval.event_time + self.rules.settlement_sla_ms, MISSING)
        self._sight_card(book, order, approval, now)

    def _sight_card(self, book: PartitionBook, order: OrderState, approval: Approval, now: int | None) -> None:
        """Every approval of an order counts for the cross-order duplicate-charge check."""
        if approval.card_token is None:
            return
        voided = order.terminal_phase is TerminalPhase.VOIDED
        key = (approval.card_token, approval.merchant_id, approval.amount_minor, approval.currency)
        mark = max(book.watermark, approval.event_time)
        if self.card_sightings is not None:  # the cross-order check runs elsewhere (live: repartitioned by card)
            self.card_sightings.append(
                CardSighting(
                    key, order.order_id, approval.event_time, approval.terminal_id, voided, False, book.partition, mark
                )  # fmt: skip
            )
            return
        found = self.cards.on_approval(key, order.order_id, approval.event_time, approval.terminal_id, voided,
                                       book.partition, mark)  # fmt: skip
        for dup in found:
            self.alerts.append(duplicate_charge_alert(dup, self.rules, self._now(now, book)))

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
        base = order.base_outcome(self.rules)
        if base is None:
            return
        if base is not Outcome.MATCHED:
            self._outcome_alert(order, base, now, book)
        outcome = Outcome.REVERSED if order.settlement_phase is SettlementPhase.REVERSED else base
        record = order.next_revision(order.record_fields(outcome))
        if record is not None:
            self.reconciled.append(record)

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
        deadlines = book.deadlines
        watermark = book.watermark
        while True:
            deadline = deadlines.pop_due(watermark)
            if deadline is None:
                return
            due, kind, order_id = deadline
            order = book.orders.get(order_id)
            if order is not None:
                if book.dirty is not None:
                    book.dirty.add(order_id)
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


def _approval_of(event: TerminalEvent) -> Approval:
    return Approval(
        event["event_id"],
        event["event_time"],
        event["amount_minor"],
        event["currency"],
        event["terminal_id"],
        event["card_token"],
        event["merchant_id"],
    )


def _card_key(approval: Approval) -> CardKey:
    assert approval.card_token is not None
    return (approval.card_token, approval.merchant_id, approval.amount_minor, approval.currency)
