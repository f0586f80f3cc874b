"""The benchmark's report: targets, headline figures, the result file, the printed table, versions."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness import REPO

Row = tuple[str, str, str, str]  # figure, value, target, verdict

TARGETS = {
    "ratio_vs_baseline": 0.5,
    "worker_events_per_s": 20_000,
    "scaling_two_vs_one": 1.6,
    "latency_p99_ms": 500,
    "deadline_alert_ms": 2000,
    "state_bytes_per_open_order": 1024,
    "recovery_1m_s": 30,
    "scaling_per_cpu_s_two_vs_one": 0.9,
    "posrecon_vs_quix": 3.0,
}


def figures(results: dict[str, Any]) -> dict[str, Any]:
    """The headline figures of a run, picked from its steps (``None`` where a step failed or was skipped)."""
    f: dict[str, Any] = {}
    st = results["steps"]

    def get(step: str, *keys: str) -> Any:
        rec = st.get(step)
        if rec is None or rec.get("status") != "ok":
            return None
        for k in keys:
            rec = rec.get(k) if isinstance(rec, dict) else None
        return rec

    f["load_records_per_s"] = get("load", "records_per_s")
    f["baseline_events_per_s"] = get("passthrough", "events_per_s")
    f["worker1_events_per_s"] = get("worker_1", "events_per_s")
    f["worker1_output_matches_truth"] = get("worker_1", "output_matches_truth")
    f["workers2_output_matches_truth"] = get("workers_2", "output_matches_truth")
    f["worker1_flow_control_events_per_s"] = get("worker_1_flow_control", "events_per_s")
    f["worker1_flow_control_output_matches_truth"] = get("worker_1_flow_control", "output_matches_truth")
    f["workers2_events_per_s"] = get("workers_2", "events_per_s")
    f["baseline_compiled_codec_events_per_s"] = get("passthrough_compiled", "events_per_s")
    if f["baseline_events_per_s"] and f["worker1_events_per_s"]:
        f["ratio_vs_baseline"] = round(f["worker1_events_per_s"] / f["baseline_events_per_s"], 3)
    if f["baseline_compiled_codec_events_per_s"] and f["worker1_events_per_s"]:
        f["ratio_vs_compiled_codec_baseline"] = round(
            f["worker1_events_per_s"] / f["baseline_compiled_codec_events_per_s"], 3
        )
    if f["worker1_events_per_s"] and f["workers2_events_per_s"]:
        f["scaling_two_vs_one"] = round(f["workers2_events_per_s"] / f["worker1_events_per_s"], 3)
    # scale-out per CPU-second: on 2 cores shared with the broker, wall-clock cannot show 2 workers' gain
    # per CPU-second of the measured span (first commit → drained); over the processes' whole life: *_process_life
    f["worker1_events_per_cpu_s"] = get("worker_1", "events_per_cpu_s")
    f["workers2_events_per_cpu_s"] = get("workers_2", "events_per_cpu_s")
    f["worker1_events_per_cpu_s_process_life"] = get("worker_1", "events_per_cpu_s_process_life")
    f["workers2_events_per_cpu_s_process_life"] = get("workers_2", "events_per_cpu_s_process_life")
    if f["worker1_events_per_cpu_s"] and f["workers2_events_per_cpu_s"]:
        f["scaling_per_cpu_s_two_vs_one"] = round(f["workers2_events_per_cpu_s"] / f["worker1_events_per_cpu_s"], 3)
    # with --pairs: the means over the alternating rounds (bench/run.py, alternating_pairs)
    rounds = results.get("pairs") or {}
    f["rounds_scaling_per_cpu_s_mean"] = rounds.get("scaling_per_cpu_s_mean")
    f["rounds_posrecon_vs_quix_mean"] = rounds.get("mean")
    for key in ("ratio", "cost_pct", "per_cpu_s_ratio", "output_matches_truth", "workers"):
        f[f"batches_{key}"] = get("batches", key)
    for side in ("with_batches", "without_batches"):
        for key in ("events_per_s", "events_per_cpu_s"):
            f[f"batches_{side}_{key}"] = get("batches", side, key)
    f["quix_events_per_s"] = get("quix", "events_per_s")
    f["quix_drained"] = get("quix", "drained")
    f["quix_events_per_cpu_s"] = get("quix", "events_per_cpu_s")
    if f["worker1_events_per_s"] and f["quix_events_per_s"]:
        f["posrecon_vs_quix"] = round(f["worker1_events_per_s"] / f["quix_events_per_s"], 2)
    f["latency_stamp_ms"] = get("latency", "input_to_reconciled_stamp")
    f["latency_stamp_incl_warmup_ms"] = get("latency", "input_to_reconciled_stamp_incl_warmup")
    f["latency_visible_ms"] = get("latency", "input_to_reconciled_visible")
    f["latency_settlement_stamp_ms"] = get("latency", "settlement_to_reconciled_stamp")
    f["deadline_alert_ms"] = get("deadline", "delay")
    f["faust_events_per_s"] = get("faust", "events_per_s")
    f["faust_exactly_once_held"] = get("faust", "exactly_once_held")
    f["state_heap_bytes_per_open_order"] = get("state", "heap_bytes_per_open_order")
    f["state_changelog_bytes_per_open_order"] = get("state", "changelog_bytes_per_open_order")
    f["recovery_orders_restored"] = get("recovery", "orders_restored")
    f["recovery_start_to_assigned_s"] = get("recovery", "start_to_assigned_s")
    f["recovery_start_to_first_record_s"] = get("recovery", "start_to_first_record_s")
    return f


def write(results: dict[str, Any], results_dir: str | Path) -> Path:
    """``<results_dir>/bench-<UTC stamp>.json``, written atomically."""
    out = Path(results_dir)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = out / f"bench-{stamp}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=2, default=str) + "\n")
    tmp.replace(path)
    return path


def print_table(results: dict[str, Any], latency_warmup_s: float) -> None:
    f = results["figures"]
    t = TARGETS

    def num(v: Any, unit: str = "", digits: int = 0) -> str:
        if v is None:
            return "n/a"
        if isinstance(v, float) and digits:
            return f"{v:,.{digits}f}{unit}"
        return f"{v:,.0f}{unit}" if isinstance(v, int | float) else str(v)

    def verdict(value: Any, ok: Callable[[Any], bool]) -> str:
        return "n/a" if value is None else ("met" if ok(value) else "MISSED")

    def bounded(label: str, key: str, target: str, shown: str, unit: str = "", digits: int = 0) -> Row:
        """A figure against its target: ``shown`` starts with ">=" (a floor) or "<=" (a ceiling)."""
        value, bound = f.get(key), t[target]
        ok: Callable[[Any], bool] = (lambda v: v >= bound) if shown.startswith(">=") else (lambda v: v <= bound)
        return (label, num(value, unit, digits), shown, verdict(value, ok))

    lat = f.get("latency_stamp_ms") or {}
    vis = f.get("latency_visible_ms") or {}
    late = f.get("latency_stamp_incl_warmup_ms") or {}
    warm = latency_warmup_s
    dl = f.get("deadline_alert_ms") or {}
    rec_s = max(
        (
            v
            for v in (f.get("recovery_start_to_assigned_s"), f.get("recovery_start_to_first_record_s"))
            if v is not None
        ),
        default=None,
    )
    faust = results["steps"].get("faust", {})
    contract = results.get("parameters", {}).get("contract", "v1")
    rows = [
        ("load: input records into 24 partitions", num(f.get("load_records_per_s"), " rec/s"), "", ""),
        ("raw baseline passthrough, EOS (1 process)", num(f.get("baseline_events_per_s"), " ev/s"), "", ""),
        (
            "  same, posrecon's compiled codec",
            num(f.get("baseline_compiled_codec_events_per_s"), " ev/s"),
            "(info)",
            "",
        ),
        bounded(
            "posrecon, 1 worker, exactly-once",
            "worker1_events_per_s",
            "worker_events_per_s",
            f">= {t['worker_events_per_s']:,} ev/s",
            " ev/s",
        ),
        (
            "  output = simulation truth?",
            {True: "yes", False: "NO (diverges)", None: "n/a"}[f.get("worker1_output_matches_truth")],
            "",
            "",
        ),
        bounded(
            "posrecon / raw baseline", "ratio_vs_baseline", "ratio_vs_baseline", f">= {t['ratio_vs_baseline']}", "", 2
        ),
        (
            "  posrecon / compiled-codec baseline",
            num(f.get("ratio_vs_compiled_codec_baseline"), "", 2),
            "(info)",
            "",
        ),
        ("posrecon, 2 workers, exactly-once", num(f.get("workers2_events_per_s"), " ev/s"), "", ""),
        (
            "  output = simulation truth?",
            {True: "yes", False: "NO (diverges)", None: "n/a"}[f.get("workers2_output_matches_truth")],
            "",
            "",
        ),
        bounded(
            "2 workers / 1 worker", "scaling_two_vs_one", "scaling_two_vs_one", f">= {t['scaling_two_vs_one']}", "", 2
        ),
        (
            "  ev per CPU-s (measured span), 1 / 2 workers",
            f"{num(f.get('worker1_events_per_cpu_s'))} / {num(f.get('workers2_events_per_cpu_s'))}",
            "",
            "",
        ),
        bounded(
            "2 workers / 1 worker, per CPU-second",
            "scaling_per_cpu_s_two_vs_one",
            "scaling_per_cpu_s_two_vs_one",
            f">= {t['scaling_per_cpu_s_two_vs_one']}",
            "",
            2,
        ),
        (
            "  mean over the alternating rounds (--pairs)",
            num(f.get("rounds_scaling_per_cpu_s_mean"), "", 2),
            "",
            "",
        ),
        (
            f"latency @50% (after {warm:g} s warm-up): input → reconciled p50/p99/max",
            f"{num(lat.get('p50_ms'))}/{num(lat.get('p99_ms'))}/{num(lat.get('max_ms'))} ms",
            f"p99 <= {t['latency_p99_ms']} ms",
            verdict(lat.get("p99_ms"), lambda v: v <= t["latency_p99_ms"]),
        ),
        (
            f"  same, the warm-up included (first {warm:g} s on new topics)",
            f"{num(late.get('p50_ms'))}/{num(late.get('p99_ms'))}/{num(late.get('max_ms'))} ms",
            "(info)",
            "",
        ),
        (
            "  same, until visible (read_committed)",
            f"{num(vis.get('p50_ms'))}/{num(vis.get('p99_ms'))}/{num(vis.get('max_ms'))} ms",
            "(info)",
            "",
        ),
        (
            "deadline → alert (wall clock) p50/max",
            f"{num(dl.get('p50_ms'))}/{num(dl.get('max_ms'))} ms",
            f"<= {t['deadline_alert_ms']} ms",
            verdict(dl.get("max_ms"), lambda v: v <= t["deadline_alert_ms"]),
        ),
        bounded(
            "state per open order (engine heap)",
            "state_heap_bytes_per_open_order",
            "state_bytes_per_open_order",
            f"<= {t['state_bytes_per_open_order']} B",
            " B",
        ),
        ("  changelog bytes per open order", num(f.get("state_changelog_bytes_per_open_order"), " B"), "", ""),
        (
            f"recovery {num(f.get('recovery_orders_restored'))} orders: → assigned",
            num(f.get("recovery_start_to_assigned_s"), " s", 1),
            f"<= {t['recovery_1m_s']} s",
            "",
        ),
        (
            "  → first record processed",
            num(f.get("recovery_start_to_first_record_s"), " s", 1),
            f"<= {t['recovery_1m_s']} s",
            verdict(rec_s, lambda v: v <= t["recovery_1m_s"]),
        ),
        ("faust passthrough, exactly_once", num(f.get("faust_events_per_s"), " ev/s"), "(info)", ""),
        (
            "  faust exactly-once check",
            {True: "held", False: "NOT held", None: "n/a"}[f.get("faust_exactly_once_held")],
            "",
            "",
        ),
        (
            "Quix Streams join, exactly-once (1 process)",
            num(f.get("quix_events_per_s"), " ev/s") + ("" if f.get("quix_drained") is not False else " (partial)"),
            "(peer)",
            "",
        ),
        bounded(
            f"posrecon 1 worker / Quix ({contract} rules)",
            "posrecon_vs_quix",
            "posrecon_vs_quix",
            f">= {t['posrecon_vs_quix']:g} (v2 rules)",
            "",
            2,
        ),
        ("  mean over the alternating rounds (--pairs)", num(f.get("rounds_posrecon_vs_quix_mean"), "", 2), "", ""),
    ]
    at = next(i for i, row in enumerate(rows) if row[0].startswith("  mean over the alternating rounds")) + 1
    rows[at:at] = batch_rows(f, num)
    if "worker_1_flow_control" in results["steps"]:
        rows.insert(
            8,
            (
                "experiment: 1 worker + merge flow control",
                num(f.get("worker1_flow_control_events_per_s"), " ev/s"),
                "(worker_flow_control.py)",
                {True: "output = truth", False: "DIVERGES", None: ""}[
                    f.get("worker1_flow_control_output_matches_truth")
                ],
            ),
        )
    m = results["machine"]
    print(
        f"\n=== posrecon benchmark ({m['cpu']}, {m['cores']} cores; load average start "
        f"{m['load_average'][0]:.2f}, end {results['load_average_end'][0]:.2f}) ==="
    )
    print(f"{'figure':<46}{'value':>24}  {'target':<20}{'':<7}")
    for name, value, target, status in rows:
        print(f"{name:<46}{value:>24}  {target:<20}{status:<7}")
    print_peers(results)
    for note in faust.get("exactly_once_notes", []) if faust.get("status") == "ok" else []:
        print(f"  faust: {note}")
    failed = [(k, v["status"]) for k, v in results["steps"].items() if v.get("status") != "ok"]
    for name, status in failed:
        print(f"  step {name}: {status[:300]}")


def batch_rows(f: dict[str, Any], num: Callable[..., str]) -> list[tuple[str, str, str, str]]:
    """The ``batches`` step's rows: a v2 mix with settlement batches and the same without, same worker count."""
    cost = f.get("batches_cost_pct")
    truth = {True: "yes", False: "NO (diverges)", None: "n/a"}[f.get("batches_output_matches_truth")]

    def pair(key: str) -> str:
        return f"{num(f.get(f'batches_with_batches_{key}'))} / {num(f.get(f'batches_without_batches_{key}'))}"

    return [
        (f"v2 mix, {f.get('batches_workers') or 1} worker(s): with / without batches", pair("events_per_s"),
         "ev/s", ""),
        ("  with ÷ without (cost of batches)", num(f.get("batches_ratio"), "", 2),
         "(info)", "" if cost is None else f"{abs(cost):.1f}% {'slower' if cost >= 0 else 'faster'}"),
        ("  events per CPU-second, with / without", pair("events_per_cpu_s"), "(info)", ""),
        ("  output = simulation truth (batches too)?", truth, "", ""),
    ]  # fmt: skip


