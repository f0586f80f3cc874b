"""replay reads ``"source": "batch"`` control lines and writes DIR/batch-reconciled.jsonl (contract v2)."""

from __future__ import annotations

import json
from pathlib import Path

from posrecon.config import RuleConfig
from posrecon.replay import run_replay
from scenario import HOUR, T0, note


def _batch(batch_id: str, count: int, gross: int) -> dict[str, object]:
    return {
        "source": "batch",
        "record": {
            "batch_id": batch_id,
            "merchant_id": "m1",
            "currency": "EUR",
            "notice_count": count,
            "gross_amount_minor": gross,
            "fee_amount_minor": 0,
            "closed_at": T0 + HOUR,
        },
    }


def test_batch_lines_are_reconciled_and_invalid_ones_dead_lettered(tmp_path: Path) -> None:
    lines = [
        note("o1", "SETTLED", T0, batch="b1"),
        note("o2", "SETTLED", T0, batch="b2"),
        _batch("b1", 1, 1000),
        _batch("b2", 2, 2000),
        _batch("b-4111 1111 1111 1111", 1, 1000),
    ]
    src = tmp_path / "input.jsonl"
    src.write_text("".join(json.dumps(line) + "\n" for line in lines))
    summary = run_replay(src, tmp_path / "out", RuleConfig(), until=T0 + 3 * HOUR, progress=False)
    batches = [json.loads(line) for line in (tmp_path / "out" / "batch-reconciled.jsonl").read_text().splitlines()]
    assert [(b["batch_id"], b["status"]) for b in batches] == [("b1", "BALANCED"), ("b2", "INCOMPLETE")]
    alerts = [json.loads(line) for line in (tmp_path / "out" / "alerts.jsonl").read_text().splitlines()]
    assert sorted((a["kind"], a["batch_id"]) for a in alerts if a["order_id"] is None) == [
        ("BATCH_INCOMPLETE", "b2"),
        ("INVALID_EVENT", "b-**** **** **** 1111"),
    ]
    assert summary.deadletters == {"PAN_IN_FIELD": 1}
    out = (tmp_path / "out" / "deadletter.jsonl").read_text() + (tmp_path / "out" / "alerts.jsonl").read_text()
    assert "4111 1111 1111" not in out
