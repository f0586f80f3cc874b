"""simulate → replay → evaluate: the engine reproduces the simulator's ground truth exactly.

This is the oracle doing its job; it needs the replay command (skipped while that is absent).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from posrecon.sim.command import write_input
from posrecon.sim.evaluate import read_jsonl
from posrecon.sim.generator import generate
from posrecon.sim.scoring import evaluate

replay = pytest.importorskip("posrecon.replay")


@pytest.mark.parametrize(("orders", "seed", "partitions"), [(2_000, 21, 1), (2_000, 22, 4), (150, 23, 3)])
def test_replay_output_matches_the_truth(tmp_path: Path, orders: int, seed: int, partitions: int) -> None:
    simulation = generate(orders, seed, fault_rate=0.6, partitions=partitions)
    write_input(simulation, tmp_path / "input.jsonl", progress=False)
    out = tmp_path / "out"
    replay.run_replay(
        tmp_path / "input.jsonl",
        out,
        simulation.truth.rules,
        simulation.truth.until_ms,
        partitions,
        progress=False,
    )
    ev = evaluate(
        simulation.truth,
        read_jsonl(out / "reconciled.jsonl"),
        read_jsonl(out / "alerts.jsonl"),
        read_jsonl(out / "deadletter.jsonl"),
    )
    assert ev.perfect, json.dumps(ev.to_json(examples=10)["examples"], indent=1)
