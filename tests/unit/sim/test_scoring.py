"""The evaluator: perfect output scores 1.0; each kind of mistake is caught."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from posrecon.config import RuleConfig
from posrecon.sim.generator import generate
from posrecon.sim.scoring import evaluate
from posrecon.sim.truth import Expectation, Truth

Rows = list[dict[str, Any]]


def reconciled(order_id: str, outcome: str, revision: int = 1) -> dict[str, Any]:
    return {
        "order_id": order_id, "merchant_id": "m1", "terminal_id": "t1", "outcome": outcome, "currency": "EUR",
        "approved_amount_minor": 1000, "settled_amount_minor": 1000, "approved_at": 1, "settled_at": 2,
        "settlement_lag_ms": 1, "notice_id": "n1", "revision": revision,
    }  # fmt: skip


_ids = itertools.count()


def alert(order_id: str | None, kind: str, alert_id: str | None = None) -> dict[str, Any]:
    return {
        "alert_id": alert_id or f"al-{next(_ids)}", "kind": kind, "severity": "WARNING", "order_id": order_id,
        "merchant_id": "m1", "terminal_id": "t1", "reason": "r", "event_time": 1, "detected_at": 2,
        "related_ids": [],
    }  # fmt: skip


@pytest.fixture
def truth() -> Truth:
    orders = {
        "o-matched": Expectation("MATCHED", (), "normal"),
        "o-late": Expectation("MATCHED_LATE", ("LATE_SETTLEMENT", "MISSING_SETTLEMENT"), "late"),
        "o-missing": Expectation(None, ("MISSING_SETTLEMENT",), "missing"),
        "o-orphan": Expectation("MATCHED", ("ORPHAN_SETTLEMENT",), "orphan_then_approved"),
        "o-dup": Expectation("MATCHED", ("DUPLICATE_CHARGE", "DUPLICATE_CHARGE"), "duplicate_charge_same_order"),
        "o-declined": Expectation(None, (), "declined"),
    }
    return Truth(RuleConfig(), until_ms=10, orders=orders, deadletters={"DECODE_ERROR": 2, "CLOCK_SKEW": 1},
                 scenarios={})  # fmt: skip


def perfect(truth: Truth) -> tuple[Rows, Rows, Rows]:
    rows = [reconciled("o-matched", "MATCHED"), reconciled("o-late", "MATCHED_LATE"),
            reconciled("o-orphan", "UNMATCHED_SETTLEMENT"), reconciled("o-orphan", "MATCHED", 2),
            reconciled("o-dup", "MATCHED")]  # fmt: skip
    alerts = [alert(order_id, kind) for order_id, exp in truth.orders.items() for kind in exp.alerts]
    dead: Rows = [{"reason": "DECODE_ERROR"}, {"reason": "CLOCK_SKEW", "line": 4}, {"reason": "DECODE_ERROR"}]
    return rows, alerts, dead


def test_perfect_output_scores_one(truth: Truth) -> None:
    ev = evaluate(truth, *perfect(truth))
    assert ev.perfect
    assert ev.outcome_accuracy == 1.0
    assert all(k.precision == 1.0 and k.recall == 1.0 for k in ev.kinds)
    amount = next(k for k in ev.kinds if k.kind == "AMOUNT_MISMATCH")
    assert (amount.expected, amount.actual, amount.precision, amount.recall) == (0, 0, 1.0, 1.0)


def test_missing_alert_lowers_recall(truth: Truth) -> None:
    rows, alerts, dead = perfect(truth)
    alerts = [a for a in alerts if not (a["order_id"] == "o-late" and a["kind"] == "MISSING_SETTLEMENT")]
    ev = evaluate(truth, rows, alerts, dead)
    missing = next(k for k in ev.kinds if k.kind == "MISSING_SETTLEMENT")
    assert (missing.tp, missing.fp, missing.fn, missing.recall, missing.precision) == (1, 0, 1, 0.5, 1.0)
    assert [(m.order_id, m.kind, m.scenario) for m in ev.missed_alerts] == [("o-late", "MISSING_SETTLEMENT", "late")]
    assert not ev.perfect


def test_repeated_alert_counts_as_a_multiset(truth: Truth) -> None:
    rows, alerts, dead = perfect(truth)
    alerts = [a for a in alerts if a["kind"] != "DUPLICATE_CHARGE"] + [alert("o-dup", "DUPLICATE_CHARGE")]
    ev = evaluate(truth, rows, alerts, dead)
    dup = next(k for k in ev.kinds if k.kind == "DUPLICATE_CHARGE")
    assert (dup.tp, dup.fn) == (1, 1)


def test_extra_alert_lowers_precision(truth: Truth) -> None:
    rows, alerts, dead = perfect(truth)
    ev = evaluate(truth, rows, [*alerts, alert("o-matched", "AMOUNT_MISMATCH"), alert(None, "EXPIRED_ORDER")], dead)
    amount = next(k for k in ev.kinds if k.kind == "AMOUNT_MISMATCH")
    expired = next(k for k in ev.kinds if k.kind == "EXPIRED_ORDER")
    assert (amount.fp, amount.precision) == (1, 0.0)
    assert expired.fp == 1
    assert len(ev.extra_alerts) == 2 and not ev.perfect
    assert ev.by_scenario["normal"].alerts_correct == 0


def test_wrong_outcome_and_spurious_record_are_caught(truth: Truth) -> None:
    rows, alerts, dead = perfect(truth)
    rows[0] = reconciled("o-matched", "AMOUNT_MISMATCH")
    rows.append(reconciled("o-declined", "STATUS_CONFLICT"))
    ev = evaluate(truth, rows, alerts, dead)
    assert ev.outcomes_correct == 4 and ev.outcome_accuracy == pytest.approx(4 / 6)
    assert {(m.order_id, m.expected, m.actual) for m in ev.outcome_misses} == {
        ("o-matched", "MATCHED", "AMOUNT_MISMATCH"),
        ("o-declined", None, "STATUS_CONFLICT"),
    }
    assert not ev.perfect


def test_final_outcome_is_the_highest_revision_whatever_the_row_order(truth: Truth) -> None:
    rows, alerts, dead = perfect(truth)
    ev = evaluate(truth, list(reversed(rows)), alerts, dead)
    assert ev.perfect


def test_duplicated_revision_gap_and_unknown_order_break_integrity(truth: Truth) -> None:
    rows, alerts, dead = perfect(truth)
    duplicated = evaluate(truth, [*rows, reconciled("o-matched", "MATCHED")], alerts, dead)
    assert duplicated.integrity.duplicate_revisions == (("o-matched", 1),)
    assert duplicated.outcome_accuracy == 1.0 and not duplicated.perfect
    gap = evaluate(truth, [*rows, reconciled("o-late", "MATCHED_LATE", 3)], alerts, dead)
    assert gap.integrity.revision_gaps == ("o-late",) and not gap.perfect
    unknown = evaluate(truth, [*rows, reconciled("o-nobody", "MATCHED")], alerts, dead)
    assert unknown.integrity.unknown_orders == ("o-nobody",) and not unknown.perfect


def test_duplicate_alert_id_breaks_integrity(truth: Truth) -> None:
    rows, alerts, dead = perfect(truth)
    ev = evaluate(truth, rows, [*alerts, dict(alerts[0])], dead)
    assert ev.integrity.duplicate_alert_ids == (alerts[0]["alert_id"],)
    assert not ev.perfect


def test_dead_letter_counts_are_compared(truth: Truth) -> None:
    rows, alerts, dead = perfect(truth)
    ev = evaluate(truth, rows, alerts, dead[:2])
    assert not ev.deadletters_ok and not ev.perfect
    assert ev.deadletters_actual == {"CLOCK_SKEW": 1, "DECODE_ERROR": 1}


def test_to_json_is_plain_data(truth: Truth) -> None:
    import json

    doc = evaluate(truth, *perfect(truth)).to_json()
    assert json.loads(json.dumps(doc))["perfect"] is True


def synthesized_output(truth: Truth) -> tuple[Rows, Rows, Rows]:
    """What a correct engine would write for a generated truth (final outcomes only)."""
    rows = [reconciled(o, exp.outcome) for o, exp in truth.orders.items() if exp.outcome is not None]
    alerts = [alert(o, kind) for o, exp in truth.orders.items() for kind in exp.alerts]
    dead = [{"reason": reason} for reason, n in truth.deadletters.items() for _ in range(n)]
    return rows, alerts, dead


def test_generated_truth_against_synthesized_perfect_output() -> None:
    truth = generate(2_000, seed=4, fault_rate=0.5).truth
    ev = evaluate(truth, *synthesized_output(truth))
    assert ev.perfect
    assert sum(k.expected for k in ev.kinds) == sum(len(e.alerts) for e in truth.orders.values())
