"""Shared by the simulator tests: what a correct engine would write for a truth (final outcomes only)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from posrecon.sim.ledger import AMOUNT_FIELDS
from posrecon.sim.truth import Truth

Rows = list[dict[str, Any]]
PerfectRows = Callable[[Truth], tuple[Rows, Rows, Rows]]


def perfect_rows(truth: Truth) -> tuple[Rows, Rows, Rows]:
    """Reconciled rows (final outcome and amounts, revision 1), an OPEN alert per expected kind and a RESOLVED record closing
    each expected resolution, and the dead letters by reason."""
    rows = [{"order_id": o, "outcome": e.outcome, "revision": 1, **dict(zip(AMOUNT_FIELDS, e.amounts or (), strict=False))}
            for o, e in truth.orders.items() if e.outcome]  # fmt: skip
    alerts: Rows = []
    for order_id, exp in truth.orders.items():
        opened: dict[str, list[str]] = {}
        for n, kind in enumerate(exp.alerts):
            alert_id = f"{order_id}-{n}"
            opened.setdefault(kind, []).append(alert_id)
            alerts.append({"alert_id": alert_id, "kind": kind, "order_id": order_id, "severity": "WARNING"})
        for n, kind in enumerate(exp.resolved):
            alerts.append({"alert_id": f"{order_id}-r{n}", "kind": kind, "order_id": order_id, "severity": "INFO",
                           "status": "RESOLVED", "resolves_alert_id": opened[kind].pop()})  # fmt: skip
    dead = [{"reason": reason} for reason, n in truth.deadletters.items() for _ in range(n)]
    return rows, alerts, dead


@pytest.fixture
def perfect() -> PerfectRows:
    return perfect_rows
