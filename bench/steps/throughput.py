"""Steps 2-4: the raw passthrough baseline (after an unmeasured warm-up) and posrecon workers over the same records;
:func:`drive` measures the sustained rate from the group's committed offsets."""

from __future__ import annotations

import shlex
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dataset
from harness import (
    BENCH_DIR,
    PY,
    ChildFailed,
    Offsets,
    StepTimeout,
    count_records,
    cpu_seconds,
    create_contract_topics,
    create_topics,
    ensure_internal_topics,
    free_port,
    rss_bytes,
    scrape,
    tail,
    topic_stats,
    write_config,
)
from session import PARTITIONS, Bench, summary_line

from posrecon.config import Topics
from posrecon.kafka.outputs import read_topic
from posrecon.kafka.progress import group_lag
from posrecon.serde.codec import AvroCodec


def drive(
    b: Bench,
    procs: Sequence[tuple[subprocess.Popen[bytes], Path, int | None]],
    group: str,
    internal: list[str],
    deadline: float,
    inputs: Sequence[str] | None = None,
    total: int | None = None,
) -> dict[str, Any]:
    """Poll ``group``'s committed input offsets until every input record (and ``internal``) is committed.

    ``inputs``/``total``: the input topics and their records (default: the contract's two input topics and
    the loaded data set's record count)."""
    if inputs is None:
        topics = Topics()
        inputs = [topics.terminal, topics.settlement]
    offsets = Offsets(b.bootstrap, group, inputs, PARTITIONS)
    total = b.total_inputs if total is None else total
    spawn = time.monotonic()
    cpu_broker0 = b.broker_cpu()
    samples: list[tuple[float, int]] = []
    first: tuple[float, int] | None = None
    cpu_first: list[float | None] = []
    end: float | None = None
    next_print = spawn + 10
    try:
        while end is None:
            for proc, log, _port in procs:
                if proc.poll() is not None:
                    raise ChildFailed(f"{log.name}: exited with code {proc.returncode}:\n{tail(log)}")
            done = offsets.committed()
            now = time.monotonic()
            samples.append((round(now - spawn, 2), done))
            if first is None and done > 0:
                first = (now, done)
                cpu_first = [cpu_seconds(proc.pid) for proc, _log, _port in procs]
            if done >= total and (not internal or group_lag(b.bootstrap, group, internal, internal) == 0):
                end = now
                break
            if now > next_print:
                next_print = now + 10
                b.log(f"  {now - spawn:5.0f} s: {done:,} / {total:,} committed")
            if now > deadline:
                raise StepTimeout(f"{group}: {done:,} of {total:,} input records committed when time ran out")
            time.sleep(0.5)
        cpu = [cpu_seconds(proc.pid) for proc, _log, _port in procs]
        rss = [rss_bytes(proc.pid) for proc, _log, _port in procs]
        metrics = [scrape(port) if port else {} for _proc, _log, port in procs]
    finally:
        offsets.close()
    cpu_broker1 = b.broker_cpu()
    assert first is not None and end is not None
    sustained = (total - first[1]) / max(end - first[0], 1e-9)
    # steady state: between 10% and 90% of the records
    lo = next((s for s in samples if s[1] >= 0.1 * total), None)
    hi = next((s for s in samples if s[1] >= 0.9 * total), None)
    steady = (hi[1] - lo[1]) / (hi[0] - lo[0]) if lo and hi and hi[0] > lo[0] else None
    tx = sum(m.get('posrecon_transactions_total{result="committed"}', 0) for m in metrics)
    batch_sum = sum(m.get("posrecon_batch_records_sum", 0) for m in metrics)
    batch_count = sum(m.get("posrecon_batch_records_count", 0) for m in metrics)
    proc_cpu = sum(c for c in cpu if c is not None)
    span = span_cpu(cpu_first, cpu)
    return {
        "events": total,
        "events_per_s": round(sustained),
        "events_per_s_10_90pct": round(steady) if steady else None,
        "first_commit_after_s": round(first[0] - spawn, 2),
        "drained_after_s": round(end - spawn, 2),
        "events_per_s_from_process_start": round(total / (end - spawn)),
        "process_cpu_s": [round(c, 1) if c is not None else None for c in cpu],
        # per CPU-second of the measured span (first commit sample → end, the records counted in events_per_s):
        # a process's start-up (imports, restore, the first batch) would weigh n times with n workers
        "measured_span_cpu_s": round(span, 1) if span else None,
        "events_per_cpu_s": round((total - first[1]) / span) if span else None,
        "events_per_cpu_s_measured_span": round((total - first[1]) / span) if span else None,
        "events_per_cpu_s_process_life": round(total / proc_cpu) if proc_cpu else None,
        "broker_cpu_s": round(cpu_broker1 - cpu_broker0, 1) if cpu_broker0 and cpu_broker1 else None,
        "rss_mib": [round(r / 2**20, 1) if r else None for r in rss],
        "transactions": int(tx) if tx else None,
        "mean_records_per_transaction": round(batch_sum / batch_count, 1) if batch_count else None,
        "samples": samples,
    }


