"""Event time in the engine: partition watermarks, the deadlines of each order and what fires when one is due.

A mixin of :class:`~posrecon.engine.engine.ReconciliationEngine`. Deadlines are scheduled with
:meth:`Timers._schedule` (the one home of the deadline formula: the fact's time + the rule's wait + the
allowed lateness) and fired from the partition's :class:`~posrecon.engine.deadlines.DeadlineIndex` once
the watermark reaches them.
"""

from __future__ import annotations

from typing import Final

from posrecon.config import RuleConfig
from posrecon.engine.book import PartitionBook
from posrecon.engine.decisions import Decisions
from posrecon.engine.model import AlertKind, Severity
from posrecon.engine.order import (
    FIRED_EXPIRED,
    FIRED_MISSING,
    FIRED_ORPHAN,
    SCHEDULED_EXPIRED,
    SCHEDULED_MISSING,
    SCHEDULED_ORPHAN,
    UNRESOLVED_TERMINAL,
    Approval,
    Notice,
    OrderState,
    TerminalPhase,
)
from posrecon.engine.order_alerts import track_open_alert

# deadline kinds, in the order they fire when due at the same instant
EXPIRE: Final = 0
ORPHAN: Final = 1
MISSING: Final = 2
EVICT: Final = 9

#: OrderState.scheduled bit of each scheduled kind (EXPIRE, ORPHAN, MISSING)
_SCHEDULED_BIT = (SCHEDULED_EXPIRED, SCHEDULED_ORPHAN, SCHEDULED_MISSING)

_CREATED: Final = TerminalPhase.CREATED
_TIMED_OUT: Final = TerminalPhase.TIMED_OUT


def deadline_waits(rules: RuleConfig) -> tuple[int, int, int]:
    """Per scheduled kind (EXPIRE, ORPHAN, MISSING): how long after its fact the deadline is due, allowed
    lateness included (the rule's own deadline is ``due - allowed_lateness_ms``)."""
    lateness = rules.allowed_lateness_ms
    return (
        rules.order_ttl_ms + lateness,  # EXPIRE: after ORDER_CREATED
        rules.orphan_grace_ms + lateness,  # ORPHAN: after the SETTLED notice
        rules.settlement_sla_ms + lateness,  # MISSING: after the approval
    )


