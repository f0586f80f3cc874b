"""One exception case (:class:`Case`): the alert's facts, the current state, the audit trail, and its snapshot row.

The rules that move a case live in :mod:`~posrecon.engine.case_actions` (the table) and
:mod:`~posrecon.engine.cases` (the book that applies them); this is the record they work on.
"""

from __future__ import annotations

from typing import Any, Final

from posrecon.engine.case_actions import CASE_ENTRY_FIELDS, CLOSED, CaseEntry, CaseState, ExceptionCase
from posrecon.engine.pan import scrub_text

CASE_ROW: Final = "C"  # snapshot row tag


def scrub_optional(value: str | None) -> str | None:
    return None if value is None else scrub_text(value)


def new_entry(
    action_id: str, action: str, actor: str, note: str | None, assignee: str | None, at: int, reason: str | None
) -> CaseEntry:
    return {
        "action_id": action_id,
        "action": action,
        "actor": actor,
        "note": note,
        "assignee": assignee,
        "at": at,
        "accepted": reason is None,
        "reason": reason,
    }


class Case:
    """One exception case: the alert's facts, the current state and the audit trail (history)."""

    __slots__ = (
        "action_ids",
        "alert_id",
        "assignee",
        "batch_id",
        "history",
        "kind",
        "last_rejection",
        "merchant_id",
        "opened_at",
        "order_id",
        "severity",
        "state",
        "updated_at",
    )

    def __init__(
        self,
        alert_id: str,
        kind: str,
        severity: str,
        order_id: str | None,
        batch_id: str | None,
        merchant_id: str | None,
        opened_at: int,
    ) -> None:
        self.alert_id = alert_id
        self.kind = kind
        self.severity = severity
        self.order_id = order_id
        self.batch_id = batch_id
        self.merchant_id = merchant_id
        self.state = CaseState.OPEN
        self.assignee: str | None = None
        self.opened_at = opened_at
        self.updated_at = opened_at
        self.last_rejection: str | None = None
        # entries are never changed once appended, so records share them (each record copies only the list)
        self.history: list[CaseEntry] = []
        self.action_ids: set[str] = set()  # of the history's entries: the redelivery check

    @property
    def version(self) -> int:
        return len(self.history)

    @property
    def closed(self) -> bool:
        return self.state in CLOSED

    def add(self, entry: CaseEntry) -> None:
        self.history.append(entry)
        self.action_ids.add(entry["action_id"])
        self.updated_at = max(self.updated_at, entry["at"])
        self.last_rejection = entry["reason"]

    def record(self) -> ExceptionCase:
        return {
            "alert_id": self.alert_id,
            "kind": self.kind,
            "severity": self.severity,
            "order_id": self.order_id,
            "batch_id": self.batch_id,
            "merchant_id": self.merchant_id,
            "state": self.state._value_,
            "assignee": self.assignee,
            "opened_at": self.opened_at,
            "updated_at": self.updated_at,
            "version": self.version,
            "last_rejection": self.last_rejection,
            "history": list(self.history),
        }

    def to_row(self) -> list[Any]:
        """The snapshot row (JSON-able); the history as lists in :data:`CASE_ENTRY_FIELDS` order."""
        history = [[e[f] for f in CASE_ENTRY_FIELDS] for e in self.history]  # type: ignore[literal-required]
        return [
            CASE_ROW,
            self.alert_id,
            self.kind,
            self.severity,
            self.order_id,
            self.batch_id,
            self.merchant_id,
            self.state._value_,
            self.assignee,
            self.opened_at,
            self.updated_at,
            self.last_rejection,
            history,
        ]

    @classmethod
    def from_row(cls, row: list[Any]) -> Case:
        _, alert_id, kind, severity, order_id, batch_id, merchant_id, state, assignee, opened, updated, last, hist = row
        case = cls(alert_id, kind, severity, order_id, batch_id, merchant_id, opened)
        case.state = CaseState(state)
        case.assignee = assignee
        case.history = [dict(zip(CASE_ENTRY_FIELDS, e, strict=True)) for e in hist]  # type: ignore[misc]
        case.action_ids = {e["action_id"] for e in case.history}
        case.updated_at = updated
        case.last_rejection = last
        return case
