"""The ``batches`` step of ``make bench`` (bench/steps/batches.py): its topics and worker config, the output
counts it checks against the truth, the cost figures; the v2 data set with control records (bench/dataset.py);
drive's CPU of the measured span (bench/steps/throughput.py) and the report's rows."""

from __future__ import annotations

import importlib
import json
import pickle
import sys
from pathlib import Path
from typing import Any

import pytest

from posrecon.config import Topics, load_settings
from posrecon.serde.codec import AvroCodec

BENCH = Path(__file__).resolve().parents[3] / "bench"


@pytest.fixture(scope="module")
def bench() -> Any:
    """bench/'s modules import each other by bare name (run.py puts bench/ on sys.path)."""
    sys.path.insert(0, str(BENCH))
    try:
        names = ("dataset", "report", "steps.batches", "steps.throughput")
        modules = {name.rpartition(".")[2]: importlib.import_module(name) for name in names}
    finally:
        sys.path.remove(str(BENCH))
    return type("Bench", (), modules)


def test_each_variant_has_topics_of_its_own(bench: Any) -> None:
    on, off = (bench.batches.variant_topics(name) for name, _mix, _strip in bench.batches.VARIANTS)
    keys = bench.batches.CONFIG_KEYS
    names = [getattr(t, k) for t in (on, off) for k in keys]
    assert len(set(names)) == len(names)
    assert not set(names) & {getattr(Topics(), k) for k in keys}
    assert on.batches == "bench.with-batches.settlement-batches"


def test_the_worker_config_has_the_data_sets_rules_and_the_variants_topics(bench: Any, tmp_path: Path) -> None:
    rules = 'fee_tolerance_minor = 2\n\n[merchants."m-1"]\nfee_rate_bps = 150\nfee_fixed_minor = 10\n'
    topics = bench.batches.variant_topics("without_batches")
    path = tmp_path / "w.toml"
    path.write_text(bench.batches.worker_config(rules, topics))
    settings = load_settings(path, env={})
    assert settings.rules.fee_tolerance_minor == 2
    assert settings.rules.for_merchant("m-1").fee_rate_bps == 150
    for key in bench.batches.CONFIG_KEYS:
        assert getattr(settings.topics, key) == getattr(topics, key)


def test_a_batch_counts_with_its_final_revision(bench: Any) -> None:
    records = [
        {"batch_id": "b1", "revision": 2, "status": "BALANCED"},
        {"batch_id": "b1", "revision": 1, "status": "INCOMPLETE"},
        {"batch_id": "b2", "revision": 1, "status": "MISMATCH"},
        {"batch_id": "b3", "revision": 1, "status": "INCOMPLETE"},
        {"batch_id": "b3", "revision": 3, "status": "MISMATCH"},
    ]
    assert bench.batches.final_statuses(records) == {"BALANCED": 1, "MISMATCH": 2}
    assert bench.batches.final_statuses([]) == {}


def test_alerts_are_counted_as_the_truth_counts_them(bench: Any) -> None:
    alerts = [
        {"kind": "MISSING_SETTLEMENT", "status": "OPEN"},
        {"kind": "MISSING_SETTLEMENT", "status": "RESOLVED"},
        {"kind": "AMOUNT_MISMATCH", "status": "OPEN"},
        {"kind": "BATCH_MISMATCH", "status": "OPEN"},
        {"kind": "BATCH_INCOMPLETE", "status": "OPEN"},
        {"kind": "BATCH_INCOMPLETE", "status": "RESOLVED"},
    ]
    assert bench.batches.alert_counts(alerts) == {
        "alerts_open": 2,
        "alerts_resolved": 1,
        "batch_alerts": {"BATCH_INCOMPLETE/OPEN": 1, "BATCH_INCOMPLETE/RESOLVED": 1, "BATCH_MISMATCH/OPEN": 1},
    }


def test_truth_mismatches_name_what_differs_and_skip_what_the_truth_does_not_say(bench: Any) -> None:
    meta = {"deadletters_expected": 3, "batches_expected": 2, "batch_statuses_expected": {"BALANCED": 2}}
    out = {"deadletters": 3, "batches_decided": 2, "batch_statuses": {"BALANCED": 2}, "alerts_open": 99}
    assert bench.batches.truth_mismatches(out, meta) == []
    out["batch_statuses"] = {"BALANCED": 1, "MISMATCH": 1}
    assert bench.batches.truth_mismatches(out, meta) == [
        "batch_statuses: got {'BALANCED': 1, 'MISMATCH': 1}, truth {'BALANCED': 2}"
    ]


def test_the_cost_of_batches_is_with_over_without(bench: Any) -> None:
    got = bench.batches.summarize(
        {"events_per_s": 18_000, "events_per_cpu_s": 19_000}, {"events_per_s": 20_000, "events_per_cpu_s": 20_000}
    )
    assert got == {"ratio": 0.9, "cost_pct": 10.0, "per_cpu_s_ratio": 0.95}
    assert bench.batches.summarize({"events_per_s": 1}, {})["ratio"] is None


def test_drive_counts_the_cpu_of_the_measured_span_only(bench: Any) -> None:
    span = bench.throughput.span_cpu
    assert span([2.0, 3.0], [12.0, 8.5]) == 15.5
    assert span([2.0, None], [12.0, 8.5]) is None  # an unreadable /proc is not free CPU
    assert span([], []) is None
    assert span([1.0], [1.0]) is None


