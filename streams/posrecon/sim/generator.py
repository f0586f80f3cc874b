"""Generates a stream of POS traffic with its ground truth: ``generate(...) -> Simulation``.

Deterministic for a seed. ``Simulation.lines`` are in arrival order (sorted by ingest time, stable) and
each is a small typed object (``Line``: source, ingest_time, record or raw garbage text, to_json_line()),
so the same stream can be written as a replay file or produced to Kafka at a target rate.
"""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from posrecon.config import RuleConfig
from posrecon.sim.batching import plan_batches
from posrecon.sim.ledger import ledger_amounts
from posrecon.sim.line import Line
from posrecon.sim.mix import (
    V2_MIX_NAMES,
    ScenarioMix,
    batch_fault_weights,
    default_weights,
    has_batches,
    has_v2_traffic,
)
from posrecon.sim.oracle import cross_order_double_charges
from posrecon.sim.pacing import pace, pace_tail
from posrecon.sim.pan import card_number_runs
from posrecon.sim.population import Population
from posrecon.sim.records import IdMint, RecordFactory
from posrecon.sim.scenarios import NORMAL, SCENARIOS, Emitted, Kit, Race, Scenario
from posrecon.sim.terms import MerchantTerms, draw_pricing, with_pricing
from posrecon.sim.timing import DEADLINE_MARGIN_MS, HOUR, Timing, check_rules
from posrecon.sim.truth import BatchExpectation, Expectation, Truth
from posrecon.sim.vocabulary import (
    BALANCED,
    BATCH,
    CONTRACT_V1,
    CONTRACT_V2,
    CONTRACTS,
    DUPLICATE_CHARGE,
    SETTLEMENT_ID_FIELDS,
    TERMINAL,
    TERMINAL_ID_FIELDS,
)

#: 2026-01-01T00:00:00Z: the default start, so that a seed alone fixes the output
DEFAULT_START_MS = 1_767_225_600_000
DEFAULT_SPAN_MS = 72 * HOUR
DEFAULT_FAULT_RATE = 0.3

__all__ = ["DEFAULT_FAULT_RATE", "DEFAULT_SPAN_MS", "DEFAULT_START_MS", "Line", "Simulation", "generate"]


@dataclass(frozen=True, slots=True)
class Simulation:
    """``lines`` in arrival order; ``truth``; ``infeasible``: scenarios the span had no room for;
    ``races``: deadlines the truth relies on firing before a given line arrives (met, see ``sim.pacing``)."""

    lines: list[Line]
    truth: Truth
    infeasible: tuple[str, ...] = ()
    races: tuple[Race, ...] = ()

    def __iter__(self) -> Iterator[Line]:
        return iter(self.lines)

    def __len__(self) -> int:
        return len(self.lines)


