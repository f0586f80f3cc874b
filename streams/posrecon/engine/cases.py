"""Exception cases (contract v2, issue 15): one :class:`Case` per OPEN alert, worked by operators to closure.

A :class:`CaseBook` sits beside the order books of a partition: the alerts the engine emits and the operator
actions from ``pos.exception-actions`` (keyed by order_id or batch_id, so the worker that produced the alert gets
them) go in; every change comes out as the case's full record for ``pos.exceptions`` (compacted, key alert_id).

- An OPEN alert opens a case (version 1, state OPEN, ``opened_at`` = the alert's ``event_time``: event time, so
  live and replay agree; ``detected_at`` is wall clock). The same alert_id again is a redelivery: nothing happens.
- A RESOLVED alert applies AUTO_RESOLVE (actor ``posrecon``, action_id = the RESOLVED alert's id) to the case
  named by ``resolves_alert_id``. A RESOLVED alert for a case this book does not hold (opened before cases
  existed, or evicted) is counted in :attr:`CaseBook.unmatched_resolutions`; nothing is emitted for it.
- Every action is one history entry and one new version: accepted (the state moves as the table in
  :mod:`~posrecon.engine.case_actions` says) or rejected (state unchanged, ``accepted`` false, the reason in the
  entry and in ``last_rejection``), so a rejection reaches the actor on ``pos.exceptions``. An action_id already
  in the case's history is a redelivery: applied once, nothing emitted again.
- An action on an alert_id this book does not hold is rejected with a record of its own: version 0, state
  UNKNOWN, kind UNKNOWN, severity INFO, its one (rejected) entry, ``last_rejection`` "unknown case ...".
  Actions and alerts of one order or batch share a partition, and the alert is written before any operator can
  see it, so an unknown alert_id is truly unknown (or evicted), never "not arrived yet".
- actor, note, assignee and action_id pass :func:`~posrecon.engine.pan.scrub_text` before they are stored.
- Times are the inputs' event times (``at`` of an action, ``event_time`` of an alert); ``updated_at`` never
  decreases. Closed cases are evicted once the watermark passes ``updated_at + retention_ms`` (the topic keeps
  their last record); open cases stay until worked.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Collection, Mapping
from typing import Any, Final

from posrecon.engine.case_actions import (
    SYSTEM_ACTOR,
    UNKNOWN,
    CaseEntryKind,
    CaseState,
    ExceptionCase,
    entry_kind,
    field_problem,
    rejection_reason,
    transition,
)
from posrecon.engine.case_record import CASE_ROW, Case, new_entry, scrub_optional
from posrecon.engine.model import AlertStatus, Severity
from posrecon.engine.pan import scrub_text

NO_WATERMARK: Final = -(1 << 62)
UNKNOWN_CASE: Final = "unknown case (no alert with this id here, or closed and past retention)"
UNKNOWN_ACTION: Final = "unknown action (a newer schema's symbol this version does not know)"
CASE_STATES: Final = frozenset(s._value_ for s in CaseState)
MAX_PAGE: Final = 500
AGING_BOUNDS_MS = (3_600_000, 14_400_000, 86_400_000, 259_200_000)  # 1 h, 4 h, 1 d, 3 d
_SEVERITY_RANK: Final = {"CRITICAL": 0, "WARNING": 1, "INFO": 2}
SORTS: Final = {
    "age": lambda c: (c.opened_at, c.alert_id),  # oldest first
    "newest": lambda c: (-c.opened_at, c.alert_id),
    "severity": lambda c: (_SEVERITY_RANK.get(c.severity, 3), c.opened_at, c.alert_id),  # CRITICAL, oldest first
    "updated": lambda c: (-c.updated_at, c.alert_id),  # most recently worked first
}


class CaseBook:
    """The cases of one partition. Feed :meth:`on_alert`, :meth:`on_action`, :meth:`advance`; publish
    :meth:`take`. (on_alert and on_action also return what they produced; publish from take only.)"""

    def __init__(self, retention_ms: int = 604_800_000) -> None:
        self.retention = retention_ms
        self.cases: dict[str, Case] = {}
        self.timers: list[tuple[int, str]] = []  # (evict at, alert_id) of closed cases, checked when popped
        self.watermark = NO_WATERMARK
        self.records: list[ExceptionCase] = []
        #: alert_ids changed since the shell last persisted this book (row() is None once evicted); None: not tracked
        self.dirty: set[str] | None = None
        self.redeliveries = 0  # alerts and actions seen again (applied once)
        self.unmatched_resolutions = 0  # RESOLVED alerts for a case not held here
        self.rejections = 0  # actions rejected (unknown cases included)

    def __len__(self) -> int:
        return len(self.cases)

    def take(self) -> list[ExceptionCase]:
        """Hand over the records produced since the last call, in the order produced."""
        records, self.records = self.records, []
        return records

    # --- input ------------------------------------------------------------------------------------------------

    def on_alert(self, alert: Mapping[str, Any]) -> list[ExceptionCase]:
        """An alert the engine emitted: OPEN opens a case, RESOLVED auto-resolves the case it names."""
        status = alert.get("status", AlertStatus.OPEN._value_)  # a v1 alert has no status: it is OPEN
        reason = scrub_text(alert["reason"])
        if status == AlertStatus.RESOLVED._value_:
            case = self.cases.get(alert.get("resolves_alert_id") or "")
            if case is None:
                self.unmatched_resolutions += 1
                return []
            return self._apply(
                case,
                CaseEntryKind.AUTO_RESOLVE._value_,
                CaseEntryKind.AUTO_RESOLVE,
                None,
                alert["alert_id"],
                SYSTEM_ACTOR,
                reason,
                None,
                alert["event_time"],
            )
        if status != AlertStatus.OPEN._value_:
            return []  # a status a later schema version adds (read as UNKNOWN): nothing this version can do
        if alert["alert_id"] in self.cases:
            self.redeliveries += 1
            return []
        case = Case(
            alert["alert_id"],
            alert["kind"],
            alert["severity"],
            alert.get("order_id"),
            alert.get("batch_id"),
            alert.get("merchant_id"),
            alert["event_time"],
        )
        self.cases[case.alert_id] = case
        case.add(new_entry(case.alert_id, CaseEntryKind.OPEN._value_, SYSTEM_ACTOR, reason, None, case.opened_at, None))
        return self._emit(case)

    def on_action(self, action: Mapping[str, Any]) -> list[ExceptionCase]:
        """An operator's action (an ``ExceptionAction``): exactly one record, unless it is a redelivery."""
        kind = entry_kind(action["action"])
        symbol = UNKNOWN if kind is None else kind._value_
        actor, note = scrub_text(action["actor"]), scrub_optional(action.get("note"))
        assignee = scrub_optional(action.get("assignee")) if kind is CaseEntryKind.ASSIGN else None
        action_id, at = scrub_text(action["action_id"]), action["at"]
        case = self.cases.get(action["alert_id"])
        if case is None:
            return self._unknown_case(action, symbol, action_id, actor, note, assignee, at)
        problem = UNKNOWN_ACTION if kind is None else field_problem(kind, actor, note, assignee)
        return self._apply(case, symbol, kind, problem, action_id, actor, note, assignee, at)

    def advance(self, watermark: int) -> None:
        """The partition's watermark moved: evict closed cases past their retention."""
        # not only when it moves: a case closed behind the watermark (a late action) is due at the next call
        watermark = self.watermark = max(self.watermark, watermark)
        timers = self.timers
        while timers and timers[0][0] <= watermark:
            _, alert_id = heapq.heappop(timers)
            case = self.cases.get(alert_id)
            # evicted already, reopened (a new timer comes when it closes again), or updated since: every change
            # of a closed case pushes a timer for its new updated_at, so the later one is in the heap
            if case is not None and case.closed and case.updated_at + self.retention <= watermark:
                del self.cases[alert_id]
                self._touch(alert_id)

    # --- rules ------------------------------------------------------------------------------------------------

    def _apply(
        self,
        case: Case,
        symbol: str,
        kind: CaseEntryKind | None,
        problem: str | None,
        action_id: str,
        actor: str,
        note: str | None,
        assignee: str | None,
        at: int,
    ) -> list[ExceptionCase]:
        if action_id in case.action_ids:
            self.redeliveries += 1
            return []
        reason = problem
        if reason is None and kind is not None:
            target = transition(case.state, kind)
            if target is None:
                reason = rejection_reason(case.state, kind)
            else:
                case.state = target
                if kind is CaseEntryKind.ASSIGN:
                    case.assignee = assignee
        self.rejections += reason is not None
        case.add(new_entry(action_id, symbol, actor, note, assignee, at, reason))
        if case.closed:
            heapq.heappush(self.timers, (case.updated_at + self.retention, case.alert_id))
        return self._emit(case)

    def _unknown_case(
        self,
        action: Mapping[str, Any],
        symbol: str,
        action_id: str,
        actor: str,
        note: str | None,
        assignee: str | None,
        at: int,
    ) -> list[ExceptionCase]:
        """The rejection of an action on a case not held here: a record of its own (version 0, state UNKNOWN)."""
        self.rejections += 1
        entry = new_entry(action_id, symbol, actor, note, assignee, at, UNKNOWN_CASE)
        record: ExceptionCase = {
            "alert_id": scrub_text(action["alert_id"]),
            "kind": UNKNOWN,
            "severity": Severity.INFO._value_,
            "order_id": scrub_optional(action.get("order_id")),
            "batch_id": scrub_optional(action.get("batch_id")),
            "merchant_id": None,
            "state": UNKNOWN,
            "assignee": None,
            "opened_at": at,
            "updated_at": at,
            "version": 0,
            "last_rejection": UNKNOWN_CASE,
            "history": [entry],
        }
        self.records.append(record)
        return [record]

    def _emit(self, case: Case) -> list[ExceptionCase]:
        record = case.record()
        self.records.append(record)
        self._touch(case.alert_id)
        return [record]

    def _touch(self, alert_id: str) -> None:
        if self.dirty is not None:
            self.dirty.add(alert_id)

    # --- snapshot ---------------------------------------------------------------------------------------------

    def row(self, alert_id: str) -> list[Any] | None:
        """The changelog row of ``alert_id`` (see :attr:`dirty`), None once evicted (a tombstone)."""
        case = self.cases.get(alert_id)
        return None if case is None else case.to_row()

    def to_rows(self) -> list[list[Any]]:
        return [case.to_row() for case in self.cases.values()]

    def load_rows(self, rows: list[list[Any]], watermark: int) -> None:
        """Fill this book from :meth:`to_rows` (or changelog rows, in any order)."""
        self.cases = {row[1]: Case.from_row(row) for row in rows if row[0] == CASE_ROW}
        self.timers = [(c.updated_at + self.retention, a) for a, c in self.cases.items() if c.closed]
        heapq.heapify(self.timers)
        self.watermark = watermark

    # --- operator views (the ops API) -------------------------------------------------------------------------

    def view(self, alert_id: str) -> ExceptionCase | None:
        case = self.cases.get(alert_id)
        return None if case is None else case.record()

    def queue(
        self,
        *,
        now: int,
        state: str | Collection[str] | None = None,
        kind: str | None = None,
        severity: str | None = None,
        merchant_id: str | None = None,
        batch_id: str | None = None,
        min_age_ms: int | None = None,
        max_age_ms: int | None = None,
        sort: str = "age",
        offset: int = 0,
        limit: int = 50,
    ) -> dict[str, Any]:
        """The case queue: filtered (every filter optional; ``state`` one or several), counted, sorted, paged.
        Age is ``now - opened_at`` (``now``: the caller's clock). Raises ValueError on a bad argument."""
        if sort not in SORTS:
            raise ValueError(f"sort must be one of {', '.join(SORTS)}, not {sort!r}")
        if offset < 0 or not 1 <= limit <= MAX_PAGE:
            raise ValueError(f"offset must be >= 0 and limit 1..{MAX_PAGE}")
        states = {state} if isinstance(state, str) else None if state is None else set(state)
        if states is not None and not states <= CASE_STATES:
            raise ValueError(f"unknown state {sorted(states - CASE_STATES)}: states are {', '.join(CASE_STATES)}")
        low = NO_WATERMARK if max_age_ms is None else now - max_age_ms
        high = -NO_WATERMARK if min_age_ms is None else now - min_age_ms
        found = [
            c
            for c in self.cases.values()
            if (states is None or c.state._value_ in states)
            and (kind is None or c.kind == kind)
            and (severity is None or c.severity == severity)
            and (merchant_id is None or c.merchant_id == merchant_id)
            and (batch_id is None or c.batch_id == batch_id)
            and low <= c.opened_at <= high
        ]
        found.sort(key=SORTS[sort])
        return {
            "total": len(found),
            "offset": offset,
            "limit": limit,
            "by_kind": dict(sorted(Counter(c.kind for c in found).items())),
            "by_state": dict(sorted(Counter(c.state._value_ for c in found).items())),
            "items": [_summary(c, now) for c in found[offset : offset + limit]],
        }

    def aging(self, now: int, bounds: tuple[int, ...] = AGING_BOUNDS_MS) -> list[dict[str, Any]]:
        """Cases not closed, by age bucket (``[0, b1)``, ``[b1, b2)`` ... ``[bn, inf)``) and severity."""
        counts: Counter[tuple[int, str]] = Counter(
            (sum(now - c.opened_at >= b for b in bounds), c.severity) for c in self.cases.values() if not c.closed
        )
        edges = (0, *bounds)
        return [
            {
                "bucket": _bucket_label(lo, hi),
                "from_ms": lo,
                "to_ms": hi,
                "count": sum(n for (k, _), n in counts.items() if k == i),
                "by_severity": {s._value_: counts[i, s._value_] for s in Severity},
            }
            for i, (lo, hi) in enumerate(zip(edges, (*bounds, None), strict=True))
        ]


def _summary(case: Case, now: int) -> dict[str, Any]:
    """A queue row: the case record without its history, plus its age."""
    return {
        "alert_id": case.alert_id,
        "kind": case.kind,
        "severity": case.severity,
        "order_id": case.order_id,
        "batch_id": case.batch_id,
        "merchant_id": case.merchant_id,
        "state": case.state._value_,
        "assignee": case.assignee,
        "opened_at": case.opened_at,
        "updated_at": case.updated_at,
        "version": case.version,
        "last_rejection": case.last_rejection,
        "age_ms": now - case.opened_at,
    }


def _hours(ms: int) -> str:
    return f"{ms // 86_400_000}d" if ms % 86_400_000 == 0 else f"{ms / 3_600_000:g}h"


def _bucket_label(lo: int, hi: int | None) -> str:
    return (
        f"<{_hours(hi)}"
        if lo == 0 and hi is not None
        else f">={_hours(lo)}"
        if hi is None
        else f"{_hours(lo)}-{_hours(hi)}"
    )