@pytest.mark.parametrize(("mix", "strip", "batches"), [(None, False, True), ("batches=0", True, False)])
def test_the_v2_data_set_sends_control_records_to_the_batches_topic(
    bench: Any, tmp_path: Path, mix: str | None, strip: bool, batches: bool
) -> None:
    meta = bench.dataset.prepare(
        tmp_path, 400, 7, 12, shards=2, procs=1, log=lambda *_: None, contract="v2", mix=mix, strip_batch_ids=strip
    )
    records = [rec for path in bench.dataset.shard_paths(meta) for rec in pickle.loads(path.read_bytes())]
    controls = [rec for rec in records if rec[0] == 2]
    assert len(records) == meta["records"]
    assert len(controls) == meta["per_topic"].get("batches", 0)
    assert (meta["batches_expected"] > 0) is batches and bool(controls) is batches
    codec = AvroCodec("SettlementBatch")
    assert all(key == codec.decode(value)["batch_id"].encode() for _t, _p, key, value, _ts in controls)
    rules = load_settings(Path(meta["dir"]) / meta["config_file"], env={}).rules
    assert rules.merchants  # merchant pricing: the worker needs it to match the truth
    assert ("mix-" in meta["dir"]) is (mix is not None)
    notices = [
        AvroCodec("SettlementNotice").decode(v) for t, _p, _k, v, _ts in records if t == 1 and v[:2] == b"\xc3\x01"
    ]
    with_batch_id = sum(1 for n in notices if n["batch_id"] is not None)
    # stripped: only on notices the simulation makes invalid (dead-lettered before any sighting; kept as drawn)
    assert (with_batch_id < 0.05 * len(notices)) is strip and (with_batch_id > 0.5 * len(notices)) is not strip
    assert (meta["batch_ids_stripped"] > 0.5 * len(notices)) is strip
    per_batch = json.loads((Path(meta["dir"]) / meta["batch_truth_file"]).read_text())
    assert len(per_batch) == meta["batches_expected"]
    assert sum(len(b["alerts"]) for b in per_batch.values()) == sum(meta["batch_alerts_expected"].values())


def _results(**steps: dict[str, Any]) -> dict[str, Any]:
    return {
        "steps": {k: {"status": "ok", **v} for k, v in steps.items()},
        "parameters": {"contract": "v1"},
        "machine": {"cpu": "test", "cores": 2, "load_average": [0.0]},
        "load_average_end": [0.0],
    }


def test_the_report_shows_the_batches_step(bench: Any, capsys: pytest.CaptureFixture[str]) -> None:
    results = _results(
        batches={
            "ratio": 0.9,
            "cost_pct": 10.0,
            "per_cpu_s_ratio": 0.95,
            "output_matches_truth": True,
            "with_batches": {"events_per_s": 18_000, "events_per_cpu_s": 19_000},
            "without_batches": {"events_per_s": 20_000, "events_per_cpu_s": 20_000},
        }
    )
    results["figures"] = bench.report.figures(results)
    assert results["figures"]["batches_ratio"] == 0.9
    bench.report.print_table(results, 10.0)
    out = capsys.readouterr().out
    assert "18,000 / 20,000" in out and "10.0% slower" in out
    assert "19,000 / 20,000" in out


def test_a_diverging_batch_is_named_with_its_fault(bench: Any) -> None:
    alerts = [
        {"kind": "BATCH_INCOMPLETE", "status": "OPEN", "batch_id": "b1"},
        {"kind": "MISSING_SETTLEMENT", "status": "OPEN", "batch_id": "b1"},
        {"kind": "BATCH_MISMATCH", "status": "OPEN", "batch_id": "b3"},
    ]
    found = bench.batches.alerts_by_batch(alerts)
    assert found == {"b1": ["BATCH_INCOMPLETE/OPEN"], "b3": ["BATCH_MISMATCH/OPEN"]}
    truth = {
        "b1": {
            "status": "BALANCED",
            "alerts": ["BATCH_INCOMPLETE/OPEN", "BATCH_INCOMPLETE/RESOLVED"],
            "fault": "batch_late_notice.included",
        },
        "b2": {"status": "BALANCED", "alerts": [], "fault": "none"},
        "b3": {"status": "MISMATCH", "alerts": ["BATCH_MISMATCH/OPEN"], "fault": "batch_fee_off"},
    }
    statuses = {"b1": "BALANCED", "b3": "MISMATCH"}
    assert bench.batches.batch_diffs(statuses, found, truth) == [
        "b1 (batch_late_notice.included): got BALANCED ['BATCH_INCOMPLETE/OPEN'], truth BALANCED "
        "['BATCH_INCOMPLETE/OPEN', 'BATCH_INCOMPLETE/RESOLVED']",
        "b2 (none): got None [], truth BALANCED []",  # never decided
    ]
    assert bench.batches.batch_diffs({}, {"x": ["BATCH_MISMATCH/OPEN"]}, truth, limit=1) == [
        "b1 (batch_late_notice.included): got None [], truth BALANCED "
        "['BATCH_INCOMPLETE/OPEN', 'BATCH_INCOMPLETE/RESOLVED']",
        "… and 3 more",  # b2, b3, x
    ]
