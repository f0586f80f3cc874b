"""truth.json round-trips."""

from __future__ import annotations

from pathlib import Path

import pytest

from posrecon.config import RuleConfig
from posrecon.sim.generator import generate
from posrecon.sim.truth import Expectation, Truth, read_truth, write_truth


def test_generated_truth_round_trips_through_json(tmp_path: Path) -> None:
    truth = generate(1_000, seed=9, rules=RuleConfig(amount_tolerance_minor=3), fault_rate=0.5).truth
    write_truth(tmp_path / "truth.json", truth)
    assert read_truth(tmp_path / "truth.json") == truth
    assert Truth.from_json(truth.to_json()) == truth


def test_expectation_alerts_are_sorted_and_may_repeat() -> None:
    exp = Expectation(None, ("MISSING_SETTLEMENT", "DUPLICATE_CHARGE")).with_alert("DUPLICATE_CHARGE")
    assert exp.alerts == ("DUPLICATE_CHARGE", "DUPLICATE_CHARGE", "MISSING_SETTLEMENT")
    assert Expectation.from_json(exp.to_json()) == exp


def test_truth_json_shape() -> None:
    doc = generate(200, seed=1).truth.to_json()
    assert {"rules", "until_ms", "orders", "deadletters", "scenarios"} <= set(doc)
    some = next(iter(doc["orders"].values()))
    assert set(some) == {"outcome", "alerts", "scenario"}


def test_foreign_file_is_refused() -> None:
    with pytest.raises(ValueError):
        Truth.from_json({"format": "something-else"})
