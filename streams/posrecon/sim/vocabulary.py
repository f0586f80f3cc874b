"""The contract's symbols as the simulator spells them (kept apart from the engine on purpose)."""

from __future__ import annotations

from typing import Final, Literal

Source = Literal["terminal", "settlement"]
TERMINAL: Final[Source] = "terminal"
SETTLEMENT: Final[Source] = "settlement"

# TerminalEventType
ORDER_CREATED: Final = "ORDER_CREATED"
AUTH_APPROVED: Final = "AUTH_APPROVED"
AUTH_DECLINED: Final = "AUTH_DECLINED"
AUTH_TIMEOUT: Final = "AUTH_TIMEOUT"
VOIDED: Final = "VOIDED"
TERMINAL_EVENT_TYPES: Final = (ORDER_CREATED, AUTH_APPROVED, AUTH_DECLINED, AUTH_TIMEOUT, VOIDED)

# SettlementStatus
SETTLED: Final = "SETTLED"
FAILED: Final = "FAILED"
REVERSED: Final = "REVERSED"

# Outcome
MATCHED: Final = "MATCHED"
MATCHED_LATE: Final = "MATCHED_LATE"
AMOUNT_MISMATCH_OUTCOME: Final = "AMOUNT_MISMATCH"
STATUS_CONFLICT_OUTCOME: Final = "STATUS_CONFLICT"
UNMATCHED_SETTLEMENT: Final = "UNMATCHED_SETTLEMENT"
SETTLEMENT_FAILED: Final = "SETTLEMENT_FAILED"
REVERSED_OUTCOME: Final = "REVERSED"

# AlertKind
DUPLICATE_SETTLEMENT: Final = "DUPLICATE_SETTLEMENT"
DUPLICATE_CHARGE: Final = "DUPLICATE_CHARGE"
LATE_SETTLEMENT: Final = "LATE_SETTLEMENT"
MISSING_SETTLEMENT: Final = "MISSING_SETTLEMENT"
ORPHAN_SETTLEMENT: Final = "ORPHAN_SETTLEMENT"
AMOUNT_MISMATCH: Final = "AMOUNT_MISMATCH"
STATUS_CONFLICT: Final = "STATUS_CONFLICT"
EXPIRED_ORDER: Final = "EXPIRED_ORDER"
INVALID_EVENT: Final = "INVALID_EVENT"
ALERT_KINDS: Final = (
    DUPLICATE_SETTLEMENT,
    DUPLICATE_CHARGE,
    LATE_SETTLEMENT,
    MISSING_SETTLEMENT,
    ORPHAN_SETTLEMENT,
    AMOUNT_MISMATCH,
    STATUS_CONFLICT,
    EXPIRED_ORDER,
    INVALID_EVENT,
)

# dead-letter reasons
DECODE_ERROR: Final = "DECODE_ERROR"
EMPTY_ID: Final = "EMPTY_ID"
INVALID_AMOUNT: Final = "INVALID_AMOUNT"
INVALID_CURRENCY: Final = "INVALID_CURRENCY"
PAN_IN_CARD_TOKEN: Final = "PAN_IN_CARD_TOKEN"
CLOCK_SKEW: Final = "CLOCK_SKEW"

#: fields every record of the schema must carry (no Avro default), used to build malformed records
TERMINAL_REQUIRED: Final = (
    "event_id",
    "order_id",
    "merchant_id",
    "terminal_id",
    "event_type",
    "amount_minor",
    "currency",
    "event_time",
)
SETTLEMENT_REQUIRED: Final = (
    "notice_id",
    "order_id",
    "merchant_id",
    "status",
    "amount_minor",
    "currency",
    "settled_at",
)
