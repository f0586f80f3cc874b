"""Properties of the batch ledger: arrival-order independence before the deadline, and a state machine over any
sequence of notices, control records and watermark moves (contiguous revisions, one alert per condition, each
resolved at most once, totals as a model says, snapshot anywhere + restore + continue = the same outputs)."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from posrecon.config import RuleConfig
from posrecon.engine.batches import BatchLedger, BatchSighting
from posrecon.engine.model import SettlementBatch

T0 = 1_767_225_600_000
GRACE = 3_600_000
RULES = RuleConfig()
STATUSES = ("SETTLED", "REVERSED", "FAILED")


def sighting(
    batch: str, nid: str, status: str, amount: int, fee: int, at: int, source: int, mark: int
) -> BatchSighting:
    return BatchSighting(batch, nid, status, amount, fee, "EUR", "m1", at, source, mark, f"o-{nid}")


def control(batch: str, count: int, gross: int, fee: int, closed_at: int) -> SettlementBatch:
    return {
        "batch_id": batch,
        "merchant_id": "m1",
        "currency": "EUR",
        "notice_count": count,
        "gross_amount_minor": gross,
        "fee_amount_minor": fee,
        "closed_at": closed_at,
    }


def totals(notices: dict[str, tuple[str, int, int]]) -> tuple[int, int, int]:
    counted = [n for n in notices.values() if n[0] != "FAILED"]
    gross = sum(a if s == "SETTLED" else -a for s, a, _ in counted)
    return len(counted), gross, sum(f for s, _, f in counted if s == "SETTLED")


# --- arrival order ----------------------------------------------------------------------------------------------

notice_facts = st.tuples(st.sampled_from(STATUSES), st.integers(1, 40), st.integers(0, 3))


@st.composite
def batches(draw: st.DrawFn) -> tuple[list[tuple[str, Any]], list[tuple[str, Any]]]:
    """One batch's records (notices, possibly redelivered, and its control record, possibly repeated), all
    before its deadline, in two arrival orders."""
    facts = draw(st.lists(notice_facts, max_size=7))
    notices = {f"n{k}": f for k, f in enumerate(facts)}
    count, gross, fee = totals(notices)
    # mostly near the truth, so BALANCED, INCOMPLETE and MISMATCH all come up
    count += draw(st.sampled_from([0, 0, -1, 1]))
    gross += draw(st.sampled_from([0, 0, -1, 1]))
    fee += draw(st.sampled_from([0, 0, 1]))
    items: list[tuple[str, Any]] = [("notice", (nid, *f)) for nid, f in notices.items()]
    items += (
        [("notice", (nid, *notices[nid])) for nid in draw(st.lists(st.sampled_from(sorted(notices)), max_size=2))]
        if notices
        else []
    )
    items += [("control", (max(count, 0), gross, fee))] * draw(st.integers(1, 2))
    return draw(st.permutations(items)), draw(st.permutations(items))


def run_batch(items: list[tuple[str, Any]], times: list[int]) -> BatchLedger:
    ledger = BatchLedger(RULES)
    for (kind, fields), at in zip(items, times, strict=True):
        if kind == "notice":
            nid, status, amount, fee = fields
            ledger.on_notice(sighting("b1", nid, status, amount, fee, at, 0, at))
        else:
            count, gross, fee = fields
            ledger.on_control(control("b1", count, gross, fee, T0))
    ledger.advance(0, T0 + 2 * GRACE)
    return ledger


@settings(max_examples=300, deadline=None)
@given(orders=batches(), data=st.data())
def test_status_and_alerts_do_not_depend_on_arrival_order(
    orders: tuple[list[tuple[str, Any]], list[tuple[str, Any]]], data: st.DataObject
) -> None:
    outcomes = []
    for items in orders:
        times = sorted(
            data.draw(st.lists(st.integers(T0 - GRACE, T0 + GRACE - 1), min_size=len(items), max_size=len(items)))
        )
        records, alerts = run_batch(items, times).take()
        last = records[-1] if records else None
        final = None if last is None else {k: v for k, v in last.items() if k != "revision"}
        outcomes.append((final, sorted((a["alert_id"], a["kind"], a["status"], a["batch_id"]) for a in alerts)))
    assert outcomes[0] == outcomes[1]
    final, alert_set = outcomes[0]
    assert final is not None  # the control record came before the deadline: decided
    balanced = (
        final["received_count"] == final["expected_count"]
        and final["received_gross_minor"] == final["expected_gross_minor"]
        and final["received_fee_minor"] == final["expected_fee_minor"]
    )
    assert (final["status"] == "BALANCED") == balanced
    assert not any(status == "RESOLVED" for _, _, status, _ in alert_set)  # nothing can clear before the deadline


# --- state machine ----------------------------------------------------------------------------------------------

BATCHES = ["b1", "b2", "b3"]
NOTICE_IDS = [f"n{k}" for k in range(8)]


class BatchMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.config = RuleConfig(state_retention_ms=6 * GRACE)
        self.plain = BatchLedger(self.config, sources=2)
        self.restored = BatchLedger(self.config, sources=2)
        self.clock = T0
        self.marks = [T0 - GRACE, T0 - GRACE]
        self.model: dict[str, dict[str, tuple[str, int, int]]] = defaultdict(dict)
        self.settled_at: dict[str, int] = {}  # a notice counts once the batch watermark reaches its settled_at
        self.expected: dict[str, tuple[int, int, int]] = {}
        #: a control record closed after the watermark: (closed_at, totals), applied once the watermark passes it
        self.held: dict[str, tuple[int, tuple[int, int, int]]] = {}
        self.revisions: dict[str, list[int]] = defaultdict(list)
        self.opened: set[str] = set()
        self.resolved: set[str] = set()

    def _both(self, call: str, *args: Any) -> None:
        getattr(self.plain, call)(*args)
        getattr(self.restored, call)(*args)
        plain, restored = self.plain.take(), self.restored.take()
        assert plain == restored
        records, alerts = plain
        for batch_id in list(self.model):  # evicted: a batch starts over (revisions from 1 again)
            if batch_id not in self.plain.batches:
                del self.model[batch_id]
                self.revisions.pop(batch_id, None)
                self.expected.pop(batch_id, None)
                self.held.pop(batch_id, None)
        released = {b: totals for b, (closed_at, totals) in self.held.items() if closed_at <= self.plain.watermark}
        last = {record["batch_id"]: record for record in records}  # one call may count several held notices
        for record in records:
            batch_id = record["batch_id"]
            self.revisions[batch_id].append(record["revision"])
            received = (record["received_count"], record["received_gross_minor"], record["received_fee_minor"])
            if record is last[batch_id]:
                assert received == totals(self.counted(batch_id))
            expected = (record["expected_count"], record["expected_gross_minor"], record["expected_fee_minor"])
            assert expected in (self.expected.get(batch_id), released.get(batch_id))
            assert (record["status"] == "BALANCED") == (expected == received)
        for batch_id, expected in released.items():
            self.expected[batch_id] = expected
            del self.held[batch_id]
        for alert in alerts:
            assert alert["order_id"] is None and alert["batch_id"] in BATCHES
            if alert["status"] == "OPEN":
                assert alert["alert_id"] not in self.opened
                self.opened.add(alert["alert_id"])
            else:
                assert alert["resolves_alert_id"] in self.opened and alert["resolves_alert_id"] not in self.resolved
                self.resolved.add(alert["resolves_alert_id"])

    def counted(self, batch_id: str) -> dict[str, tuple[str, int, int]]:
        watermark = self.plain.watermark
        return {nid: facts for nid, facts in self.model[batch_id].items() if self.settled_at[nid] <= watermark}

    @rule(
        batch=st.sampled_from(BATCHES),
        nid=st.sampled_from(NOTICE_IDS),
        facts=notice_facts,
        source=st.integers(0, 1),
        step=st.integers(0, GRACE // 2),
    )
    def notice(self, batch: str, nid: str, facts: tuple[str, int, int], source: int, step: int) -> None:
        self.clock += step
        self.marks[source] = max(self.marks[source], self.clock)
        nid = f"{batch}-{nid}"
        if facts[0] != "FAILED" and nid not in self.model[batch]:  # a FAILED notice is not kept (its id neither)
            self.model[batch][nid] = facts
            self.settled_at[nid] = self.clock
        self._both("on_notice", sighting(batch, nid, *facts, at=self.clock, source=source, mark=self.marks[source]))

    @rule(
        batch=st.sampled_from(BATCHES),
        use_model=st.booleans(),
        count=st.integers(0, 4),
        gross=st.integers(-40, 120),
        fee=st.integers(0, 6),
        closed=st.integers(-GRACE, GRACE),
    )
    def control(self, batch: str, use_model: bool, count: int, gross: int, fee: int, closed: int) -> None:
        if use_model:  # the truth, so batches balance too
            count, gross, fee = totals(self.model[batch])
        self.model.setdefault(batch, {})
        closed_at = T0 + closed // 60_000 * 60_000
        if closed_at > self.plain.watermark:  # held until the watermark passes closed_at (replacing one held)
            self.held[batch] = (closed_at, (count, gross, fee))
        else:
            self.expected[batch] = (count, gross, fee)
            self.held.pop(batch, None)
        self._both("on_control", control(batch, count, gross, fee, closed_at))

    @rule(source=st.integers(0, 1), step=st.integers(0, 2 * GRACE))
    def advance(self, source: int, step: int) -> None:
        self.marks[source] += step
        self._both("advance", source, self.marks[source])

    @precondition(lambda self: True)
    @rule()
    def snapshot_and_restore(self) -> None:
        rows = json.loads(json.dumps(self.restored.to_rows()))
        restored = BatchLedger(self.config, sources=2)
        restored.load_rows(rows, self.restored.watermark, dict(self.restored.source_watermarks))
        self.restored = restored

    @invariant()
    def revisions_are_contiguous(self) -> None:
        for revisions in self.revisions.values():
            assert revisions == list(range(1, len(revisions) + 1))

    @invariant()
    def same_state(self) -> None:
        assert sorted(map(json.dumps, self.plain.to_rows())) == sorted(map(json.dumps, self.restored.to_rows()))


BatchMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestBatchMachine = BatchMachine.TestCase


# --- event-time alignment ---------------------------------------------------------------------------------------

SOURCES = 3


@st.composite
def spread_batches(draw: st.DrawFn) -> tuple[list[list[tuple[str, Any]]], list[tuple[str, Any]]]:
    """One batch's notices (some settled after its deadline) and its control record spread over 3 sources, each in
    its own event-time order and carrying that source's watermark; and the same items in event-time order."""
    closed_at = T0
    deadline = closed_at + GRACE + RULES.allowed_lateness_ms
    times = draw(st.lists(st.integers(T0 - GRACE, deadline + GRACE), min_size=1, max_size=7, unique=True))
    facts = [draw(notice_facts) for _ in times]
    notices = {f"n{k}": f for k, f in enumerate(facts)}
    count, gross, fee = totals(notices)
    count += draw(st.sampled_from([0, 0, -1, 1]))
    gross += draw(st.sampled_from([0, 0, -1]))
    items: list[tuple[int, str, Any]] = [
        (at, "notice", (f"n{k}", *f)) for k, (at, f) in enumerate(zip(times, facts, strict=True))
    ]
    items.append((closed_at, "control", (max(count, 0), gross, fee)))
    items.sort(key=lambda item: item[0])
    sources: list[list[tuple[str, Any]]] = [[] for _ in range(SOURCES)]
    for at, kind, fields in items:
        sources[draw(st.integers(0, SOURCES - 1))].append((kind, (at, *fields)))
    ordered = [(kind, (at, *fields)) for at, kind, fields in items]
    return sources, ordered


