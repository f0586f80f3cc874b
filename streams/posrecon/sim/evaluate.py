"""``posrecon evaluate``: score a replay (or live) output directory against a simulation's truth.json."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from posrecon.sim.batch_scoring import listing_lines, render_batches
from posrecon.sim.ledger import AMOUNT_FIELDS
from posrecon.sim.scoring import Evaluation, evaluate
from posrecon.sim.truth import read_truth
from posrecon.sim.vocabulary import OPEN, RESOLVED

__all__ = ["evaluate", "read_jsonl", "register", "render"]

OUTPUT_FILES = ("reconciled.jsonl", "alerts.jsonl", "deadletter.jsonl")
#: settlement batches' records (contract v2; needed when the truth has batches)
BATCH_FILE = "batch-reconciled.jsonl"
EXAMPLES = 10


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise ValueError(f"{path}:{number}: not JSON ({exc})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{number}: not a JSON object")
            yield row


def render(ev: Evaluation) -> str:
    out = [
        f"{'alert kind':<22}{'status':<10}{'expected':>9}{'actual':>9}{'TP':>8}{'FP':>7}{'FN':>7}"
        f"{'precision':>10}{'recall':>9}"
    ]
    quiet = 0
    for status in (OPEN, RESOLVED):
        scores = ev.kind_scores(status)
        for k in scores:
            if k.expected == 0 and k.actual == 0:
                quiet += 1
                continue
            out.append(_score_row(k.kind, status, k.expected, k.actual, k.tp))
        if scores:
            total = [sum(getattr(k, name) for k in scores) for name in ("expected", "actual", "tp")]
            out.append(_score_row("all kinds", status, *total))
    if quiet:
        out.append(f"  ({quiet} kind/status rows with nothing expected and nothing seen not shown)")
    if not ev.resolved_scored:
        out.append("  RESOLVED records not scored: the truth is of contract v1 (format posrecon-truth/1)")
    out.append(f"outcomes: {ev.outcomes_correct}/{ev.orders} correct, accuracy {ev.outcome_accuracy:.4f}")
    out.append(f"  {'expected outcome':<24}{'orders':>9}{'correct':>9}{'accuracy':>10}")
    for name, (orders, correct) in sorted(ev.by_outcome.items()):
        out.append(f"  {name:<24}{orders:>9}{correct:>9}{correct / orders if orders else 1.0:>10.4f}")
    imperfect = {
        n: s for n, s in ev.by_scenario.items() if s.outcomes_correct < s.orders or s.alerts_correct < s.orders
    }
    for name, s in sorted(imperfect.items()):
        out.append(
            f"  {name:<30} orders {s.orders:>7}  outcome ok {s.outcomes_correct:>7}  alerts ok {s.alerts_correct:>7}"
        )
    if ev.amounts_checked:
        right = ev.amounts_checked - len(ev.amount_misses)
        out.append(f"ledger amounts ({', '.join(AMOUNT_FIELDS)}): {right}/{ev.amounts_checked} final records right")
    integrity = ev.integrity
    out += [
        f"integrity: {'ok' if integrity.ok else 'FAILED'} — revision gaps {len(integrity.revision_gaps)}, "
        f"duplicate (order, revision) {len(integrity.duplicate_revisions)}, "
        f"duplicate alert ids {len(integrity.duplicate_alert_ids)}, unknown orders {len(integrity.unknown_orders)}",
        f"  RESOLVED records not closing an OPEN alert of their kind and order {len(integrity.bad_resolutions)}, "
        f"alerts resolved more than once {len(integrity.repeated_resolutions)}, "
        f"card numbers in the output {integrity.card_numbers}",
    ]
    if ev.batches is not None:
        out += render_batches(ev.batches, EXAMPLES)
    out.append(f"dead letters: {'ok' if ev.deadletters_ok else 'MISMATCH'}")
    for reason in sorted(set(ev.deadletters_expected) | set(ev.deadletters_actual)):
        out.append(
            f"  {reason:<20} expected {ev.deadletters_expected.get(reason, 0):>7}"
            f"  actual {ev.deadletters_actual.get(reason, 0):>7}"
        )
    out += _examples(ev)
    out.append("verdict: PERFECT" if ev.perfect else "verdict: NOT PERFECT")
    return "\n".join(out)


def _score(value: float, defined: bool) -> str:
    return f"{value:9.4f}" if defined else f"{'n/a':>9}"


def _score_row(kind: str, status: str, expected: int, actual: int, tp: int) -> str:
    precision = tp / actual if actual else 1.0
    recall = tp / expected if expected else 1.0
    return (
        f"{kind:<22}{status:<10}{expected:>9}{actual:>9}{tp:>8}{actual - tp:>7}{expected - tp:>7}"
        f" {_score(precision, actual > 0)}{_score(recall, expected > 0)}"
    )


def _examples(ev: Evaluation) -> list[str]:
    out = []
    for title, misses in (("missed alerts (FN)", ev.missed_alerts), ("extra alerts (FP)", ev.extra_alerts)):
        if misses:
            out.append(f"{title}, first {min(EXAMPLES, len(misses))} of {len(misses)}:")
            out += [f"  {m.order_id} [{m.scenario or '?'}] {m.kind} {m.status} x{m.count}" for m in misses[:EXAMPLES]]
    if ev.outcome_misses:
        out.append(f"wrong outcomes, first {min(EXAMPLES, len(ev.outcome_misses))} of {len(ev.outcome_misses)}:")
        out += [
            f"  {m.order_id} [{m.scenario}] expected {m.expected} got {m.actual}" for m in ev.outcome_misses[:EXAMPLES]
        ]
    if ev.amount_misses:
        out.append(f"wrong amounts, first {min(EXAMPLES, len(ev.amount_misses))} of {len(ev.amount_misses)}:")
        out += [
            f"  {m.order_id} [{m.scenario}] expected {list(m.expected)} got {m.actual and list(m.actual)}"
            for m in ev.amount_misses[:EXAMPLES]
        ]
    integrity = ev.integrity
    listed = (
        ("revision gaps", integrity.revision_gaps),
        ("duplicate revisions", integrity.duplicate_revisions),
        ("duplicate alert ids", integrity.duplicate_alert_ids),
        ("unknown orders", integrity.unknown_orders),
        ("bad RESOLVED records", integrity.bad_resolutions),
        ("alerts resolved more than once", integrity.repeated_resolutions),
    )
    return out + listing_lines(listed, EXAMPLES)


def _main(args: argparse.Namespace) -> int:
    out_dir = Path(args.out)
    missing = [name for name in OUTPUT_FILES if not (out_dir / name).is_file()]
    if missing:
        print(f"evaluate: missing in {out_dir}: {', '.join(missing)}", file=sys.stderr)
        return 2
    try:
        truth = read_truth(args.truth)
        reconciled, alerts, dead = (read_jsonl(out_dir / name) for name in OUTPUT_FILES)
        batch_file = out_dir / BATCH_FILE
        if truth.batches and not batch_file.is_file():
            print(f"evaluate: missing in {out_dir}: {BATCH_FILE} (the truth has settlement batches)", file=sys.stderr)
            return 2
        batches = read_jsonl(batch_file) if batch_file.is_file() else iter(())
        evaluation = evaluate(truth, reconciled, alerts, dead, batches)
    except (OSError, ValueError, KeyError) as exc:
        print(f"evaluate: {exc}", file=sys.stderr)
        return 2
    print(render(evaluation))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(evaluation.to_json(), fh, indent=1)
            fh.write("\n")
    return 1 if args.require_perfect and not evaluation.perfect else 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "evaluate",
        help="score reconciled/alert/dead-letter output against a simulation's truth",
        description=(
            "Compare OUT/reconciled.jsonl, OUT/alerts.jsonl, OUT/deadletter.jsonl and OUT/batch-reconciled.jsonl\n"
            "with truth.json: precision/recall per alert kind and status (OPEN/RESOLVED, batch alerts included),\n"
            "outcome accuracy per outcome, revision integrity, RESOLVED records closing their alerts, card numbers\n"
            "in the output, dead-letter counts; settlement batches: precision/recall per batch status, final\n"
            "totals, revisions, and a table per batch fault."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--truth", required=True, metavar="TRUTH.json", help="truth.json written by simulate")
    parser.add_argument("--out", required=True, metavar="DIR", help="directory with the replay output files")
    parser.add_argument("--json", metavar="RESULT.json", help="also write the evaluation as JSON")
    parser.add_argument(
        "--require-perfect",
        action="store_true",
        help="exit 1 unless every precision and recall (both statuses, batch statuses too) and accuracy is 1.0 and"
        " integrity checks (batches' too) pass",
    )
    parser.set_defaults(func=_main)
