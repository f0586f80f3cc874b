"""Exception cases (contract v2, issue 15): the state table pair by pair, rejections that reach the actor,
redeliveries applied once, auto-resolution, the audit trail, eviction, snapshot rows, the operator views, and the
two records' schemas."""

from __future__ import annotations

import io
import json
from typing import Any, get_type_hints

import fastavro
import pytest

from posrecon.engine import case_actions
from posrecon.engine.case_actions import CaseState, ExceptionActionKind
from posrecon.engine.cases import UNKNOWN_ACTION, UNKNOWN_CASE, CaseBook
from posrecon.serde.codec import AvroCodec
from posrecon.serde.schemas import load_schema_json, wire_schema
from scenario import case_action as action

T0 = 1_767_225_600_000
HOUR = 3_600_000
RETENTION = 24 * HOUR
PAN = "4111 1111 1111 1111"

O, K, R, AR, IG = "OPEN", "ACKNOWLEDGED", "RESOLVED", "AUTO_RESOLVED", "IGNORED"  # noqa: E741 (the table reads)
#: the contract's table, written out on its own (not read from the code): (state, action) -> new state, or None
EXPECTED: dict[tuple[str, str], str | None] = {
    (O, "ACKNOWLEDGE"): K,
    (K, "ACKNOWLEDGE"): None,
    (R, "ACKNOWLEDGE"): None,
    (AR, "ACKNOWLEDGE"): None,
    (IG, "ACKNOWLEDGE"): None,
    (O, "ASSIGN"): K,
    (K, "ASSIGN"): K,
    (R, "ASSIGN"): None,
    (AR, "ASSIGN"): None,
    (IG, "ASSIGN"): None,
    (O, "COMMENT"): O,
    (K, "COMMENT"): K,
    (R, "COMMENT"): R,
    (AR, "COMMENT"): AR,
    (IG, "COMMENT"): IG,
    (O, "RESOLVE"): R,
    (K, "RESOLVE"): R,
    (R, "RESOLVE"): None,
    (AR, "RESOLVE"): None,
    (IG, "RESOLVE"): None,
    (O, "IGNORE"): IG,
    (K, "IGNORE"): IG,
    (R, "IGNORE"): None,
    (AR, "IGNORE"): None,
    (IG, "IGNORE"): None,
    (O, "REOPEN"): None,
    (K, "REOPEN"): None,
    (R, "REOPEN"): O,
    (AR, "REOPEN"): O,
    (IG, "REOPEN"): O,
}
#: how a fresh case is brought into each state (inputs after the OPEN alert)
PATHS: dict[str, list[tuple[str, ...]]] = {
    O: [],
    K: [("ACKNOWLEDGE",)],
    R: [("RESOLVE",)],
    AR: [("AUTO",)],
    IG: [("IGNORE",)],
}


def wire_bytes(name: str, record: dict[str, Any]) -> bytes:
    """The Avro body of ``record`` as the serde writes it (its wire schema; fastavro, which the codec falls back to
    for nested records)."""
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, wire_schema(name), record)
    return buf.getvalue()


