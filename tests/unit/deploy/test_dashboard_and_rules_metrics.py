"""Every metric the Grafana dashboard and the alert rules query is one the worker exports.

The exported names come from the worker's own registry: build ``posrecon.metrics.WorkerMetrics()``,
touch every labelled metric once so that it shows up, and read ``generate_latest``. Metric names are
pulled out of the PromQL with a small lexer (strings, label matchers, ranges and label lists removed;
identifiers followed by ``(`` are functions; keywords and aggregation operators ignored). Label names
and label values used in matchers are checked too (a kind, reason, outcome or age that the worker never
emits would make a panel or a rule silently empty).
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.metrics import MetricWrapperBase

from posrecon.engine.model import InvalidReason
from posrecon.metrics import PENDING_AGE_BUCKETS, WorkerMetrics
from posrecon.serde.schemas import load_schema_json

REPO = Path(__file__).resolve().parents[3]
DASHBOARD_DIR = REPO / "deploy" / "grafana" / "dashboards"
RULES = REPO / "deploy" / "prometheus" / "alerts.yml"

#: series Prometheus itself adds for every target
PROMETHEUS_SERIES = {"up": {"job", "instance"}}
#: labels Prometheus attaches to every scraped sample (target labels of prometheus.yml / the k8s scrape)
TARGET_LABELS = {"job", "instance", "app", "env", "namespace", "node"}

KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "offset",
    "bool",
    "and",
    "or",
    "unless",
    "sum",
    "avg",
    "min",
    "max",
    "count",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    "group",
    "limitk",
    "limit_ratio",
    "inf",
    "nan",
    "atan2",
    "start",
    "end",
}

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_IDENT = re.compile(r"(?<![\w$.:])([A-Za-z_:][\w:]*)")
_SELECTOR = re.compile(r"(?<![\w$.:])([A-Za-z_:][\w:]*)\s*\{([^}]*)\}")
_MATCHER = re.compile(r'([A-Za-z_]\w*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')


# ------------------------------------------------------------------------------------------- PromQL lexing


def metric_names(expr: str) -> set[str]:
    """Metric names referenced by a PromQL expression."""
    e = _STRING.sub('""', expr)
    e = re.sub(r"\{[^}]*\}", "{}", e)
    e = re.sub(r"\[[^\]]*\]", "[]", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", r" \1 ", e)
    names = set()
    for m in _IDENT.finditer(e):
        name = m.group(1)
        if name.lower() in KEYWORDS:
            continue
        if e[m.end() :].lstrip().startswith("("):  # a function call
            continue
        names.add(name)
    return names


def selectors(expr: str) -> Iterator[tuple[str, list[tuple[str, str, str]]]]:
    """(metric name, [(label, operator, value)]) for every ``name{…}`` selector."""
    for m in _SELECTOR.finditer(expr):
        yield m.group(1), _MATCHER.findall(m.group(2))


def grafana_exprs(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL query of a dashboard: panel targets (rows included) and query variables."""
    exprs: list[str] = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            exprs.extend(t["expr"] for t in panel.get("targets", []) if t.get("expr"))
            walk(panel.get("panels", []))

    walk(dashboard.get("panels", []))
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("type") != "query":
            continue
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        m = re.fullmatch(r"\s*label_values\((.*),\s*\w+\)\s*", query)
        exprs.append(m.group(1) if m else query)
    return exprs


def rule_exprs() -> list[str]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule["expr"] for group in doc["groups"] for rule in group["rules"]]


def dashboards() -> list[Path]:
    return sorted(DASHBOARD_DIR.glob("*.json"))


# ------------------------------------------------------------------------------------------- the worker's side


@pytest.fixture(scope="module")
def exported() -> dict[str, set[str]]:
    """Sample name -> label names, as the worker's /metrics exposes them."""
    metrics = WorkerMetrics()
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase) and value._labelnames:
            value.labels(**dict.fromkeys(value._labelnames, "x"))
    text = generate_latest(metrics.registry).decode()
    samples: dict[str, set[str]] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"([A-Za-z_:][\w:]*)(?:\{(.*)\})?\s", line)
        assert m, line
        labels = set(re.findall(r'(\w+)="', m.group(2) or ""))
        samples.setdefault(m.group(1), set()).update(labels)
    for name, labels in PROMETHEUS_SERIES.items():
        samples[name] = set(labels)
    return samples


