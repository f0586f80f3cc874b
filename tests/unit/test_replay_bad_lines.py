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
