"""Scores engine output against the ground truth: ``evaluate(truth, reconciled, alerts, deadletters)``.

Pure: takes rows (dicts with the contract's field names) from wherever they were read (replay files,
Kafka topics) and returns an ``Evaluation``.

* Alerts: (order_id, kind) multisets, per kind TP / FP / FN, precision and recall (1.0 when undefined).
* Outcomes: per truth order, the outcome of its highest revision (no reconciled record = None).
* Integrity: revisions of an order are 1..n without gaps, no (order_id, revision) twice, no alert_id twice,
  no reconciled record for an order the truth does not know.
* Dead letters: counts by reason.
* Settlement batches (contract v2): final status per batch, totals and revisions (sim/batch_scoring.py); batch
  alerts are keyed by batch_id and scored per kind and status with the others.
"""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from posrecon.sim.alert_rows import AlertKey, Row, card_numbers, read_alerts
from posrecon.sim.batch_scoring import BatchEvaluation, evaluate_batches, fault_name
from posrecon.sim.ledger import AMOUNT_FIELDS
from posrecon.sim.rates import Rates, ratio
from posrecon.sim.truth import Truth
from posrecon.sim.vocabulary import ALERT_KINDS, ALERT_KINDS_V2, ALERT_STATUSES, CONTRACT_V1, OPEN, RESOLVED

#: how an expected "no reconciled record" is shown per outcome
NO_RECORD = "(none)"


@dataclass(frozen=True, slots=True)
class KindScore(Rates):
    kind: str
    expected: int
    actual: int
    tp: int
    status: str = OPEN

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "status": self.status,
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
    status: str = OPEN


@dataclass(frozen=True, slots=True)
class AmountMiss:
    """The final record of ``order_id`` carries other amounts (AMOUNT_FIELDS order) than the truth's."""

    order_id: str
    scenario: str
    expected: tuple[int, ...]
    actual: tuple[Any, ...] | None


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
    bad_resolutions: tuple[str, ...] = ()
    repeated_resolutions: tuple[str, ...] = ()
    card_numbers: int = 0

    @property
    def ok(self) -> bool:
        return not (
            self.revision_gaps
            or self.duplicate_revisions
            or self.duplicate_alert_ids
            or self.unknown_orders
            or self.bad_resolutions
            or self.repeated_resolutions
            or self.card_numbers
        )


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
    #: expected outcome (NO_RECORD for none) -> (orders, correct)
    by_outcome: Mapping[str, tuple[int, int]] = dataclasses.field(default_factory=dict)
    #: False for a truth of contract v1: RESOLVED records are not scored
    resolved_scored: bool = True
    #: orders whose final record's amounts the truth states, and those that differ
    amounts_checked: int = 0
    amount_misses: tuple[AmountMiss, ...] = ()
    #: settlement batches (None: the truth has none and the output none)
    batches: BatchEvaluation | None = None

    def kind_scores(self, status: str) -> tuple[KindScore, ...]:
        return tuple(k for k in self.kinds if k.status == status)

    @property
    def outcome_accuracy(self) -> float:
        return ratio(self.outcomes_correct, self.orders)

    @property
    def deadletters_ok(self) -> bool:
        return dict(self.deadletters_expected) == dict(self.deadletters_actual)

    @property
    def perfect(self) -> bool:
        scores_perfect = all(k.precision == 1.0 and k.recall == 1.0 for k in self.kinds)
        amounts_ok = not self.amount_misses
        batches_ok = self.batches is None or self.batches.perfect
        return (
            scores_perfect
            and self.outcome_accuracy == 1.0
            and self.integrity.ok
            and self.deadletters_ok
            and amounts_ok
            and batches_ok
        )

    def to_json(self, examples: int = 100) -> dict[str, Any]:
        return {
            "perfect": self.perfect,
            "alerts": [k.to_json() for k in self.kinds],
            "resolved_scored": self.resolved_scored,
            "amounts": {"checked": self.amounts_checked, "wrong": len(self.amount_misses), "fields": AMOUNT_FIELDS},
            "outcomes": {
                "orders": self.orders,
                "correct": self.outcomes_correct,
                "accuracy": self.outcome_accuracy,
                "by_outcome": {name: {"orders": n, "correct": ok} for name, (n, ok) in sorted(self.by_outcome.items())},
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
                "bad_resolutions": list(self.integrity.bad_resolutions[:examples]),
                "repeated_resolutions": list(self.integrity.repeated_resolutions[:examples]),
                "card_numbers": self.integrity.card_numbers,
            },
            "deadletters": {
                "ok": self.deadletters_ok,
                "expected": dict(self.deadletters_expected),
                "actual": dict(self.deadletters_actual),
            },
            "batches": None if self.batches is None else self.batches.to_json(examples),
            "examples": {
                "outcome_misses": [dataclasses.asdict(m) for m in self.outcome_misses[:examples]],
                "missed_alerts": [dataclasses.asdict(m) for m in self.missed_alerts[:examples]],
                "extra_alerts": [dataclasses.asdict(m) for m in self.extra_alerts[:examples]],
                "amount_misses": [dataclasses.asdict(m) for m in self.amount_misses[:examples]],
            },
        }


