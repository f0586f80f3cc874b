"""The outcome rules of the engine: an order's decision record and the alerts that go with it.

A mixin of :class:`~posrecon.engine.engine.ReconciliationEngine` (the state it uses is declared below); it
is called from the record hot path and from deadline firing (:mod:`posrecon.engine.timers`).
"""

from __future__ import annotations

from typing import Any, Final

from posrecon.config import RuleConfig
from posrecon.engine.book import EngineStats, PartitionBook
from posrecon.engine.model import (
    Alert,
    AlertKind,
    Outcome,
    ReconciledOrder,
    Severity,
)
from posrecon.engine.order import (
    FIRED_FEE,
    FIRED_MISSING,
    FIRED_ORPHAN,
    FIRED_REFUND,
    Notice,
    OrderState,
    Part,
    RecordFields,
    TerminalPhase,
    new_tuple,
)
from posrecon.engine.order_alerts import OrderAlerts, part_notice, part_order
from posrecon.engine.pricing import expected_fee, fee_mismatch, tolerance

_MATCHED: Final = Outcome.MATCHED
_REVERSED: Final = Outcome.REVERSED
_NOT_CHARGED: Final = Outcome.NOT_CHARGED
_OUTCOME_VALUE: Final = {o: o.value for o in Outcome}
_DECLINED: Final = TerminalPhase.DECLINED
_VOIDED: Final = TerminalPhase.VOIDED
_TIMED_OUT: Final = TerminalPhase.TIMED_OUT


