"""The alerts of the order rules: how each is raised, remembered while it can still resolve, and resolved.

A mixin of :class:`~posrecon.engine.decisions.Decisions` (and so of the engine): the decision logic
(:mod:`posrecon.engine.decisions`) and deadline firing (:mod:`posrecon.engine.timers`) call it; the alert
ids, reasons and the auto-resolution table (contract v2) live here, in one place.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from posrecon.config import RuleConfig
from posrecon.engine.alerts import make_alert, make_resolution, record_fingerprint
from posrecon.engine.book import EngineStats, PartitionBook
from posrecon.engine.model import (
    Alert,
    AlertKind,
    Outcome,
    Rejection,
    SettlementBatch,
    SettlementNotice,
    Severity,
    TerminalEvent,
)
from posrecon.engine.order import (
    FIRED_CONFLICT,
    FIRED_FAILED_CONFLICT,
    FIRED_LATE,
    FIRED_MISMATCH,
    MAX_OPEN_ALERTS,
    Notice,
    OpenAlert,
    OrderState,
    Part,
    TerminalPhase,
    new_tuple,
)
from posrecon.engine.pan import SCANNABLE_FIELDS, find_pan_in_record, scrub_text

_TIMED_OUT: Final = TerminalPhase.TIMED_OUT
_MISSING: Final = AlertKind.MISSING_SETTLEMENT.value
_ORPHAN: Final = AlertKind.ORPHAN_SETTLEMENT.value
_EXPIRED: Final = AlertKind.EXPIRED_ORDER.value
_CONFLICT: Final = AlertKind.STATUS_CONFLICT.value
_DUPLICATE: Final = AlertKind.DUPLICATE_SETTLEMENT.value


class OrderAlerts:
    """Raise an order's alerts (each at most once per condition) and the RESOLVED records that close them."""

    rules: RuleConfig
    alerts: list[Alert]
    stats: EngineStats
    #: (kind, ms of event time) from an alert to its RESOLVED record, for metrics; None unless collected
    resolve_latencies: list[tuple[str, int]] | None
    #: the rules of each merchant with a table (the others use ``rules``)
    _merchant_rules: dict[str, RuleConfig]

    def _sla(self, order: OrderState) -> int:
        return self._merchant_rules.get(order.merchant_id, self.rules).settlement_sla_ms

    @staticmethod
    def _now(now: int | None, book: PartitionBook) -> int:
        return now if now is not None else max(book.watermark, 0)

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
        alert = make_alert(
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
        self.alerts.append(alert)
        track_open_alert(order, alert, second.amount_minor)  # resolves once refunds cover the duplicate's amount

    def _outcome_alert(
        self, order: OrderState, outcome: Outcome, tol: int, now: int | None, book: PartitionBook
    ) -> None:
        approval, settled = order.approval, order.settled
        if outcome is Outcome.MATCHED_LATE:
            assert approval is not None and settled is not None
            if order.fired & FIRED_LATE:
                return
            order.fired |= FIRED_LATE
            lag_h = (settled.settled_at - approval.event_time) / 3_600_000
            self._order_alert(
                order,
                AlertKind.LATE_SETTLEMENT,
                Severity.WARNING,
                ("late", settled.notice_id),
                f"settled {lag_h:.1f} h after approval (SLA {self._sla(order) / 3_600_000:.1f} h)",
                settled.settled_at,
                [approval.event_id, settled.notice_id],
                now,
                book,
            )
        elif outcome is Outcome.AMOUNT_MISMATCH:
            assert approval is not None and settled is not None
            if order.fired & FIRED_MISMATCH:
                return
            order.fired |= FIRED_MISMATCH
            parts = order.parts
            # a split order has one amount condition, whether over-captured early or off at the end
            condition = ("amount", settled.notice_id) if parts is None else ("amount", "captures")
            what = "settled" if parts is None else f"settled in {len(parts)} of {order.capture_count} parts"
            cause = settled if parts is None else capture_cause(parts, approval.amount_minor + tol, settled)
            self._order_alert(
                order,
                AlertKind.AMOUNT_MISMATCH,
                Severity.CRITICAL,
                condition,
                f"approved {approval.amount_minor} {approval.currency} but {what} "
                f"{settled.amount_minor} {settled.currency} (tolerance {tol})",
                max(approval.event_time, cause.settled_at),
                [approval.event_id, cause.notice_id],
                now,
                book,
            )
        elif outcome is Outcome.STATUS_CONFLICT:
            assert settled is not None
            if order.fired & FIRED_CONFLICT:
                return
            order.fired |= FIRED_CONFLICT
            state = "declined" if order.terminal_phase is TerminalPhase.DECLINED else "voided"
            related = [approval.event_id, settled.notice_id] if approval is not None else [settled.notice_id]
            alert = self._order_alert(
                order,
                AlertKind.STATUS_CONFLICT,
                Severity.CRITICAL,
                ("settled", state),
                f"settled by notice {settled.notice_id} but the terminal {state} the order",
                max(order.phase_time, settled.settled_at),
                related,
                now,
                book,
            )
            track_open_alert(order, alert)  # resolves once refunds cover the settlement
        elif outcome is Outcome.SETTLEMENT_FAILED:
            failed = order.failed
            assert approval is not None and failed is not None
            if order.fired & FIRED_FAILED_CONFLICT:
                return
            order.fired |= FIRED_FAILED_CONFLICT
            self._order_alert(
                order,
                AlertKind.STATUS_CONFLICT,
                Severity.WARNING,
                ("failed", failed.notice_id),
                f"approved by the terminal but settlement notice {failed.notice_id} FAILED",
                max(approval.event_time, failed.settled_at),
                [approval.event_id, failed.notice_id],
                now,
                book,
            )

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
    ) -> Alert:
        approval = order.approval
        alert = make_alert(
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
        self.alerts.append(alert)
        return alert

    def _resolve(
        self, order: OrderState, record_id: str, event_time: int, now: int | None, book: PartitionBook
    ) -> None:
        """A RESOLVED record for each open alert of ``order`` whose condition the record just applied removed."""
        still_open: list[OpenAlert] = []
        for open_alert in order.open_alerts:
            why = _cleared_by(order, open_alert)
            if why is None:
                still_open.append(open_alert)
                continue
            kind = AlertKind(open_alert.kind)
            if self.resolve_latencies is not None and open_alert.opened_at:
                self.resolve_latencies.append((open_alert.kind, event_time - open_alert.opened_at))
            self.alerts.append(
                make_resolution(
                    kind,
                    open_alert.alert_id,
                    order_id=order.order_id,
                    merchant_id=open_alert.merchant_id,
                    terminal_id=open_alert.terminal_id,
                    reason=f"order {order.order_id}: {kind._value_} {open_alert.alert_id} resolved: {why} "
                    f"({record_id})",
                    event_time=event_time,
                    detected_at=self._now(now, book),
                    related_ids=[record_id],
                )
            )
        if len(still_open) != len(order.open_alerts):
            order.open_alerts = tuple(still_open)

    def _invalid(
        self,
        source: str,
        record: TerminalEvent | SettlementNotice | SettlementBatch,
        record_id: str,
        event_time: int,
        rejection: Rejection,
        now: int | None,
    ) -> None:
        self.stats.invalid += 1
        # a card number in any field: every field the alert echoes carries it masked (the fingerprint is a hash
        # of the masked record); a record without one keeps its ids as they are (v1)
        echo = scrub_text if find_pan_in_record(record, SCANNABLE_FIELDS) is not None else _as_is
        fields: Mapping[str, Any] = record
        record_id = echo(record_id)
        self.alerts.append(
            make_alert(
                AlertKind.INVALID_EVENT,
                Severity.WARNING,
                (source, rejection.reason._value_, record_fingerprint(record)),
                order_id=echo(fields.get("order_id") or "") or None,
                merchant_id=echo(fields.get("merchant_id") or "") or None,
                terminal_id=echo(str(fields.get("terminal_id") or "")) or None,
                reason=f"invalid {source} record {record_id or '<empty id>'}: "
                f"{rejection.reason._value_}: {rejection.detail}",
                event_time=event_time,
                detected_at=now if now is not None else event_time,
                related_ids=[record_id] if record_id else [],
                batch_id=echo(fields.get("batch_id") or "") or None if source == "batch" else None,
            )
        )


def track_open_alert(order: OrderState, alert: Alert, amount_minor: int = 0) -> None:
    """Remember an alert that a later record may resolve (bounded per order)."""
    if len(order.open_alerts) < MAX_OPEN_ALERTS:
        fields = (
            alert["kind"],
            alert["alert_id"],
            alert["merchant_id"] or "",
            alert["terminal_id"],
            amount_minor,
            alert["event_time"],
        )
        order.open_alerts += (new_tuple(OpenAlert, fields),)


def _cleared_by(order: OrderState, open_alert: OpenAlert) -> str | None:
    """What removed the condition of ``open_alert`` (the auto-resolution table of the contract), or None."""
    kind = open_alert.kind
    if kind == _MISSING:
        if order.failed is not None:
            return "a FAILED notice"
        return "every part settled" if order.fully_settled() else None
    if kind in (_ORPHAN, _EXPIRED):
        if order.terminal_phase > _TIMED_OUT:
            return f"the terminal's {order.terminal_phase._name_}"
        if kind == _EXPIRED and order.failed is not None:
            return "a FAILED notice (not charged)"
        return None
    settled = order.settled
    if kind == _CONFLICT:
        return (
            "refunds cover the settlement"
            if settled is not None and order.reversed_sum >= settled.amount_minor
            else None
        )
    if kind == _DUPLICATE:
        return "refunds cover the duplicate" if order.reversed_sum >= open_alert.amount_minor else None
    return None


def capture_cause(parts: tuple[Part, ...], limit: int, settled: Notice) -> Notice:
    """The part (in event time) whose amount took the sum over ``limit`` (over-capture), else the settlement
    (under-capture: decided with the last part): the alert's time and id do not depend on arrival order."""
    total = 0
    for part in sorted(parts, key=part_order):
        total += part.amount_minor
        if total > limit:
            return part_notice(part)
    return settled


def part_notice(part: Part) -> Notice:
    notice: Notice = new_tuple(Notice, (part.notice_id, part.settled_at, part.amount_minor, part.currency))
    return notice


def part_order(part: Part) -> tuple[int, int]:
    return part.settled_at, part.capture_seq


def _as_is(text: str) -> str:
    return text
