"""Scores engine output against the ground truth: ``evaluate(truth, reconciled, alerts, deadletters)``.

Pure: takes rows (dicts with the contract's field names) from wherever they were read (replay files,
Kafka topics) and returns an ``Evaluation``.

* Alerts: (order_id, kind) multisets, per kind TP / FP / FN, precision and recall (1.0 when undefined).
* Outcomes: per truth order, the outcome of its highest revision (no reconciled record = None).
* Integrity: revisions of an order are 1..n without gaps, no (order_id, revision) twice, no alert_id twice,
  no reconciled record for an order the truth does not know.
* Dead letters: counts by reason.
"""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from posrecon.sim.truth import Truth
from posrecon.sim.vocabulary import ALERT_KINDS

Row = Mapping[str, Any]


def _ratio(hits: int, total: int) -> float:
    return 1.0 if total == 0 else hits / total


@dataclass(frozen=True, slots=True)
class KindScore:
    kind: str
    expected: int
    actual: int
    tp: int

    @property
    def fp(self) -> int:
        return self.actual - self.tp

    @property
    def fn(self) -> int:
        return self.expected - self.tp

    @property
    def precision(self) -> float:
        return _ratio(self.tp, self.actual)

    @property
    def recall(self) -> float:
        return _ratio(self.tp, self.expected)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "expected": self.expected,
            "actual": self.actual,
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "precision": self.precision,
            "recall": self.recall,
        }


@dataclass(frozen=True, slots=True)
class OutcomeMiss:
    order_id: str
    scenario: str
    expected: str | None
    actual: str | None


@dataclass(frozen=True, slots=True)
class AlertMiss:
    """``count`` alerts of ``kind`` on ``order_id`` missing (FN) or extra (FP)."""

    order_id: str | None
    kind: str
    scenario: str
    count: int


@dataclass(frozen=True, slots=True)
class ScenarioScore:
    orders: int = 0
    outcomes_correct: int = 0
    alerts_correct: int = 0


@dataclass(frozen=True, slots=True)
class Integrity:
    revision_gaps: tuple[str, ...] = ()
    duplicate_revisions: tuple[tuple[str, int], ...] = ()
    duplicate_alert_ids: tuple[str, ...] = ()
    unknown_orders: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not (self.revision_gaps or self.duplicate_revisions or self.duplicate_alert_ids or self.unknown_orders)


@dataclass(frozen=True, slots=True)
class Evaluation:
    kinds: tuple[KindScore, ...]
    orders: int
    outcomes_correct: int
    outcome_misses: tuple[OutcomeMiss, ...]
    missed_alerts: tuple[AlertMiss, ...]
    extra_alerts: tuple[AlertMiss, ...]
    by_scenario: Mapping[str, ScenarioScore]
    integrity: Integrity
    deadletters_expected: Mapping[str, int]
    deadletters_actual: Mapping[str, int]

    @property
    def outcome_accuracy(self) -> float:
        return _ratio(self.outcomes_correct, self.orders)

    @property
    def deadletters_ok(self) -> bool:
        return dict(self.deadletters_expected) == dict(self.deadletters_actual)

    @property
    def perfect(self) -> bool:
        scores_perfect = all(k.precision == 1.0 and k.recall == 1.0 for k in self.kinds)
        return scores_perfect and self.outcome_accuracy == 1.0 and self.integrity.ok and self.deadletters_ok

    def to_json(self, examples: int = 100) -> dict[str, Any]:
        return {
            "perfect": self.perfect,
            "alerts": [k.to_json() for k in self.kinds],
            "outcomes": {
                "orders": self.orders,
                "correct": self.outcomes_correct,
                "accuracy": self.outcome_accuracy,
            },
            "by_scenario": {
                name: {
                    "orders": s.orders,
                    "outcomes_correct": s.outcomes_correct,
                    "alerts_correct": s.alerts_correct,
                }
                for name, s in sorted(self.by_scenario.items())
            },
            "integrity": {
                "ok": self.integrity.ok,
                "revision_gaps": list(self.integrity.revision_gaps[:examples]),
                "duplicate_revisions": [list(pair) for pair in self.integrity.duplicate_revisions[:examples]],
                "duplicate_alert_ids": list(self.integrity.duplicate_alert_ids[:examples]),
                "unknown_orders": list(self.integrity.unknown_orders[:examples]),
            },
            "deadletters": {
                "ok": self.deadletters_ok,
                "expected": dict(self.deadletters_expected),
                "actual": dict(self.deadletters_actual),
            },
            "examples": {
                "outcome_misses": [dataclasses.asdict(m) for m in self.outcome_misses[:examples]],
                "missed_alerts": [dataclasses.asdict(m) for m in self.missed_alerts[:examples]],
                "extra_alerts": [dataclasses.asdict(m) for m in self.extra_alerts[:examples]],
            },
        }


