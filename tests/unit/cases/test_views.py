"""The case API's input checks and the records they make (no broker): cases/views.py."""

from __future__ import annotations

import json
import uuid

import pytest

from posrecon.cases.views import BadRequest, new_action, parse_action, queue_arguments, queue_view
from posrecon.engine.cases import CaseBook
from posrecon.engine.pan import scrub_text

NOW = 1_800_000_000_000


def book() -> CaseBook:
    cases = CaseBook()
    for i, (kind, severity) in enumerate([("AMOUNT_MISMATCH", "CRITICAL"), ("MISSING_SETTLEMENT", "WARNING")]):
        cases.on_alert(
            {
                "alert_id": f"a{i}",
                "kind": kind,
                "severity": severity,
                "order_id": f"o{i}",
                "merchant_id": "m",
                "reason": "r",
                "event_time": NOW - (i + 1) * 3_600_000,
                "status": "OPEN",
            }
        )
    return cases


def test_queue_arguments_map_the_query_to_the_book() -> None:
    args = queue_arguments(
        {
            "state": ["open,acknowledged"],
            "kind": ["amount_mismatch"],
            "merchant": ["m"],
            "min_age_ms": ["60000"],
            "limit": ["10"],
        }
    )
    assert args == {
        "state": ["OPEN", "ACKNOWLEDGED"],
        "kind": "AMOUNT_MISMATCH",
        "merchant_id": "m",
        "min_age_ms": 60_000,
        "limit": 10,
    }
    assert queue_arguments({"state": [""]}) == {"state": None}


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"state": ["SHUT"]}, "unknown state"),
        ({"limit": ["501"]}, "limit 1..500"),
        ({"offset": ["-1"]}, "offset"),
        ({"severity": ["LOUD"]}, "unknown severity"),
        ({"x": ["1"]}, "unknown query parameter"),
        ({"max_age_ms": ["soon"]}, "must be an integer"),
    ],
)
def test_a_bad_query_says_what_is_wrong(query: dict[str, list[str]], message: str) -> None:
    with pytest.raises(BadRequest, match=message) as raised:
        queue_arguments(query)
    assert raised.value.status == 400 and raised.value.body["error"]


def test_the_queue_view_filters_and_counts() -> None:
    view = queue_view(book(), NOW, {"severity": ["CRITICAL"]})
    assert view["total"] == 1 and view["items"][0]["alert_id"] == "a0" and view["now"] == NOW
    assert queue_view(book(), NOW, {})["by_kind"] == {"AMOUNT_MISMATCH": 1, "MISSING_SETTLEMENT": 1}


def test_an_action_body_is_parsed_and_normalised() -> None:
    assert parse_action(b'{"action": "resolve", "note": "  done "}') == ("RESOLVE", "done", None)
    assert parse_action(json.dumps({"action": "ASSIGN", "assignee": "bob", "note": ""}).encode()) == (
        "ASSIGN",
        None,
        "bob",
    )
    for body, message in [
        (b"{", "not JSON"),
        (b"[]", "JSON object"),
        (b'{"action": "UNKNOWN"}', "one of"),
        (b'{"action": "RESOLVE", "who": 1}', "unknown field"),
        (b'{"action": "ASSIGN", "assignee": 3}', "assignee must be"),
    ]:
        with pytest.raises(BadRequest, match=message):
            parse_action(body)


def test_new_action_is_checked_as_the_stage_will_check_it() -> None:
    case = book().view("a0")
    assert case is not None
    made = new_action(case, "ASSIGN", "alice", None, "bob", NOW)
    assert made["actor"] == "alice" and made["assignee"] == "bob" and made["order_id"] == "o0" and made["at"] == NOW
    assert (
        len(made["action_id"]) == 32
        and made["action_id"] != new_action(case, "ASSIGN", "a", None, "b", NOW)["action_id"]
    )
    assert new_action(case, "RESOLVE", "alice", None, "bob", NOW)["assignee"] is None  # only ASSIGN carries one
    with pytest.raises(BadRequest, match="IGNORE needs a note") as raised:
        new_action(case, "IGNORE", "alice", None, None, NOW)
    assert raised.value.status == 400
    with pytest.raises(BadRequest, match="nothing to reopen") as raised:
        new_action(case, "REOPEN", "alice", None, None, NOW)
    assert raised.value.status == 409 and raised.value.body["state"] == "OPEN"


def test_an_action_id_is_never_one_the_card_number_scrub_would_mask(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stage scrubs action ids; an id with a Luhn-valid 13-digit run would come back masked."""
    pan_like = uuid.UUID(hex="4111111111111111" + "ab" * 8)  # a Visa test number at the start of the hex
    clean = uuid.UUID(hex="ab" * 16)
    drawn = iter([pan_like, clean])
    monkeypatch.setattr(uuid, "uuid4", lambda: next(drawn))
    assert scrub_text(pan_like.hex) != pan_like.hex  # the hazard is real
    case = book().view("a0")
    assert case is not None
    made = new_action(case, "ACKNOWLEDGE", "alice", None, None, NOW)
    assert made["action_id"] == clean.hex
