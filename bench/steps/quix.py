"""The Quix Streams peer (``bench/quix_join.py``, run by ``.venv-quix``'s Python): the join over the same
pre-loaded input topics as the raw baseline and posrecon, a fresh consumer group, exactly-once.

Rate as for the others: sustained events/s from the group's first committed offsets until it has committed
every input record, sampled every 0.5 s; when the time limit comes first, the rate over what it committed so
far (``drained: false``). CPU seconds of the process (Linux /proc, its librdkafka and RocksDB threads included)
over its whole life and over the measured span."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from harness import (
    BENCH_DIR,
    REPO,
    ChildFailed,
    Offsets,
    count_records,
    cpu_seconds,
    create_topics,
    log_end,
    tail,
    topic_stats,
)
from session import PARTITIONS, Bench

from posrecon.config import Topics

DEFAULT_PYTHON = REPO / ".venv-quix" / "bin" / "python"


def sustained(first: tuple[float, int] | None, last: tuple[float, int]) -> float | None:
    """Events/s between the first sample with committed offsets and ``last`` ((monotonic s, committed))."""
    if first is None or last[0] <= first[0]:
        return None
    return (last[1] - first[1]) / (last[0] - first[0])


def steady(samples: list[tuple[float, int]], total: int) -> float | None:
    """Events/s between the first samples at ≥ 10 % and ≥ 90 % of ``total`` (as the worker steps report)."""
    lo = next((s for s in samples if s[1] >= 0.1 * total), None)
    hi = next((s for s in samples if s[1] >= 0.9 * total), None)
    return (hi[1] - lo[1]) / (hi[0] - lo[0]) if lo and hi and hi[0] > lo[0] else None


def missing_reason(python: Path) -> str | None:
    """Why the step cannot run (None when it can)."""
    if not python.exists():
        return f"skipped: no {python} (`make bench` creates .venv-quix with quixstreams 3.28.1 and fastavro)"
    return None


def quix(b: Bench, deadline: float, tag: str = "") -> dict[str, Any]:
    """The Quix peer over the loaded data set, in a consumer group of its own (``tag`` tells repeated runs
    apart)."""
    # absolute, not resolved: the child runs in the work dir, and a venv's python is a symlink whose target is
    # the base interpreter (without quixstreams)
    python = Path(os.path.abspath(b.args.quix_python))
    inputs = [Topics().terminal, Topics().settlement]
    group, out = f"bench-quix{tag}", f"bench-quix{tag}.out"
    create_topics(b.bootstrap, {out: {}}, PARTITIONS)
    state_dir = b.work / "quix-state"
    shutil.rmtree(state_dir, ignore_errors=True)
    log = b.work / "logs" / f"quix{tag}.log"
    cmd = [str(python), str(BENCH_DIR / "quix_join.py"), "--bootstrap", b.bootstrap, "--group", group]
    cmd += ["--out", out, "--state-dir", str(state_dir), "--loglevel", "WARNING"]
    versions = subprocess.run(
        [
            str(python),
            "-c",
            "from importlib.metadata import version as v; print(v('quixstreams'), v('confluent-kafka'))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.split()
    total = b.total_inputs
    offsets = Offsets(b.bootstrap, group, inputs, PARTITIONS)
    cpu_broker0 = b.broker_cpu()
    spawn = time.monotonic()
    proc = b.children.spawn("quix", cmd, log, cwd=b.work)
    # leave time to stop it and count its outputs
    limit = deadline - 45
    first: tuple[float, int] | None = None
    cpu_first: float | None = None
    samples: list[tuple[float, int]] = []
    next_print = spawn + 10
    try:
        while True:
            done = offsets.committed()
            now = time.monotonic()
            samples.append((round(now - spawn, 2), done))
            if first is None and done > 0:
                first, cpu_first = (now, done), cpu_seconds(proc.pid)
            if done >= total or now > limit:
                break
            if proc.poll() is not None:
                raise ChildFailed(f"quix_join.py exited with code {proc.returncode}:\n{tail(log, 30)}")
            if now > next_print:
                next_print = now + 10
                b.log(f"  {now - spawn:5.0f} s: {done:,} / {total:,} committed")
            time.sleep(0.5)
        cpu_end = cpu_seconds(proc.pid)
    finally:
        offsets.close()
    cpu_broker1 = b.broker_cpu()
    end = (now, done)
    rate = sustained(first, end)
    between = steady(samples, total)
    span_cpu = cpu_end - cpu_first if cpu_end is not None and cpu_first is not None else None
    exit_code = b.children.stop(proc, grace_s=30)
    shutil.rmtree(state_dir, ignore_errors=True)  # its RocksDB files (about 80 MB after the full data set)
    outputs, orders = topic_stats(b.bootstrap, out)
    uncommitted_view = count_records(b.bootstrap, out, "read_uncommitted")
    result: dict[str, Any] = {
        "quixstreams": versions[0] if versions else None,
        "confluent_kafka_in_its_venv": versions[1] if len(versions) > 1 else None,
        "events": total,
        "events_committed": done,
        "drained": done >= total,
        "events_per_s": round(rate) if rate else None,
        "events_per_s_10_90pct": round(between) if between else None,
        "first_commit_after_s": round(first[0] - spawn, 2) if first else None,
        "measured_s": round(end[0] - first[0], 1) if first else None,
        "process_cpu_s": round(cpu_end, 1) if cpu_end is not None else None,
        "events_per_cpu_s": round(done / cpu_end) if cpu_end else None,
        "measured_span_cpu_s": round(span_cpu, 1) if span_cpu is not None else None,
        "events_per_cpu_s_measured_span": round((done - first[1]) / span_cpu) if first and span_cpu else None,
        "broker_cpu_s": round(cpu_broker1 - cpu_broker0, 1) if cpu_broker0 and cpu_broker1 else None,
        "exit_code": exit_code,
        "decisions_read_committed": outputs,
        "orders_decided": orders,
        "transaction_markers_in_output": log_end(b.bootstrap, [out], PARTITIONS) - uncommitted_view,
        "samples": samples,
    }
    b.log(
        f"  Quix Streams join: {result['events_per_s']} events/s, {done:,} / {total:,} input records committed "
        f"({'drained' if result['drained'] else 'time limit'}), {outputs:,} decisions on {orders:,} orders, "
        f"{result['events_per_cpu_s']} events per CPU-second"
    )
    return result
