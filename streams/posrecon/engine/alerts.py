"""Alert construction. ``alert_id`` is a hash of the condition, so reprocessing never mints a new id."""

from __future__ import annotations

from collections.abc import Mapping
from hashlib import blake2b

from posrecon.engine.model import Alert, AlertKind, Severity
from posrecon.engine.pan import scrub_text


def alert_id(kind: AlertKind, *condition: str) -> str:
    """Deterministic id of one alert condition (kind + the ids that define it)."""
    text = "\x1f".join((kind.value, *condition))
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
) -> Alert:
    return {
        "alert_id": alert_id(kind, *condition),
        "kind": kind.value,
        "severity": severity.value,
        "order_id": order_id,
        "merchant_id": merchant_id,
        "terminal_id": terminal_id,
        "reason": scrub_text(reason),
        "event_time": event_time,
        "detected_at": detected_at,
        "related_ids": related_ids,
    }


#: the v1 contract fields: a reader with a newer schema (an added optional field) must not change the id
FINGERPRINT_FIELDS = (
    "event_id", "notice_id", "order_id", "merchant_id", "terminal_id", "event_type", "status", "amount_minor",
    "currency", "card_token", "event_time", "settled_at", "attempt", "decline_code", "batch_id", "fee_minor",
)  # fmt: skip


def record_fingerprint(record: Mapping[str, object]) -> str:
    """A stable digest of a (masked) record, for conditions that have no trustworthy id (invalid input).

    Only the v1 contract fields count; their values are str, int or None, whose repr is stable."""
    text = scrub_text(repr([(k, record[k]) for k in FINGERPRINT_FIELDS if k in record]))
    return blake2b(text.encode("utf-8"), digest_size=12).hexdigest()
