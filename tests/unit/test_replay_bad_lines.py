"""``posrecon replay`` never crashes on a bad line: it dead-letters it and goes on."""

from __future__ import annotations

import json
from pathlib import Path

from posrecon.config import RuleConfig
from posrecon.replay import run_replay


def _event(event_id: str) -> str:
    record = {
        "event_id": event_id,
        "order_id": "o1",
        "merchant_id": "m1",
        "terminal_id": "t1",
        "event_type": "ORDER_CREATED",
        "event_time": 1767225600000,
        "amount_minor": 100,
        "currency": "EUR",
        "card_token": "tok_1",
        "attempt": 1,
        "decline_code": None,
    }
    return json.dumps({"source": "terminal", "ingest_time": 1767225600000, "record": record})


def test_a_lone_surrogate_is_a_dead_letter_not_a_crash(tmp_path: Path) -> None:
    # json.dumps writes the lone surrogate as the escape \\ud800, as a producer of broken JSON would
    src = tmp_path / "in.jsonl"
    src.write_text(_event("e\ud800") + "\n" + _event("e2") + "\n")
    out = tmp_path / "out"
    run_replay(src, out, RuleConfig())
    letters = [json.loads(line) for line in (out / "deadletter.jsonl").read_text().splitlines()]
    assert [(d["line"], d["reason"]) for d in letters] == [(1, "DECODE_ERROR")]
    assert "surrogate" in letters[0]["detail"]


def test_every_kind_of_bad_line_is_a_dead_letter_saying_what_is_wrong(tmp_path: Path) -> None:
    """The usual line takes a direct way; every other line must still end as the strict decoder says."""
    good = _event("e1")
    lines = [
        "",
        "   ",
        "\u00a0" + good + "\u00a0",  # whitespace str.strip() trims but JSON does not allow: accepted as before
        "{not json",
        "[1, 2]",
        json.dumps({"source": ["terminal"], "record": {}}),  # an unhashable source
        json.dumps({"source": "terminals", "record": {}}),
        good.replace('1767225600000, "record"', '1.5, "record"'),  # a fitting record, a float ingest time
        json.dumps({"source": "terminal", "ingest_time": 1767225600000}),
        json.dumps({"source": "terminal", "ingest_time": 1767225600000, "record": {"event_id": "e9"}}),
        good,  # a redelivery of line 3: dropped, not a dead letter
    ]
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    summary = run_replay(src, out, RuleConfig())
    letters = [json.loads(line) for line in (out / "deadletter.jsonl").read_text().splitlines()]
    details = {d["line"]: d["detail"] for d in letters}
    assert {d["reason"] for d in letters} == {"DECODE_ERROR"}
    assert sorted(details) == [4, 5, 6, 7, 8, 9, 10]
    assert details[4].startswith("line is not JSON")
    assert details[5] == "line is not a JSON object"
    assert details[6].startswith("source must be") and details[7].startswith("source must be")
    assert details[8].startswith("ingest_time must be")
    assert details[9] == "line has no record"
    assert "TerminalEvent" in details[10]
    assert summary.lines == 11 and summary.records == 2 and summary.duplicates_dropped == 1
