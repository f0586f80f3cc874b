"""Settlement batches of the simulator (contract v2): membership, control records, faults and their truth."""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from typing import Any

import pytest

from posrecon.sim.batch_files import BATCH_SIZE, ON_TIME_MS, cut_batches
from posrecon.sim.generator import Simulation, generate
from posrecon.sim.line import Line
from posrecon.sim.mix import BATCH_FAULTS, DEFAULT_WEIGHTS
from posrecon.sim.pacing import unmet_races
from posrecon.sim.partitions import partition_of
from posrecon.sim.truth import BATCH_TOTALS, Truth
from posrecon.sim.vocabulary import (
    BALANCED,
    BATCH,
    BATCH_INCOMPLETE,
    BATCH_MISMATCH,
    INCOMPLETE,
    MISMATCH,
    REVERSED,
    SETTLED,
    SETTLEMENT,
)

GRACE = 3_600_000  # batch_grace_ms default


@pytest.fixture(scope="module")
def sim() -> Simulation:
    """Half the batches get a fault: all eight, on 12 partitions (a delayed notice is a normal order's)."""
    return generate(30_000, seed=9, fault_rate=0.5, partitions=12)


def controls(simulation: Simulation) -> dict[str, list[Any]]:
    by_batch: dict[str, list[Any]] = {}
    for line in simulation.lines:
        if line.source == BATCH:
            assert line.record is not None
            by_batch.setdefault(line.record["batch_id"], []).append(line)
    return by_batch


def received(simulation: Simulation) -> dict[str, tuple[int, int, int]]:
    """What each batch receives, recomputed from the lines: valid distinct SETTLED/REVERSED notices."""
    seen: set[str] = set()
    totals: dict[str, list[int]] = {}
    for line in simulation.lines:
        record = line.record
        if not line.valid or line.source != SETTLEMENT or record is None or record["notice_id"] in seen:
            continue
        seen.add(record["notice_id"])
        if record["batch_id"] is None or record["status"] not in (SETTLED, REVERSED):
            continue
        sums = totals.setdefault(record["batch_id"], [0, 0, 0])
        sums[0] += 1
        sums[1] += record["amount_minor"] if record["status"] == SETTLED else -record["amount_minor"]
        sums[2] += record["fee_minor"] if record["status"] == SETTLED else 0
    return {batch_id: (c, g, f) for batch_id, (c, g, f) in totals.items()}


def test_default_mix_has_batches_of_50_to_2000_notices() -> None:
    truth = generate(20_000, seed=3).truth
    counts = [exp.totals[1] for exp in truth.batches.values()]
    assert len(counts) > 200
    assert min(counts) >= BATCH_SIZE[0] and max(counts) <= 2_000
    assert max(counts) >= 500  # the busiest merchants' big files
    assert truth.batch_faults()["none"] > len(counts) / 2


def test_every_batch_fault_is_generated(sim: Simulation) -> None:
    faults = Counter(exp.fault for exp in sim.truth.batches.values())
    assert set(faults) == {"", *BATCH_FAULTS}
    variants = {(exp.fault, exp.variant) for exp in sim.truth.batches.values() if exp.variant}
    assert len(variants) == 7


def test_truth_totals_are_what_the_batch_receives_and_the_last_control_record_says(sim: Simulation) -> None:
    got = received(sim)
    by_batch = controls(sim)
    assert set(by_batch) == set(sim.truth.batches)
    for batch_id, exp in sim.truth.batches.items():
        totals = dict(zip(BATCH_TOTALS, exp.totals, strict=True))
        last = by_batch[batch_id][-1].record
        assert (totals["expected_count"], totals["expected_gross_minor"], totals["expected_fee_minor"]) == (
            last["notice_count"],
            last["gross_amount_minor"],
            last["fee_amount_minor"],
        )
        assert (totals["received_count"], totals["received_gross_minor"], totals["received_fee_minor"]) == got[batch_id]