#: the side-by-side rows: (label, step, what it does)
PEERS = (
    ("raw baseline passthrough", "passthrough", "decode → encode, no rules"),
    ("posrecon, 1 worker", "worker_1", "every rule"),
    ("posrecon, 2 workers", "workers_2", "every rule"),
    ("Quix Streams 3.28.1 join", "quix", "minimal join, RocksDB state"),
    ("faust-streaming passthrough", "faust", "no rules, data subset"),
)


def peer_rows(results: dict[str, Any]) -> list[tuple[str, str, int | None, float | None, float | None, int | None]]:
    """(label, what, events/s, it ÷ raw baseline, posrecon 1 worker ÷ it, events per CPU-second) per peer."""
    st = results["steps"]

    def rate(step: str) -> int | None:
        rec = st.get(step) or {}
        value = rec.get("events_per_s") if rec.get("status") == "ok" else None
        return value if isinstance(value, int | float) and value > 0 else None

    raw, posrecon = rate("passthrough"), rate("worker_1")
    rows = []
    for label, step, what in PEERS:
        value = rate(step)
        # the measured span for every peer (quix's events_per_cpu_s counts its start-up too); older files: the other
        rec = st.get(step) or {}
        per_cpu = rec.get("events_per_cpu_s_measured_span", rec.get("events_per_cpu_s")) if value else None
        rows.append(
            (
                label,
                what,
                value,
                round(value / raw, 2) if value and raw else None,
                round(posrecon / value, 2) if value and posrecon else None,
                per_cpu,
            )
        )
    return rows


