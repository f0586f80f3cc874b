"""Alert construction. ``alert_id`` is a hash of the condition, so reprocessing never mints a new id."""

from __future__ import annotations

from collections.abc import Mapping
from hashlib import blake2b

from posrecon.engine.model import Alert, AlertKind, AlertStatus, Severity
from posrecon.engine.pan import PAN_MIN_DIGITS, scrub_text


def alert_id(kind: AlertKind, *condition: str) -> str:
    """Deterministic id of one alert condition (kind + the ids that define it)."""
    text = "\x1f".join((kind._value_, *condition))
    return blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def make_alert(
    kind: AlertKind,
    severity: Severity,
    condition: tuple[str, ...],
    *,
    order_id: str | None,
    merchant_id: str | None,
    terminal_id: str | None,
    reason: str,
    event_time: int,
    detected_at: int,
    related_ids: list[str],
    status: AlertStatus = AlertStatus.OPEN,
    resolves_alert_id: str | None = None,
    batch_id: str | None = None,
) -> Alert:
    return {
        "alert_id": alert_id(kind, *condition),
        "kind": kind._value_,
        "severity": severity._value_,
        "order_id": order_id,
        "merchant_id": merchant_id,
        "terminal_id": terminal_id,
        "reason": scrub_text(reason),
        "event_time": event_time,
        "detected_at": detected_at,
        "related_ids": related_ids,
        "status": status._value_,
        "resolves_alert_id": resolves_alert_id,
        "batch_id": batch_id,
    }


def make_resolution(
    kind: AlertKind,
    resolves_alert_id: str,
    *,
    order_id: str | None,
    merchant_id: str | None,
    terminal_id: str | None,
    reason: str,
    event_time: int,
    detected_at: int,
    related_ids: list[str],
    batch_id: str | None = None,
) -> Alert:
    """The RESOLVED record closing the OPEN alert ``resolves_alert_id`` (contract v2): same kind, severity INFO,
    and its own deterministic id (each alert resolves at most once, so the original id is its condition)."""
    return make_alert(
        kind,
        Severity.INFO,
        (resolves_alert_id, "resolved"),
        order_id=order_id,
        merchant_id=merchant_id,
        terminal_id=terminal_id,
        reason=reason,
        event_time=event_time,
        detected_at=detected_at,
        related_ids=related_ids,
        status=AlertStatus.RESOLVED,
        resolves_alert_id=resolves_alert_id,
        batch_id=batch_id,
    )


#: the v1 contract fields: a reader with a newer schema (an added optional field) must not change the id
FINGERPRINT_FIELDS = (
    "event_id",
    "notice_id",
    "order_id",
    "merchant_id",
    "terminal_id",
    "event_type",
    "status",
    "amount_minor",
    "currency",
    "card_token",
    "event_time",
    "settled_at",
    "attempt",
    "decline_code",
    "batch_id",
    "fee_minor",
    # SettlementBatch (v2): fields no v1 record has, so v1 ids are unchanged
    "notice_count",
    "gross_amount_minor",
    "fee_amount_minor",
    "closed_at",
)
#: v2 notice fields, hashed only when they differ from their default: v1 input (read with the defaults) keeps
#: v1 ids. An explicit list: a reader's later optional field must never enter the id
FINGERPRINT_V2_DEFAULTS = (("capture_seq", 1), ("capture_count", 1))


def record_fingerprint(record: Mapping[str, object]) -> str:
    """A stable digest of a (masked) record, for conditions that have no trustworthy id (invalid input).

    Only the v1 contract fields count; their values are str, int or None, whose repr is stable.

    The text is ``scrub_text(repr([(k, record[k]) ...]))``, built piecewise: a card number (a digit run) cannot
    span the ``', `` before a value's repr or the ``)`` after it, so scrubbing each value's repr on its own
    gives the same text, and a repr shorter than 13 characters cannot hold one at all."""
    parts = []
    for k in FINGERPRINT_FIELDS:
        if k in record:
            value = repr(record[k])
            if len(value) >= PAN_MIN_DIGITS:
                value = scrub_text(value)
            parts.append(f"({k!r}, {value})")
    for k, default in FINGERPRINT_V2_DEFAULTS:  # ints: nothing to scrub
        v2_value = record.get(k, default)
        if v2_value != default:
            parts.append(f"({k!r}, {v2_value!r})")
    text = "[" + ", ".join(parts) + "]"
    return blake2b(text.encode("utf-8"), digest_size=12).hexdigest()
