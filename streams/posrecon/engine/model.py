"""Domain vocabulary of the contract: enums, input record shapes and output records.

Input records are the decoded Avro dicts (field names of the contract) typed as TypedDicts, so the engine
reads them without copying. Outputs are plain dicts with the Avro field names, ready for the serde.
"""

from __future__ import annotations

from enum import Enum
from typing import Literal, NamedTuple, TypedDict


class TerminalEventType(str, Enum):
    ORDER_CREATED = "ORDER_CREATED"
    AUTH_APPROVED = "AUTH_APPROVED"
    AUTH_DECLINED = "AUTH_DECLINED"
    AUTH_TIMEOUT = "AUTH_TIMEOUT"
    VOIDED = "VOIDED"


class SettlementStatus(str, Enum):
    SETTLED = "SETTLED"
    FAILED = "FAILED"
    REVERSED = "REVERSED"


class Outcome(str, Enum):
    MATCHED = "MATCHED"
    MATCHED_LATE = "MATCHED_LATE"
    AMOUNT_MISMATCH = "AMOUNT_MISMATCH"
    STATUS_CONFLICT = "STATUS_CONFLICT"
    UNMATCHED_SETTLEMENT = "UNMATCHED_SETTLEMENT"
    SETTLEMENT_FAILED = "SETTLEMENT_FAILED"
    REVERSED = "REVERSED"


class AlertKind(str, Enum):
    DUPLICATE_SETTLEMENT = "DUPLICATE_SETTLEMENT"
    DUPLICATE_CHARGE = "DUPLICATE_CHARGE"
    LATE_SETTLEMENT = "LATE_SETTLEMENT"
    MISSING_SETTLEMENT = "MISSING_SETTLEMENT"
    ORPHAN_SETTLEMENT = "ORPHAN_SETTLEMENT"
    AMOUNT_MISMATCH = "AMOUNT_MISMATCH"
    STATUS_CONFLICT = "STATUS_CONFLICT"
    EXPIRED_ORDER = "EXPIRED_ORDER"
    INVALID_EVENT = "INVALID_EVENT"


class Severity(str, Enum):
    INFO = "INFO"
    WARNING = "WARNING"
    CRITICAL = "CRITICAL"


class InvalidReason(str, Enum):
    """Dead-letter reasons. DECODE_ERROR is raised by the serde; the others by validation."""

    DECODE_ERROR = "DECODE_ERROR"
    EMPTY_ID = "EMPTY_ID"
    INVALID_AMOUNT = "INVALID_AMOUNT"
    INVALID_CURRENCY = "INVALID_CURRENCY"
    PAN_IN_CARD_TOKEN = "PAN_IN_CARD_TOKEN"
    CLOCK_SKEW = "CLOCK_SKEW"


Source = Literal["terminal", "settlement"]
TERMINAL: Source = "terminal"
SETTLEMENT: Source = "settlement"


class TerminalEvent(TypedDict):
    event_id: str
    order_id: str
    merchant_id: str
    terminal_id: str
    event_type: str
    amount_minor: int
    currency: str
    card_token: str | None
    event_time: int
    attempt: int
    decline_code: str | None


class SettlementNotice(TypedDict):
    notice_id: str
    order_id: str
    merchant_id: str
    status: str
    amount_minor: int
    currency: str
    settled_at: int
    batch_id: str | None
    fee_minor: int


class ReconciledOrder(TypedDict):
    order_id: str
    merchant_id: str
    terminal_id: str | None
    outcome: str
    currency: str
    approved_amount_minor: int | None
    settled_amount_minor: int | None
    approved_at: int | None
    settled_at: int | None
    settlement_lag_ms: int | None
    notice_id: str | None
    revision: int


class Alert(TypedDict):
    alert_id: str
    kind: str
    severity: str
    order_id: str | None
    merchant_id: str | None
    terminal_id: str | None
    reason: str
    event_time: int
    detected_at: int
    related_ids: list[str]


class Rejection(NamedTuple):
    """Why a decoded record was not applied (it becomes a dead letter and an INVALID_EVENT alert)."""

    reason: InvalidReason
    detail: str


RECONCILED_FIELDS = tuple(ReconciledOrder.__annotations__)
ALERT_FIELDS = tuple(Alert.__annotations__)
