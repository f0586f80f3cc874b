"""The contract's symbols as the simulator spells them (kept apart from the engine on purpose)."""

from __future__ import annotations

from typing import Final, Literal

Source = Literal["terminal", "settlement", "batch"]
TERMINAL: Final[Source] = "terminal"
SETTLEMENT: Final[Source] = "settlement"
#: a settlement batch's control record (SettlementBatch, contract v2)
BATCH: Final[Source] = "batch"

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
# Outcome, contract v2
PARTIALLY_SETTLED: Final = "PARTIALLY_SETTLED"
PARTIALLY_REVERSED: Final = "PARTIALLY_REVERSED"
NOT_CHARGED: Final = "NOT_CHARGED"

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
# AlertKind, contract v2
FEE_MISMATCH: Final = "FEE_MISMATCH"
BATCH_INCOMPLETE: Final = "BATCH_INCOMPLETE"
BATCH_MISMATCH: Final = "BATCH_MISMATCH"
ALERT_KINDS_V2: Final = (*ALERT_KINDS, FEE_MISMATCH, BATCH_INCOMPLETE, BATCH_MISMATCH)

# AlertStatus (contract v2; a v1 alert, without the field, is OPEN)
OPEN: Final = "OPEN"
RESOLVED: Final = "RESOLVED"
ALERT_STATUSES: Final = (OPEN, RESOLVED)

# BatchStatus (contract v2)
BALANCED: Final = "BALANCED"
INCOMPLETE: Final = "INCOMPLETE"
MISMATCH: Final = "MISMATCH"
BATCH_STATUSES: Final = (BALANCED, INCOMPLETE, MISMATCH)
BATCH_ALERT_KINDS: Final = (BATCH_INCOMPLETE, BATCH_MISMATCH)

# dead-letter reasons
DECODE_ERROR: Final = "DECODE_ERROR"
EMPTY_ID: Final = "EMPTY_ID"
INVALID_AMOUNT: Final = "INVALID_AMOUNT"
INVALID_CURRENCY: Final = "INVALID_CURRENCY"
PAN_IN_CARD_TOKEN: Final = "PAN_IN_CARD_TOKEN"
CLOCK_SKEW: Final = "CLOCK_SKEW"
PAN_IN_FIELD: Final = "PAN_IN_FIELD"

# which contract a simulation's truth follows
CONTRACT_V1: Final = "v1"
CONTRACT_V2: Final = "v2"
CONTRACTS: Final = (CONTRACT_V1, CONTRACT_V2)

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

#: string fields contract v2 scans for card numbers (card_token keeps its v1 rule; currency is checked as ISO 4217)
TERMINAL_ID_FIELDS: Final = ("event_id", "order_id", "merchant_id", "terminal_id", "decline_code")
SETTLEMENT_ID_FIELDS: Final = ("notice_id", "order_id", "merchant_id", "batch_id")
