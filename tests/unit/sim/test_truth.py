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
    assert doc["format"] == "posrecon-truth/2" and doc["contract"] == "v2"
    shapes = {frozenset(order) for order in doc["orders"].values()}
    base = {"outcome", "alerts", "resolved", "scenario"}
    assert shapes == {frozenset(base), frozenset({*base, "amounts"})}


def test_foreign_file_is_refused() -> None:
    with pytest.raises(ValueError):
        Truth.from_json({"format": "something-else"})


def test_v1_truth_keeps_format_1_and_loads_without_resolutions(tmp_path: Path) -> None:
    truth = generate(600, seed=3, fault_rate=0.8, contract="v1").truth
    doc = truth.to_json()
    assert doc["format"] == "posrecon-truth/1" and "contract" not in doc and "resolved" not in doc
    assert set(next(iter(doc["orders"].values()))) == {"outcome", "alerts", "scenario"}
    assert "amount_tolerance_bps" not in doc["rules"]
    write_truth(tmp_path / "truth.json", truth)
    loaded = read_truth(tmp_path / "truth.json")
    assert loaded == truth and loaded.contract == "v1"
    assert all(not exp.resolved for exp in loaded.orders.values())


def test_v2_truth_names_its_resolutions_and_config() -> None:
    truth = generate(2_000, seed=3, fault_rate=0.8).truth
    resolved = truth.expected_resolutions()
    assert {"MISSING_SETTLEMENT", "ORPHAN_SETTLEMENT", "EXPIRED_ORDER", "STATUS_CONFLICT"} <= set(resolved)
    assert truth.rules.merchants  # the pricing tables the simulation used
    assert Truth.from_json(truth.to_json()) == truth


def test_an_alert_cannot_resolve_without_opening() -> None:
    with pytest.raises(ValueError, match="never opened"):
        Expectation("MATCHED", ("LATE_SETTLEMENT",), resolved=("MISSING_SETTLEMENT",))
    exp = Expectation(None, ("DUPLICATE_CHARGE",)).with_alert("DUPLICATE_CHARGE", resolved=True)
    assert exp.resolved == ("DUPLICATE_CHARGE",) and Expectation.from_json(exp.to_json()) == exp
