"""The v1 simulation is pinned: ``--contract v1`` (and the v2 contract with every v2 scenario weighing 0) give,
for the same seed, the very bytes the v1 simulator wrote (hashes taken from the v1 code, commit ba616a1)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from posrecon.config import RuleConfig
from posrecon.sim.generator import generate
from posrecon.sim.mix import V1_WEIGHTS

CASES: list[tuple[dict[str, Any], str, str]] = [
    (
        dict(orders=3000, seed=11, fault_rate=0.5),
        "0b91d0de49d414767f2795b733599d166c829c1c143f64367a9e9beda926cc0f",
        "22bfc83d2a6f680eec32cd8a5e8e15f744e9c429a93801661632f7492b371e5b",
    ),
    (
        dict(orders=1500, seed=5, fault_rate=0.7, partitions=3),
        "677af047378e348abb02bfd026b88666c04a1c49813e42a25ff6bef3d8f99fbe",
        "27eafc448f4e58da080a5e2425c3ccde7c93968f261998e989ef7c907d0ac5e4",
    ),
    (
        dict(
            orders=800, seed=2, rules=RuleConfig(amount_tolerance_minor=3, settlement_sla_ms=7_200_000), fault_rate=0.9
        ),
        "80c2c3f96be0e82a557c3cc1cbda18e7dda09f1cd47b4a8e17797ce773f8819f",
        "152b99e8ca945b832fbbb726a154ee4ee05852016c390c6101e6c29338cb9712",
    ),
]


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.parametrize(("args", "input_sha", "truth_sha"), CASES)
def test_contract_v1_reproduces_the_v1_files(args: dict[str, Any], input_sha: str, truth_sha: str) -> None:
    simulation = generate(**args, contract="v1")
    assert _sha("\n".join(line.to_json_line() for line in simulation.lines)) == input_sha
    assert _sha(json.dumps(simulation.truth.to_json(), indent=1, ensure_ascii=False)) == truth_sha


@pytest.mark.parametrize(("args", "input_sha", "truth_sha"), CASES[:2])
def test_v2_without_v2_scenarios_gives_the_v1_input(args: dict[str, Any], input_sha: str, truth_sha: str) -> None:
    simulation = generate(**args, mix=V1_WEIGHTS)
    assert _sha("\n".join(line.to_json_line() for line in simulation.lines)) == input_sha
    assert simulation.truth.format == "posrecon-truth/2" and not simulation.truth.rules.merchants
