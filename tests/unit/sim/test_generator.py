"""The simulator: determinism, scenario coverage, arrival order, records the contract accepts."""

from __future__ import annotations

from collections import defaultdict

import pytest

from posrecon.config import RuleConfig
from posrecon.sim.generator import Simulation, generate
from posrecon.sim.pacing import TAIL_NOTE, unmet_races
from posrecon.sim.pan import luhn_valid
from posrecon.sim.scenarios import SCENARIOS
from posrecon.sim.timing import HOUR
from posrecon.sim.vocabulary import (
    AUTH_APPROVED,
    BATCH,
    DUPLICATE_CHARGE,
    LATE_SETTLEMENT,
    MATCHED,
    MATCHED_LATE,
    MISSING_SETTLEMENT,
    PAN_IN_CARD_TOKEN,
    SETTLEMENT,
    TERMINAL,
)


@pytest.fixture(scope="module")
def big() -> Simulation:
    return generate(5_000, seed=7, fault_rate=0.5)


def test_same_seed_gives_the_same_lines_and_truth() -> None:
    first, again = generate(800, seed=3), generate(800, seed=3)
    assert [line.to_json_line() for line in first] == [line.to_json_line() for line in again]
    assert first.truth.to_json() == again.truth.to_json()


def test_another_seed_gives_other_traffic() -> None:
    one, other = generate(300, seed=1), generate(300, seed=2)
    assert [line.to_json_line() for line in one] != [line.to_json_line() for line in other]


def test_every_scenario_appears_in_a_5k_run(big: Simulation) -> None:
    assert set(SCENARIOS) <= set(big.truth.scenarios)
    assert big.truth.notes.get("normal.out_of_order", 0) > 0
    assert not big.infeasible


def test_fault_rate_is_honoured(big: Simulation) -> None:
    instances = sum(big.truth.scenarios.values())
    assert 0.45 < big.truth.scenarios["normal"] / instances < 0.55
    assert generate(500, seed=1, fault_rate=0.0).truth.scenarios == {"normal": 500}


def test_lines_are_in_ingest_order(big: Simulation) -> None:
    times = [line.ingest_time for line in big.lines]
    assert times == sorted(times)


def test_each_stream_of_an_order_arrives_in_event_time_order(big: Simulation) -> None:
    last: dict[tuple[str, str], int] = {}
    seen: set[str] = set()
    for line in big.lines:
        if not line.valid or line.record is None or line.event_time is None:
            continue
        record_id = str(line.record.get("event_id") or line.record.get("notice_id"))
        if record_id in seen:  # a redelivery repeats an old record
            continue
        seen.add(record_id)
        key = (line.source, line.order_id or "")
        assert line.event_time >= last.get(key, line.event_time), line.record
        last[key] = line.event_time


def test_valid_records_arrive_after_their_event_time_within_the_skew(big: Simulation) -> None:
    skew = RuleConfig().max_clock_skew_ms
    for line in big.lines:
        if line.valid and line.event_time is not None:
            assert line.event_time <= line.ingest_time  # so the watermark never runs ahead of arrivals
            if line.source == TERMINAL:
                assert line.ingest_time - line.event_time <= skew


def test_settlements_sometimes_overtake_their_approval(big: Simulation) -> None:
    first_seen: dict[str, str] = {}
    for line in big.lines:
        decisive = line.source == SETTLEMENT or (line.record or {}).get("event_type") == AUTH_APPROVED
        if line.valid and line.order_id and line.order_id not in first_seen and decisive:
            first_seen[line.order_id] = line.source
    overtaken = [
        o for o, source in first_seen.items() if source == SETTLEMENT and big.truth.orders[o].outcome == MATCHED
    ]
    assert len(overtaken) > 50


def test_card_tokens_are_never_digits_except_the_pan_fault(big: Simulation) -> None:
    pans = 0
    for line in big.lines:
        token = (line.record or {}).get("card_token")
        if isinstance(token, str) and token.isdigit():
            assert line.rejection == PAN_IN_CARD_TOKEN
            assert len(token) == 16 and luhn_valid(token)
            pans += 1
        elif isinstance(token, str):
            assert token.startswith("tok_")
    assert pans == big.truth.deadletters[PAN_IN_CARD_TOKEN]


