"""Shared by the simulator tests: what a correct engine would write for a truth (final outcomes only)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from posrecon.sim.ledger import AMOUNT_FIELDS
from posrecon.sim.truth import BATCH_TOTALS, Truth

Rows = list[dict[str, Any]]
PerfectRows = Callable[[Truth], tuple[Rows, Rows, Rows, Rows]]


def _alert_rows(subject: str, field: str, alerts: tuple[str, ...], resolved: tuple[str, ...]) -> Rows:
    """An OPEN alert per expected kind and a RESOLVED record closing each expected resolution; ``field``: what the
    alert is about (order_id, or batch_id for a batch alert, whose order_id is null)."""
    about = {"order_id": subject} if field == "order_id" else {"order_id": None, "batch_id": subject}
    rows: Rows = []
    opened: dict[str, list[str]] = {}
    for n, kind in enumerate(alerts):
        alert_id = f"{subject}-{n}"
        opened.setdefault(kind, []).append(alert_id)
        rows.append({"alert_id": alert_id, "kind": kind, **about, "severity": "WARNING"})
    for n, kind in enumerate(resolved):
        rows.append(
            {
                "alert_id": f"{subject}-r{n}",
                "kind": kind,
                **about,
                "severity": "INFO",
                "status": "RESOLVED",
                "resolves_alert_id": opened[kind].pop(),
            }
        )
    return rows


def perfect_rows(truth: Truth) -> tuple[Rows, Rows, Rows, Rows]:
    """Reconciled rows (final outcome and amounts, revision 1), the alerts the truth expects (orders' and batches'),
    the dead letters by reason, and batch records (final status and totals, revision 1)."""
    rows = [
        {"order_id": o, "outcome": e.outcome, "revision": 1, **dict(zip(AMOUNT_FIELDS, e.amounts or (), strict=False))}
        for o, e in truth.orders.items()
        if e.outcome
    ]
    alerts: Rows = []
    for order_id, exp in truth.orders.items():
        alerts += _alert_rows(order_id, "order_id", exp.alerts, exp.resolved)
    for batch_id, batch in truth.batches.items():
        alerts += _alert_rows(batch_id, "batch_id", batch.alerts, batch.resolved)
    dead = [{"reason": reason} for reason, n in truth.deadletters.items() for _ in range(n)]
    batches = [
        {"batch_id": b, "status": e.status, "revision": 1, **dict(zip(BATCH_TOTALS, e.totals, strict=True))}
        for b, e in truth.batches.items()
    ]
    return rows, alerts, dead, batches


@pytest.fixture
def perfect() -> PerfectRows:
    return perfect_rows
