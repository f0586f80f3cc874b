"""Scores settlement batches (contract v2): BatchReconciliation rows against the truth's ``batches``.

* Status: per batch of the truth, the status of its final record (highest revision; none: no record); accuracy,
  and precision / recall per BatchStatus.
* Totals: the final record's expected/received count, gross and fee equal the truth's.
* Integrity: revisions of a batch are 1..n without gaps, no (batch_id, revision) twice, no record for a batch
  the truth does not know (a batch without a control record must stay silent).
* Batch alerts are scored with the other alerts (sim/scoring.py, keyed by batch_id); ``wrong_alerts`` tells
  which batches got other batch alerts than the truth's, for the per-fault table.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from posrecon.sim.alert_rows import Row
from posrecon.sim.rates import Rates, ratio
from posrecon.sim.truth import BATCH_TOTALS, BatchExpectation
from posrecon.sim.vocabulary import BATCH_STATUSES

#: how a batch without any record is shown
NO_RECORD = "(none)"


@dataclass(frozen=True, slots=True)
class StatusScore(Rates):
    status: str
    expected: int
    actual: int
    tp: int

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "expected": self.expected,
            "actual": self.actual,
            "tp": self.tp,
            "precision": self.precision,
            "recall": self.recall,
        }


@dataclass(frozen=True, slots=True)
class BatchMiss:
    """Batch ``batch_id`` ended with another status or other totals than the truth's."""

    batch_id: str
    fault: str
    expected: str
    actual: str


@dataclass(frozen=True, slots=True)
class FaultScore:
    batches: int = 0
    status_correct: int = 0
    alerts_correct: int = 0


@dataclass(frozen=True, slots=True)
class BatchEvaluation:
    statuses: tuple[StatusScore, ...]
    batches: int
    status_misses: tuple[BatchMiss, ...]
    totals_misses: tuple[BatchMiss, ...]
    by_fault: Mapping[str, FaultScore]
    revision_gaps: tuple[str, ...] = ()
    duplicate_revisions: tuple[tuple[str, int], ...] = ()
    unknown_batches: tuple[str, ...] = ()

    @property
    def accuracy(self) -> float:
        return ratio(self.batches - len(self.status_misses), self.batches)

    @property
    def integrity_ok(self) -> bool:
        return not (self.revision_gaps or self.duplicate_revisions or self.unknown_batches)

    @property
    def perfect(self) -> bool:
        scores = all(s.precision == 1.0 and s.recall == 1.0 for s in self.statuses)
        return scores and not self.status_misses and not self.totals_misses and self.integrity_ok

    def to_json(self, examples: int = 100) -> dict[str, Any]:
        return {
            "perfect": self.perfect,
            "batches": self.batches,
            "accuracy": self.accuracy,
            "statuses": [s.to_json() for s in self.statuses],
            "by_fault": {
                name: {"batches": f.batches, "status_correct": f.status_correct, "alerts_correct": f.alerts_correct}
                for name, f in sorted(self.by_fault.items())
            },
            "status_misses": [list(_miss(m)) for m in self.status_misses[:examples]],
            "totals_misses": [list(_miss(m)) for m in self.totals_misses[:examples]],
            "integrity": {
                "ok": self.integrity_ok,
                "revision_gaps": list(self.revision_gaps[:examples]),
                "duplicate_revisions": [list(p) for p in self.duplicate_revisions[:examples]],
                "unknown_batches": list(self.unknown_batches[:examples]),
            },
        }


def _miss(m: BatchMiss) -> tuple[str, str, str, str]:
    return m.batch_id, m.fault, m.expected, m.actual


def fault_name(exp: BatchExpectation) -> str:
    """The per-fault table's row: fault and variant ("none" for a batch without a fault)."""
    return f"{exp.fault}.{exp.variant}" if exp.variant else exp.fault or "none"


