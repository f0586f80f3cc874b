"""observe_all: the same exposition as one observe() per value (it uses prometheus-client's fields); the worker's
counts of v2 and batch outputs (app/telemetry.py) reach the right series."""

from __future__ import annotations

from confluent_kafka import Message
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from posrecon.app.outbox import Outbox
from posrecon.app.telemetry import (
    Telemetry,
    count_batch_decisions,
    observe_money,
    observe_resolve_latencies,
)
from posrecon.config import RuleConfig, Settings
from posrecon.engine.cards import CardIndex, CardKey, CardSighting
from posrecon.engine.decision_money import DecisionMoney
from posrecon.engine.model import (
    RECONCILED_FIELDS,
    Alert,
    AlertKind,
    BatchReconciliation,
    BatchStatus,
    ReconciledOrder,
    Severity,
)
from posrecon.engine.output_feed import alert_label
from posrecon.engine.sighting_records import pack_sightings, sighting_row
from posrecon.metrics import AUTH_BUCKETS, LATENCY_BUCKETS, WorkerMetrics, observe_all


def _histograms(buckets: tuple[float, ...]) -> tuple[CollectorRegistry, Histogram, CollectorRegistry, Histogram]:
    one, many = CollectorRegistry(), CollectorRegistry()
    return (
        one,
        Histogram("h", "h", buckets=buckets, registry=one),
        many,
        Histogram("h", "h", buckets=buckets, registry=many),
    )