def generate(
    orders: int,
    seed: int,
    rules: RuleConfig | None = None,
    start_ms: int = DEFAULT_START_MS,
    span_ms: int = DEFAULT_SPAN_MS,
    fault_rate: float = DEFAULT_FAULT_RATE,
    mix: Mapping[str, float] | None = None,
    progress: Callable[[int], None] | None = None,
    partitions: int = 1,
    contract: str = CONTRACT_V2,
) -> Simulation:
    """``orders`` order slots of traffic starting over [start_ms, start_ms + span_ms], with its truth.

    ``contract``: v2 (default) draws the v2 scenarios too and its truth says which alerts resolve; when the mix
    draws v2 scenarios, merchant pricing tables are added to the rules (``truth.rules``: write them beside the
    input). v1 gives the v1 simulation byte for byte, as does v2 with every v2 scenario weighing 0 (the input;
    the truth then still says which alerts a v2 engine resolves).
    ``partitions``: the truth holds for one global watermark and for per-partition watermarks on that many
    partitions (pacemaker orders are added where a partition's traffic is too thin to fire a deadline).
    ``progress`` is called with the number of order slots just generated.
    Contract v2 with ``batches`` > 0 in the mix (the default) also cuts the notices into settlement batches with
    control records and batch faults (sim/batching.py); the truth then has ``batches``.
    """
    if orders < 1:
        raise ValueError("orders must be >= 1")
    if span_ms < 1:
        raise ValueError("span must be positive")
    if contract not in CONTRACTS:
        raise ValueError(f"contract must be one of {', '.join(CONTRACTS)}")
    if contract == CONTRACT_V1:
        if mix is not None and any(mix.get(name, 0.0) > 0 for name in V2_MIX_NAMES):
            raise ValueError("a contract v1 simulation cannot draw contract v2 scenarios")
        mix = {**default_weights(CONTRACT_V1), **(mix or {})}
    rules = rules if rules is not None else RuleConfig()
    check_rules(rules)
    rng = random.Random(seed)
    population = Population(rng, orders)
    v2_traffic = contract == CONTRACT_V2 and has_v2_traffic(mix)
    if v2_traffic:
        rules = with_pricing(rules, draw_pricing(seed, [m.merchant_id for m in population.merchants]))
    timing = Timing(rules)
    terms = MerchantTerms(rules, v2=contract == CONTRACT_V2)
    kit = Kit(RecordFactory(rng, population, IdMint(seed), timing, terms))
    windows = {name: _start_window(scenario, timing, start_ms, span_ms) for name, scenario in SCENARIOS.items()}
    chooser = ScenarioMix(fault_rate, mix, {name for name, window in windows.items() if window is not None})

    emitted: list[Emitted] = []
    slots = 0
    while slots < orders:
        scenario = SCENARIOS[chooser.pick(rng, orders - slots)]
        window = windows[scenario.name]
        assert window is not None
        emitted.append(scenario.build(kit, rng.randint(*window)))
        slots += scenario.orders
        if progress is not None:
            progress(scenario.orders)

    lines = [line for em in emitted for line in em.lines]
    lines.sort(key=lambda line: line.ingest_time)
    races = tuple(race for em in emitted for race in em.races)
    batches: dict[str, BatchExpectation] = {}
    if contract == CONTRACT_V2 and has_batches(mix):
        plan = plan_batches(
            lines,
            seed,
            timing,
            terms,
            {m.merchant_id: m.currency for m in population.merchants},
            (order_id for em in emitted if em.scenario == NORMAL for order_id in em.expectations),
            fault_rate,
            batch_fault_weights(mix),
            start_ms + span_ms,
        )
        lines, races, batches = plan.lines, races + tuple(plan.races), plan.batches
    emitted.extend(pace(kit, lines, races, partitions))
    if batches:  # the batches decided only by their deadline near the end (see pace_tail)
        emitted.extend(pace_tail(kit, lines, _batch_deadlines_due(lines, rules, batches), partitions))

    expectations: dict[str, Expectation] = {}
    for em in emitted:
        expectations.update(em.expectations)
    if contract == CONTRACT_V1:  # v1 knows no resolution
        expectations = {key: dataclasses.replace(exp, resolved=()) for key, exp in expectations.items()}
    for charge in cross_order_double_charges(lines, rules.duplicate_charge_window_ms):
        resolved = charge.resolved and contract == CONTRACT_V2
        expectations[charge.order_id] = expectations[charge.order_id].with_alert(DUPLICATE_CHARGE, resolved)
    if contract == CONTRACT_V2:
        _refuse_stray_card_numbers(lines)
        for order_id, amounts in ledger_amounts(lines).items():
            exp = expectations.get(order_id)
            if exp is not None and exp.outcome is not None:
                expectations[order_id] = dataclasses.replace(exp, amounts=tuple(amounts))

    truth = Truth(
        rules=rules,
        until_ms=max([_until(lines, rules), *(_decided_by(line, rules) for line in lines if line.source == BATCH)]),
        orders=expectations,
        deadletters=dict(Counter(line.rejection for line in lines if line.rejection is not None)),
        scenarios=dict(Counter(em.scenario for em in emitted)),
        seed=seed,
        start_ms=start_ms,
        span_ms=span_ms,
        fault_rate=fault_rate,
        lines=len(lines),
        notes=dict(Counter(note for em in emitted for note in em.notes)),
        partitions=partitions,
        contract=contract,
        batches=batches,
    )
    return Simulation(lines, truth, tuple(chooser.infeasible), races)


def _batch_deadlines_due(lines: list[Line], rules: RuleConfig, batches: Mapping[str, BatchExpectation]) -> int:
    """The watermark that passes the deadline (closed_at + grace + lateness) of every valid control record of a
    batch that does not balance or gets an alert (one that balances is decided without its deadline)."""
    unbalanced = {batch_id for batch_id, exp in batches.items() if exp.status != BALANCED or exp.alerts}
    return max(
        (
            int(line.record["closed_at"]) + rules.batch_grace_ms + rules.allowed_lateness_ms
            for line in lines
            if line.source == BATCH and line.valid and line.record is not None and line.record["batch_id"] in unbalanced
        ),
        default=-(2**63),
    )


def _decided_by(control: Line, rules: RuleConfig) -> int:
    """A ``replay --until`` value past the deadline of a batch's control record."""
    assert control.record is not None
    return int(control.record["closed_at"]) + rules.batch_grace_ms + rules.allowed_lateness_ms + HOUR


def _refuse_stray_card_numbers(lines: list[Line]) -> None:
    """A valid line must hold no card number in a scanned field (e.g. an order id minted from a huge seed)."""
    for line in lines:
        if not line.valid or line.record is None:
            continue
        for name in TERMINAL_ID_FIELDS if line.source == TERMINAL else SETTLEMENT_ID_FIELDS:
            value = line.record.get(name)
            if isinstance(value, str) and len(value) >= 13 and card_number_runs(value):
                raise ValueError(f"a valid record's {name} holds a card number (choose another seed)")


def _start_window(scenario: Scenario, timing: Timing, start_ms: int, span_ms: int) -> tuple[int, int] | None:
    """Where orders of this scenario may start; None when the span leaves no room for its deadlines."""
    end = start_ms + span_ms
    if scenario.horizon is None:
        return start_ms, end
    latest = end - 2 * DEADLINE_MARGIN_MS - scenario.horizon(timing)
    return (start_ms, latest) if latest >= start_ms else None


def _until(lines: list[Line], rules: RuleConfig) -> int:
    """A ``replay --until`` value past every deadline any record of the file can set."""
    latest = max((t for t in (line.event_time for line in lines) if t is not None), default=0)
    return (
        latest + rules.settlement_sla_ms + rules.orphan_grace_ms + rules.order_ttl_ms + rules.allowed_lateness_ms + HOUR
    )
