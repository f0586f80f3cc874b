"""The exception case state machine (contract v2, "Exception cases"): states, actions and the transition table.

One home for the rules: :data:`TRANSITIONS` says, for every action, from which states it is allowed and which state
it leads to; every other (state, action) pair is rejected, with the reason :func:`rejection_reason` gives. The
checks on an action's fields (:func:`field_problem`) come first. :mod:`posrecon.engine.cases` applies the result.

The records here are the ``pos.exception-actions`` and ``pos.exceptions`` values (``schemas/ExceptionAction.avsc``,
``schemas/ExceptionCase.avsc``), typed as the other records are in :mod:`posrecon.engine.model`.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Any, Final, TypedDict


class CaseState(str, Enum):
    OPEN = "OPEN"
    ACKNOWLEDGED = "ACKNOWLEDGED"
    RESOLVED = "RESOLVED"  # closed by an operator
    AUTO_RESOLVED = "AUTO_RESOLVED"  # closed by the engine's RESOLVED alert
    IGNORED = "IGNORED"  # closed by an operator, no action taken


class ExceptionActionKind(str, Enum):
    """What an operator may do (``ExceptionAction.action``)."""

    ACKNOWLEDGE = "ACKNOWLEDGE"
    ASSIGN = "ASSIGN"
    COMMENT = "COMMENT"
    RESOLVE = "RESOLVE"
    IGNORE = "IGNORE"
    REOPEN = "REOPEN"


class CaseEntryKind(str, Enum):
    """A history entry's action: the operator actions, and posrecon's own OPEN and AUTO_RESOLVE."""

    OPEN = "OPEN"
    ACKNOWLEDGE = "ACKNOWLEDGE"
    ASSIGN = "ASSIGN"
    COMMENT = "COMMENT"
    RESOLVE = "RESOLVE"
    IGNORE = "IGNORE"
    REOPEN = "REOPEN"
    AUTO_RESOLVE = "AUTO_RESOLVE"


#: the Avro enums' reader stand-in for a later version's symbol. The engine writes it in two places only: the
#: ``state`` and ``kind`` of the rejection of an action on an unknown case, and the ``action`` of the history
#: entry of an action whose kind this version does not know (read as UNKNOWN, rejected)
UNKNOWN: Final = "UNKNOWN"
SYSTEM_ACTOR: Final = "posrecon"
MAX_NOTE_CHARS: Final = 2000  # a note is kept in every later version of the case record: bound its size

S = CaseState
A = CaseEntryKind
CLOSED: Final = frozenset({S.RESOLVED, S.AUTO_RESOLVED, S.IGNORED})
NOT_CLOSED = (S.OPEN, S.ACKNOWLEDGED)

#: action -> {state it is allowed in: the state it leads to}. Every pair not listed is rejected.
TRANSITIONS: dict[CaseEntryKind, dict[CaseState, CaseState]] = {
    A.ACKNOWLEDGE: {S.OPEN: S.ACKNOWLEDGED},
    A.ASSIGN: {S.OPEN: S.ACKNOWLEDGED, S.ACKNOWLEDGED: S.ACKNOWLEDGED},  # assigning acknowledges
    A.COMMENT: {s: s for s in CaseState},  # any state, even closed: the audit trail takes notes at any time
    A.RESOLVE: {S.OPEN: S.RESOLVED, S.ACKNOWLEDGED: S.RESOLVED},
    A.IGNORE: {S.OPEN: S.IGNORED, S.ACKNOWLEDGED: S.IGNORED},
    A.REOPEN: {S.RESOLVED: S.OPEN, S.AUTO_RESOLVED: S.OPEN, S.IGNORED: S.OPEN},  # the assignee is kept
    A.AUTO_RESOLVE: {S.OPEN: S.AUTO_RESOLVED, S.ACKNOWLEDGED: S.AUTO_RESOLVED},
}
#: posrecon's own entries; an operator cannot send them (ExceptionActionKind has no such symbol)
SYSTEM_ENTRIES: Final = frozenset({A.OPEN, A.AUTO_RESOLVE})


def transition(state: CaseState, action: CaseEntryKind) -> CaseState | None:
    """The state ``action`` leads to from ``state``, or None when the table does not allow it."""
    return TRANSITIONS.get(action, {}).get(state)


def rejection_reason(state: CaseState, action: CaseEntryKind) -> str:
    """Why the table rejects ``action`` in ``state`` (for the actor: says what to do instead)."""
    name = state._value_
    if action is A.AUTO_RESOLVE:
        if state is S.AUTO_RESOLVED:
            return "case is already AUTO_RESOLVED"
        return f"condition cleared after an operator closed the case ({name}): state kept"
    if state in CLOSED:
        return f"case is {name} (closed): REOPEN it first"
    if action is A.REOPEN:
        return f"case is {name}, not closed: nothing to reopen"
    return f"case is already {name}"


class ExceptionAction(TypedDict):
    action_id: str
    alert_id: str
    action: str
    actor: str
    note: str | None
    assignee: str | None
    at: int
    order_id: str | None
    batch_id: str | None
    merchant_id: str | None


class CaseEntry(TypedDict):
    action_id: str
    action: str
    actor: str
    note: str | None
    assignee: str | None
    at: int
    accepted: bool
    reason: str | None


class ExceptionCase(TypedDict):
    alert_id: str
    kind: str
    severity: str
    order_id: str | None
    batch_id: str | None
    merchant_id: str | None
    state: str
    assignee: str | None
    opened_at: int
    updated_at: int
    version: int
    last_rejection: str | None
    history: list[CaseEntry]


CASE_ENTRY_FIELDS: Final = tuple(CaseEntry.__annotations__)
EXCEPTION_CASE_FIELDS: Final = tuple(ExceptionCase.__annotations__)

_ACTION_KINDS: Final = {k._value_: A(k._value_) for k in ExceptionActionKind}


def entry_kind(action: str) -> CaseEntryKind | None:
    """The entry kind of an operator action's symbol; None for UNKNOWN or anything else an operator cannot send."""
    return _ACTION_KINDS.get(action)


def field_problem(action: CaseEntryKind, actor: str, note: str | None, assignee: str | None) -> str | None:
    """What is wrong with an action's fields whatever the case's state, or None."""
    if not actor.strip():
        return "actor is empty"
    if note is not None and len(note) > MAX_NOTE_CHARS:
        return f"note is longer than {MAX_NOTE_CHARS} characters"
    if action is A.ASSIGN and not (assignee and assignee.strip()):
        return "ASSIGN needs an assignee"
    if action in (A.COMMENT, A.IGNORE) and not (note and note.strip()):
        return f"{action._value_} needs a note"  # an ignored exception says why
    return None


def routing_key(record: Mapping[str, Any]) -> str:
    """The Kafka key of an alert, of its case's records and of the actions on it: order_id, else batch_id, else
    merchant_id (a v1 alert has no batch_id), so actions land on the partition of the alert that opened the case."""
    key: str = record.get("order_id") or record.get("batch_id") or record.get("merchant_id") or ""
    return key