def _enum_symbols() -> dict[str, set[str]]:
    """Enum name -> symbols, from the contract's Avro schemas."""
    found: dict[str, set[str]] = {}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "enum":
                found[node["name"].rsplit(".", 1)[-1]] = set(node["symbols"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for record in ("TerminalEvent", "SettlementNotice", "ReconciledOrder", "Alert", "BatchReconciliation"):
        walk(load_schema_json(record))
    return found


@pytest.fixture(scope="module")
def label_values() -> dict[str, set[str]]:
    """The values the worker puts into each low-cardinality label (``metric:label`` where a label name means
    different things on two metrics)."""
    enums = _enum_symbols()
    return {
        "kind": enums["AlertKind"],
        "severity": enums["Severity"],
        "posrecon_alerts_total:status": enums["AlertStatus"],
        "posrecon_batch_reconciled_total:status": enums["BatchStatus"],
        "outcome": enums["Outcome"],
        "reason": {r.value for r in InvalidReason},
        "age": {name for name, _ in PENDING_AGE_BUCKETS},
        "result": {"committed", "aborted"},
        "source": {"terminal", "settlement", "batch"},
        "type": enums["TerminalEventType"] | enums["SettlementStatus"] | {"CONTROL"},
        "job": {"posrecon-worker", "prometheus", "alertmanager"},
    }


def unknown_metrics(exprs: list[str], exported: dict[str, set[str]]) -> dict[str, set[str]]:
    """expr -> names it uses that nothing exports."""
    bad = {}
    for expr in exprs:
        missing = metric_names(expr) - set(exported)
        if missing:
            bad[expr] = missing
    return bad


def bad_matchers(exprs: list[str], exported: dict[str, set[str]], values: dict[str, set[str]]) -> list[str]:
    problems = []
    for expr in exprs:
        for name, matchers in selectors(expr):
            for label, op, value in matchers:
                if name in exported and label not in exported[name] | TARGET_LABELS:
                    problems.append(f"{name} has no label {label!r}: {expr}")
                allowed = values.get(f"{name}:{label}", values.get(label))
                if allowed is None or "$" in value or op not in ("=", "=~"):
                    continue
                wanted = value.split("|") if op == "=~" else [value]
                for v in wanted:
                    if v and v not in allowed:
                        problems.append(f"{label}={v!r} is never emitted: {expr}")
    return problems


# ------------------------------------------------------------------------------------------- lexer tests


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sum by (kind) (increase(posrecon_alerts_total{kind="X", job=~"$job"}[5m])) > 0', {"posrecon_alerts_total"}),
        ("histogram_quantile(0.95, sum by (le) (rate(a_bucket[$__rate_interval])))", {"a_bucket"}),
        ("x unless x offset 5m and on (job, instance) (up offset 5m == 1)", {"x", "up"}),
        ("a / on (job) group_left sum by (job) (rate(b[10m])) > 0.01", {"a", "b"}),
        ('(sum by (job) (up{job="w"}) == 0) or absent(up{job="w"})', {"up"}),
        ("sum(rate(m[1h])) * 3600 > 1e3", {"m"}),
        ("max without (partition) (posrecon_watermark_lag_seconds)", {"posrecon_watermark_lag_seconds"}),
    ],
)
def test_metric_name_extraction(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_a_made_up_metric_is_flagged(exported: dict[str, set[str]]) -> None:
    exprs = [
        "sum(rate(posrecon_events_total[5m]))",
        'sum by (kind) (increase(posrecon_alerts_totl{kind="AMOUNT_MISMATCH"}[5m]))',  # typo
        "histogram_quantile(0.95, sum by (le) (rate(posrecon_made_up_seconds_bucket[5m])))",
        "posrecon_open_orders_total",  # a gauge has no _total
    ]
    assert unknown_metrics(exprs, exported) == {
        exprs[1]: {"posrecon_alerts_totl"},
        exprs[2]: {"posrecon_made_up_seconds_bucket"},
        exprs[3]: {"posrecon_open_orders_total"},
    }


def test_a_wrong_label_or_value_is_flagged(exported: dict[str, set[str]], label_values: dict[str, set[str]]) -> None:
    problems = bad_matchers(
        [
            'posrecon_alerts_total{reason="DECODE_ERROR"}',  # alerts have no reason label
            'posrecon_alerts_total{kind="AMOUNT_MISMATCHED"}',  # not an AlertKind
            'posrecon_reconciled_total{outcome=~"MATCHED|MATCHED_LAT"}',
            'posrecon_pending_settlements{age="ge_24h"}',  # fine
            'posrecon_alerts_total{status="BALANCED"}',  # a batch status, not an alert status
            'posrecon_batch_reconciled_total{status="MISMATCH"}',  # fine
        ],
        exported,
        label_values,
    )
    assert len(problems) == 4, problems


def test_exported_names_come_from_the_registry(exported: dict[str, set[str]]) -> None:
    assert {"posrecon_alerts_total", "posrecon_authorization_latency_seconds_bucket", "posrecon_worker_up"} <= set(
        exported
    )
    assert exported["posrecon_alerts_total"] >= {"kind", "severity"}
    assert "le" in exported["posrecon_settlement_lag_seconds_bucket"]


# ------------------------------------------------------------------------------------------- the files


def test_there_is_a_dashboard() -> None:
    assert [p.name for p in dashboards()] == ["posrecon.json"]


@pytest.mark.parametrize("path", dashboards(), ids=lambda p: p.name)
def test_dashboard_metrics_are_exported(path: Path, exported: dict[str, set[str]]) -> None:
    exprs = grafana_exprs(json.loads(path.read_text()))
    assert len(exprs) >= 20
    assert unknown_metrics(exprs, exported) == {}


def test_alert_rule_metrics_are_exported(exported: dict[str, set[str]]) -> None:
    exprs = rule_exprs()
    assert exprs
    assert unknown_metrics(exprs, exported) == {}


@pytest.mark.parametrize("path", dashboards(), ids=lambda p: p.name)
def test_dashboard_and_rule_matchers(
    path: Path, exported: dict[str, set[str]], label_values: dict[str, set[str]]
) -> None:
    exprs = grafana_exprs(json.loads(path.read_text())) + rule_exprs()
    assert bad_matchers(exprs, exported, label_values) == []


def test_dashboard_covers_the_worker(exported: dict[str, set[str]]) -> None:
    """The panels the on-call issue asks for are there (by the metrics they query)."""
    used: set[str] = set()
    for path in dashboards():
        for expr in grafana_exprs(json.loads(path.read_text())):
            used |= metric_names(expr)
    wanted = {
        "posrecon_events_total",
        "posrecon_reconciled_total",
        "posrecon_alerts_total",
        "posrecon_consumer_lag",
        "posrecon_watermark_lag_seconds",
        "posrecon_settlement_lag_seconds_bucket",
        "posrecon_authorization_latency_seconds_bucket",
        "posrecon_open_orders",
        "posrecon_pending_settlements",
        "posrecon_deadletters_total",
        "posrecon_transactions_total",
        # contract v2 and batches
        "posrecon_alert_time_to_resolve_seconds_bucket",
        "posrecon_fee_variance_minor_bucket",
        "posrecon_matched_settled_minor_total",
        "posrecon_matched_fee_minor_total",
        "posrecon_refund_ratio_bucket",
        "posrecon_batch_reconciled_total",
        "posrecon_batch_unbalanced_minor_bucket",
    }
    assert wanted - used == set()


def test_dashboard_structure() -> None:
    dash = json.loads((DASHBOARD_DIR / "posrecon.json").read_text())
    assert dash["uid"] and dash["title"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    provisioned = yaml.safe_load((REPO / "deploy/grafana/provisioning/datasources/prometheus.yaml").read_text())
    assert variables["datasource"]["current"]["value"] == provisioned["datasources"][0]["uid"]
    for panel in dash["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
    heatmaps = [p for p in dash["panels"] if p["type"] == "heatmap"]
    assert {t["format"] for p in heatmaps for t in p["targets"]} == {"heatmap"}


def test_dashboard_queries_parse(promtool: str, tmp_path: Path) -> None:
    """promtool parses every dashboard query (Grafana variables replaced by sample values)."""
    exprs = []
    for path in dashboards():
        exprs += grafana_exprs(json.loads(path.read_text()))
    subst = {
        "$__rate_interval": "1m",
        "$__interval": "1m",
        "$__range": "1h",
        "$job": "posrecon-worker",
        "$instance": ".*",
    }
    rules = []
    for i, expr in enumerate(exprs):
        for var, value in subst.items():
            expr = expr.replace(var, value)
        assert "$" not in expr, expr
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    path = tmp_path / "dashboard_queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
