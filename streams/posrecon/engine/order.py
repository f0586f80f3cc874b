"""One order's reconciliation state: two explicit state machines (terminal side, settlement side) plus
the facts needed to decide an outcome.

The phases move only along the transition tables below; every table entry is total so any arrival order
of events lands in a defined phase. Facts (the first approval, the first SETTLED notice …) are kept
beside the phases so that decisions depend on what happened, not on the order it arrived in.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any, Final, NamedTuple


class TerminalPhase(IntEnum):
    NONE = 0  # no terminal event yet (settlement side only)
    CREATED = 1  # ORDER_CREATED, no authorisation result
    TIMED_OUT = 2  # AUTH_TIMEOUT, no authorisation result
    DECLINED = 3  # AUTH_DECLINED and never approved
    APPROVED = 4  # AUTH_APPROVED
    VOIDED = 5  # VOIDED (absorbing)


class SettlementPhase(IntEnum):
    NONE = 0
    FAILED = 1  # FAILED notice, nothing settled
    SETTLED = 2
    REVERSAL_PENDING = 3  # REVERSED notice seen before any SETTLED one
    REVERSED = 4  # SETTLED, then reversed (absorbing)


# event type -> column of the terminal transition table
TERMINAL_EVENT_INDEX: Final = {
    "ORDER_CREATED": 0,
    "AUTH_APPROVED": 1,
    "AUTH_DECLINED": 2,
    "AUTH_TIMEOUT": 3,
    "VOIDED": 4,
}
SETTLEMENT_STATUS_INDEX: Final = {"SETTLED": 0, "FAILED": 1, "REVERSED": 2}

_T = TerminalPhase
#: TERMINAL_TRANSITIONS[phase][event] -> next phase
#:                 ORDER_CREATED  AUTH_APPROVED  AUTH_DECLINED  AUTH_TIMEOUT  VOIDED
TERMINAL_TRANSITIONS: tuple[tuple[TerminalPhase, ...], ...] = (
    (_T.CREATED, _T.APPROVED, _T.DECLINED, _T.TIMED_OUT, _T.VOIDED),  # NONE
    (_T.CREATED, _T.APPROVED, _T.DECLINED, _T.TIMED_OUT, _T.VOIDED),  # CREATED
    (_T.TIMED_OUT, _T.APPROVED, _T.DECLINED, _T.TIMED_OUT, _T.VOIDED),  # TIMED_OUT
    (_T.DECLINED, _T.APPROVED, _T.DECLINED, _T.DECLINED, _T.VOIDED),  # DECLINED
    (_T.APPROVED, _T.APPROVED, _T.APPROVED, _T.APPROVED, _T.VOIDED),  # APPROVED
    (_T.VOIDED, _T.VOIDED, _T.VOIDED, _T.VOIDED, _T.VOIDED),  # VOIDED
)

_S = SettlementPhase
#: SETTLEMENT_TRANSITIONS[phase][status] -> next phase
#:                   SETTLED      FAILED              REVERSED
SETTLEMENT_TRANSITIONS: tuple[tuple[SettlementPhase, ...], ...] = (
    (_S.SETTLED, _S.FAILED, _S.REVERSAL_PENDING),  # NONE
    (_S.SETTLED, _S.FAILED, _S.FAILED),  # FAILED (a reversal of nothing changes nothing)
    (_S.SETTLED, _S.SETTLED, _S.REVERSED),  # SETTLED
    (_S.REVERSED, _S.REVERSAL_PENDING, _S.REVERSAL_PENDING),  # REVERSAL_PENDING
    (_S.REVERSED, _S.REVERSED, _S.REVERSED),  # REVERSED
)

#: terminal phases in which a SETTLED notice has no authorisation result to match (orphan candidates);
#: the phases are ordered so that "unresolved" is also ``phase <= TerminalPhase.TIMED_OUT``
UNRESOLVED_TERMINAL: Final = frozenset({TerminalPhase.NONE, TerminalPhase.CREATED, TerminalPhase.TIMED_OUT})

# bits of OrderState.fired: conditions whose alert has fired (each fires at most once)
FIRED_MISSING: Final = 1
FIRED_ORPHAN: Final = 2
FIRED_EXPIRED: Final = 4
FIRED_LATE: Final = 8
FIRED_MISMATCH: Final = 16
FIRED_CONFLICT: Final = 32
FIRED_FAILED_CONFLICT: Final = 64
FIRED_FEE: Final = 128  # v2: FEE_MISMATCH (once per order)
FIRED_REFUND: Final = 256  # v2: AMOUNT_MISMATCH "refund exceeds settlement" (once per order)
# bits of OrderState.scheduled: deadlines already in the deadline index
SCHEDULED_MISSING: Final = 1
SCHEDULED_ORPHAN: Final = 2
SCHEDULED_EXPIRED: Final = 4


class Approval(NamedTuple):
    event_id: str
    event_time: int
    amount_minor: int
    currency: str
    terminal_id: str
    card_token: str | None
    merchant_id: str


class Notice(NamedTuple):
    notice_id: str
    settled_at: int
    amount_minor: int
    currency: str


class Part(NamedTuple):
    """One counted SETTLED part of a split settlement (capture_count > 1)."""

    capture_seq: int
    notice_id: str
    settled_at: int
    amount_minor: int
    currency: str
    fee_minor: int


class OpenAlert(NamedTuple):
    """An alert of this order that a later record may still resolve (contract v2 auto-resolution): what its
    RESOLVED record repeats (merchant and terminal as raised) and, for DUPLICATE_SETTLEMENT, the duplicate's amount."""

    kind: str
    alert_id: str
    merchant_id: str
    terminal_id: str | None
    amount_minor: int = 0
    opened_at: int = 0  # the alert's event time (time to resolve); 0 in rows written before it was kept