class Decisions(OrderAlerts):
    """Decide an order's outcome, emit its decision record when it changed, raise the alerts of its rules."""

    rules: RuleConfig
    reconciled: list[ReconciledOrder]
    alerts: list[Alert]
    stats: EngineStats
    #: True when no merchant table and no bps tolerance exist: the tolerance is amount_tolerance_minor (v1)
    _uniform_tolerance: bool
    #: the rules of each merchant with a table (the others use ``rules``)
    _merchant_rules: dict[str, RuleConfig]

    def _settle_part(
        self, order: OrderState, part: Part, capture_count: int, now: int | None, book: PartitionBook
    ) -> bool:
        """Count one SETTLED part of a split settlement; False when it is a duplicate (its capture_seq already
        counted, or beyond the first notice's capture_count), which raises DUPLICATE_SETTLEMENT instead."""
        parts = order.parts
        if parts is None:  # the first part fixes n
            order.capture_count = capture_count
            parts = ()
        seq = part.capture_seq
        for counted in parts:
            if counted.capture_seq == seq:
                self._duplicate_settlement(order, part_notice(counted), part_notice(part), now, book)
                return False
        if seq > order.capture_count:
            settled = order.settled
            if settled is not None:
                self._duplicate_settlement(order, settled, part_notice(part), now, book)
            return False
        parts = order.parts = tuple(sorted((*parts, part)))
        order.fee_sum += part.fee_minor
        last: Any = max(parts, key=part_order)  # Any: its settled_at goes on as the object it is (as in on_notice)
        order.settled = new_tuple(
            Notice, (last.notice_id, last.settled_at, sum(p.amount_minor for p in parts), parts[0].currency)
        )
        return True

    def _check_fee(
        self,
        order: OrderState,
        notice_id: str,
        amount: int,
        fee: int,
        settled_at: int,
        now: int | None,
        book: PartitionBook,
    ) -> None:
        """FEE_MISMATCH (once per order) when the merchant's pricing gives another fee for a counted part."""
        if order.fired & FIRED_FEE:
            return
        rules = self._merchant_rules.get(order.merchant_id, self.rules)
        if not fee_mismatch(rules, amount, fee):
            return
        order.fired |= FIRED_FEE
        self._order_alert(
            order,
            AlertKind.FEE_MISMATCH,
            Severity.WARNING,
            ("fee",),
            f"notice {notice_id} charged fee {fee} on {amount} but the merchant's pricing gives "
            f"{expected_fee(rules, amount)} (tolerance {rules.fee_tolerance_minor})",
            settled_at,
            [notice_id],
            now,
            book,
        )

    def _tolerance(self, order: OrderState, amount: int) -> int:
        """The amount tolerance of the order's merchant for ``amount`` (the approved one)."""
        if self._uniform_tolerance:
            return self.rules.amount_tolerance_minor
        return tolerance(self._merchant_rules.get(order.merchant_id, self.rules), amount)

    def _decide(self, order: OrderState, now: int | None, book: PartitionBook) -> None:
        # the outcome before a reversal (alerts follow it), the decision record's fields and a new revision when
        # they changed, in one pass: this runs for every notice
        settled = order.settled
        approval = order.approval
        phase = order.terminal_phase
        notice: Notice
        tol = 0
        if settled is not None:
            notice = settled
            if phase is _DECLINED or phase is _VOIDED:
                base = Outcome.STATUS_CONFLICT
            elif approval is not None:
                rules = self.rules
                if not self._uniform_tolerance:  # the merchant's table, if any (inlined: this runs per notice)
                    rules = self._merchant_rules.get(order.merchant_id, rules)
                tol = (
                    rules.amount_tolerance_minor
                    if not rules.amount_tolerance_bps
                    else tolerance(rules, approval.amount_minor)
                )
                diff = settled.amount_minor - approval.amount_minor
                parts = order.parts
                if parts is not None and len(parts) < order.capture_count:  # a split settlement, parts missing
                    if diff > tol and settled.currency == approval.currency:
                        base = Outcome.AMOUNT_MISMATCH  # over-capture: at once
                    elif order.fired & FIRED_MISSING:
                        base = Outcome.PARTIALLY_SETTLED  # the SLA passed with k of n parts
                    else:
                        return
                elif settled.currency != approval.currency or abs(diff) > tol:
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
            if failed is None or phase is _VOIDED:
                return
            if approval is not None:
                base = Outcome.SETTLEMENT_FAILED
            elif phase <= _TIMED_OUT:  # never approved: the bank confirms no charge
                base = Outcome.NOT_CHARGED
            else:
                return
            notice = failed
        if base is not _MATCHED and base is not _NOT_CHARGED:
            self._outcome_alert(order, base, tol, now, book)
        outcome = base
        notice_id = notice.notice_id
        if settled is not None:
            settled_amount: int | None = settled.amount_minor
            settled_at: int | None = settled.settled_at
            parts = order.parts
            fee: int | None = order.fee_sum
            refunded = order.reversed_sum
            if refunded:
                outcome = self._refund_outcome(
                    order, settled, refunded, tol if approval is not None else None, now, book
                )
                reversal = order.reversal
                if reversal is not None:
                    notice_id = reversal.notice_id
            settled_parts: int | None = 1 if parts is None else len(parts)
            reversed_amount: int | None = refunded
            net: int | None = settled.amount_minor - order.fee_sum - refunded
        else:
            settled_amount = settled_at = settled_parts = fee = reversed_amount = net = None
        if approval is not None:
            terminal_id: str | None = approval.terminal_id
            currency = approval.currency
            approved_amount: int | None = approval.amount_minor
            approved_at: int | None = approval.event_time
            lag: int | None = settled_at - approval.event_time if settled_at is not None else None
        else:
            terminal_id = order.terminal_id
            currency = notice.currency
            approved_amount = approved_at = lag = None
        fields: RecordFields = (
            order.order_id,
            order.merchant_id,
            terminal_id,
            _OUTCOME_VALUE[outcome],
            currency,
            approved_amount,
            settled_amount,
            approved_at,
            settled_at,
            lag,
            notice_id,
            settled_parts,
            fee,
            reversed_amount,
        )
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
                "settled_parts": settled_parts,
                "fee_minor": fee,
                "reversed_amount_minor": reversed_amount,
                "net_amount_minor": net,
            }
        )

    def _refund_outcome(
        self, order: OrderState, settled: Notice, refunded: int, tol: int | None, now: int | None, book: PartitionBook
    ) -> Outcome:
        """REVERSED when the refunds cover what settled (AMOUNT_MISMATCH once when they exceed it beyond the
        tolerance), else PARTIALLY_REVERSED."""
        if refunded < settled.amount_minor:
            return Outcome.PARTIALLY_REVERSED
        if tol is None:  # no approval: the tolerance of the settled sum
            tol = self._tolerance(order, settled.amount_minor)
        if refunded > settled.amount_minor + tol and not order.fired & FIRED_REFUND:
            order.fired |= FIRED_REFUND
            reversal = order.reversal
            assert reversal is not None
            self._order_alert(
                order,
                AlertKind.AMOUNT_MISMATCH,
                Severity.CRITICAL,
                ("refund",),
                f"refund exceeds settlement: reversed {refunded} but settled {settled.amount_minor} "
                f"{settled.currency} (tolerance {tol})",
                max(settled.settled_at, reversal.settled_at),
                [settled.notice_id, reversal.notice_id],
                now,
                book,
            )
        return _REVERSED