def wire_round_trip(name: str, record: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = fastavro.schemaless_reader(io.BytesIO(wire_bytes(name, record)), wire_schema(name))  # type: ignore[assignment]
    return out


def alert(
    aid: str = "a1",
    at: int = T0,
    severity: str = "WARNING",
    kind: str = "MISSING_SETTLEMENT",
    merchant: str = "m1",
    batch: str | None = None,
    order: str | None = "o1",
) -> dict[str, Any]:
    return {
        "alert_id": aid,
        "kind": kind,
        "severity": severity,
        "order_id": order,
        "merchant_id": merchant,
        "terminal_id": None,
        "reason": f"reason of {aid}",
        "event_time": at,
        "detected_at": 42,
        "related_ids": [],
        "status": "OPEN",
        "resolves_alert_id": None,
        "batch_id": batch,
    }


def resolved(original: str = "a1", at: int = T0 + HOUR, rid: str | None = None) -> dict[str, Any]:
    return {
        **alert(rid or f"{original}-resolved", at, "INFO"),
        "status": "RESOLVED",
        "resolves_alert_id": original,
        "reason": "settled in full",
    }


def book_in(state: str) -> CaseBook:
    book = CaseBook(RETENTION)
    book.on_alert(alert())
    for step, (kind,) in enumerate(PATHS[state]):
        at = T0 + HOUR + step
        book.on_alert(resolved(at=at)) if kind == "AUTO" else book.on_action(action(kind, at=at))
    book.take()
    view = book.view("a1")
    assert view is not None and view["state"] == state
    return book


# --- the table, every pair ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("state", "kind"), list(EXPECTED))
def test_every_action_in_every_state_is_allowed_or_rejected_with_a_reason(state: str, kind: str) -> None:
    book = book_in(state)
    before = book.view("a1")
    assert before is not None
    out = book.on_action(action(kind, action_id="x"))
    assert out == book.take() and len(out) == 1
    record = out[0]
    entry = record["history"][-1]
    assert record["version"] == before["version"] + 1 == len(record["history"])
    assert record["history"][:-1] == before["history"]
    assert (entry["action_id"], entry["action"], entry["actor"], entry["at"]) == ("x", kind, "ann", T0 + 2 * HOUR)
    expected = EXPECTED[state, kind]
    if expected is None:
        assert record["state"] == state
        assert entry["accepted"] is False and entry["reason"] and record["last_rejection"] == entry["reason"]
        assert record["assignee"] == before["assignee"]
    else:
        assert record["state"] == expected
        assert entry["accepted"] is True and entry["reason"] is None and record["last_rejection"] is None


def test_the_table_in_the_code_is_the_expected_one() -> None:
    for (state, kind), expected in EXPECTED.items():
        got = case_actions.transition(CaseState(state), case_actions.CaseEntryKind(kind))
        assert (got and got._value_) == expected, (state, kind)
    assert {k for _, k in EXPECTED} == {k._value_ for k in ExceptionActionKind}
    assert {s for s, _ in EXPECTED} == {s._value_ for s in CaseState}


@pytest.mark.parametrize(
    ("state", "kind", "reason"),
    [
        (R, "RESOLVE", "case is RESOLVED (closed): REOPEN it first"),
        (K, "ACKNOWLEDGE", "case is already ACKNOWLEDGED"),
        (O, "REOPEN", "case is OPEN, not closed: nothing to reopen"),
        (IG, "ASSIGN", "case is IGNORED (closed): REOPEN it first"),
    ],
)
def test_rejection_reasons_tell_the_actor_what_to_do(state: str, kind: str, reason: str) -> None:
    assert book_in(state).on_action(action(kind))[0]["last_rejection"] == reason


def test_assign_sets_the_assignee_and_reopen_keeps_it() -> None:
    book = book_in(O)
    assert book.on_action(action("ASSIGN", at=T0 + 1, assignee="bob"))[0]["assignee"] == "bob"
    assert book.on_action(action("ASSIGN", at=T0 + 2, assignee="cid"))[0]["assignee"] == "cid"
    book.on_action(action("RESOLVE", at=T0 + 3))
    record = book.on_action(action("REOPEN", at=T0 + 4))[0]
    assert (record["state"], record["assignee"]) == (O, "cid")
    assert [e["assignee"] for e in record["history"]] == [None, "bob", "cid", None, None]


@pytest.mark.parametrize(
    ("kind", "fields", "reason"),
    [
        ("ASSIGN", {"assignee": None}, "ASSIGN needs an assignee"),
        ("ASSIGN", {"assignee": " "}, "ASSIGN needs an assignee"),
        ("COMMENT", {"note": None}, "COMMENT needs a note"),
        ("IGNORE", {"note": ""}, "IGNORE needs a note"),
        ("RESOLVE", {"actor": ""}, "actor is empty"),
        ("COMMENT", {"note": "x" * 2001}, "note is longer than 2000 characters"),
        ("SNOOZE", {}, UNKNOWN_ACTION),
        ("UNKNOWN", {}, UNKNOWN_ACTION),
    ],
)
def test_an_action_with_bad_fields_is_rejected_and_recorded(kind: str, fields: dict[str, Any], reason: str) -> None:
    book = book_in(O)
    record = book.on_action({**action(kind), **fields})[0]
    entry = record["history"][-1]
    assert (record["state"], record["version"], record["last_rejection"]) == (O, 2, reason)
    assert (entry["accepted"], entry["reason"]) == (False, reason)
    assert entry["action"] == (kind if kind in ExceptionActionKind.__members__ else "UNKNOWN")
    assert book.rejections == 1


def test_resolve_without_a_note_is_accepted() -> None:
    assert book_in(K).on_action(action("RESOLVE", note=None))[0]["state"] == R


# --- unknown cases, redeliveries -----------------------------------------------------------------------------------


def test_an_action_on_an_unknown_case_is_rejected_with_a_record_of_its_own() -> None:
    book = book_in(O)
    out = book.on_action(action("RESOLVE", aid="nope", action_id="x9"))
    assert out == book.take() and len(out) == 1
    record = out[0]
    assert (record["alert_id"], record["state"], record["kind"], record["version"]) == ("nope", "UNKNOWN", "UNKNOWN", 0)
    assert record["last_rejection"] == UNKNOWN_CASE and record["order_id"] == "o1"
    [entry] = record["history"]
    assert (entry["action_id"], entry["action"], entry["accepted"], entry["reason"]) == (
        "x9",
        "RESOLVE",
        False,
        UNKNOWN_CASE,
    )
    assert "nope" not in book.cases and book.rejections == 1
    assert wire_round_trip("ExceptionCase", dict(record)) == record  # a valid record of the schema


def test_a_redelivered_action_is_applied_once() -> None:
    book = book_in(O)
    first = book.on_action(action("ASSIGN", action_id="x1", assignee="bob"))
    assert book.on_action(action("ASSIGN", action_id="x1", assignee="bob")) == []
    assert book.on_action(action("ASSIGN", action_id="x1", assignee="eve", at=T0 + 9 * HOUR)) == []  # same id
    assert book.take() == first and book.redeliveries == 2
    assert book.view("a1") == first[0]


def test_a_redelivered_rejected_action_is_recorded_once() -> None:
    book = book_in(O)
    book.on_action(action("REOPEN", action_id="x1"))
    assert book.on_action(action("REOPEN", action_id="x1")) == []
    view = book.view("a1")
    assert view is not None and view["version"] == 2


def test_redelivered_alerts_open_and_resolve_once() -> None:
    book = CaseBook(RETENTION)
    assert len(book.on_alert(alert())) == 1
    assert book.on_alert(alert()) == []
    assert len(book.on_alert(resolved())) == 1
    assert book.on_alert(resolved()) == []
    assert book.redeliveries == 2 and len(book.take()) == 2


# --- auto-resolution -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("state", "after"), [(O, AR), (K, AR), (R, R), (IG, IG), (AR, AR)])
def test_auto_resolution_closes_open_cases_and_keeps_an_operators_decision(state: str, after: str) -> None:
    book = book_in(state)
    out = book.on_alert(resolved(at=T0 + 5 * HOUR, rid="r-late"))
    assert len(out) == 1
    record = out[0]
    entry = record["history"][-1]
    assert record["state"] == after
    assert (entry["action"], entry["actor"], entry["action_id"], entry["at"]) == (
        "AUTO_RESOLVE",
        "posrecon",
        "r-late",
        T0 + 5 * HOUR,
    )
    assert entry["note"] == "settled in full"
    assert entry["accepted"] is (state in (O, K))
    if state in (R, IG):
        assert entry["reason"] == f"condition cleared after an operator closed the case ({state}): state kept"


def test_a_resolution_of_an_unknown_alert_is_counted_not_emitted() -> None:
    book = CaseBook(RETENTION)
    assert book.on_alert(resolved("ghost")) == [] and book.unmatched_resolutions == 1
    assert book.on_alert({**resolved(), "resolves_alert_id": None}) == [] and book.unmatched_resolutions == 2


def test_a_v1_alert_without_status_opens_a_case_and_an_unknown_status_is_ignored() -> None:
    v1 = {k: v for k, v in alert().items() if k not in ("status", "resolves_alert_id", "batch_id")}
    book = CaseBook(RETENTION)
    assert book.on_alert(v1)[0]["state"] == O
    assert book.on_alert({**alert("a2"), "status": "UNKNOWN"}) == [] and "a2" not in book.cases


# --- the audit trail -----------------------------------------------------------------------------------------------


def test_the_history_is_the_full_audit_trail() -> None:
    book = CaseBook(RETENTION)
    book.on_alert(alert(at=T0))
    steps = [
        ("ACKNOWLEDGE", "ann"),
        ("COMMENT", "bob"),
        ("RESOLVE", "bob"),
        ("ASSIGN", "cid"),
        ("REOPEN", "ann"),
        ("COMMENT", "ann"),
    ]
    for k, (kind, actor) in enumerate(steps):
        book.on_action(action(kind, action_id=f"x{k}", actor=actor, at=T0 + k + 1, note=f"note {k}"))
    book.on_alert(resolved(at=T0 + 100))
    records = book.take()
    assert [r["version"] for r in records] == list(range(1, 9))  # contiguous, one per entry
    history = records[-1]["history"]
    assert [(e["action"], e["actor"], e["at"], e["accepted"]) for e in history] == [
        ("OPEN", "posrecon", T0, True),
        ("ACKNOWLEDGE", "ann", T0 + 1, True),
        ("COMMENT", "bob", T0 + 2, True),
        ("RESOLVE", "bob", T0 + 3, True),
        ("ASSIGN", "cid", T0 + 4, False),
        ("REOPEN", "ann", T0 + 5, True),
        ("COMMENT", "ann", T0 + 6, True),
        ("AUTO_RESOLVE", "posrecon", T0 + 100, True),
    ]
    assert [r["state"] for r in records] == [O, K, K, R, R, O, O, AR]
    assert [e["note"] for e in history[1:7]] == [f"note {k}" for k in range(6)]
    assert history[0]["note"] == "reason of a1" and history[0]["action_id"] == "a1"
    assert records[-1]["opened_at"] == T0 and records[-1]["updated_at"] == T0 + 100


def test_updated_at_never_goes_back_and_opened_at_is_the_alerts_event_time() -> None:
    book = CaseBook(RETENTION)
    book.on_alert(alert(at=T0))
    record = book.on_action(action("COMMENT", at=T0 - HOUR))[0]  # an operator clock behind the event
    assert (record["opened_at"], record["updated_at"], record["history"][-1]["at"]) == (T0, T0, T0 - HOUR)


def test_card_numbers_in_operator_text_are_masked_before_they_are_stored() -> None:
    book = CaseBook(RETENTION)
    book.on_alert(alert())
    book.on_action(
        action("ASSIGN", action_id=f"id {PAN}", actor=f"ann {PAN}", note=f"card {PAN} on the receipt", assignee=PAN)
    )
    book.on_action(action("COMMENT", aid=f"case {PAN}", note=PAN))  # unknown case: echoed masked too
    text = json.dumps([book.take(), book.to_rows(), book.queue(now=T0)])
    digits = PAN.replace(" ", "")
    assert digits not in text.replace(" ", "") and "**** **** **** 1111" in text
    view = book.view("a1")
    assert view is not None and view["history"][-1]["note"] == "card **** **** **** 1111 on the receipt"


# --- eviction, snapshot, determinism ---------------------------------------------------------------------------


def test_closed_cases_are_evicted_a_retention_after_their_last_update() -> None:
    book = CaseBook(RETENTION)
    for aid in ("open", "done", "late", "back"):
        book.on_alert(alert(aid, at=T0))
    book.on_action(action("RESOLVE", aid="done", at=T0 + 1))
    book.on_action(action("RESOLVE", aid="late", at=T0 + 1))
    book.on_action(action("COMMENT", aid="late", at=T0 + HOUR))  # a note on a closed case extends its life
    book.on_action(action("IGNORE", aid="back", at=T0 + 1))
    book.on_action(action("REOPEN", aid="back", at=T0 + 2))
    book.dirty = set()
    book.advance(T0 + 1 + RETENTION - 1)
    assert set(book.cases) == {"open", "done", "late", "back"}
    book.advance(T0 + 1 + RETENTION)
    assert set(book.cases) == {"open", "late", "back"} and book.dirty == {"done"} and book.row("done") is None
    book.advance(T0 + 100 * RETENTION)
    assert set(book.cases) == {"open", "back"}  # open cases wait for an operator
    assert book.on_action(action("REOPEN", aid="done"))[0]["last_rejection"] == UNKNOWN_CASE


def test_rows_round_trip_and_a_restored_book_continues_the_same() -> None:
    book = CaseBook(RETENTION)
    book.on_alert(alert("a1"))
    book.on_alert(alert("a2", batch="b1", order=None))
    book.on_action(action("ASSIGN", aid="a1", action_id="x1"))
    book.on_action(action("RESOLVE", aid="a2", action_id="x2", at=T0 + 5))
    rows = json.loads(json.dumps(book.to_rows()))
    copy = CaseBook(RETENTION)
    copy.load_rows(rows, book.watermark)
    assert copy.to_rows() == book.to_rows() and copy.view("a1") == book.view("a1")
    more = [
        action("ASSIGN", aid="a1", action_id="x1"),
        action("REOPEN", aid="a2", action_id="x3"),
        action("RESOLVE", aid="a1", action_id="x4"),
    ]
    for b in (book, copy):
        b.take()
        for a in more:
            b.on_action(a)
        b.advance(T0 + 10 * RETENTION)
    assert json.dumps(copy.take()) == json.dumps(book.take()) and set(copy.cases) == set(book.cases) == {"a2"}


def test_the_same_inputs_give_byte_identical_records() -> None:
    def run() -> list[bytes]:
        book = CaseBook(RETENTION)
        book.on_alert(alert())
        book.on_action(action("ASSIGN"))
        book.on_action(action("IGNORE", at=T0 + 7))
        book.on_alert(resolved())
        return [wire_bytes("ExceptionCase", dict(r)) for r in book.take()]

    assert run() == run()


# --- operator views ----------------------------------------------------------------------------------------------


def queue_book() -> CaseBook:
    book = CaseBook(RETENTION)
    book.on_alert(alert("c1", at=T0, severity="CRITICAL", kind="AMOUNT_MISMATCH", merchant="m1"))
    book.on_alert(alert("w1", at=T0 + HOUR, severity="WARNING", merchant="m2"))
    book.on_alert(
        alert("b1", at=T0 + 2 * HOUR, severity="WARNING", kind="BATCH_MISMATCH", batch="B7", order=None, merchant="m3")
    )
    book.on_alert(alert("r1", at=T0 + 3 * HOUR, merchant="m2"))
    book.on_action(action("RESOLVE", aid="r1", at=T0 + 4 * HOUR))
    return book


def ids(result: dict[str, Any]) -> list[str]:
    return [item["alert_id"] for item in result["items"]]


def test_queue_filters_sorts_and_pages() -> None:
    book, now = queue_book(), T0 + 5 * HOUR
    assert ids(book.queue(now=now)) == ["c1", "w1", "b1", "r1"]
    assert ids(book.queue(now=now, state=[O, K])) == ["c1", "w1", "b1"]
    assert ids(book.queue(now=now, state=R)) == ["r1"]
    assert ids(book.queue(now=now, kind="BATCH_MISMATCH")) == ids(book.queue(now=now, batch_id="B7")) == ["b1"]
    assert ids(book.queue(now=now, severity="CRITICAL")) == ids(book.queue(now=now, merchant_id="m1")) == ["c1"]
    assert ids(book.queue(now=now, min_age_ms=4 * HOUR)) == ["c1", "w1"]
    assert ids(book.queue(now=now, max_age_ms=3 * HOUR)) == ["b1", "r1"]
    assert ids(book.queue(now=now, sort="newest")) == ["r1", "b1", "w1", "c1"]
    assert ids(book.queue(now=now, sort="updated"))[0] == "r1"
    assert ids(book.queue(now=now, sort="severity", state=O)) == ["c1", "w1", "b1"]
    page = book.queue(now=now, offset=1, limit=2)
    assert ids(page) == ["w1", "b1"] and page["total"] == 4
    assert page["by_kind"] == {"AMOUNT_MISMATCH": 1, "BATCH_MISMATCH": 1, "MISSING_SETTLEMENT": 2}
    assert page["by_state"] == {O: 3, R: 1}
    item = page["items"][0]
    assert item["age_ms"] == 4 * HOUR and "history" not in item


@pytest.mark.parametrize(
    "bad", [{"sort": "size"}, {"limit": 0}, {"limit": 501}, {"offset": -1}, {"state": "CLOSED"}, {"state": [O, "X"]}]
)
def test_queue_rejects_bad_arguments_with_a_message(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"\w"):
        queue_book().queue(now=T0, **bad)


def test_aging_counts_cases_not_closed_by_age_and_severity() -> None:
    buckets = queue_book().aging(T0 + 4 * HOUR + 1)
    assert [(b["bucket"], b["count"]) for b in buckets] == [
        ("<1h", 0),
        ("1h-4h", 2),
        ("4h-1d", 1),
        ("1d-3d", 0),
        (">=3d", 0),
    ]
    assert buckets[1]["by_severity"] == {"INFO": 0, "WARNING": 2, "CRITICAL": 0}
    assert buckets[2]["by_severity"] == {"INFO": 0, "WARNING": 0, "CRITICAL": 1}


# --- the records' schemas ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ExceptionAction", "ExceptionCase"])
def test_schemas_parse_and_are_committed_as_v2(name: str) -> None:
    schema = load_schema_json(name)
    fastavro.parse_schema(schema)
    assert schema["namespace"] == "posrecon.v1" and load_schema_json(name, "v2") == schema


@pytest.mark.parametrize(
    ("name", "typed"),
    [("ExceptionAction", case_actions.ExceptionAction), ("ExceptionCase", case_actions.ExceptionCase)],
)
def test_the_typed_records_have_the_schema_fields_in_order(name: str, typed: type) -> None:
    schema = load_schema_json(name)
    assert list(get_type_hints(typed)) == [f["name"] for f in schema["fields"]]
    if name == "ExceptionCase":
        entry = schema["fields"][-1]["type"]["items"]
        assert list(get_type_hints(case_actions.CaseEntry)) == [f["name"] for f in entry["fields"]]


def _enum(name: str, record: str) -> list[str]:
    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if node.get("type") == "enum" and node["name"] == name:
                return node
            return next((e for e in map(walk, node.values()) if e), None)
        if isinstance(node, list):
            return next((e for e in map(walk, node) if e), None)
        return None

    found = walk(load_schema_json(record))
    assert found is not None, (name, record)
    assert found.get("default") == ("UNKNOWN" if "UNKNOWN" in found["symbols"] else None)
    return list(found["symbols"])


def test_the_enums_are_the_schema_symbols_but_unknown() -> None:
    assert _enum("CaseState", "ExceptionCase") == [s.value for s in CaseState] + ["UNKNOWN"]
    assert _enum("ExceptionActionKind", "ExceptionAction") == [k.value for k in ExceptionActionKind] + ["UNKNOWN"]
    assert _enum("CaseEntryKind", "ExceptionCase") == [k.value for k in case_actions.CaseEntryKind] + ["UNKNOWN"]
    assert _enum("AlertKind", "ExceptionCase") == _enum("AlertKind", "Alert")  # the same named types as Alert's
    assert _enum("Severity", "ExceptionCase") == _enum("Severity", "Alert")


def sample_records() -> list[dict[str, Any]]:
    book = queue_book()
    book.on_action(action("ASSIGN", aid="c1", note=None))
    book.on_alert(resolved("w1"))
    book.on_action(action("COMMENT", aid="zz"))
    records = [dict(r) for r in book.take()]
    assert {r["version"] for r in records} >= {0, 1, 2}
    return records


def test_sample_records_round_trip_through_the_wire_schemas() -> None:
    for record in sample_records():
        assert wire_round_trip("ExceptionCase", record) == record
    sample = action("REOPEN", note=None, assignee=None)
    assert wire_round_trip("ExceptionAction", sample) == sample
    codec = AvroCodec("ExceptionAction")
    assert codec.decode(codec.encode(sample)) == sample == codec.decode_reference(codec.encode_reference(sample))


def test_exception_cases_round_trip_through_the_codec() -> None:
    codec = AvroCodec("ExceptionCase")
    for record in sample_records():
        assert codec.decode(codec.encode(record)) == record


def test_actions_are_keyed_as_the_alerts_that_opened_their_cases() -> None:
    book = queue_book()
    case = book.view("b1")
    assert case is not None and case_actions.routing_key(case) == "B7"
    assert case_actions.routing_key({**action("ACKNOWLEDGE"), "order_id": None, "batch_id": None}) == "m1"
    assert case_actions.routing_key(action("ACKNOWLEDGE")) == "o1"