def _status_from_totals(totals: tuple[int, ...]) -> str:
    expected_count, count, expected_gross, gross, expected_fee, fee = totals
    if (expected_count, expected_gross, expected_fee) == (count, gross, fee):
        return BALANCED
    return INCOMPLETE if count < expected_count else MISMATCH


def test_final_status_follows_the_final_totals(sim: Simulation) -> None:
    for exp in sim.truth.batches.values():
        assert exp.status == _status_from_totals(exp.totals), exp


EXPECTED = {  # (fault, variant) -> (status, alerts that open, alerts that resolve)
    ("", ""): (BALANCED, (), ()),
    ("batch_missing_notice", ""): (INCOMPLETE, (BATCH_INCOMPLETE,), ()),
    ("batch_extra_notice", ""): (MISMATCH, (BATCH_MISMATCH,), ()),
    ("batch_amount_off", ""): (MISMATCH, (BATCH_MISMATCH,), ()),
    ("batch_fee_off", ""): (MISMATCH, (BATCH_MISMATCH,), ()),
    ("batch_late_control", "balanced"): (BALANCED, (), ()),
    ("batch_late_control", "short"): (INCOMPLETE, (BATCH_INCOMPLETE,), ()),
    ("batch_repeated_control", ""): (BALANCED, (), ()),
    ("batch_replaced_control", "before_decision"): (BALANCED, (), ()),
    ("batch_replaced_control", "incomplete"): (BALANCED, (BATCH_INCOMPLETE,), (BATCH_INCOMPLETE,)),
    ("batch_replaced_control", "mismatch"): (BALANCED, (BATCH_MISMATCH,), (BATCH_MISMATCH,)),
    ("batch_late_notice", "included"): (BALANCED, (BATCH_INCOMPLETE,), (BATCH_INCOMPLETE,)),
    ("batch_late_notice", "extra"): (MISMATCH, (BATCH_MISMATCH,), ()),
}


def test_each_fault_gets_its_status_and_alerts(sim: Simulation) -> None:
    for exp in sim.truth.batches.values():
        assert (exp.status, exp.alerts, exp.resolved) == EXPECTED[(exp.fault, exp.variant)], exp


def test_control_records_of_each_fault(sim: Simulation) -> None:
    by_batch = controls(sim)
    for batch_id, exp in sim.truth.batches.items():
        records = [line.record for line in by_batch[batch_id]]
        closed_at = records[0]["closed_at"]
        assert all(r["closed_at"] == closed_at for r in records)
        arrivals = [line.ingest_time - closed_at for line in by_batch[batch_id]]
        if exp.fault == "batch_repeated_control":
            assert len(records) == 2 and records[0] == records[1]
        elif exp.fault == "batch_replaced_control":
            assert len(records) == 2 and records[0] != records[1]
            assert (arrivals[1] < GRACE) == (exp.variant == "before_decision")  # the replacement, vs the deadline
        else:
            assert len(records) == 1
        late = exp.fault == "batch_late_control"
        assert (arrivals[0] > GRACE + 3_600_000) == late and min(arrivals) > 0


def test_a_batch_holds_only_notices_that_arrive_before_its_deadline_but_the_delayed_one(sim: Simulation) -> None:
    closed_at = {batch_id: lines[0].record["closed_at"] for batch_id, lines in controls(sim).items()}
    late: Counter[str] = Counter()
    for line in sim.lines:
        record = line.record
        if line.valid and line.source == SETTLEMENT and record is not None and record["batch_id"] in closed_at:
            assert record["settled_at"] < closed_at[record["batch_id"]]
            if line.ingest_time - record["settled_at"] > ON_TIME_MS:  # a redelivery, or the delayed notice
                late[record["batch_id"]] += line.ingest_time > closed_at[record["batch_id"]] + GRACE
    delayed = {b for b, exp in sim.truth.batches.items() if exp.fault == "batch_late_notice"}
    assert delayed and delayed <= {b for b, n in late.items() if n}