def feed(ledger: BatchLedger, source: int, kind: str, fields: tuple[Any, ...]) -> None:
    at, *rest = fields
    if kind == "notice":
        nid, status, amount, fee = rest
        ledger.on_notice(sighting("b1", nid, status, amount, fee, at, source, at))
    else:
        count, gross, fee = rest
        ledger.on_control(control("b1", count, gross, fee, T0), source, at)


def outputs(ledger: BatchLedger) -> tuple[list[Any], list[Any]]:
    for source in range(SOURCES):
        ledger.advance(source, T0 + 10 * GRACE)
    records, alerts = ledger.take()
    return records, [{k: v for k, v in a.items() if k != "detected_at"} for a in alerts]


@settings(max_examples=300, deadline=None)
@given(spread=spread_batches(), data=st.data())
def test_any_interleaving_of_sources_gives_the_event_time_ordered_outputs(
    spread: tuple[list[list[tuple[str, Any]]], list[tuple[str, Any]]], data: st.DataObject
) -> None:
    sources, ordered = spread
    reference = BatchLedger(RULES, sources=SOURCES)
    for kind, fields in ordered:  # one source's order, each source's watermark at the item's event time
        feed(reference, 0, kind, fields)
        for source in range(1, SOURCES):
            reference.advance(source, fields[0])
    live = BatchLedger(RULES, sources=SOURCES)
    cursors = [0] * SOURCES
    while any(cursors[s] < len(sources[s]) for s in range(SOURCES)):
        source = data.draw(st.sampled_from([s for s in range(SOURCES) if cursors[s] < len(sources[s])]))
        feed(live, source, *sources[source][cursors[source]])
        cursors[source] += 1
    assert outputs(live) == outputs(reference)


# --- the batch watermark ----------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    sources=st.integers(1, 5),
    moves=st.lists(st.tuples(st.integers(0, 4), st.integers(-5, 60)), max_size=40),
)
def test_the_watermark_is_the_minimum_over_every_source_after_any_moves(
    sources: int, moves: list[tuple[int, int]]
) -> None:
    """BatchLedger.advance skips the minimum when the source that moved did not hold it: the watermark must still
    be the minimum over the sources' latest watermarks once every source has reported (a watermark never goes
    back; a lower one is ignored)."""
    ledger = BatchLedger(RULES, sources=sources)
    latest: dict[int, int] = {}
    for source, offset in moves:
        source %= sources
        ledger.advance(source, T0 + offset * 60_000)
        latest[source] = max(latest.get(source, T0 + offset * 60_000), T0 + offset * 60_000)
        expected = min(latest.values()) if len(latest) == sources else None
        assert (ledger.watermark if len(latest) == sources else None) == expected
        if len(latest) < sources:
            assert ledger.watermark < T0 - 5 * 60_000  # nothing aligned before every source reported
