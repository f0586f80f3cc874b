"""Settlement batch alerts: BATCH_INCOMPLETE / BATCH_MISMATCH opened when a batch is decided so, resolved when it
balances, and their ids (the condition is (batch_id, generation): see :mod:`~posrecon.engine.batches`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from posrecon.engine.alerts import alert_id, make_alert, make_resolution
from posrecon.engine.model import Alert, AlertKind, Severity

if TYPE_CHECKING:
    from posrecon.engine.batch_state import BatchState


def _batch_alert(
    state: BatchState,
    kind: AlertKind,
    severity: Severity,
    condition: tuple[str, ...],
    reason: str,
    event_time: int,
    detected_at: int,
    related_ids: list[str],
) -> Alert:
    return make_alert(
        kind,
        severity,
        condition,
        order_id=None,
        merchant_id=state.merchant(),
        terminal_id=None,
        reason=reason,
        event_time=event_time,
        detected_at=detected_at,
        related_ids=related_ids,
        batch_id=state.batch_id,
    )


def _totals(state: BatchState) -> str:
    control = state.control
    assert control is not None
    count, gross, fee = state.counts()
    return (
        f"{count} of {control.notice_count} notices, gross {gross} of {control.gross_amount_minor}, "
        f"fee {fee} of {control.fee_amount_minor} {control.currency}"
    )


def opened_alert(
    state: BatchState, kind: AlertKind, event_time: int, cause_id: str, cause: str, detected_at: int
) -> Alert:
    incomplete = kind is AlertKind.BATCH_INCOMPLETE
    severity = Severity.WARNING if incomplete else Severity.CRITICAL
    what = "incomplete" if incomplete else "does not balance"
    reason = f"batch {state.batch_id} {what} ({cause}): {_totals(state)}"
    related = sorted({state.batch_id, cause_id})
    return _batch_alert(
        state, kind, severity, (state.batch_id, str(state.generation)), reason, event_time, detected_at, related
    )


def resolved_alert(
    state: BatchState, kind: AlertKind, original: str, event_time: int, cause_id: str, cause: str, detected_at: int
) -> Alert:
    reason = f"batch {state.batch_id} balanced by {cause}: {_totals(state)}"
    return make_resolution(
        kind,
        original,
        order_id=None,
        merchant_id=state.merchant(),
        terminal_id=None,
        reason=reason,
        event_time=event_time,
        detected_at=detected_at,
        related_ids=[cause_id],
        batch_id=state.batch_id,
    )


def batch_alert_id(kind: AlertKind, batch_id: str, generation: int = 0) -> str:
    """The id of a batch's ``generation``-th alert of ``kind`` (for tools that look one up)."""
    return alert_id(kind, batch_id, str(generation))
