"""The evaluator: perfect output scores 1.0; each kind of mistake is caught."""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import pytest

from posrecon.config import RuleConfig
from posrecon.sim.evaluate import render
from posrecon.sim.generator import generate
from posrecon.sim.scoring import Evaluation, KindScore, evaluate
from posrecon.sim.truth import BatchExpectation, Expectation, Truth

from .conftest import PerfectRows

Rows = list[dict[str, Any]]


def reconciled(order_id: str, outcome: str, revision: int = 1) -> dict[str, Any]:
    return {
        "order_id": order_id,
        "merchant_id": "m1",
        "terminal_id": "t1",
        "outcome": outcome,
        "currency": "EUR",
        "approved_amount_minor": 1000,
        "settled_amount_minor": 1000,
        "approved_at": 1,
        "settled_at": 2,
        "settlement_lag_ms": 1,
        "notice_id": "n1",
        "revision": revision,
    }


_ids = itertools.count()


def alert(order_id: str | None, kind: str, alert_id: str | None = None) -> dict[str, Any]:
    return {
        "alert_id": alert_id or f"al-{next(_ids)}",
        "kind": kind,
        "severity": "WARNING",
        "order_id": order_id,
        "merchant_id": "m1",
        "terminal_id": "t1",
        "reason": "r",
        "event_time": 1,
        "detected_at": 2,
        "related_ids": [],
    }


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
    return Truth(
        RuleConfig(), until_ms=10, orders=orders, deadletters={"DECODE_ERROR": 2, "CLOCK_SKEW": 1}, scenarios={}
    )


def perfect(truth: Truth) -> tuple[Rows, Rows, Rows]:
    rows = [
        reconciled("o-matched", "MATCHED"),
        reconciled("o-late", "MATCHED_LATE"),
        reconciled("o-orphan", "UNMATCHED_SETTLEMENT"),
        reconciled("o-orphan", "MATCHED", 2),
        reconciled("o-dup", "MATCHED"),
    ]
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


def test_generated_truth_against_synthesized_perfect_output(perfect: PerfectRows) -> None:
    truth = generate(2_000, seed=4, fault_rate=0.5).truth
    ev = evaluate(truth, *perfect(truth))
    assert ev.perfect
    expectations: list[Expectation | BatchExpectation] = [*truth.orders.values(), *truth.batches.values()]
    assert sum(k.expected for k in ev.kind_scores("OPEN")) == sum(len(e.alerts) for e in expectations)
    assert sum(k.expected for k in ev.kind_scores("RESOLVED")) == sum(len(e.resolved) for e in expectations)
    assert sum(k.expected for k in ev.kind_scores("RESOLVED")) > 0
    assert ev.batches is not None and ev.batches.batches == len(truth.batches) > 0


def resolution(order_id: str, kind: str, closes: str, **fields: Any) -> dict[str, Any]:
    return {**alert(order_id, kind), "severity": "INFO", "status": "RESOLVED", "resolves_alert_id": closes, **fields}


@pytest.fixture
def v2_truth() -> Truth:
    orders = {
        "o-late": Expectation(
            "MATCHED_LATE", ("LATE_SETTLEMENT", "MISSING_SETTLEMENT"), "late", resolved=("MISSING_SETTLEMENT",)
        ),
        "o-missing": Expectation(None, ("MISSING_SETTLEMENT",), "missing"),
        "o-nc": Expectation("NOT_CHARGED", (), "not_charged"),
    }
    return Truth(RuleConfig(), until_ms=10, orders=orders, deadletters={}, scenarios={})


def v2_output() -> tuple[Rows, Rows, Rows]:
    rows = [
        reconciled("o-late", "PARTIALLY_SETTLED"),
        reconciled("o-late", "MATCHED_LATE", 2),
        reconciled("o-nc", "NOT_CHARGED"),
    ]
    alerts = [
        alert("o-late", "MISSING_SETTLEMENT", "a-miss"),
        alert("o-late", "LATE_SETTLEMENT"),
        alert("o-missing", "MISSING_SETTLEMENT", "a-miss-2"),
        resolution("o-late", "MISSING_SETTLEMENT", "a-miss"),
    ]
    return rows, alerts, []


def score(ev: Evaluation, kind: str, status: str) -> KindScore:
    return next(k for k in ev.kinds if k.kind == kind and k.status == status)


def test_resolved_records_are_scored_per_status(v2_truth: Truth) -> None:
    rows, alerts, dead = v2_output()
    assert evaluate(v2_truth, rows, alerts, dead).perfect
    missed = evaluate(v2_truth, rows, alerts[:-1], dead)
    assert (score(missed, "MISSING_SETTLEMENT", "RESOLVED").recall, missed.perfect) == (0.0, False)
    assert score(missed, "MISSING_SETTLEMENT", "OPEN").recall == 1.0
    assert [(m.order_id, m.kind, m.status) for m in missed.missed_alerts] == [
        ("o-late", "MISSING_SETTLEMENT", "RESOLVED")
    ]
    extra = evaluate(v2_truth, rows, [*alerts, resolution("o-missing", "MISSING_SETTLEMENT", "a-miss-2")], dead)
    assert score(extra, "MISSING_SETTLEMENT", "RESOLVED").precision == 0.5 and not extra.perfect
    assert extra.integrity.ok  # a wrong resolution, but well formed