#: at most this many resolvable alerts are tracked per order (each kind fires once, but DUPLICATE_SETTLEMENT once
#: per duplicate notice): state stays bounded; an alert beyond it simply never auto-resolves
MAX_OPEN_ALERTS: Final = 8

RecordFields = tuple[
    str,
    str,
    str | None,
    str,
    str,
    int | None,
    int | None,
    int | None,
    int | None,
    int | None,
    str | None,
    int | None,
    int | None,
    int | None,
]
# (net_amount_minor is not kept: settled - fee - reversed, all three in the fields; an int less per order)
#: length of a v1 row's last_fields (11) and of a v1 OrderState row (21)
V1_RECORD_FIELDS: Final = 11
V1_ROW_LENGTH: Final = 21


class OrderState:
    """Everything the engine keeps for one order (kept small: see bench/ for bytes per open order)."""

    __slots__ = (
        "approval",
        "capture_count",
        "created_at",
        "evict_at",
        "failed",
        "fee_sum",
        "fired",
        "last_fields",
        "last_seen",
        "merchant_id",
        "open_alerts",
        "order_id",
        "parts",
        "pending_due",
        "phase_time",
        "reversal",
        "reversed_sum",
        "revision",
        "scheduled",
        "seen_events",
        "seen_notices",
        "settled",
        "settlement_phase",
        "terminal_id",
        "terminal_merchant",
        "terminal_phase",
    )

    def __init__(self, order_id: str, merchant_id: str) -> None:
        self.order_id = order_id
        self.merchant_id = merchant_id  # first merchant seen (settlement side until a terminal event comes)
        self.terminal_merchant = False
        self.terminal_id: str | None = None
        self.terminal_phase = TerminalPhase.NONE
        self.phase_time = 0  # event time of the terminal event that set the current terminal phase
        self.settlement_phase = SettlementPhase.NONE
        self.created_at: int | None = None
        self.approval: Approval | None = None
        self.settled: Notice | None = None
        self.failed: Notice | None = None
        self.reversal: Notice | None = None
        self.seen_events: tuple[str, ...] = ()
        self.seen_notices: tuple[str, ...] = ()
        self.fired = 0
        self.scheduled = 0
        self.revision = 0
        self.last_fields: RecordFields | None = None
        self.last_seen = 0
        self.pending_due = 0  # latest due time of the deadlines scheduled for this order
        self.evict_at = 0
        # v2 (scalars and shared empties, so a v1 order grows by a few slots only)
        self.capture_count = 1  # n of the first SETTLED notice
        self.parts: tuple[Part, ...] | None = None  # counted parts when n > 1, by capture_seq; None when n = 1
        self.fee_sum = 0  # fee_minor over the counted SETTLED parts
        self.reversed_sum = 0  # amount_minor over the distinct REVERSED notices
        self.open_alerts: tuple[OpenAlert, ...] = ()

    # --- settlement -----------------------------------------------------------------------------------

    def awaiting_settlement(self) -> Approval | None:
        """The approval still waiting for its settlement (approved, not voided, no SETTLED or FAILED notice
        yet), else None: the condition of the MISSING_SETTLEMENT deadline and of the pending-settlement views."""
        if self.failed is None and self.terminal_phase is not _VOIDED and not self.fully_settled():
            return self.approval
        return None

    def fully_settled(self) -> bool:
        """Every part of the settlement counted (the one SETTLED notice of a whole order)."""
        parts = self.parts
        return self.settled is not None and (parts is None or len(parts) >= self.capture_count)

    # --- snapshot --------------------------------------------------------------------------------------

    def to_row(self) -> list[object]:
        """A JSON-able row with everything needed to rebuild this state (and its deadlines)."""
        return [
            self.order_id,
            self.merchant_id,
            self.terminal_merchant,
            self.terminal_id,
            int(self.terminal_phase),
            int(self.settlement_phase),
            self.created_at,
            list(self.approval) if self.approval is not None else None,
            list(self.settled) if self.settled is not None else None,
            list(self.failed) if self.failed is not None else None,
            list(self.reversal) if self.reversal is not None else None,
            list(self.seen_events),
            list(self.seen_notices),
            self.fired,
            self.scheduled,
            self.revision,
            list(self.last_fields) if self.last_fields is not None else None,
            self.last_seen,
            self.pending_due,
            self.evict_at,
            self.phase_time,
            self.capture_count,
            [list(p) for p in self.parts] if self.parts is not None else None,
            self.fee_sum,
            self.reversed_sum,
            [list(a) for a in self.open_alerts],
        ]

    @classmethod
    def from_row(cls, row: list[Any]) -> OrderState:
        state = cls(str(row[0]), str(row[1]))
        state.terminal_merchant = bool(row[2])
        state.terminal_id = row[3]
        # (a restore reads a million of these: dict lookups instead of enum calls, tuple.__new__ instead of the
        # NamedTuples' Python-level __new__; a row of the wrong length still fails, on the field count check)
        state.terminal_phase = _TERMINAL_PHASES[row[4]]
        state.settlement_phase = _SETTLEMENT_PHASES[row[5]]
        state.created_at = row[6]
        state.approval = _tuple_of(Approval, row[7]) if row[7] is not None else None
        state.settled = _tuple_of(Notice, row[8]) if row[8] is not None else None
        state.failed = _tuple_of(Notice, row[9]) if row[9] is not None else None
        state.reversal = _tuple_of(Notice, row[10]) if row[10] is not None else None
        state.seen_events = tuple(row[11])
        state.seen_notices = tuple(row[12])
        state.fired = row[13]
        state.scheduled = row[14]
        state.revision = row[15]
        fields = row[16]
        state.last_fields = tuple(fields) if fields is not None and len(fields) != V1_RECORD_FIELDS else None
        state.last_seen = row[17]
        state.pending_due = row[18]
        state.evict_at = row[19]
        state.phase_time = row[20]
        if len(row) > V1_ROW_LENGTH:
            state.capture_count = row[21]
            state.parts = tuple(_tuple_of(Part, p) for p in row[22]) if row[22] is not None else None
            state.fee_sum = row[23]
            state.reversed_sum = row[24]
            state.open_alerts = tuple(_tuple_of(OpenAlert, a) for a in row[25])
        else:  # a v1 row: v1 kept one reversal and no fee; its decision record had the v1 fields only
            reversal = state.reversal
            state.reversed_sum = reversal.amount_minor if reversal is not None else 0
            if fields is not None and len(fields) == V1_RECORD_FIELDS:
                state.last_fields = (*fields, *state.ledger_fields())
        return state

    def ledger_fields(self) -> tuple[int | None, int | None, int | None]:
        """settled_parts, fee_minor, reversed_amount_minor of the decision record (null until something settled)."""
        if self.settled is None:
            return None, None, None
        return 1 if self.parts is None else len(self.parts), self.fee_sum, self.reversed_sum


_VOIDED: Final = TerminalPhase.VOIDED
_TERMINAL_PHASES: Final = {phase.value: phase for phase in TerminalPhase}
_SETTLEMENT_PHASES: Final = {phase.value: phase for phase in SettlementPhase}


def _tuple_of(cls: Any, values: list[Any]) -> Any:
    """``cls`` from a row; a row written before trailing fields with defaults were added gets their defaults."""
    missing = cls._fields[len(values) :]
    if len(values) > len(cls._fields) or any(name not in cls._field_defaults for name in missing):
        raise ValueError(f"{cls.__name__} row has {len(values)} fields, not {len(cls._fields)}")
    return tuple.__new__(cls, [*values, *(cls._field_defaults[name] for name in missing)])
