"""Record validity rules of the contract. An invalid record is never applied to order state."""

from __future__ import annotations

from posrecon.config import RuleConfig
from posrecon.engine.currency import ISO_4217_CODES
from posrecon.engine.model import InvalidReason, Rejection, SettlementNotice, TerminalEvent
from posrecon.engine.pan import is_pan


def _amount_rejection(amount: int, rules: RuleConfig) -> Rejection | None:
    if amount <= 0 or amount > rules.max_amount_minor:
        return Rejection(
            InvalidReason.INVALID_AMOUNT, f"amount_minor {amount} outside 1..{rules.max_amount_minor}"
        )
    return None


def check_terminal_event(event: TerminalEvent, ingest_time: int | None, rules: RuleConfig) -> Rejection | None:
    token = event["card_token"]
    if token is not None and is_pan(token):
        return Rejection(InvalidReason.PAN_IN_CARD_TOKEN, "card_token holds a card number (Luhn-valid digits)")
    for name in ("event_id", "order_id", "merchant_id", "terminal_id"):
        if not event[name]:  # type: ignore[literal-required]
            return Rejection(InvalidReason.EMPTY_ID, f"{name} is empty")
    rejection = _amount_rejection(event["amount_minor"], rules)
    if rejection is not None:
        return rejection
    if event["currency"] not in ISO_4217_CODES:
        return Rejection(InvalidReason.INVALID_CURRENCY, f"currency {event['currency']!r} is not ISO 4217")
    if ingest_time is not None and abs(event["event_time"] - ingest_time) > rules.max_clock_skew_ms:
        return Rejection(
            InvalidReason.CLOCK_SKEW,
            f"event_time {event['event_time']} is {event['event_time'] - ingest_time} ms from ingest time "
            f"{ingest_time} (max {rules.max_clock_skew_ms})",
        )
    return None


def check_settlement_notice(
    notice: SettlementNotice, ingest_time: int | None, rules: RuleConfig
) -> Rejection | None:
    for name in ("notice_id", "order_id", "merchant_id"):
        if not notice[name]:  # type: ignore[literal-required]
            return Rejection(InvalidReason.EMPTY_ID, f"{name} is empty")
    rejection = _amount_rejection(notice["amount_minor"], rules)
    if rejection is not None:
        return rejection
    if notice["currency"] not in ISO_4217_CODES:
        return Rejection(InvalidReason.INVALID_CURRENCY, f"currency {notice['currency']!r} is not ISO 4217")
    if ingest_time is not None and notice["settled_at"] - ingest_time > rules.max_clock_skew_ms:
        return Rejection(
            InvalidReason.CLOCK_SKEW,
            f"settled_at {notice['settled_at']} is {notice['settled_at'] - ingest_time} ms after ingest time "
            f"{ingest_time} (max {rules.max_clock_skew_ms})",
        )
    return None