def test_what_must_come_after_a_deadline_comes_after_it_on_every_partition(sim: Simulation) -> None:
    everywhere = [race for race in sim.races if race.everywhere]
    racing = {"batch_late_control", "batch_late_notice"}
    assert len(everywhere) >= sum(1 for exp in sim.truth.batches.values() if exp.fault in racing)
    assert unmet_races(sim.lines, everywhere, 0, 12) == []
    assert unmet_races(sim.lines, everywhere, 0, 1) == []


def test_thin_traffic_gets_pacemakers_for_batch_deadlines() -> None:
    """Few orders (normal ones only) over 72 h on 12 partitions: the batches' watermark (their minimum) needs
    pacemakers to pass a deadline before the late control record or notice arrives."""
    mix = {**dict.fromkeys(DEFAULT_WEIGHTS, 0.0), "batches": 1.0, "batch_late_notice": 1.0, "batch_late_control": 1.0}
    simulation = generate(800, seed=1, fault_rate=1.0, mix=mix, partitions=12)
    assert {exp.fault for exp in simulation.truth.batches.values()} >= {"batch_late_notice", "batch_late_control"}
    assert simulation.truth.scenarios.get("pacemaker", 0) > 0
    assert races_met_on_every_partition(simulation, 12) > 0
    assert races_met_on_every_partition(simulation, 1) > 0


def test_redelivered_notices_carry_their_batch(sim: Simulation) -> None:
    batch_of: dict[str, Any] = {}
    for line in sim.lines:
        if line.source == SETTLEMENT and line.valid and line.record is not None:
            assert batch_of.setdefault(line.record["notice_id"], line.record["batch_id"]) == line.record["batch_id"]


def test_batches_never_change_what_an_order_gets() -> None:
    with_batches = generate(6_000, seed=4, fault_rate=0.6)
    without = generate(6_000, seed=4, fault_rate=0.6, mix={**DEFAULT_WEIGHTS, "batches": 0.0})
    assert with_batches.truth.batches and not without.truth.batches
    assert not any(line.source == BATCH for line in without.lines)
    orders = {o: e for o, e in with_batches.truth.orders.items() if e.scenario != "pacemaker"}
    assert orders == {o: e for o, e in without.truth.orders.items() if e.scenario != "pacemaker"}


def test_truth_with_batches_round_trips_through_json(sim: Simulation) -> None:
    again = Truth.from_json(sim.truth.to_json())
    assert again.batches == sim.truth.batches
    assert sim.truth.to_json()["batch_alerts"]["BATCH_INCOMPLETE/RESOLVED"] > 0


def test_a_contract_v1_simulation_has_no_batches() -> None:
    simulation = generate(500, seed=1, contract="v1")
    assert not simulation.truth.batches and "batches" not in simulation.truth.to_json()
    with pytest.raises(ValueError, match="contract v2"):
        generate(50, seed=1, contract="v1", mix={"batches": 1.0})


def test_a_grace_too_short_for_control_records_is_refused() -> None:
    from posrecon.config import RuleConfig

    with pytest.raises(ValueError, match="batch_grace_ms"):
        generate(200, seed=1, rules=RuleConfig(batch_grace_ms=10 * 60_000))
    assert not generate(200, seed=1, rules=RuleConfig(batch_grace_ms=60_000), mix={"batches": 0.0}).truth.batches


def test_expectation_checks(sim: Simulation) -> None:
    exp = next(iter(sim.truth.batches.values()))
    with pytest.raises(ValueError):
        dataclasses.replace(exp, resolved=(BATCH_MISMATCH,), alerts=())
    with pytest.raises(ValueError):
        dataclasses.replace(exp, totals=(1, 2))


