"""The on-call rules (deploy/prometheus/alerts.yml): promtool syntax check and unit tests, and the
conventions on-call relies on (severity, annotations, a runbook section per rule)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
PROM = REPO / "deploy" / "prometheus"
RULES = PROM / "alerts.yml"
RULE_TESTS = PROM / "alerts_test.yml"
RUNBOOK = REPO / "docs" / "runbook.md"

#: the contract's CRITICAL alert kinds (v1, and v2's BATCH_MISMATCH): each must page
CRITICAL_KINDS = ("STATUS_CONFLICT", "ORPHAN_SETTLEMENT", "DUPLICATE_SETTLEMENT", "AMOUNT_MISMATCH", "BATCH_MISMATCH")
#: v2's WARNING kinds with a rule of their own (tickets)
WARNING_KINDS = ("FEE_MISMATCH", "BATCH_INCOMPLETE")
#: rules the on-call issue asks for (renaming one needs the runbook and the tests to follow)
REQUIRED_RULES = {
    "PosreconStatusConflictCritical",
    "PosreconOrphanSettlement",
    "PosreconDuplicateSettlement",
    "PosreconAmountMismatch",
    "PosreconMissingSettlementRateHigh",
    "PosreconLateSettlementRateHigh",
    "PosreconDeadLetterRateHigh",
    "PosreconConsumerLagHigh",
    "PosreconWatermarkLagHigh",
    "PosreconWorkerDown",
    "PosreconWorkerLoopStopped",
    "PosreconAuthorizationLatencyHigh",
    "PosreconPendingSettlementNearSla",
    "PosreconPendingSettlementPastSla",
    "PosreconTransactionsAborting",
    "PosreconBatchMismatch",
    "PosreconFeeMismatch",
    "PosreconBatchIncomplete",
    "PosreconPanInField",
}


def _rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule]


def _run(*args: str, cwd: Path = PROM) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def github_anchors(markdown: str) -> set[str]:
    """Anchors GitHub generates for the headings of a markdown file."""
    anchors = set()
    for line in markdown.splitlines():
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
            anchors.add(slug)
    return anchors


# ------------------------------------------------------------------------------------------- promtool


def test_promtool_check_rules(promtool: str) -> None:
    result = _run(promtool, "check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in result.stdout


def test_promtool_unit_tests_pass(promtool: str) -> None:
    result = _run(promtool, "test", "rules", RULE_TESTS.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests_catch_a_broken_rule(promtool: str, tmp_path: Path) -> None:
    """The unit tests are not vacuous: a rule that no longer fires (threshold raised) fails them."""
    broken = RULES.read_text().replace(
        'max by (job, instance, partition) (posrecon_watermark_lag_seconds{job="posrecon-worker"}) > 900',
        'max by (job, instance, partition) (posrecon_watermark_lag_seconds{job="posrecon-worker"}) > 90000',
    )
    assert broken != RULES.read_text()
    (tmp_path / "alerts.yml").write_text(broken)
    (tmp_path / "alerts_test.yml").write_text(RULE_TESTS.read_text())
    result = _run(promtool, "test", "rules", "alerts_test.yml", cwd=tmp_path)
    assert result.returncode != 0
    assert "PosreconWatermarkLagHigh" in result.stdout + result.stderr


def test_promtool_check_prometheus_config(promtool: str) -> None:
    result = _run(promtool, "check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_alertmanager_config(amtool: str) -> None:
    result = _run(amtool, "check-config", "alertmanager.yml", cwd=REPO / "deploy" / "compose")
    assert result.returncode == 0, result.stdout + result.stderr


# ------------------------------------------------------------------------------------------- conventions


def test_every_rule_has_a_firing_and_a_quiet_test_case() -> None:
    names = {rule["alert"] for rule in _rules()}
    doc = yaml.safe_load(RULE_TESTS.read_text())
    assert doc["rule_files"] == ["alerts.yml"]
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in doc["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert names - firing == set(), "rules without a firing test case"
    assert names - quiet == set(), "rules without a not-firing test case"
    assert (firing | quiet) - names == set(), "test cases for rules that do not exist"


def test_required_rules_exist_and_names_are_unique() -> None:
    names = [rule["alert"] for rule in _rules()]
    assert len(names) == len(set(names))
    assert REQUIRED_RULES - set(names) == set()


def test_severity_and_annotations() -> None:
    for rule in _rules():
        name = rule["alert"]
        assert rule["labels"]["severity"] in ("page", "warning"), name
        annotations = rule["annotations"]
        for key in ("summary", "description", "runbook_url"):
            assert annotations.get(key, "").strip(), f"{name}: no {key}"
        assert annotations["runbook_url"] == f"docs/runbook.md#{name.lower()}", name


def test_critical_alert_kinds_page() -> None:
    for kind in CRITICAL_KINDS:
        paging = [r for r in _rules() if f'kind="{kind}"' in r["expr"] and r["labels"]["severity"] == "page"]
        assert paging, f"no paging rule for {kind}"
        for rule in paging:
            assert "posrecon_alerts_total" in rule["expr"]
    status_conflict = [r for r in _rules() if 'kind="STATUS_CONFLICT"' in r["expr"]]
    assert all('severity="CRITICAL"' in r["expr"] for r in status_conflict), "STATUS_CONFLICT/WARNING must not page"


def test_warning_kinds_of_v2_open_tickets() -> None:
    for kind in WARNING_KINDS:
        rules = [r for r in _rules() if f'kind="{kind}"' in r["expr"]]
        assert rules, f"no rule for {kind}"
        assert all(r["labels"]["severity"] == "warning" for r in rules), kind


def test_rules_count_only_open_alerts() -> None:
    """Every selector of posrecon_alerts_total in a rule has status="OPEN" (contract v2: a RESOLVED record closes
    an alert; counting it would page for the good news) and the severity its kind opens with (never INFO)."""
    selector = re.compile(r"posrecon_alerts_total\{([^}]*)\}")
    seen = 0
    for rule in _rules():
        for labels in selector.findall(rule["expr"]):
            seen += 1
            assert 'status="OPEN"' in labels, f"{rule['alert']}: {labels}"
            assert re.search(r'severity="(CRITICAL|WARNING)"', labels), f"{rule['alert']}: {labels}"
    assert seen >= 3 * len(CRITICAL_KINDS)


def test_every_rule_has_a_runbook_section() -> None:
    anchors = github_anchors(RUNBOOK.read_text())
    rule_names = {rule["alert"] for rule in _rules()}
    for name in rule_names:
        assert name.lower() in anchors, f"docs/runbook.md has no section '## {name}'"
    sections = set(re.findall(r"^## (Posrecon\w+)\s*$", RUNBOOK.read_text(), flags=re.MULTILINE))
    assert sections - rule_names == set(), "runbook sections for rules that do not exist"
    assert "rule-expressions" in anchors  # referenced from alerts.yml


def test_runbook_sections_say_meaning_check_act() -> None:
    text = RUNBOOK.read_text()
    for rule in _rules():
        section = text.split(f"## {rule['alert']}\n", 1)[1].split("\n## ", 1)[0]
        for part in ("**Meaning.**", "**Check.**", "**Act.**"):
            assert part in section, f"{rule['alert']}: runbook section lacks {part}"


@pytest.mark.parametrize("anchor", ["posreconworkerdown", "rule-expressions"])
def test_anchor_helper(anchor: str) -> None:
    assert anchor in github_anchors("# posrecon\n## PosreconWorkerDown\n## Rule expressions\n")