def print_peers(results: dict[str, Any]) -> None:
    """posrecon, its peers and the raw baseline side by side: the same pre-loaded records (faust: a subset),
    the same broker, the same run."""
    head = f"{'side by side (same broker, same run)':<38}{'events/s':>10}{'÷ raw':>8}{'posrecon 1w ÷':>15}"
    print(f"\n{head}{'ev/CPU-s':>10}  does")
    for label, what, value, vs_raw, ratio, per_cpu in peer_rows(results):
        cells = [f"{value:,}" if value else "n/a", f"{vs_raw:.2f}" if vs_raw else "", f"{ratio:.2f}" if ratio else ""]
        cpu = f"{per_cpu:,}" if per_cpu else ""
        print(f"  {label:<36}{cells[0]:>10}{cells[1]:>8}{cells[2]:>15}{cpu:>10}  {what}")


def versions() -> dict[str, Any]:
    from importlib import metadata

    import confluent_kafka

    from posrecon.localbroker import KAFKA_VERSION

    out: dict[str, Any] = {
        "kafka_broker": KAFKA_VERSION,
        "librdkafka": confluent_kafka.libversion()[0],
        "confluent-kafka": metadata.version("confluent-kafka"),
    }
    for package in ("posrecon", "fastavro", "faust-streaming", "aiokafka", "py-spy"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "not installed"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out["git_commit"] = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "streams"], capture_output=True, text=True, timeout=10
        ).stdout
        out["streams_modified_files"] = len(dirty.splitlines())
    return out
