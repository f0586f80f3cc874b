"""The splitter the Prometheus E2E uses to evaluate every operand of an alert rule (tests/deploykit.py)."""

from __future__ import annotations

from pathlib import Path

import yaml

from deploykit import leaf_expressions, without_offsets

RULES = Path(__file__).resolve().parents[3] / "deploy" / "prometheus" / "alerts.yml"


def test_set_operators_split_and_thresholds_drop() -> None:
    expr = """
      (sum by (job) (increase(a_total{job="j", kind="X"}[1h])) > 10)
      and on (job)
      (sum by (job) (rate(a_total[1h])) / on (job) group_left sum by (job) (rate(b_total[1h])) > 0.01)
    """
    assert leaf_expressions(expr) == [
        'sum by (job) (increase(a_total{job="j", kind="X"}[1h]))',
        "sum by (job) (rate(a_total[1h])) / on (job) group_left sum by (job) (rate(b_total[1h]))",
    ]


def test_nested_operands_and_offsets() -> None:
    expr = '(x > 0) or (sum (y unless y offset 5m) and on (i) (up{job="j"} offset 5m == 1))'
    assert leaf_expressions(expr) == ["x", "sum (y unless y offset 5m)", 'up{job="j"} offset 5m']
    assert without_offsets('up{job="j"} offset 5m') == 'up{job="j"}'


def test_words_inside_names_and_strings_are_not_operators() -> None:
    expr = 'sum(posrecon_reconciled_total{outcome=~"MATCHED|orders and more"}) == 0 or absent(x)'
    assert leaf_expressions(expr) == ['sum(posrecon_reconciled_total{outcome=~"MATCHED|orders and more"})', "absent(x)"]


def test_every_rule_of_the_repo_splits_into_balanced_leaves() -> None:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    for rule in (r for g in groups for r in g["rules"]):
        leaves = leaf_expressions(rule["expr"])
        assert leaves, rule["alert"]
        for leaf in leaves:
            assert leaf.count("(") == leaf.count(")") and not leaf.rstrip().endswith(("0", "> 1")), (
                rule["alert"],
                leaf,
            )
