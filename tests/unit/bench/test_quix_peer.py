"""The Quix Streams peer of ``make bench``: its deserializer and join (bench/quix_join.py, the parts that need no
quixstreams), the step's rate, and the report's side-by-side ratios and per-CPU-second scale-out."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import pytest

from posrecon.serde.codec import AvroCodec

BENCH = Path(__file__).resolve().parents[3] / "bench"


@pytest.fixture(scope="module")
def bench() -> Any:
    """bench/'s modules import each other by bare name (run.py puts bench/ on sys.path)."""
    sys.path.insert(0, str(BENCH))
    try:
        modules = {
            name.rpartition(".")[2]: importlib.import_module(name) for name in ("quix_join", "report", "steps.quix")
        }
    finally:
        sys.path.remove(str(BENCH))
    return type("Bench", (), modules)


class FakeState:
    """Quix's State as reconcile uses it: get/set under the order's key."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def set(self, key: str, value: Any) -> None:
        self.values[key] = value


def terminal(event_type: str = "AUTH_APPROVED", amount: int = 1250, **kw: Any) -> dict[str, Any]:
    record = {
        "event_id": "ev-1",
        "order_id": "ord-1",
        "merchant_id": "mch-1",
        "terminal_id": "trm-1",
        "event_type": event_type,
        "amount_minor": amount,
        "currency": "EUR",
        "card_token": None,
        "event_time": 1_767_225_600_000,
        "attempt": 1,
        "decline_code": None,
    }
    return {**record, **kw}


def notice(status: str = "SETTLED", amount: int = 1250, notice_id: str = "n-1", **kw: Any) -> dict[str, Any]:
    record = {
        "notice_id": notice_id,
        "order_id": "ord-1",
        "merchant_id": "mch-1",
        "status": status,
        "amount_minor": amount,
        "currency": "EUR",
        "settled_at": 1_767_225_900_000,
        "batch_id": None,
        "fee_minor": 0,
        "capture_seq": 1,
        "capture_count": 1,
    }
    return {**record, **kw}


def test_the_deserializer_decodes_posrecons_wire_records(bench: Any) -> None:
    for name, side, record in (("TerminalEvent", "terminal", terminal()), ("SettlementNotice", "settlement", notice())):
        wire = AvroCodec(name).encode(record)
        assert bench.quix_join.SingleObjectAvro(name, side)(wire) == {**record, "_side": side}


def test_the_deserializer_marks_what_does_not_decode(bench: Any) -> None:
    des = bench.quix_join.SingleObjectAvro("TerminalEvent", "terminal")
    wire = AvroCodec("TerminalEvent").encode(terminal())
    other = AvroCodec("SettlementNotice").encode(notice())
    for bad in (b'{"not": "avro"}', other, wire[:-3], wire + b"\x00"):
        assert "_error" in des(bad), bad


def _feed(bench: Any, state: FakeState, *records: dict[str, Any]) -> list[Any]:
    sides = [{**r, "_side": "settlement" if "notice_id" in r else "terminal"} for r in records]
    return [bench.quix_join.reconcile(r, state) for r in sides]


def test_the_join_decides_once_both_sides_are_there_in_either_order(bench: Any) -> None:
    first = _feed(bench, FakeState(), terminal("ORDER_CREATED"), terminal(), notice())
    assert first[:2] == [None, None]
    assert first[2]["outcome"] == "MATCHED" and first[2]["revision"] == 1
    late_auth = _feed(bench, FakeState(), notice(amount=1300), terminal())
    assert late_auth[0] is None and late_auth[1]["outcome"] == "AMOUNT_MISMATCH"
    assert late_auth[1]["approved_amount_minor"] == 1250 and late_auth[1]["settled_amount_minor"] == 1300


def test_the_join_ignores_redeliveries_and_revises_on_a_new_notice(bench: Any) -> None:
    out = _feed(bench, FakeState(), terminal(), notice(), notice(), notice("REVERSED", notice_id="n-2"))
    assert out[1]["outcome"] == "MATCHED" and out[2] is None
    assert out[3]["outcome"] == "REVERSED" and out[3]["revision"] == 2
    failed = _feed(bench, FakeState(), terminal(), notice("FAILED"))
    assert failed[1]["outcome"] == "SETTLEMENT_FAILED"


def test_the_steps_rate_and_missing_venv(bench: Any, tmp_path: Path) -> None:
    step = bench.quix
    assert step.sustained((10.0, 1000), (20.0, 51000)) == 5000
    assert step.sustained(None, (20.0, 51000)) is None
    assert step.sustained((20.0, 1000), (20.0, 1000)) is None
    samples = [(1.0, 0), (2.0, 50), (3.0, 200), (5.0, 400), (7.0, 950), (8.0, 1000)]
    assert step.steady(samples, 1000) == (950 - 200) / (7.0 - 3.0)
    assert step.steady(samples[:3], 1000) is None
    assert "make bench" in step.missing_reason(tmp_path / "no-venv" / "bin" / "python")
    assert step.missing_reason(Path(sys.executable)) is None


def _results(**steps: dict[str, Any]) -> dict[str, Any]:
    return {"steps": {k: {"status": "ok", **v} for k, v in steps.items()}, "parameters": {"contract": "v2"}}


def test_the_report_puts_peers_side_by_side(bench: Any) -> None:
    results = _results(
        passthrough={"events_per_s": 60_000},
        worker_1={"events_per_s": 24_000, "events_per_cpu_s": 25_000},
        workers_2={"events_per_s": 38_000, "events_per_cpu_s": 23_000},
        quix={"events_per_s": 6_000, "events_per_cpu_s": 5_500, "drained": True},
    )
    results["steps"]["faust"] = {"status": "failed: x"}
    f = bench.report.figures(results)
    assert f["posrecon_vs_quix"] == 4.0
    assert f["scaling_per_cpu_s_two_vs_one"] == 0.92
    rows = {row[0]: row[2:] for row in bench.report.peer_rows(results)}
    assert rows["Quix Streams 3.28.1 join"] == (6_000, 0.1, 4.0, 5_500)
    assert rows["posrecon, 1 worker"] == (24_000, 0.4, 1.0, 25_000)
    assert rows["faust-streaming passthrough"] == (None, None, None, None)


def test_the_report_has_no_ratio_without_quix(bench: Any) -> None:
    f = bench.report.figures(_results(worker_1={"events_per_s": 24_000}))
    assert f["quix_events_per_s"] is None and "posrecon_vs_quix" not in f


def test_the_report_shows_the_means_of_the_alternating_rounds(bench: Any, capsys: pytest.CaptureFixture[str]) -> None:
    results = _results(worker_1={"events_per_s": 24_000, "events_per_cpu_s": 25_000})
    results["pairs"] = {
        "ratios": [2.2, 2.4],
        "mean": 2.3,
        "scaling_per_cpu_s": [0.9, 1.0],
        "scaling_per_cpu_s_mean": 0.95,
    }
    results["figures"] = f = bench.report.figures(results)
    results["machine"], results["load_average_end"] = {"cpu": "x", "cores": 2, "load_average": [1.0]}, [1.0]
    assert (f["rounds_posrecon_vs_quix_mean"], f["rounds_scaling_per_cpu_s_mean"]) == (2.3, 0.95)
    bench.report.print_table(results, 10.0)
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if "mean over the alternating" in line]
    assert [row[-1] for row in rows] == ["0.95", "2.30"]  # scale-out per CPU-second, then posrecon ÷ Quix
