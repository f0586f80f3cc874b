"""Hypothesis RuleBasedStateMachine over the engine: any sequence of events, notices and watermark moves
keeps the order invariants (contiguous revisions, one alert per condition, monotone phases, restorable)."""

from __future__ import annotations

import json
from collections import defaultdict

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from posrecon.config import RuleConfig
from posrecon.engine.engine import ReconciliationEngine
from posrecon.engine.order import TERMINAL_EVENT_INDEX, UNRESOLVED_TERMINAL, TerminalPhase
from scenario import HOUR, MIN, T0, note, term

TERMINAL_KINDS = sorted(TERMINAL_EVENT_INDEX)

ORDERS = ["o1", "o2", "o3"]
# a phase may only move "forward": unresolved -> resolved; VOIDED absorbing; APPROVED never back to DECLINED
RANK = {
    TerminalPhase.NONE: 0,
    TerminalPhase.CREATED: 1,
    TerminalPhase.TIMED_OUT: 1,
    TerminalPhase.DECLINED: 2,
    TerminalPhase.APPROVED: 3,
    TerminalPhase.VOIDED: 4,
}


class OrderMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.engine = ReconciliationEngine(RuleConfig(state_retention_ms=30 * 24 * HOUR))
        self.clock = T0
        self.revisions: dict[str, list[int]] = defaultdict(list)
        self.alert_ids: set[str] = set()
        self.phases: dict[str, TerminalPhase] = {}
        self.serial = 0

    def _collect(self) -> None:
        reconciled, alerts = self.engine.take()
        for r in reconciled:
            self.revisions[r["order_id"]].append(r["revision"])
        for a in alerts:
            assert a["alert_id"] not in self.alert_ids, f"alert fired twice: {a}"
            self.alert_ids.add(a["alert_id"])

    @rule(
        order=st.sampled_from(ORDERS),
        kind=st.sampled_from(TERMINAL_KINDS),
        dt=st.integers(-30 * MIN, 3 * HOUR),
        redeliver=st.booleans(),
    )
    def terminal_event(self, order: str, kind: str, dt: int, redeliver: bool) -> None:
        self.serial += 0 if redeliver else 1
        line = term(order, kind, self.clock + dt, eid=f"e{self.serial}", amount=1000, card="tok")
        self.engine.on_terminal_event(line["record"])  # type: ignore[arg-type]
        self.clock = max(self.clock, self.clock + dt)
        self._collect()

    @rule(
        order=st.sampled_from(ORDERS),
        status=st.sampled_from(["SETTLED", "FAILED", "REVERSED"]),
        dt=st.integers(-30 * MIN, 30 * HOUR),
        amount=st.sampled_from([1000, 1000, 5]),
    )
    def settlement_notice(self, order: str, status: str, dt: int, amount: int) -> None:
        self.serial += 1
        line = note(order, status, self.clock + dt, nid=f"n{self.serial}", amount=amount)
        self.engine.on_settlement_notice(line["record"])  # type: ignore[arg-type]
        self._collect()

    @rule(dt=st.integers(0, 30 * HOUR))
    def advance(self, dt: int) -> None:
        self.clock += dt
        self.engine.advance(0, self.clock)
        self._collect()

    @rule()
    def snapshot_and_restore(self) -> None:
        snap = json.loads(json.dumps(self.engine.snapshot()))
        restored = ReconciliationEngine.restore(snap, self.engine.rules)
        assert json.dumps(restored.snapshot(), sort_keys=True) == json.dumps(snap, sort_keys=True)
        restored.stats = self.engine.stats
        self.engine = restored

    @invariant()
    def revisions_are_contiguous(self) -> None:
        for order, revs in self.revisions.items():
            assert revs == list(range(1, len(revs) + 1)), (order, revs)

    @invariant()
    def phases_only_move_forward(self) -> None:
        for order_id, order in self.engine.book(0).orders.items():
            before = self.phases.get(order_id, TerminalPhase.NONE)
            assert RANK[order.terminal_phase] >= RANK[before], (order_id, before, order.terminal_phase)
            if before is TerminalPhase.VOIDED:
                assert order.terminal_phase is TerminalPhase.VOIDED
            self.phases[order_id] = order.terminal_phase

    @invariant()
    def facts_agree_with_phases(self) -> None:
        for order in self.engine.book(0).orders.values():
            if order.terminal_phase is TerminalPhase.APPROVED:
                assert order.approval is not None
            if order.approval is not None:
                assert order.terminal_phase not in UNRESOLVED_TERMINAL | {TerminalPhase.DECLINED}
            if order.revision:
                assert order.last_fields is not None and (order.settled is not None or order.failed is not None)


TestOrderMachine = OrderMachine.TestCase
TestOrderMachine.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