def evaluate(
    truth: Truth,
    reconciled_rows: Iterable[Row],
    alert_rows: Iterable[Row],
    deadletter_rows: Iterable[Row],
    batch_rows: Iterable[Row] = (),
) -> Evaluation:
    """``batch_rows``: BatchReconciliation rows (batch-reconciled.jsonl / pos.batch-reconciled); batch alerts are
    among ``alert_rows``, scored per kind and status with the others (keyed by batch_id)."""
    reconciled_rows, alert_rows, deadletter_rows = list(reconciled_rows), list(alert_rows), list(deadletter_rows)
    batch_rows = list(batch_rows)
    finals, integrity = _read_reconciled(truth, reconciled_rows)
    reading = read_alerts(alert_rows)
    resolved_scored = truth.contract != CONTRACT_V1
    actual = Counter({key: n for key, n in reading.actual.items() if resolved_scored or key[2] != RESOLVED})
    expected: Counter[AlertKey] = Counter()
    for order_id, exp in truth.orders.items():
        expected.update((order_id, kind, OPEN) for kind in exp.alerts)
        expected.update((order_id, kind, RESOLVED) for kind in exp.resolved)
    for batch_id, batch in truth.batches.items():
        expected.update((batch_id, kind, OPEN) for kind in batch.alerts)
        expected.update((batch_id, kind, RESOLVED) for kind in batch.resolved)
    integrity = dataclasses.replace(
        integrity,
        duplicate_alert_ids=reading.duplicate_ids,
        bad_resolutions=reading.bad_resolutions,
        repeated_resolutions=reading.repeated_resolutions,
        card_numbers=card_numbers([*reconciled_rows, *alert_rows, *deadletter_rows, *batch_rows]),
    )

    def misses(counts: Counter[AlertKey]) -> tuple[AlertMiss, ...]:
        return tuple(
            AlertMiss(o, k, scenario_of(o), n, status) for (o, k, status), n in sorted(counts.items(), key=_key)
        )

    def scenario_of(order_id: str | None) -> str:
        exp = truth.orders.get(order_id) if order_id is not None else None
        batch = truth.batches.get(order_id) if order_id is not None and exp is None else None
        return exp.scenario if exp is not None else fault_name(batch) if batch is not None else ""

    missed, extra = misses(expected - actual), misses(actual - expected)
    statuses = ALERT_STATUSES if resolved_scored else (OPEN,)
    kinds = tuple(_kind_score(kind, status, expected, actual) for status in statuses for kind in _kinds(actual, truth))

    wrong_alert_orders = {m.order_id for m in missed} | {m.order_id for m in extra}
    outcome_misses: list[OutcomeMiss] = []
    tally: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    by_outcome: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    amount_misses: list[AmountMiss] = []
    for order_id, exp in truth.orders.items():
        final = finals.get(order_id)
        outcome = None if final is None else final["outcome"]
        if exp.amounts is not None:
            actual_amounts = None if final is None else tuple(final.get(name) for name in AMOUNT_FIELDS)
            if actual_amounts != exp.amounts:
                amount_misses.append(AmountMiss(order_id, exp.scenario, exp.amounts, actual_amounts))
        counts = tally[exp.scenario]
        per_outcome = by_outcome[exp.outcome or NO_RECORD]
        counts[0] += 1
        per_outcome[0] += 1
        if outcome == exp.outcome:
            counts[1] += 1
            per_outcome[1] += 1
        else:
            outcome_misses.append(OutcomeMiss(order_id, exp.scenario, exp.outcome, outcome))
        if order_id not in wrong_alert_orders:
            counts[2] += 1
    batches = None
    if truth.batches or batch_rows:
        batches = evaluate_batches(truth.batches, batch_rows, {m.order_id for m in (*missed, *extra) if m.order_id})
    return Evaluation(
        batches=batches,
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
        by_outcome={name: (n, ok) for name, (n, ok) in by_outcome.items()},
        resolved_scored=resolved_scored,
        amounts_checked=sum(1 for exp in truth.orders.values() if exp.amounts is not None),
        amount_misses=tuple(amount_misses),
    )


def _key(item: tuple[AlertKey, int]) -> tuple[str, str, str]:
    (order_id, kind, status), _ = item
    return order_id or "", kind, status


def _kinds(actual: Counter[AlertKey], truth: Truth) -> list[str]:
    known = ALERT_KINDS if truth.contract == CONTRACT_V1 else ALERT_KINDS_V2
    unknown = sorted({kind for _, kind, _ in actual} - set(known))
    return [*known, *unknown]


def _kind_score(kind: str, status: str, expected: Counter[AlertKey], actual: Counter[AlertKey]) -> KindScore:
    exp = {key: n for key, n in expected.items() if key[1] == kind and key[2] == status}
    act = {key: n for key, n in actual.items() if key[1] == kind and key[2] == status}
    tp = sum(min(n, act.get(key, 0)) for key, n in exp.items())
    return KindScore(kind, sum(exp.values()), sum(act.values()), tp, status)


def _read_reconciled(truth: Truth, rows: Iterable[Row]) -> tuple[dict[str, Row], Integrity]:
    """Final record per order (highest revision; the later row wins a tie) and revision integrity."""
    finals: dict[str, tuple[int, Row]] = {}
    revisions: dict[str, Counter[int]] = defaultdict(Counter)
    for row in rows:
        order_id = str(row["order_id"])
        revision = int(row["revision"])
        revisions[order_id][revision] += 1
        if order_id not in finals or revision >= finals[order_id][0]:
            finals[order_id] = (revision, row)
    duplicates = tuple(sorted((o, rev) for o, counts in revisions.items() for rev, n in counts.items() if n > 1))
    gaps = tuple(sorted(o for o, counts in revisions.items() if sorted(counts) != list(range(1, len(counts) + 1))))
    unknown = tuple(sorted(o for o in revisions if o not in truth.orders))
    integrity = Integrity(revision_gaps=gaps, duplicate_revisions=duplicates, unknown_orders=unknown)
    return {order_id: row for order_id, (_, row) in finals.items()}, integrity
