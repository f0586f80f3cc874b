"""What the case API answers, apart from HTTP: the queue's query, an action's body, and the records they make.

Every function raises :class:`BadRequest` (status and a message naming the field) on input it cannot use; the
server (cases/api.py) turns it into a JSON 4xx. Nothing here reads a clock or Kafka: the caller passes ``now``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

from posrecon.engine.case_actions import (
    MAX_NOTE_CHARS,
    CaseState,
    ExceptionAction,
    ExceptionActionKind,
    ExceptionCase,
    entry_kind,
    field_problem,
    rejection_reason,
    routing_key,
    transition,
)
from posrecon.engine.cases import CASE_STATES, MAX_PAGE, SORTS, CaseBook
from posrecon.engine.model import AlertKind, Severity
from posrecon.engine.pan import scrub_text

#: the actions an operator may send (UNKNOWN is the reader's stand-in for a newer symbol, never sent)
OPERATOR_ACTIONS = tuple(k._value_ for k in ExceptionActionKind if k._value_ != "UNKNOWN")
KINDS = frozenset(k._value_ for k in AlertKind)
SEVERITIES = frozenset(s._value_ for s in Severity)
#: query parameter -> CaseBook.queue argument
QUEUE_PARAMS = {
    "state": "state",
    "kind": "kind",
    "severity": "severity",
    "merchant": "merchant_id",
    "batch": "batch_id",
    "min_age_ms": "min_age_ms",
    "max_age_ms": "max_age_ms",
    "sort": "sort",
    "offset": "offset",
    "limit": "limit",
}
INT_PARAMS = frozenset({"min_age_ms", "max_age_ms", "offset", "limit"})
ACTION_FIELDS = frozenset({"action", "note", "assignee"})
MAX_BODY_BYTES = 16_384


class BadRequest(ValueError):
    def __init__(self, status: int, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": message, **details}


def queue_arguments(params: Mapping[str, list[str]]) -> dict[str, Any]:
    """``GET /cases``'s query as :meth:`CaseBook.queue` arguments (``state`` may be repeated or comma-separated)."""
    unknown = sorted(set(params) - set(QUEUE_PARAMS))
    if unknown:
        raise BadRequest(400, f"unknown query parameter(s) {', '.join(unknown)}", allowed=sorted(QUEUE_PARAMS))
    args: dict[str, Any] = {}
    for name, values in params.items():
        if name == "state":
            states = [s.strip().upper() for v in values for s in v.split(",") if s.strip()]
            bad = sorted(set(states) - CASE_STATES)
            if bad:
                raise BadRequest(400, f"unknown state {', '.join(bad)}", allowed=sorted(CASE_STATES))
            args["state"] = states or None
            continue
        value = values[-1].strip()
        if name in INT_PARAMS:
            try:
                args[QUEUE_PARAMS[name]] = int(value)
            except ValueError:
                raise BadRequest(400, f"{name} must be an integer, not {scrub_text(value)[:40]!r}") from None
        elif name in ("kind", "severity"):
            allowed = KINDS if name == "kind" else SEVERITIES
            if value.upper() not in allowed:
                raise BadRequest(400, f"unknown {name} {scrub_text(value)[:40]!r}", allowed=sorted(allowed))
            args[name] = value.upper()
        elif name == "sort" and value not in SORTS:
            raise BadRequest(400, f"sort must be one of {', '.join(SORTS)}", allowed=list(SORTS))
        elif value:
            args[QUEUE_PARAMS[name]] = value
    offset, limit = args.get("offset", 0), args.get("limit", 50)
    if offset < 0 or not 1 <= limit <= MAX_PAGE:
        raise BadRequest(400, f"offset must be >= 0 and limit 1..{MAX_PAGE}")
    return args


def queue_view(book: CaseBook, now: int, params: Mapping[str, list[str]]) -> dict[str, Any]:
    try:
        return {"now": now, **book.queue(now=now, **queue_arguments(params))}
    except ValueError as exc:  # the book's own checks (a combination the parser let through)
        if isinstance(exc, BadRequest):
            raise
        raise BadRequest(400, str(exc)) from None


def aging_view(book: CaseBook, now: int) -> dict[str, Any]:
    buckets = book.aging(now)
    return {"now": now, "not_closed": sum(b["count"] for b in buckets), "buckets": buckets}


def parse_action(body: bytes) -> tuple[str, str | None, str | None]:
    """``POST /cases/{id}/actions``'s body ``{"action", "note", "assignee"}``: (action, note, assignee)."""
    try:
        data = json.loads(body or b"null")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(400, f"the body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest(400, 'the body must be a JSON object {"action": ..., "note": ..., "assignee": ...}')
    unknown = sorted(set(data) - ACTION_FIELDS)
    if unknown:
        raise BadRequest(400, f"unknown field(s) {', '.join(map(str, unknown))}", allowed=sorted(ACTION_FIELDS))
    action = data.get("action")
    if not isinstance(action, str) or action.strip().upper() not in OPERATOR_ACTIONS:
        raise BadRequest(400, "action must be one of " + ", ".join(OPERATOR_ACTIONS), allowed=list(OPERATOR_ACTIONS))
    text: dict[str, str | None] = {}
    for name in ("note", "assignee"):
        value = data.get(name)
        if value is not None and not isinstance(value, str):
            raise BadRequest(400, f"{name} must be a string or null")
        text[name] = value.strip() or None if isinstance(value, str) else None
    return action.strip().upper(), text["note"], text["assignee"]


def new_action_id() -> str:
    """A fresh action id that the card-number scrub leaves as it is. The stage stores an action's id through
    ``scrub_text`` (an action may come from any producer), and 0.7 % of ``uuid4().hex`` ids hold a Luhn-valid run
    of 13+ digits: such an action came back under a masked id, never the one its 202 answer named (CI, the
    case API test timing out on its own action). Those ids are drawn again."""
    while True:
        candidate = uuid.uuid4().hex
        if scrub_text(candidate) == candidate:
            return candidate


def new_action(
    case: ExceptionCase, action: str, actor: str, note: str | None, assignee: str | None, now: int
) -> ExceptionAction:
    """The ``ExceptionAction`` an operator's request makes, checked first as the stage will check it.

    Field problems answer 400; an action the case's current state does not allow answers 409 with the table's
    reason (nothing produced). A race with another operator is still decided by the stage: the loser's action
    is recorded as rejected in the case's history (``last_rejection``)."""
    kind = entry_kind(action)
    assert kind is not None  # parse_action let only operator actions through
    problem = field_problem(kind, actor, note, assignee)
    if problem is not None:
        raise BadRequest(400, problem, max_note_chars=MAX_NOTE_CHARS)
    state = CaseState(case["state"])
    if transition(state, kind) is None:
        raise BadRequest(409, rejection_reason(state, kind), state=case["state"])
    return {
        "action_id": new_action_id(),
        "alert_id": case["alert_id"],
        "action": action,
        "actor": actor,
        "note": note,
        "assignee": assignee if action == "ASSIGN" else None,
        "at": now,
        "order_id": case["order_id"],
        "batch_id": case["batch_id"],
        "merchant_id": case["merchant_id"],
    }


def action_key(case: ExceptionCase) -> bytes:
    """The Kafka key of an action on ``case``: its alert's routing key (the case's partition is given explicitly)."""
    return routing_key(case).encode()