class Timers(Decisions):
    """Watermarks, deadline scheduling and firing, eviction."""

    books: dict[int, PartitionBook]
    #: deadline_waits(rules), indexed by kind
    _waits: tuple[int, int, int]
    #: per merchant with a rule table (None: no tables, every order uses ``_waits``)
    _merchant_waits: dict[str, tuple[int, int, int]]

    def book(self, partition: int) -> PartitionBook:
        book = self.books.get(partition)
        if book is None:
            book = self.books[partition] = PartitionBook(partition)
        return book

    def watermark(self, partition: int = 0) -> int:
        return self.book(partition).watermark

    def advance(self, partition: int, event_time: int, now: int | None = None) -> None:
        """Move a partition's watermark forward (``--until``, or wall-clock advance of an idle partition)."""
        self._advance(self.book(partition), event_time, now)

    def advance_all(self, event_time: int, now: int | None = None) -> None:
        for partition in sorted(self.books):
            self._advance(self.books[partition], event_time, now)

    # --- scheduling ------------------------------------------------------------------------------------

    def _schedule(self, book: PartitionBook, order: OrderState, kind: int, since: int) -> None:
        """Put the order's ``kind`` deadline for the fact at ``since`` in the book (callers schedule each kind
        once per order, and only while its condition can still become true)."""
        order.scheduled |= _SCHEDULED_BIT[kind]
        waits = self._merchant_waits.get(order.merchant_id, self._waits) if self._merchant_waits else self._waits
        due = since + waits[kind]
        if due > order.pending_due:
            order.pending_due = due
        book.deadlines.push((due, kind, order.order_id))

    def _open_order(self, book: PartitionBook, order_id: str, merchant_id: str, event_time: int) -> OrderState:
        """A new order in ``book``, with the eviction deadline every order has from its first record."""
        order = book.orders[order_id] = OrderState(order_id, merchant_id)
        watermark = book.watermark
        order.last_seen = watermark if watermark > event_time else event_time
        evict_at = order.evict_at = self._evict_at(order)
        book.deadlines.push((evict_at, EVICT, order_id))
        return order

    def _evict_at(self, order: OrderState) -> int:
        """An order is forgotten a retention after it was last seen or its last deadline, whichever is later."""
        last_seen, pending_due = order.last_seen, order.pending_due
        return (last_seen if last_seen > pending_due else pending_due) + self.rules.state_retention_ms

    # --- firing ----------------------------------------------------------------------------------------

    def _advance(self, book: PartitionBook, event_time: int, now: int | None) -> None:
        if event_time > book.watermark:
            book.watermark = event_time
            self._batch_watermark_moved(book.watermark, now)
        orders = book.orders
        dirty = book.dirty  # (set by the shell only, never while firing)
        for due, kind, order_id in book.deadlines.due(book.watermark):
            order = orders.get(order_id)
            if order is None:
                continue
            # each condition is checked here, so the common no-op fires (the order settled in time, got its
            # authorisation result …) cost no call; and they change nothing, so the order needs no new changelog
            # row (a restore re-schedules every deadline and re-checks it: snapshot.py, load_order)
            if kind == MISSING:
                if order.fired & FIRED_MISSING:
                    continue
                approval = order.awaiting_settlement()
                if approval is None:
                    continue
                self._fire_missing(book, order, approval, due, now)
            elif kind == EXPIRE:
                if order.fired & FIRED_EXPIRED or not (
                    order.terminal_phase is _CREATED or order.terminal_phase is _TIMED_OUT
                ):
                    continue
                self._fire_expired(book, order, due, now)
            elif kind == ORPHAN:
                settled = order.settled
                if settled is None or order.fired & FIRED_ORPHAN or order.terminal_phase not in UNRESOLVED_TERMINAL:
                    continue
                self._fire_orphan(book, order, settled, due, now)
            elif kind == EVICT:
                if self._evict(book, order, due):
                    if dirty is not None:
                        dirty[order_id] = None  # gone: a tombstone
                    continue
            if dirty is not None:
                dirty[order_id] = order

    def _batch_watermark_moved(self, watermark: int, now: int | None) -> None:
        """In place, a batch deadline due at a partition's new watermark fires now (the ledger's own
        watermark is the minimum over the partitions: see ``sync_batches``)."""

    def _evict(self, book: PartitionBook, order: OrderState, due: int) -> bool:
        """Forget ``order`` if its retention is over (True), else schedule its eviction again."""
        evict_at = self._evict_at(order)
        if evict_at > due:  # seen again, or a later deadline scheduled, since this one was set
            order.evict_at = evict_at
            book.deadlines.push((evict_at, EVICT, order.order_id))
            return False
        del book.orders[order.order_id]
        self.stats.evicted += 1
        return True

    def _fire_missing(
        self, book: PartitionBook, order: OrderState, approval: Approval, due: int, now: int | None
    ) -> None:
        rules = self.rules
        order.fired |= FIRED_MISSING
        sla_h = (self._waits_of_order(order)[MISSING] - rules.allowed_lateness_ms) / 3_600_000
        parts = order.parts
        what = "no settlement" if parts is None else f"{len(parts)} of {order.capture_count} parts settled"
        alert = self._order_alert(
            order,
            AlertKind.MISSING_SETTLEMENT,
            Severity.WARNING,
            ("missing",),
            f"{what} {sla_h:.1f} h after approval {approval.event_id}",
            due - rules.allowed_lateness_ms,
            [approval.event_id],
            now,
            book,
        )
        track_open_alert(order, alert)
        if parts is not None:  # k of n parts in: PARTIALLY_SETTLED
            self._decide(order, now, book)

    def _fire_orphan(self, book: PartitionBook, order: OrderState, settled: Notice, due: int, now: int | None) -> None:
        rules = self.rules
        order.fired |= FIRED_ORPHAN
        grace = self._waits_of_order(order)[ORPHAN] - rules.allowed_lateness_ms
        alert = self._order_alert(
            order,
            AlertKind.ORPHAN_SETTLEMENT,
            Severity.CRITICAL,
            ("orphan", settled.notice_id),
            f"settled by notice {settled.notice_id} ({settled.amount_minor} {settled.currency}) "
            f"but no approval, decline or void {grace // 60_000} min later "
            f"(terminal state {order.terminal_phase._name_})",
            due - rules.allowed_lateness_ms,
            [settled.notice_id],
            now,
            book,
        )
        track_open_alert(order, alert)
        self._decide(order, now, book)

    def _fire_expired(self, book: PartitionBook, order: OrderState, due: int, now: int | None) -> None:
        rules = self.rules
        order.fired |= FIRED_EXPIRED
        ttl = self._waits_of_order(order)[EXPIRE] - rules.allowed_lateness_ms
        alert = self._order_alert(
            order,
            AlertKind.EXPIRED_ORDER,
            Severity.INFO,
            ("expired",),
            f"created but neither approved, declined nor voided within "
            f"{ttl // 60_000} min (terminal state {order.terminal_phase._name_})",
            due - rules.allowed_lateness_ms,
            [order.order_id],
            now,
            book,
        )
        track_open_alert(order, alert)

    def _waits_of_order(self, order: OrderState) -> tuple[int, int, int]:
        return self._merchant_waits.get(order.merchant_id, self._waits)