def test_every_record_carries_every_field(big: Simulation) -> None:
    terminal_fields, batch_fields = 11, 7
    settlement_fields = {9, 11}  # v1 scenarios' notices lack the v2 capture fields (defaults 1/1), v2 ones carry them
    captured = 0
    for line in big.lines:
        if line.valid:
            assert line.record is not None
            if line.source == TERMINAL:
                assert len(line.record) == terminal_fields
            elif line.source == BATCH:
                assert len(line.record) == batch_fields
            else:
                assert len(line.record) in settlement_fields
                captured += "capture_count" in line.record
    assert captured > 0


def test_ids_are_unique_per_record(big: Simulation) -> None:
    by_id: dict[str, dict[str, object]] = {}
    for line in big.lines:
        if not line.valid or line.record is None or line.source == BATCH:  # control records: test_batches.py
            continue
        record_id = line.record.get("event_id") or line.record["notice_id"]
        # the same id again only for a verbatim redelivery
        assert by_id.setdefault(record_id, line.record) == line.record


def test_expectations_follow_the_scenarios(big: Simulation) -> None:
    for expectation in big.truth.orders.values():
        if expectation.scenario == "late":
            assert expectation.outcome == MATCHED_LATE
            assert expectation.alerts == (LATE_SETTLEMENT, MISSING_SETTLEMENT)
    cross = [e for e in big.truth.orders.values() if e.scenario == "duplicate_charge_cross_order"]
    assert sum(e.alerts.count(DUPLICATE_CHARGE) for e in cross) == len(cross) // 2


def test_dead_letters_expected_match_the_rejected_lines(big: Simulation) -> None:
    counts: dict[str, int] = defaultdict(int)
    for line in big.lines:
        if line.rejection:
            counts[line.rejection] += 1
    assert counts == big.truth.deadletters


def test_until_is_past_every_event(big: Simulation) -> None:
    latest = max(line.event_time for line in big.lines if line.event_time is not None)
    assert big.truth.until_ms > latest + RuleConfig().settlement_sla_ms


@pytest.mark.parametrize("partitions", [1, 4])
def test_thin_traffic_gets_pacemakers_so_every_deadline_race_is_met(partitions: int) -> None:
    mix = {"late": 5.0, "orphan_then_approved": 5.0}
    simulation = generate(60, seed=2, fault_rate=0.9, mix=mix, partitions=partitions)
    assert simulation.races
    assert simulation.truth.scenarios.get("pacemaker", 0) > 0
    assert simulation.truth.partitions == partitions
    lateness = simulation.truth.rules.allowed_lateness_ms
    assert unmet_races(simulation.lines, simulation.races, lateness, partitions) == []
    if partitions > 1:  # pacing per partition also paces the single global watermark
        assert unmet_races(simulation.lines, simulation.races, lateness, 1) == []


def test_dense_traffic_meets_the_races_without_pacemakers(big: Simulation) -> None:
    assert big.races
    # only tail pacemakers (past the last unbalanced settlement batch's deadline: sim/pacing.py pace_tail)
    assert big.truth.scenarios.get("pacemaker", 0) == big.truth.notes.get(TAIL_NOTE, 0)
    assert unmet_races(big.lines, big.races, 0) == []


def test_short_span_leaves_out_scenarios_whose_deadlines_do_not_fit() -> None:
    simulation = generate(500, seed=1, span_ms=12 * HOUR, fault_rate=0.5)
    assert "late" in simulation.infeasible and "missing" in simulation.infeasible
    assert "late" not in simulation.truth.scenarios


@pytest.mark.parametrize("partitions", [1, 3])
def test_v2_scenarios_that_resolve_get_their_deadlines_paced(partitions: int) -> None:
    mix = dict.fromkeys(
        ("split_capture_late", "missing_then_failed", "orphan_then_refused", "expired_then_answered", "not_charged"),
        1.0,
    )
    simulation = generate(80, seed=4, fault_rate=0.9, mix=mix, partitions=partitions)
    assert len(simulation.races) >= 40
    assert unmet_races(simulation.lines, simulation.races, 0, partitions) == []
    assert sum(simulation.truth.expected_resolutions().values()) >= len(simulation.races)