def _notice(n: int, merchant: str, settled_at: int, delay: int = 1_000) -> Line:
    record = {
        "notice_id": f"nt-{n}",
        "order_id": f"o-{n}",
        "merchant_id": merchant,
        "status": SETTLED,
        "amount_minor": 1_000 + n,
        "currency": "EUR",
        "settled_at": settled_at,
        "batch_id": "b-v1",
        "fee_minor": 10,
    }
    return Line(SETTLEMENT, settled_at + delay, record)


def test_cut_batches_leaves_late_arrivals_and_notices_without_batch_out() -> None:
    lines = [_notice(n, "m-1", 1_000_000 + n * 60_000) for n in range(130)]
    late = _notice(200, "m-1", 1_000_000, delay=ON_TIME_MS + 1)
    unbatched = _notice(201, "m-1", 1_000_000)
    assert unbatched.record is not None
    unbatched.record["batch_id"] = None
    batches = cut_batches([*lines, late, unbatched], random.Random(1), 7, {"m-1": "CHF"})
    assert [len(b.notices) for b in batches] and sum(len(b.notices) for b in batches) == 130
    assert all(BATCH_SIZE[0] <= len(b.counted) for b in batches)
    assert {b.merchant_id for b in batches} == {"m-1"} and {b.currency for b in batches} == {"CHF"}
    assert late.record is not None and late.record["batch_id"] == "b-v1" and unbatched.record["batch_id"] is None
    assert all(line.record is not None and line.record["batch_id"].startswith("bt-7-") for line in lines)
    for batch in batches:  # closed after its last notice
        assert batch.closed_at > max(line.record["settled_at"] for line in batch.notices if line.record)


def test_small_merchants_are_pooled_by_currency_without_merchant_id() -> None:
    lines = [_notice(n, f"m-{n % 40}", 1_000_000 + n * 60_000) for n in range(120)]
    batches = cut_batches(lines, random.Random(1), 7, {f"m-{k}": "SEK" for k in range(40)})
    assert batches and {(b.merchant_id, b.currency) for b in batches} == {(None, "SEK")}


def races_met_on_every_partition(simulation: Simulation, partitions: int) -> int:
    """Counted apart from sim/pacing.py: the watermark of each partition (largest event time of its valid records)
    has passed the batch deadline when what races it arrives. Returns the races checked."""
    racing = {id(race.line): race.deadline for race in simulation.races if race.everywhere}
    marks = [-1] * partitions
    checked = 0
    for line in simulation.lines:
        if id(line) in racing:
            assert min(marks) >= racing[id(line)]
            checked += 1
        if line.valid and line.event_time is not None and line.order_id is not None:
            p = partition_of(line.order_id, partitions)
            marks[p] = max(marks[p], line.event_time)
    assert checked == len(racing)
    return checked


def test_batch_races_hold_on_every_partition_counted_independently(sim: Simulation) -> None:
    assert races_met_on_every_partition(sim, 12) > 0


def test_every_partition_passes_every_batch_deadline_within_the_input(sim: Simulation) -> None:
    """A batch decided only by its deadline near the end of the traffic is decided by the records themselves
    (tail pacemakers), as replay with --until decides it: live must not need a wall-clock advance for it."""
    undecided = {b for b, exp in sim.truth.batches.items() if exp.status != BALANCED or exp.alerts}
    due = max(
        line.record["closed_at"] + GRACE
        for line in sim.lines
        if line.source == BATCH and line.valid and line.record is not None and line.record["batch_id"] in undecided
    )
    watermarks: dict[int, int] = {}
    for line in sim.lines:
        if line.valid and line.event_time is not None:
            p = partition_of(line.order_id, 12) if line.order_id is not None else 0
            watermarks[p] = max(watermarks.get(p, line.event_time), line.event_time)
    assert len(watermarks) == 12 and min(watermarks.values()) >= due
    assert sim.truth.until_ms >= max(line.ingest_time for line in sim.lines)
