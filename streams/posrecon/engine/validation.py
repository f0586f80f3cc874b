"""Record validity rules of the contract. An invalid record is never applied to order state."""

from __future__ import annotations

from typing import Final

from posrecon.config import RuleConfig
from posrecon.engine.currency import ISO_4217_CODES
from posrecon.engine.model import InvalidReason, Rejection, SettlementBatch, SettlementNotice, TerminalEvent
from posrecon.engine.pan import SETTLEMENT_BATCH_STRING_FIELDS, fields_to_scan, find_pan_in_record, is_pan

#: first characters a card number can start with (the engine's inlined fast check uses this too)
PAN_START: Final = frozenset("0123456789 -")
_PAN_START = PAN_START


def _amount_rejection(amount: int, rules: RuleConfig) -> Rejection:
    return Rejection(InvalidReason.INVALID_AMOUNT, f"amount_minor {amount} outside 1..{rules.max_amount_minor}")


def _empty_id(record: TerminalEvent | SettlementNotice, names: tuple[str, ...]) -> Rejection:
    empty = next(name for name in names if not record[name])  # type: ignore[literal-required]
    return Rejection(InvalidReason.EMPTY_ID, f"{empty} is empty")


def check_pan_in_fields(record: TerminalEvent | SettlementNotice, fields: tuple[str, ...]) -> Rejection | None:
    """PAN_IN_FIELD (v2): a card number in one of the scanned string fields (the detail carries it masked)."""
    found = find_pan_in_record(record, fields) if fields else None
    if found is None:
        return None
    return Rejection(InvalidReason.PAN_IN_FIELD, f"{found[0]} holds a card number ({found[1]})")


def check_terminal_event(
    event: TerminalEvent, ingest_time: int | None, rules: RuleConfig, scan_fields: tuple[str, ...] = ()
) -> Rejection | None:
    """Why ``event`` is invalid, or None: v1's checks first (v1 input keeps v1's reasons), then v2's scan of
    ``scan_fields`` (``pan.fields_to_scan`` of the configured pan_scan_fields) for card numbers."""
    token = event["card_token"]
    # a card number starts with a digit (or a separator); opaque tokens are rejected by their first char
    if token is not None and token[:1] in _PAN_START and is_pan(token):
        return Rejection(InvalidReason.PAN_IN_CARD_TOKEN, "card_token holds a card number (Luhn-valid digits)")
    if not (event["event_id"] and event["order_id"] and event["merchant_id"] and event["terminal_id"]):
        return _empty_id(event, ("event_id", "order_id", "merchant_id", "terminal_id"))
    amount = event["amount_minor"]
    if amount <= 0 or amount > rules.max_amount_minor:
        return _amount_rejection(amount, rules)
    if event["currency"] not in ISO_4217_CODES:
        return Rejection(InvalidReason.INVALID_CURRENCY, f"currency {event['currency']!r} is not ISO 4217")
    if ingest_time is not None and abs(event["event_time"] - ingest_time) > rules.max_clock_skew_ms:
        return Rejection(
            InvalidReason.CLOCK_SKEW,
            f"event_time {event['event_time']} is {event['event_time'] - ingest_time} ms from ingest time "
            f"{ingest_time} (max {rules.max_clock_skew_ms})",
        )
    return check_pan_in_fields(event, scan_fields)


def check_settlement_notice(
    notice: SettlementNotice, ingest_time: int | None, rules: RuleConfig, scan_fields: tuple[str, ...] = ()
) -> Rejection | None:
    """As :func:`check_terminal_event`; v2 adds INVALID_CAPTURE (1 <= capture_seq <= capture_count)."""
    if not (notice["notice_id"] and notice["order_id"] and notice["merchant_id"]):
        return _empty_id(notice, ("notice_id", "order_id", "merchant_id"))
    amount = notice["amount_minor"]
    if amount <= 0 or amount > rules.max_amount_minor:
        return _amount_rejection(amount, rules)
    if notice["currency"] not in ISO_4217_CODES:
        return Rejection(InvalidReason.INVALID_CURRENCY, f"currency {notice['currency']!r} is not ISO 4217")
    if ingest_time is not None and notice["settled_at"] - ingest_time > rules.max_clock_skew_ms:
        return Rejection(
            InvalidReason.CLOCK_SKEW,
            f"settled_at {notice['settled_at']} is {notice['settled_at'] - ingest_time} ms after ingest time "
            f"{ingest_time} (max {rules.max_clock_skew_ms})",
        )
    rejection = check_pan_in_fields(notice, scan_fields)
    if rejection is not None:
        return rejection
    seq, count = notice.get("capture_seq", 1), notice.get("capture_count", 1)
    if not 0 < seq <= count:
        return Rejection(InvalidReason.INVALID_CAPTURE, f"capture_seq {seq} outside 1..capture_count {count}")
    return None


def check_settlement_batch(record: SettlementBatch, ingest_time: int | None, rules: RuleConfig) -> Rejection | None:
    """Why a control record is invalid, or None. The gross may be negative (a batch of mostly refunds)."""
    found = find_pan_in_record(record, fields_to_scan(SETTLEMENT_BATCH_STRING_FIELDS, rules.pan_scan_fields))
    if found is not None:
        return Rejection(InvalidReason.PAN_IN_FIELD, f"{found[0]} holds a card number ({found[1]})")
    if not record["batch_id"] or record["merchant_id"] == "":
        return Rejection(
            InvalidReason.EMPTY_ID, "batch_id is empty" if not record["batch_id"] else "merchant_id is empty"
        )
    count, gross, fee = record["notice_count"], record["gross_amount_minor"], record.get("fee_amount_minor", 0)
    if count < 0 or fee < 0 or abs(gross) > count * rules.max_amount_minor:
        return Rejection(
            InvalidReason.INVALID_AMOUNT,
            f"notice_count {count}, gross_amount_minor {gross}, fee_amount_minor {fee}: counts and fees must be "
            f">= 0 and |gross| <= notice_count x {rules.max_amount_minor}",
        )
    if record["currency"] not in ISO_4217_CODES:
        return Rejection(InvalidReason.INVALID_CURRENCY, f"currency {record['currency']!r} is not ISO 4217")
    closed_at = record["closed_at"]
    if ingest_time is not None and closed_at - ingest_time > rules.max_clock_skew_ms:
        return Rejection(
            InvalidReason.CLOCK_SKEW,
            f"closed_at {closed_at} is {closed_at - ingest_time} ms after ingest time {ingest_time} "
            f"(max {rules.max_clock_skew_ms})",
        )
    return None
