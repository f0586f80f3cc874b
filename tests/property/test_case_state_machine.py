"""The exception case state machine under any sequence of alerts, operator actions (valid or not, redelivered or
not, on known or unknown cases), watermark moves and snapshot/restore: no undefined state is ever reached, every
action produces exactly one record (a redelivery none), versions are contiguous, the history only grows, closed
cases are evicted exactly a retention after their last update, and no card number is ever stored."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from posrecon.engine.case_actions import CLOSED, TRANSITIONS, CaseEntryKind, CaseState, ExceptionCase
from posrecon.engine.cases import UNKNOWN_CASE, CaseBook
from scenario import case_action

T0 = 1_767_225_600_000
RETENTION = 1_000
PAN = "4111111111111111"
ALERTS = [f"a{k}" for k in range(4)]
KINDS = ["ACKNOWLEDGE", "ASSIGN", "COMMENT", "RESOLVE", "IGNORE", "REOPEN", "UNKNOWN", "SNOOZE"]
STATES = {s.value for s in CaseState}

times = st.integers(T0 - 200, T0 + 5_000)
texts = st.one_of(st.none(), st.sampled_from(["", " ", "checked the bank file", f"card {PAN}", "x" * 2001]))


def replayed_state(record: ExceptionCase) -> str:
    """The state the accepted entries lead to through the table, from OPEN."""
    state = CaseState.OPEN
    for entry in record["history"][1:]:
        if entry["accepted"]:
            state = TRANSITIONS[CaseEntryKind(entry["action"])][state]
    return state._value_


class CaseMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.book = CaseBook(RETENTION)
        self.last: dict[str, ExceptionCase] = {}  # the latest record of each case the book holds
        self.emitted: list[ExceptionCase] = []

    def _one(self, out: list[ExceptionCase]) -> ExceptionCase:
        assert len(out) == 1 and self.book.take() == out
        self.emitted.extend(out)
        return out[0]

    def _check_step(self, before: ExceptionCase, record: ExceptionCase, kind: CaseEntryKind | None) -> None:
        entry = record["history"][-1]
        assert record["version"] == before["version"] + 1 == len(record["history"])
        assert record["history"][:-1] == before["history"]
        old = CaseState(before["state"])
        if entry["accepted"]:
            assert kind is not None and TRANSITIONS[kind][old]._value_ == record["state"]
        else:
            assert record["state"] == before["state"] and entry["reason"] == record["last_rejection"]
        assert record["updated_at"] == max(before["updated_at"], entry["at"])
        self.last[record["alert_id"]] = record

    @rule(aid=st.sampled_from(ALERTS), at=times, severity=st.sampled_from(["INFO", "WARNING", "CRITICAL"]))
    def open_alert(self, aid: str, at: int, severity: str) -> None:
        alert: dict[str, Any] = {
            "alert_id": aid,
            "kind": "MISSING_SETTLEMENT",
            "severity": severity,
            "order_id": f"o-{aid}",
            "merchant_id": "m1",
            "terminal_id": None,
            "reason": "no settlement",
            "event_time": at,
            "detected_at": 0,
            "related_ids": [],
            "status": "OPEN",
            "resolves_alert_id": None,
            "batch_id": None,
        }
        out = self.book.on_alert(alert)
        if aid in self.last:
            assert out == []  # a redelivery
            return
        record = self._one(out)
        assert (record["version"], record["state"], record["opened_at"]) == (1, "OPEN", at)
        self.last[aid] = record

    @rule(aid=st.sampled_from([*ALERTS, "ghost"]), rid=st.sampled_from(["r0", "r1"]), at=times)
    def resolved_alert(self, aid: str, rid: str, at: int) -> None:
        out = self.book.on_alert(
            {
                "alert_id": f"{rid}-{aid}",
                "kind": "MISSING_SETTLEMENT",
                "severity": "INFO",
                "order_id": f"o-{aid}",
                "merchant_id": "m1",
                "terminal_id": None,
                "reason": "settled",
                "event_time": at,
                "detected_at": 0,
                "related_ids": [],
                "status": "RESOLVED",
                "resolves_alert_id": aid,
                "batch_id": None,
            }
        )
        before = self.last.get(aid)
        if before is None or any(e["action_id"] == f"{rid}-{aid}" for e in before["history"]):
            assert out == []
            return
        self._check_step(before, self._one(out), CaseEntryKind.AUTO_RESOLVE)

    @rule(
        aid=st.sampled_from([*ALERTS, "ghost"]),
        action_id=st.sampled_from([f"x{k}" for k in range(6)]),
        kind=st.sampled_from(KINDS),
        actor=st.sampled_from(["ann", "", f"ann {PAN}"]),
        note=texts,
        assignee=st.sampled_from([None, "bob", PAN]),
        at=times,
    )
    def act(
        self, aid: str, action_id: str, kind: str, actor: str, note: str | None, assignee: str | None, at: int
    ) -> None:
        action = case_action(kind, aid, at, action_id, actor, note, assignee, order_id=f"o-{aid}")
        out = self.book.on_action(action)
        before = self.last.get(aid)
        if before is None:
            record = self._one(out)
            assert (record["version"], record["state"], record["last_rejection"]) == (0, "UNKNOWN", UNKNOWN_CASE)
            return
        if any(e["action_id"] == action_id for e in before["history"]):
            assert out == []  # applied once
            return
        self._check_step(before, self._one(out), CaseEntryKind.__members__.get(kind))

    @rule(step=st.integers(0, 2_000))
    def advance(self, step: int) -> None:
        watermark = max(self.book.watermark, T0) + step
        self.book.advance(watermark)
        for aid, record in list(self.last.items()):
            gone = CaseState(record["state"]) in CLOSED and record["updated_at"] + RETENTION <= watermark
            assert (aid not in self.book.cases) == gone
            if gone:
                del self.last[aid]

    @rule()
    def snapshot_and_restore(self) -> None:
        rows = json.loads(json.dumps(self.book.to_rows()))
        restored = CaseBook(RETENTION)
        restored.load_rows(rows, self.book.watermark)
        assert restored.to_rows() == self.book.to_rows()
        self.book = restored

    @invariant()
    def the_book_holds_the_latest_records(self) -> None:
        assert set(self.book.cases) == set(self.last)
        for aid, record in self.last.items():
            assert self.book.view(aid) == record
            assert record["state"] in STATES
            assert replayed_state(record) == record["state"]  # the history alone tells the state

    @invariant()
    def no_card_number_is_stored(self) -> None:
        text: Any = json.dumps([self.emitted[-3:], self.book.to_rows()])
        assert PAN not in text.replace(" ", "")


CaseMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestCaseStateMachine = CaseMachine.TestCase