def _samples(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    return {
        (s.name, s.labels.get("le", "")): s.value
        for m in registry.collect()
        for s in m.samples
        if not s.name.endswith("_created")
    }


amounts = st.lists(
    st.sampled_from(LATENCY_BUCKETS + AUTH_BUCKETS) | st.floats(min_value=0, max_value=1000) | st.integers(0, 400),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(amounts, max_size=4), st.sampled_from([LATENCY_BUCKETS, AUTH_BUCKETS]))
def test_observe_all_counts_like_observe(batches: list[list[float]], buckets: tuple[float, ...]) -> None:
    one, h_one, many, h_many = _histograms(buckets)
    for batch in batches:
        for amount in batch:
            h_one.observe(amount)
        observe_all(h_many, batch)
    expected, got = _samples(one), _samples(many)
    assert expected.keys() == got.keys()
    for key, value in expected.items():
        # the sum may differ in the last bits (added per batch, not per value); the buckets may not
        assert abs(got[key] - value) <= 1e-9 * max(1.0, abs(value)), (key, got[key], value)
    assert {k: v for k, v in got.items() if k[0] != "h_sum"} == {k: v for k, v in expected.items() if k[0] != "h_sum"}


def test_observe_all_on_a_bound_and_above_the_last_one() -> None:
    registry, h, _, _ = _histograms((1.0, 2.0))
    observe_all(h, [1.0, 1.5, 2.0, 99.0, 0.0])
    text = generate_latest(registry).decode()
    assert 'h_bucket{le="1.0"} 2.0' in text
    assert 'h_bucket{le="2.0"} 4.0' in text
    assert 'h_bucket{le="+Inf"} 5.0' in text
    assert "h_count 5.0" in text
    assert "h_sum 103.5" in text


# ------------------------------------------------------------------------------------------- v2 and batch metrics


def _reconciled(outcome: str, **fields: object) -> ReconciledOrder:
    rec: dict[str, object] = dict.fromkeys(RECONCILED_FIELDS)
    rec.update(order_id="o1", merchant_id="m1", terminal_id="t1", outcome=outcome, currency="EUR", revision=1)
    rec.update(fields)
    return rec  # type: ignore[return-value]


def _alert(kind: str, severity: str, status: str | None) -> Alert:
    alert: dict[str, object] = {"kind": kind, "severity": severity}
    if status is not None:
        alert["status"] = status
    return alert  # type: ignore[return-value]


def _value(metrics: WorkerMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_alerts_are_counted_by_kind_severity_and_status() -> None:
    metrics = WorkerMetrics()
    telemetry = Telemetry(metrics)
    counts: dict[tuple[str, ...], int] = {}
    for alert in (
        _alert("MISSING_SETTLEMENT", "WARNING", "OPEN"),
        _alert("MISSING_SETTLEMENT", "INFO", "RESOLVED"),
        _alert("MISSING_SETTLEMENT", "INFO", "RESOLVED"),
        _alert("AMOUNT_MISMATCH", "CRITICAL", None),  # a dict without status (v1 shape) is OPEN
    ):
        label = alert_label(alert)
        counts[label] = counts.get(label, 0) + 1
    telemetry.flush_counts(counts)
    total = "posrecon_alerts_total"
    assert _value(metrics, total, kind="MISSING_SETTLEMENT", severity="WARNING", status="OPEN") == 1
    assert _value(metrics, total, kind="MISSING_SETTLEMENT", severity="INFO", status="RESOLVED") == 2
    assert _value(metrics, total, kind="AMOUNT_MISMATCH", severity="CRITICAL", status="OPEN") == 1


def test_every_open_and_resolved_alert_series_starts_at_zero() -> None:
    text = generate_latest(WorkerMetrics().registry).decode()
    for kind in AlertKind:
        for severity in Severity:
            assert f'posrecon_alerts_total{{kind="{kind.value}",severity="{severity.value}",status="OPEN"}} 0.0' in text
        assert f'posrecon_alerts_total{{kind="{kind.value}",severity="INFO",status="RESOLVED"}} 0.0' in text
        assert f'kind="{kind.value}",severity="WARNING",status="RESOLVED"' not in text  # a resolution is INFO
    for status in BatchStatus:
        assert f'posrecon_batch_reconciled_total{{status="{status.value}"}} 0.0' in text


def test_matched_money_fee_variance_and_refund_ratio() -> None:
    metrics = WorkerMetrics()
    counts: dict[tuple[str, ...], int] = {}
    rules = RuleConfig.from_mapping({"merchants": {"priced": {"fee_rate_bps": 150, "fee_fixed_minor": 10}}})
    money = DecisionMoney(rules)
    for rec in [
        # 1.5 % of 10000 + 10 = 160: charged 163, off by 3
        _reconciled(
            "MATCHED", merchant_id="priced", settled_amount_minor=10_000, fee_minor=163, settlement_lag_ms=1_500
        ),
        _reconciled(  # exact; settled before the approval's time: lag 0
            "MATCHED_LATE", merchant_id="priced", settled_amount_minor=2_000, fee_minor=40, settlement_lag_ms=-20
        ),
        _reconciled("MATCHED", settled_amount_minor=500, fee_minor=7),  # no pricing: money only
        _reconciled("MATCHED", currency="USD", settled_amount_minor=900, fee_minor=None),
        _reconciled(  # not a matched decision
            "AMOUNT_MISMATCH", settled_amount_minor=10**6, fee_minor=10**4, settlement_lag_ms=99_000
        ),
        _reconciled("PARTIALLY_REVERSED", settled_amount_minor=1_000, reversed_amount_minor=250),
        _reconciled("REVERSED", settled_amount_minor=1_000, reversed_amount_minor=1_000),
        _reconciled("SETTLEMENT_FAILED", settled_amount_minor=None),
    ]:
        money.add(rec, rec["outcome"])
    money.counted(counts)
    observe_money(metrics, money)
    assert (money.lags, money.variances, money.ratios, money.settled_by) == ([], [], [], {})  # emptied
    assert counts == {
        ("matched_settled", "EUR"): 12_500,
        ("matched_fee", "EUR"): 210,
        ("matched_settled", "USD"): 900,
    }
    Telemetry(metrics).flush_counts(counts)
    assert _value(metrics, "posrecon_matched_settled_minor_total", currency="EUR") == 12_500
    assert _value(metrics, "posrecon_matched_fee_minor_total", currency="EUR") == 210
    assert _value(metrics, "posrecon_settlement_lag_seconds_count") == 2
    assert _value(metrics, "posrecon_settlement_lag_seconds_sum") == 1.5
    assert _value(metrics, "posrecon_fee_variance_minor_count") == 2
    assert _value(metrics, "posrecon_fee_variance_minor_sum") == 3
    assert _value(metrics, "posrecon_fee_variance_minor_bucket", le="0.0") == 1
    assert _value(metrics, "posrecon_refund_ratio_count") == 2
    assert _value(metrics, "posrecon_refund_ratio_sum") == 1.25
    assert _value(metrics, "posrecon_refund_ratio_bucket", le="0.25") == 1


def _batch(status: str, expected: int, received: int) -> BatchReconciliation:
    return {
        "batch_id": "b1",
        "currency": "EUR",
        "expected_count": 3,
        "received_count": 3,
        "expected_gross_minor": expected,
        "received_gross_minor": received,
        "expected_fee_minor": 0,
        "received_fee_minor": 0,
        "status": status,
        "revision": 1,
    }


def test_batch_decisions_by_status_and_unbalanced_amount() -> None:
    metrics = WorkerMetrics()
    counts: dict[tuple[str, ...], int] = {}
    count_batch_decisions(
        [_batch("BALANCED", 500, 500), _batch("INCOMPLETE", 500, 300), _batch("MISMATCH", 500, 1_700)], counts, metrics
    )
    counts[("batch_controls",)] = 2  # control records consumed (app/batch_stage.py)
    Telemetry(metrics).flush_counts(counts)
    assert _value(metrics, "posrecon_events_total", source="batch", type="CONTROL") == 2
    for status in ("BALANCED", "INCOMPLETE", "MISMATCH"):
        assert _value(metrics, "posrecon_batch_reconciled_total", status=status) == 1
    assert _value(metrics, "posrecon_batch_unbalanced_minor_count") == 2
    assert _value(metrics, "posrecon_batch_unbalanced_minor_sum") == 200 + 1_200


def test_time_to_resolve_per_kind_and_the_list_is_emptied() -> None:
    metrics = WorkerMetrics()
    latencies = [("MISSING_SETTLEMENT", 3_600_000), ("MISSING_SETTLEMENT", 7_200_000), ("BATCH_MISMATCH", 30_000)]
    observe_resolve_latencies(metrics, latencies)
    assert latencies == []
    name = "posrecon_alert_time_to_resolve_seconds"
    assert _value(metrics, f"{name}_count", kind="MISSING_SETTLEMENT") == 2
    assert _value(metrics, f"{name}_sum", kind="MISSING_SETTLEMENT") == 3 * 3600
    assert _value(metrics, f"{name}_bucket", kind="BATCH_MISMATCH", le="60.0") == 1
    observe_resolve_latencies(metrics, None)  # an engine that does not collect them


def test_a_duplicate_charge_resolved_by_a_void_in_the_card_stage_is_timed() -> None:
    settings = Settings()
    metrics = WorkerMetrics()
    index = CardIndex(settings.rules)
    outbox = Outbox(settings, ("app-changelog", "app-card-sightings", "app-cards"), {0: index}, {}, metrics)
    outbox.alert_codec = type("Codec", (), {"encode": staticmethod(lambda alert: b"")})()
    key = CardKey("tok_1", "m-1", 1250, "EUR")
    sightings = [
        CardSighting(key, "o-1", 1_000, "t-1", False),
        CardSighting(key, "o-2", 61_000, "t-1", False),  # DUPLICATE_CHARGE on o-2
        CardSighting(key, "o-2", 61_000, "t-1", False, True, 0, 0, "ev-void", 361_000),  # its void resolves it
    ]
    [value] = pack_sightings([sighting_row(s) for s in sightings])  # as another worker sends them
    outbox.card_sighting(Message(topic="app-card-sightings", partition=0, value=value), 0, now=0)
    name = "posrecon_alert_time_to_resolve_seconds"
    assert _value(metrics, f"{name}_count", kind="DUPLICATE_CHARGE") == 1
    assert _value(metrics, f"{name}_sum", kind="DUPLICATE_CHARGE") == 300  # void 5 min after the later approval
    assert outbox.counts == {
        ("alerts", "DUPLICATE_CHARGE", "WARNING", "OPEN"): 1,
        ("alerts", "DUPLICATE_CHARGE", "INFO", "RESOLVED"): 1,
    }
