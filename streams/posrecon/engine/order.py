"""One order's reconciliation state: two explicit state machines (terminal side, settlement side) plus
the facts needed to decide an outcome.

The phases move only along the transition tables below; every table entry is total so any arrival order
of events lands in a defined phase. Facts (the first approval, the first SETTLED notice …) are kept
beside the phases so that decisions depend on what happened, not on the order it arrived in.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any, NamedTuple


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
TERMINAL_EVENT_INDEX = {"ORDER_CREATED": 0, "AUTH_APPROVED": 1, "AUTH_DECLINED": 2, "AUTH_TIMEOUT": 3, "VOIDED": 4}
SETTLEMENT_STATUS_INDEX = {"SETTLED": 0, "FAILED": 1, "REVERSED": 2}

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
UNRESOLVED_TERMINAL = frozenset({TerminalPhase.NONE, TerminalPhase.CREATED, TerminalPhase.TIMED_OUT})

# bits of OrderState.fired: conditions whose alert has fired (each fires at most once)
FIRED_MISSING = 1
FIRED_ORPHAN = 2
FIRED_EXPIRED = 4
FIRED_LATE = 8
FIRED_MISMATCH = 16
FIRED_CONFLICT = 32
FIRED_FAILED_CONFLICT = 64
# bits of OrderState.scheduled: deadlines already in the deadline index
SCHEDULED_MISSING = 1
SCHEDULED_ORPHAN = 2
SCHEDULED_EXPIRED = 4


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


RecordFields = tuple[
    str, str, str | None, str, str, int | None, int | None, int | None, int | None, int | None, str | None
]


class OrderState:
    """Everything the engine keeps for one order (kept small: see bench/ for bytes per open order)."""

    __slots__ = (
        "approval",
        "created_at",
        "evict_at",
        "failed",
        "fired",
        "last_fields",
        "last_seen",
        "merchant_id",
        "order_id",
        "pending_due",
        "phase_time",
        "reversal",
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

    # --- settlement -----------------------------------------------------------------------------------

    def awaiting_settlement(self) -> Approval | None:
        """The approval still waiting for its settlement (approved, not voided, no SETTLED or FAILED notice
        yet), else None: the condition of the MISSING_SETTLEMENT deadline and of the pending-settlement views."""
        if self.settled is None and self.failed is None and self.terminal_phase is not _VOIDED:
            return self.approval
        return None

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
        state.last_fields = tuple(row[16]) if row[16] is not None else None
        state.last_seen = row[17]
        state.pending_due = row[18]
        state.evict_at = row[19]
        state.phase_time = row[20]
        return state


_VOIDED = TerminalPhase.VOIDED
_TERMINAL_PHASES = {phase.value: phase for phase in TerminalPhase}
_SETTLEMENT_PHASES = {phase.value: phase for phase in SettlementPhase}


def _tuple_of(cls: Any, values: list[Any]) -> Any:
    if len(values) != len(cls._fields):
        raise ValueError(f"{cls.__name__} row has {len(values)} fields, not {len(cls._fields)}")
    return tuple.__new__(cls, values)