def span_cpu(first: Sequence[float | None], end: Sequence[float | None]) -> float | None:
    """CPU seconds the processes spent between two readings (each process's end − first); None if any reading
    is missing (a process whose /proc was unreadable would be counted as free)."""
    if not first or len(first) != len(end):
        return None
    spent = 0.0
    for a, z in zip(first, end, strict=True):
        if a is None or z is None:
            return None
        spent += z - a
    return spent if spent > 0 else None


def passthrough(b: Bench, deadline: float, codec: str = "fastavro") -> dict[str, Any]:
    suffix = "" if codec == "fastavro" else f"-{codec}"
    out = f"bench.passthrough{suffix}"
    create_topics(b.bootstrap, {out: {}}, PARTITIONS)
    log = b.work / "logs" / f"passthrough{suffix}.log"
    log.unlink(missing_ok=True)
    proc = b.children.spawn(
        "passthrough",
        [
            PY,
            str(BENCH_DIR / "passthrough.py"),
            "--bootstrap",
            b.bootstrap,
            "--group",
            f"bench-passthrough{suffix}",
            "--out",
            out,
            "--codec",
            codec,
        ],
        log,
    )
    figures = drive(b, [(proc, log, None)], f"bench-passthrough{suffix}", [], deadline)
    b.children.stop(proc)
    summary = summary_line(log)
    figures["self_reported"] = summary
    outputs = count_records(b.bootstrap, out)
    figures["outputs_committed"] = outputs
    figures["exactly_once_count_check"] = outputs == b.total_inputs
    b.log(
        f"  raw baseline ({codec}): {figures['events_per_s']:,} events/s "
        f"(outputs {outputs:,} = inputs: {outputs == b.total_inputs})"
    )
    return figures


def warm_up(b: Bench, deadline: float) -> dict[str, Any]:
    """Not measured: 20 s of the passthrough (own group, own output topic) before the baseline. Right after
    the load the broker's fetch path and transactional writes are cold (its CPU per 2M events was 2.3x
    that of the next step), and the first measured step, the baseline, paid for it."""
    out = "bench.warmup"
    create_topics(b.bootstrap, {out: {}}, PARTITIONS)
    log = b.work / "logs" / "warmup.log"
    log.unlink(missing_ok=True)
    cpu_broker0 = b.broker_cpu()
    started = time.monotonic()
    proc = b.children.spawn(
        "warmup",
        [PY, str(BENCH_DIR / "passthrough.py"), "--bootstrap", b.bootstrap, "--group", "bench-warmup",
         "--out", out, "--codec", "compiled", "--max-seconds", str(b.args.warmup_s)],
        log,
    )  # fmt: skip
    proc.wait(max(1.0, deadline - time.monotonic()))
    b.children.stop(proc)
    cpu_broker1 = b.broker_cpu()
    summary = summary_line(log)
    b.log(f"  {summary.get('records', 0):,} records passed through in {time.monotonic() - started:.0f} s")
    return {
        "records": summary.get("records"),
        "seconds": round(time.monotonic() - started, 1),
        "broker_cpu_s": round(cpu_broker1 - cpu_broker0, 1) if cpu_broker0 and cpu_broker1 else None,
    }


