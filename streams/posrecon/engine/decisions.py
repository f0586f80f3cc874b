"""The outcome rules of the engine: an order's decision record and the alerts that go with it.

A mixin of :class:`~posrecon.engine.engine.ReconciliationEngine` (the state it uses is declared below); it
is called from the record hot path and from deadline firing (:mod:`posrecon.engine.timers`).
"""

from __future__ import annotations

from posrecon.config import RuleConfig
from posrecon.engine.alerts import make_alert, record_fingerprint
from posrecon.engine.book import EngineStats, PartitionBook
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
    FIRED_FAILED_CONFLICT,
    FIRED_LATE,
    FIRED_MISMATCH,
    FIRED_ORPHAN,
    Notice,
    OrderState,
    RecordFields,
    SettlementPhase,
    TerminalPhase,
)

_MATCHED = Outcome.MATCHED
_REVERSED = Outcome.REVERSED
_OUTCOME_VALUE = {o: o.value for o in Outcome}
_DECLINED = TerminalPhase.DECLINED
_VOIDED = TerminalPhase.VOIDED
_REVERSED_PHASE = SettlementPhase.REVERSED


class Decisions:
    """Decide an order's outcome, emit its decision record when it changed, raise the alerts of its rules."""

    rules: RuleConfig
    reconciled: list[ReconciledOrder]
    alerts: list[Alert]
    stats: EngineStats

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
        # the outcome before a reversal (alerts follow it), the decision record's fields and a new revision when
        # they changed, in one pass: this runs for every notice
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
