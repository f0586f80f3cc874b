"""``posrecon simulate`` and ``posrecon evaluate`` through the CLI entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from posrecon.cli import main
from posrecon.sim.truth import read_truth

from .conftest import perfect_rows


def _write_jsonl(path: Path, rows: list[dict[str, object]]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def _perfect_output(truth_path: Path, out: Path) -> None:
    out.mkdir()
    rows, alerts, dead, batches = perfect_rows(read_truth(truth_path))
    _write_jsonl(out / "reconciled.jsonl", rows)
    _write_jsonl(out / "alerts.jsonl", alerts)
    _write_jsonl(out / "deadletter.jsonl", dead)
    _write_jsonl(out / "batch-reconciled.jsonl", batches)


def test_simulate_writes_input_and_truth(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sim = tmp_path / "sim"
    assert main(["simulate", "--orders", "300", "--out", str(sim), "--seed", "5", "--fault-rate", "0.5"]) == 0
    lines = (sim / "input.jsonl").read_text(encoding="utf-8").splitlines()
    truth = read_truth(sim / "truth.json")
    assert len(lines) == truth.lines and truth.seed == 5
    assert "until_ms" in capsys.readouterr().out


def test_simulate_reads_the_rule_config(tmp_path: Path) -> None:
    config = tmp_path / "rules.toml"
    config.write_text("settlement_sla_ms = 7200000\namount_tolerance_minor = 4\n", encoding="utf-8")
    assert main(["simulate", "--orders", "50", "--out", str(tmp_path / "s"), "--config", str(config)]) == 0
    rules = read_truth(tmp_path / "s" / "truth.json").rules
    assert (rules.settlement_sla_ms, rules.amount_tolerance_minor) == (7_200_000, 4)


def test_evaluate_perfect_and_imperfect(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sim, out = tmp_path / "sim", tmp_path / "out"
    assert main(["simulate", "--orders", "400", "--out", str(sim), "--fault-rate", "0.6"]) == 0
    _perfect_output(sim / "truth.json", out)
    args = ["evaluate", "--truth", str(sim / "truth.json"), "--out", str(out), "--require-perfect"]
    assert main([*args, "--json", str(tmp_path / "result.json")]) == 0
    assert "verdict: PERFECT" in capsys.readouterr().out
    assert json.loads((tmp_path / "result.json").read_text())["perfect"] is True

    with open(out / "alerts.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"alert_id": "extra", "kind": "AMOUNT_MISMATCH", "order_id": "ord-x"}) + "\n")
    assert main(args) == 1
    assert main(args[:-1]) == 0  # without --require-perfect the verdict is only reported
    assert "NOT PERFECT" in capsys.readouterr().out


def test_evaluate_reports_missing_files(tmp_path: Path) -> None:
    sim = tmp_path / "sim"
    assert main(["simulate", "--orders", "20", "--out", str(sim)]) == 0
    assert main(["evaluate", "--truth", str(sim / "truth.json"), "--out", str(tmp_path / "nothing")]) == 2


def test_simulate_writes_the_config_its_truth_assumes(tmp_path: Path) -> None:
    from posrecon.config import load_rules

    sim = tmp_path / "sim"
    assert main(["simulate", "--orders", "300", "--out", str(sim), "--quiet"]) == 0
    truth = read_truth(sim / "truth.json")
    assert truth.config_file == "posrecon.toml" and truth.contract == "v2"
    assert load_rules(sim / "posrecon.toml") == truth.rules and truth.rules.merchants


def test_contract_v1_writes_the_v1_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    v1, v2_without_v2 = tmp_path / "v1", tmp_path / "v2"
    assert main(["simulate", "--orders", "400", "--out", str(v1), "--contract", "v1", "--fault-rate", "0.7"]) == 0
    assert not (v1 / "posrecon.toml").exists()
    assert json.loads((v1 / "truth.json").read_text())["format"] == "posrecon-truth/1"
    from posrecon.sim.mix import V2_MIX_NAMES

    zero = ",".join(f"{name}=0" for name in V2_MIX_NAMES)
    assert main(["simulate", "--orders", "400", "--out", str(v2_without_v2), "--fault-rate", "0.7", "--mix", zero]) == 0
    assert (v1 / "input.jsonl").read_bytes() == (v2_without_v2 / "input.jsonl").read_bytes()
    with pytest.raises(SystemExit):
        main(["simulate", "--orders", "5", "--out", str(tmp_path / "x"), "--contract", "v3"])
    args = ["simulate", "--orders", "5", "--out", str(tmp_path / "x"), "--contract", "v1", "--mix", "not_charged=1"]
    assert main(args) == 2
    assert "contract v2 scenario" in capsys.readouterr().err