def evaluate_batches(
    truth: Mapping[str, BatchExpectation], rows: Iterable[Row], wrong_alerts: Collection[str] = ()
) -> BatchEvaluation:
    finals: dict[str, tuple[int, Row]] = {}
    revisions: dict[str, Counter[int]] = defaultdict(Counter)
    for row in rows:
        batch_id, revision = str(row["batch_id"]), int(row["revision"])
        revisions[batch_id][revision] += 1
        if batch_id not in finals or revision >= finals[batch_id][0]:
            finals[batch_id] = (revision, row)
    actual_status = {batch_id: str(row["status"]) for batch_id, (_, row) in finals.items()}
    status_misses, totals_misses = [], []
    tally: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for batch_id, exp in truth.items():
        got = actual_status.get(batch_id, NO_RECORD)
        counts = tally[fault_name(exp)]
        counts[0] += 1
        if got == exp.status:
            counts[1] += 1
        else:
            status_misses.append(BatchMiss(batch_id, fault_name(exp), exp.status, got))
        if batch_id not in wrong_alerts:
            counts[2] += 1
        final = finals.get(batch_id)
        totals = None if final is None else tuple(final[1].get(name) for name in BATCH_TOTALS)
        if exp.totals and totals != exp.totals:
            totals_misses.append(BatchMiss(batch_id, fault_name(exp), str(list(exp.totals)), str(totals)))
    seen = set(actual_status.values()) - set(BATCH_STATUSES)
    statuses = tuple(_status_score(status, truth, actual_status) for status in (*BATCH_STATUSES, *sorted(seen)))
    return BatchEvaluation(
        statuses=statuses,
        batches=len(truth),
        status_misses=tuple(status_misses),
        totals_misses=tuple(totals_misses),
        by_fault={name: FaultScore(*counts) for name, counts in tally.items()},
        revision_gaps=tuple(sorted(b for b, c in revisions.items() if sorted(c) != list(range(1, len(c) + 1)))),
        duplicate_revisions=tuple(sorted((b, rev) for b, c in revisions.items() for rev, n in c.items() if n > 1)),
        unknown_batches=tuple(sorted(b for b in revisions if b not in truth)),
    )


def _status_score(status: str, truth: Mapping[str, BatchExpectation], actual: Mapping[str, str]) -> StatusScore:
    expected = {batch_id for batch_id, exp in truth.items() if exp.status == status}
    got = {batch_id for batch_id, s in actual.items() if s == status}
    return StatusScore(status, len(expected), len(got), len(expected & got))


def render_batches(ev: BatchEvaluation, examples: int = 10) -> list[str]:
    """The batch table: per status, accuracy, per fault, totals and integrity, a few examples of what is wrong."""
    out = [
        f"{'batch status':<22}{'expected':>19}{'actual':>9}{'TP':>8}{'FP':>7}{'FN':>7}{'precision':>10}{'recall':>9}"
    ]
    for s in ev.statuses:
        out.append(
            f"{s.status:<22}{s.expected:>19}{s.actual:>9}{s.tp:>8}{s.fp:>7}{s.fn:>7} {s.precision:9.4f}{s.recall:9.4f}"
        )
    right = ev.batches - len(ev.status_misses)
    out.append(
        f"batches: {right}/{ev.batches} final status right, accuracy {ev.accuracy:.4f}; "
        f"totals right {ev.batches - len(ev.totals_misses)}/{ev.batches}"
    )
    out.append(f"  {'batch fault':<42}{'batches':>8}{'status ok':>10}{'alerts ok':>10}")
    for name, f in sorted(ev.by_fault.items()):
        out.append(f"  {name:<42}{f.batches:>8}{f.status_correct:>10}{f.alerts_correct:>10}")
    out.append(
        f"batch integrity: {'ok' if ev.integrity_ok else 'FAILED'} — revision gaps {len(ev.revision_gaps)}, "
        f"duplicate (batch, revision) {len(ev.duplicate_revisions)}, unknown batches {len(ev.unknown_batches)}"
    )
    for title, misses in (("wrong batch statuses", ev.status_misses), ("wrong batch totals", ev.totals_misses)):
        if misses:
            out.append(f"{title}, first {min(examples, len(misses))} of {len(misses)}:")
            out += [f"  {m.batch_id} [{m.fault}] expected {m.expected} got {m.actual}" for m in misses[:examples]]
    listed = (
        ("batch revision gaps", ev.revision_gaps),
        ("unknown batches", ev.unknown_batches),
        ("duplicate batch revisions", ev.duplicate_revisions),
    )
    return out + listing_lines(listed, examples)


def listing_lines(listed: Iterable[tuple[str, Collection[Any]]], examples: int) -> list[str]:
    """``title: a, b, c …`` for each non-empty list (the first ``examples`` items), in the evaluators' reports."""
    out = []
    for title, items in listed:
        if items:
            shown = list(items)[:examples]
            out.append(f"{title}: " + ", ".join(map(str, shown)) + (" …" if len(items) > examples else ""))
    return out
