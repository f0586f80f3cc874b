"""Scoring settlement batches: status per batch, totals, revisions, batch alerts keyed by batch_id."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from posrecon.config import RuleConfig
from posrecon.sim.batch_scoring import render_batches
from posrecon.sim.scoring import Evaluation, evaluate
from posrecon.sim.truth import BATCH_TOTALS, BatchExpectation, Truth, write_truth

Rows = list[dict[str, Any]]
TOTALS = {"b-1": (3, 3, 900, 900, 15, 15), "b-2": (4, 3, 950, 900, 16, 15), "b-3": (3, 3, 900, 900, 15, 15)}


@pytest.fixture
def truth() -> Truth:
    batches = {
        "b-1": BatchExpectation("BALANCED", totals=TOTALS["b-1"]),
        "b-2": BatchExpectation(
            "INCOMPLETE", ("BATCH_INCOMPLETE",), totals=TOTALS["b-2"], fault="batch_missing_notice"
        ),
        "b-3": BatchExpectation(
            "BALANCED", ("BATCH_MISMATCH",), ("BATCH_MISMATCH",), TOTALS["b-3"], "batch_replaced_control", "mismatch"
        ),
    }
    return Truth(RuleConfig(), until_ms=10, orders={}, deadletters={}, scenarios={}, batches=batches)


def record(batch_id: str, status: str, revision: int = 1, totals: tuple[int, ...] | None = None) -> dict[str, Any]:
    values = TOTALS[batch_id] if totals is None else totals
    return {
        "batch_id": batch_id,
        "currency": "EUR",
        "status": status,
        "revision": revision,
        **dict(zip(BATCH_TOTALS, values, strict=True)),
    }


def batch_alert(batch_id: str, kind: str, alert_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "alert_id": alert_id,
        "kind": kind,
        "order_id": None,
        "batch_id": batch_id,
        "merchant_id": "m",
        "severity": "CRITICAL" if kind == "BATCH_MISMATCH" else "WARNING",
        "status": "OPEN",
        **fields,
    }


def output() -> tuple[Rows, Rows]:
    records = [
        record("b-1", "BALANCED"),
        record("b-2", "INCOMPLETE"),
        record("b-3", "MISMATCH", 1, (3, 3, 905, 900, 15, 15)),
        record("b-3", "BALANCED", 2),
    ]
    alerts = [
        batch_alert("b-2", "BATCH_INCOMPLETE", "a-2"),
        batch_alert("b-3", "BATCH_MISMATCH", "a-3"),
        batch_alert("b-3", "BATCH_MISMATCH", "r-3", status="RESOLVED", severity="INFO", resolves_alert_id="a-3"),
    ]
    return records, alerts


def score(truth: Truth, records: Rows, alerts: Rows) -> Evaluation:
    return evaluate(truth, [], alerts, [], records)


def kind(ev: Evaluation, name: str, status: str) -> tuple[int, int, int]:
    k = next(k for k in ev.kinds if k.kind == name and k.status == status)
    return k.expected, k.actual, k.tp


def test_perfect_batches_score_one(truth: Truth) -> None:
    ev = score(truth, *output())
    assert ev.perfect and ev.batches is not None and ev.batches.perfect
    assert [(s.status, s.expected, s.actual, s.tp) for s in ev.batches.statuses] == [
        ("BALANCED", 2, 2, 2),
        ("INCOMPLETE", 1, 1, 1),
        ("MISMATCH", 0, 0, 0),
    ]
    assert kind(ev, "BATCH_MISMATCH", "RESOLVED") == (1, 1, 1)
    assert kind(ev, "BATCH_INCOMPLETE", "OPEN") == (1, 1, 1)
    assert ev.batches.by_fault["batch_replaced_control.mismatch"].alerts_correct == 1
    assert json.loads(json.dumps(ev.to_json()))["batches"]["perfect"] is True


def test_a_wrong_final_status_lowers_precision_and_recall(truth: Truth) -> None:
    records, alerts = output()
    records[1] = record("b-2", "MISMATCH")
    ev = score(truth, records, alerts)
    assert ev.batches is not None and not ev.perfect
    rates = {s.status: (s.precision, s.recall) for s in ev.batches.statuses}
    assert rates["INCOMPLETE"] == (1.0, 0.0) and rates["MISMATCH"] == (0.0, 1.0)
    assert [m.batch_id for m in ev.batches.status_misses] == ["b-2"] and ev.batches.accuracy == 2 / 3


def test_the_final_record_is_the_highest_revision(truth: Truth) -> None:
    records, alerts = output()
    assert score(truth, records[::-1], alerts).perfect
    ev = score(truth, records[:-1], alerts)  # b-3 stops at its MISMATCH revision
    assert ev.batches is not None and [m.batch_id for m in ev.batches.status_misses] == ["b-3"]


def test_a_missing_batch_record_is_a_miss(truth: Truth) -> None:
    records, alerts = output()
    ev = score(truth, records[1:], alerts)
    assert ev.batches is not None and not ev.perfect
    assert ev.batches.status_misses[0].actual == "(none)"


def test_wrong_totals_fail_even_with_the_right_status(truth: Truth) -> None:
    records, alerts = output()
    records[0] = record("b-1", "BALANCED", totals=(3, 3, 900, 900, 15, 14))
    ev = score(truth, records, alerts)
    assert ev.batches is not None and not ev.perfect and not ev.batches.status_misses
    assert [m.batch_id for m in ev.batches.totals_misses] == ["b-1"]


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        (record("b-x", "BALANCED", totals=TOTALS["b-1"]), "unknown_batches"),  # a batch without control record
        (record("b-1", "BALANCED", 3), "revision_gaps"),
        (record("b-2", "INCOMPLETE"), "duplicate_revisions"),
    ],
)
def test_batch_revision_integrity(truth: Truth, extra: dict[str, Any], problem: str) -> None:
    records, alerts = output()
    ev = score(truth, [*records, extra], alerts)
    assert ev.batches is not None and not ev.batches.integrity_ok and not ev.perfect
    assert getattr(ev.batches, problem)


def test_batch_alerts_are_keyed_by_batch_id(truth: Truth) -> None:
    records, alerts = output()
    alerts[0] = batch_alert("b-1", "BATCH_INCOMPLETE", "a-2")  # the right kind on the wrong batch
    ev = score(truth, records, alerts)
    assert kind(ev, "BATCH_INCOMPLETE", "OPEN") == (1, 1, 0) and not ev.perfect
    assert ev.batches is not None and ev.batches.by_fault["batch_missing_notice"].alerts_correct == 0
    assert {(m.order_id, m.scenario) for m in ev.missed_alerts} == {("b-2", "batch_missing_notice")}


def test_a_batch_resolution_must_close_an_alert_of_the_same_batch(truth: Truth) -> None:
    records, alerts = output()
    alerts[1] = batch_alert("b-1", "BATCH_MISMATCH", "a-3")  # what the RESOLVED record closes is another batch's
    ev = score(truth, records, [*alerts, batch_alert("b-3", "BATCH_MISMATCH", "a-4")])
    assert ev.integrity.bad_resolutions == ("r-3",) and not ev.perfect


def test_the_batch_table(truth: Truth) -> None:
    ev = score(truth, *output())
    assert ev.batches is not None
    text = "\n".join(render_batches(ev.batches))
    assert "INCOMPLETE" in text and "batch_replaced_control.mismatch" in text and "accuracy 1.0000" in text


def test_evaluate_needs_the_batch_file_when_the_truth_has_batches(truth: Truth, tmp_path: Path) -> None:
    from posrecon.cli import main

    write_truth(tmp_path / "truth.json", truth)
    records, alerts = output()
    for name, rows in (("reconciled.jsonl", []), ("alerts.jsonl", alerts), ("deadletter.jsonl", [])):
        (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = ["evaluate", "--truth", str(tmp_path / "truth.json"), "--out", str(tmp_path), "--require-perfect"]
    assert main(args) == 2
    (tmp_path / "batch-reconciled.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert main(args) == 0
    (tmp_path / "batch-reconciled.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records[1:]))
    assert main(args) == 1