def workers(b: Bench, n: int, deadline: float, flow_control: bool = False, tag: str = "") -> dict[str, Any]:
    """``n`` workers over the loaded data set, in a group of their own (``tag`` tells repeated runs apart)."""
    app_id = f"bench-w{n}{'-fc' if flow_control else ''}{tag}"
    topics = Topics(reconciled=f"{app_id}.reconciled", alerts=f"{app_id}.alerts", deadletter=f"{app_id}.deadletter")
    create_contract_topics(b.bootstrap, topics, PARTITIONS, inputs=False)
    _, sightings, _ = ensure_internal_topics(b.bootstrap, app_id, PARTITIONS)
    config = write_config(b.work / f"{app_id}.toml", topics, Path(b.meta["dir"]) / dataset.RULES_FILE)
    procs = []
    for i in range(n):
        port = free_port()
        log = b.work / "logs" / f"{app_id}-{i}.log"
        log.unlink(missing_ok=True)
        cmd = b.worker_cmd(
            app_id, f"w{i}", config, "--no-wall-clock-advance", "--metrics-port", str(port),
            *shlex.split(b.args.worker_args),
        )  # fmt: skip
        if flow_control:
            cmd[1:3] = [str(BENCH_DIR / "worker_flow_control.py")]
        procs.append((b.children.spawn(f"{app_id}-{i}", cmd, log), log, port))
    figures = drive(b, procs, app_id, [sightings], deadline)
    for proc, _log, _port in procs:
        b.children.stop(proc)
    dead = count_records(b.bootstrap, topics.deadletter)
    figures["deadletters"] = dead
    figures["deadletters_expected"] = b.meta.get("deadletters_expected")
    figures["reconciled_records"], orders = topic_stats(b.bootstrap, topics.reconciled)
    figures["orders_with_outcome"] = orders
    figures["orders_with_outcome_expected"] = b.meta.get("orders_with_outcome_expected")
    alert_codec = AvroCodec("Alert")  # once: building a codec compiles its decoder
    statuses = [alert_codec.decode(m.value())["status"] for m in read_topic(b.bootstrap, topics.alerts)]
    figures["alerts"] = len(statuses)
    figures["alerts_open"] = statuses.count("OPEN")
    figures["alerts_resolved"] = statuses.count("RESOLVED")
    figures["alerts_resolved_expected"] = b.meta.get("alerts_resolved_expected") if b.args.contract == "v2" else None
    figures["alerts_expected"] = b.meta.get("alerts_expected")
    # a correct run outputs what the simulation's truth says (`posrecon replay` does, for this data); a v1 truth
    # knows no resolution: it counts the OPEN alerts only (the engine's RESOLVED records are not scored)
    checks = [
        ("deadletters", "deadletters_expected"),
        ("orders_with_outcome", "orders_with_outcome_expected"),
        ("alerts_open", "alerts_expected"),
        ("alerts_resolved", "alerts_resolved_expected"),  # v2 truths only: a v1 truth knows no resolution
    ]
    known = [(a, b) for a, b in checks if figures.get(b) is not None]
    figures["output_matches_truth"] = all(figures[a] == figures[b] for a, b in known) if known else None
    rebalances = sum(log.read_text(errors="replace").count('"partitions assigned"') for _p, log, _port in procs)
    figures["partition_assignments_logged"] = rebalances
    b.log(
        f"  {n} worker(s): {figures['events_per_s']:,} events/s sustained "
        f"({figures['events_per_s_10_90pct']} between 10% and 90%), drained after {figures['drained_after_s']} s"
    )
    diverges = "  <-- OUTPUT DIVERGES FROM THE TRUTH" if figures["output_matches_truth"] is False else ""
    b.log(
        f"  outputs: {figures['alerts']:,} alerts, {figures['alerts_open']:,} OPEN "
        f"(truth {figures['alerts_expected']}), "
        f"{figures['orders_with_outcome']:,} orders decided (truth {figures['orders_with_outcome_expected']}), "
        f"{dead:,} dead letters (truth {figures['deadletters_expected']}){diverges}"
    )
    return figures