@pytest.mark.parametrize(
    "broken",
    [
        {"resolves_alert_id": "nothing"},
        {"kind": "LATE_SETTLEMENT"},  # the kind of the alert it closes differs
        {"order_id": "o-missing"},  # another order's alert
        {"severity": "WARNING"},
    ],
)
def test_a_resolution_must_close_an_open_alert_of_its_kind_and_order(v2_truth: Truth, broken: dict[str, Any]) -> None:
    rows, alerts, dead = v2_output()
    alerts[-1] = {**alerts[-1], **broken}
    ev = evaluate(v2_truth, rows, alerts, dead)
    assert ev.integrity.bad_resolutions == (alerts[-1]["alert_id"],) and not ev.perfect


def test_a_resolution_of_a_resolution_is_refused(v2_truth: Truth) -> None:
    rows, alerts, dead = v2_output()
    ev = evaluate(v2_truth, rows, [*alerts, resolution("o-late", "MISSING_SETTLEMENT", alerts[-1]["alert_id"])], dead)
    assert len(ev.integrity.bad_resolutions) == 1


def test_an_alert_resolves_at_most_once(v2_truth: Truth) -> None:
    rows, alerts, dead = v2_output()
    ev = evaluate(v2_truth, rows, [*alerts, resolution("o-late", "MISSING_SETTLEMENT", "a-miss")], dead)
    assert ev.integrity.repeated_resolutions == ("a-miss",) and not ev.perfect


def test_a_v1_truth_leaves_resolved_records_unscored(v2_truth: Truth) -> None:
    v1_truth = dataclasses.replace(
        v2_truth, contract="v1", orders={o: dataclasses.replace(e, resolved=()) for o, e in v2_truth.orders.items()}
    )
    rows, alerts, dead = v2_output()
    ev = evaluate(v1_truth, rows, alerts, dead)
    assert ev.perfect and not ev.resolved_scored
    assert {k.status for k in ev.kinds} == {"OPEN"}
    assert "FEE_MISMATCH" not in {k.kind for k in ev.kinds}
    assert "not scored" in render(ev)


def test_a_card_number_in_any_output_field_breaks_integrity(v2_truth: Truth) -> None:
    rows, alerts, _ = v2_output()
    masked = [{"reason": "PAN_IN_FIELD", "record": {"order_id": "ord-x************1111"}}]
    assert evaluate(v2_truth, rows, alerts, masked).integrity.card_numbers == 0
    hashed = "8df42383b9fce515645028373066bb0a"  # a minted hex id whose digit run passes the test by chance
    minted = [alert("o-late", "MISSING_SETTLEMENT", hashed), resolution("o-late", "MISSING_SETTLEMENT", hashed)]
    assert evaluate(v2_truth, rows, [*alerts, *minted], []).integrity.card_numbers == 0
    whole = [{"reason": "PAN_IN_FIELD", "record": {"terminal_id": "T4111 1111 1111 1111"}}]
    ev = evaluate(v2_truth, rows, alerts, whole)
    assert ev.integrity.card_numbers == 1 and not ev.integrity.ok


def test_outcome_accuracy_per_expected_outcome(v2_truth: Truth) -> None:
    rows, alerts, dead = v2_output()
    rows[-1] = reconciled("o-nc", "SETTLEMENT_FAILED")
    ev = evaluate(v2_truth, rows, alerts, dead)
    assert ev.by_outcome == {"MATCHED_LATE": (1, 1), "(none)": (1, 1), "NOT_CHARGED": (1, 0)}
    table = render(ev)
    assert "NOT_CHARGED" in table and "RESOLVED" in table


def test_final_record_amounts_are_checked_where_the_truth_states_them(v2_truth: Truth) -> None:
    orders = dict(v2_truth.orders)
    orders["o-late"] = dataclasses.replace(orders["o-late"], amounts=(2, 1000, 20, 0, 980))
    truth = dataclasses.replace(v2_truth, orders=orders)
    rows, alerts, dead = v2_output()
    amounts = {
        "settled_parts": 2,
        "settled_amount_minor": 1000,
        "fee_minor": 20,
        "reversed_amount_minor": 0,
        "net_amount_minor": 980,
    }
    rows[1] = {**rows[1], **amounts}
    ev = evaluate(truth, rows, alerts, dead)
    assert ev.perfect and ev.amounts_checked == 1
    rows[1] = {**rows[1], "net_amount_minor": 1000}  # the fee not deducted
    wrong = evaluate(truth, rows, alerts, dead)
    assert [(m.order_id, m.actual) for m in wrong.amount_misses] == [("o-late", (2, 1000, 20, 0, 1000))]
    assert not wrong.perfect and "wrong amounts" in render(wrong)
