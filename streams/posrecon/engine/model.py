"""Domain vocabulary of the contract: enums, input record shapes and output records.

Input records are the decoded Avro dicts (field names of the contract) typed as TypedDicts, so the engine
reads them without copying. Outputs are plain dicts with the Avro field names, ready for the serde: an output dict
carries every field of its TypedDict (the encoder would write a missing one as its Avro default, but replay writes
the dict as JSON, so a missing key makes replay differ from live).

The enums are the symbols the engine reads and writes. The Avro enums that schema v2 touches also have ``UNKNOWN``,
the reader's stand-in for a symbol a later schema version adds (Avro enum ``default``); the engine never emits it,
so it is not a member here (``tests/unit/serde/test_schema_evolution.py`` pins enums == schema symbols - UNKNOWN).
"""

from __future__ import annotations

from enum import Enum
from typing import Final, Literal, NamedTuple, TypedDict

# the exception-case records live with their rules; re-exported so every record and enum of the schemas is here
from posrecon.engine.case_actions import (  # noqa: F401
    CaseEntry,
    CaseEntryKind,
    CaseState,
    ExceptionAction,
    ExceptionActionKind,
    ExceptionCase,
)


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
    PARTIALLY_SETTLED = "PARTIALLY_SETTLED"
    PARTIALLY_REVERSED = "PARTIALLY_REVERSED"
    NOT_CHARGED = "NOT_CHARGED"


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
    FEE_MISMATCH = "FEE_MISMATCH"
    BATCH_INCOMPLETE = "BATCH_INCOMPLETE"
    BATCH_MISMATCH = "BATCH_MISMATCH"


class AlertStatus(str, Enum):
    """v2: an alert opens (OPEN) and may be closed by one later record of the same kind (RESOLVED)."""

    OPEN = "OPEN"
    RESOLVED = "RESOLVED"


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
    PAN_IN_FIELD = "PAN_IN_FIELD"  # v2: a card number in any other string field
    INVALID_CAPTURE = "INVALID_CAPTURE"  # v2: capture_seq / capture_count outside 1 <= capture_seq <= capture_count


class BatchStatus(str, Enum):
    """v2: the decision on a settlement batch's control totals."""

    BALANCED = "BALANCED"
    INCOMPLETE = "INCOMPLETE"
    MISMATCH = "MISMATCH"


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
    capture_seq: int
    capture_count: int


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
    settled_parts: int | None
    fee_minor: int | None
    reversed_amount_minor: int | None
    net_amount_minor: int | None


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
    status: str
    resolves_alert_id: str | None
    batch_id: str | None


class SettlementBatch(TypedDict):
    batch_id: str
    merchant_id: str | None
    currency: str
    notice_count: int
    gross_amount_minor: int
    fee_amount_minor: int
    closed_at: int


class BatchReconciliation(TypedDict):
    batch_id: str
    currency: str
    expected_count: int
    received_count: int
    expected_gross_minor: int
    received_gross_minor: int
    expected_fee_minor: int
    received_fee_minor: int
    status: str
    revision: int


class Rejection(NamedTuple):
    """Why a decoded record was not applied (it becomes a dead letter and an INVALID_EVENT alert)."""

    reason: InvalidReason
    detail: str


RECONCILED_FIELDS: Final = tuple(ReconciledOrder.__annotations__)
#: the outcomes of an order settled as authorised (a settlement lag, the matched money metrics)
MATCHED_OUTCOMES: Final = frozenset({Outcome.MATCHED._value_, Outcome.MATCHED_LATE._value_})
ALERT_FIELDS: Final = tuple(Alert.__annotations__)
