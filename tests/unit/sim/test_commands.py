"""``posrecon simulate`` and ``posrecon evaluate`` through the CLI entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from posrecon.cli import main
from posrecon.sim.truth import read_truth


def _write_jsonl(path: Path, rows: list[dict[str, object]]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def _perfect_output(truth_path: Path, out: Path) -> None:
    truth = read_truth(truth_path)
    out.mkdir()
    _write_jsonl(out / "reconciled.jsonl", [
        {"order_id": o, "outcome": e.outcome, "revision": 1} for o, e in truth.orders.items() if e.outcome
    ])  # fmt: skip
    _write_jsonl(out / "alerts.jsonl", [
        {"alert_id": f"{o}-{i}", "kind": k, "order_id": o} for o, e in truth.orders.items()
        for i, k in enumerate(e.alerts)
    ])  # fmt: skip
    _write_jsonl(out / "deadletter.jsonl", [
        {"reason": r} for r, n in truth.deadletters.items() for _ in range(n)
    ])  # fmt: skip


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