def evaluate(
    truth: Truth, reconciled_rows: Iterable[Row], alert_rows: Iterable[Row], deadletter_rows: Iterable[Row]
) -> Evaluation:
    finals, integrity = _read_reconciled(truth, reconciled_rows)
    actual, duplicate_ids = _read_alerts(alert_rows)
    expected: Counter[tuple[str | None, str]] = Counter(
        (order_id, kind) for order_id, exp in truth.orders.items() for kind in exp.alerts
    )
    integrity = Integrity(
        integrity.revision_gaps, integrity.duplicate_revisions, duplicate_ids, integrity.unknown_orders
    )

    def scenario_of(order_id: str | None) -> str:
        exp = truth.orders.get(order_id) if order_id is not None else None
        return exp.scenario if exp is not None else ""

    missed = tuple(AlertMiss(o, k, scenario_of(o), n) for (o, k), n in sorted((expected - actual).items(), key=_key))
    extra = tuple(AlertMiss(o, k, scenario_of(o), n) for (o, k), n in sorted((actual - expected).items(), key=_key))
    kinds = tuple(_kind_score(kind, expected, actual) for kind in _kinds(actual))

    wrong_alert_orders = {m.order_id for m in missed} | {m.order_id for m in extra}
    outcome_misses: list[OutcomeMiss] = []
    tally: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for order_id, exp in truth.orders.items():
        outcome = finals.get(order_id)
        counts = tally[exp.scenario]
        counts[0] += 1
        if outcome == exp.outcome:
            counts[1] += 1
        else:
            outcome_misses.append(OutcomeMiss(order_id, exp.scenario, exp.outcome, outcome))
        if order_id not in wrong_alert_orders:
            counts[2] += 1
    return Evaluation(
        kinds=kinds,
        orders=len(truth.orders),
        outcomes_correct=len(truth.orders) - len(outcome_misses),
        outcome_misses=tuple(outcome_misses),
        missed_alerts=missed,
        extra_alerts=extra,
        by_scenario={name: ScenarioScore(*counts) for name, counts in tally.items()},
        integrity=integrity,
        deadletters_expected=dict(sorted(truth.deadletters.items())),
        deadletters_actual=dict(sorted(Counter(str(row["reason"]) for row in deadletter_rows).items())),
    )


def _key(item: tuple[tuple[str | None, str], int]) -> tuple[str, str]:
    (order_id, kind), _ = item
    return order_id or "", kind


def _kinds(actual: Counter[tuple[str | None, str]]) -> list[str]:
    unknown = sorted({kind for _, kind in actual} - set(ALERT_KINDS))
    return [*ALERT_KINDS, *unknown]


def _kind_score(
    kind: str, expected: Counter[tuple[str | None, str]], actual: Counter[tuple[str | None, str]]
) -> KindScore:
    exp = {key: n for key, n in expected.items() if key[1] == kind}
    act = {key: n for key, n in actual.items() if key[1] == kind}
    tp = sum(min(n, act.get(key, 0)) for key, n in exp.items())
    return KindScore(kind, sum(exp.values()), sum(act.values()), tp)


def _read_reconciled(truth: Truth, rows: Iterable[Row]) -> tuple[dict[str, str | None], Integrity]:
    """Final outcome per order (highest revision; the later row wins a tie) and revision integrity."""
    finals: dict[str, tuple[int, str | None]] = {}
    revisions: dict[str, Counter[int]] = defaultdict(Counter)
    for row in rows:
        order_id = str(row["order_id"])
        revision = int(row["revision"])
        revisions[order_id][revision] += 1
        if order_id not in finals or revision >= finals[order_id][0]:
            finals[order_id] = (revision, row["outcome"])
    duplicates = tuple(sorted((o, rev) for o, counts in revisions.items() for rev, n in counts.items() if n > 1))
    gaps = tuple(sorted(o for o, counts in revisions.items() if sorted(counts) != list(range(1, len(counts) + 1))))
    unknown = tuple(sorted(o for o in revisions if o not in truth.orders))
    integrity = Integrity(revision_gaps=gaps, duplicate_revisions=duplicates, unknown_orders=unknown)
    return {order_id: outcome for order_id, (_, outcome) in finals.items()}, integrity


def _read_alerts(rows: Iterable[Row]) -> tuple[Counter[tuple[str | None, str]], tuple[str, ...]]:
    actual: Counter[tuple[str | None, str]] = Counter()
    ids: Counter[str] = Counter()
    for row in rows:
        order_id = row.get("order_id")
        actual[(None if order_id is None else str(order_id), str(row["kind"]))] += 1
        ids[str(row["alert_id"])] += 1
    return actual, tuple(sorted(alert_id for alert_id, n in ids.items() if n > 1))
