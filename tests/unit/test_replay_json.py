"""Replay's JSON: orjson in and out, with the bytes and the acceptance of the standard library's json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from posrecon.config import RuleConfig
from posrecon.replay import json_line, run_replay
from posrecon.serde.codec import AvroCodec
from scenario import T0, term

TEXT = st.text(max_size=40)  # any Unicode scalar value: control characters, quotes, U+2028, astral planes
LONG = st.integers(min_value=-(2**63), max_value=2**63 - 1)
VALUE = st.one_of(st.none(), st.booleans(), LONG, TEXT, st.lists(st.one_of(TEXT, LONG), max_size=4))
RECORD = st.dictionaries(TEXT, VALUE, max_size=12)


@given(RECORD)
def test_an_output_line_is_the_bytes_json_dumps_writes(record: dict[str, object]) -> None:
    expected = (json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n").encode("utf-8")
    assert json_line(record) == expected


def test_a_lone_surrogate_is_written_escaped_not_refused() -> None:
    line = json_line({"raw": "e\ud800x", "n": 1})
    assert line.endswith(b"\n") and line.isascii()
    assert json.loads(line) == {"raw": "e\ud800x", "n": 1}


def _event(event_id: str, merchant: str) -> dict[str, Any]:
    record: dict[str, Any] = term("o1", "ORDER_CREATED", T0, eid=event_id, merchant=merchant)["record"]
    return record


def test_non_ascii_lines_are_checked_as_avro_would_and_kept_exact(tmp_path: Path) -> None:
    """No ASCII gate any more: escaped and raw non-ASCII text (a surrogate pair included) is accepted, equal to
    the Avro round trip's record, and reaches the outputs unchanged."""
    merchant = "Café 😀 \u2028 ü"
    lines = [
        json.dumps({"source": "terminal", "ingest_time": T0, "record": _event("e1", merchant)}),
        json.dumps({"source": "terminal", "ingest_time": T0, "record": _event("e2", merchant)}, ensure_ascii=False),
    ]
    assert "\\ud83d\\ude00" in lines[0] and "😀" in lines[1]
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    summary = run_replay(src, out, RuleConfig(), until=T0 + 10 * 86_400_000)
    assert summary.records == 2 and not summary.deadletters
    assert AvroCodec("TerminalEvent").conform(_event("e1", merchant))["merchant_id"] == merchant
    alerts = [json.loads(x) for x in (out / "alerts.jsonl").read_bytes().split(b"\n") if x]
    assert alerts and {a["merchant_id"] for a in alerts} == {merchant}
