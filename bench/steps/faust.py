"""The faust option: faust-streaming's exactly_once passthrough (``bench/faust_passthrough.py``, the ``bench``
extra): its rate on a subset of the pre-loaded data, then outputs vs committed inputs after a clean stop and after
``kill -9`` and restart."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import dataset
from harness import (
    BENCH_DIR,
    PY,
    ChildFailed,
    Offsets,
    count_records,
    create_contract_topics,
    create_topics,
    log_end,
    tail,
    topic_set,
)
from session import PARTITIONS, Bench


def faust(b: Bench, deadline: float) -> dict[str, Any]:
    topics = topic_set("bench-faust")
    create_contract_topics(b.bootstrap, topics, PARTITIONS, outputs=False)
    per_partition = b.args.faust_per_partition
    procs = [
        b.children.spawn(
            f"faust-loader-{i}",
            [
                PY,
                str(BENCH_DIR / "loader.py"),
                "--bootstrap",
                b.bootstrap,
                "--shard",
                str(path),
                "--terminal",
                topics.terminal,
                "--settlement",
                topics.settlement,
                "--limit-per-partition",
                str(per_partition),
            ],
            b.work / "logs" / f"faust-loader-{i}.log",
        )
        for i, path in enumerate(dataset.shard_paths(b.meta))
    ]
    for proc in procs:
        proc.wait(max(1.0, deadline - time.monotonic()))
    inputs = [topics.terminal, topics.settlement]
    total = log_end(b.bootstrap, inputs, PARTITIONS)
    fdir = b.work / "faust"
    shutil.rmtree(fdir, ignore_errors=True)
    fdir.mkdir(parents=True)
    result: dict[str, Any] = {
        "inputs": total,
        "subset": f"first {per_partition} records of every input partition of the pre-loaded data",
    }

    def start(app_id: str, out: str, tag: str = "") -> tuple[subprocess.Popen[bytes], Path]:
        log = fdir / f"{app_id}{tag}.log"
        cmd = [
            PY,
            str(BENCH_DIR / "faust_passthrough.py"),
            "--bootstrap",
            b.bootstrap,
            "--app-id",
            app_id,
            "--terminal",
            topics.terminal,
            "--settlement",
            topics.settlement,
            "--out",
            out,
        ]
        return b.children.spawn(app_id, cmd, log, cwd=fdir), log

    def wait_committed(
        offsets: Offsets, proc: subprocess.Popen[bytes], log: Path, target: int, limit: float
    ) -> tuple[float | None, int, float | None]:
        first: float | None = None
        first_n = 0
        while True:
            done = offsets.committed()
            now = time.monotonic()
            if first is None and done > 0:
                first, first_n = now, done
            if done >= target:
                return first, first_n, now
            if proc.poll() is not None:
                raise ChildFailed(f"faust exited with code {proc.returncode}:\n{tail(log, 30)}")
            if now > limit:
                return first, first_n, None
            time.sleep(0.5)

    # clean run: rate, then outputs vs inputs after a clean stop
    app_id, out = "bench-faust-clean", "bench-faust.out-clean"
    create_topics(b.bootstrap, {out: {}}, PARTITIONS)
    offsets = Offsets(b.bootstrap, app_id, inputs, PARTITIONS)
    spawn = time.monotonic()
    proc, log = start(app_id, out)
    clean_limit = spawn + 0.6 * (deadline - spawn)
    first, first_n, end = wait_committed(offsets, proc, log, total, clean_limit)
    done = offsets.committed()
    if first is not None:
        span = (end or time.monotonic()) - first
        result["events_per_s"] = round((done - first_n) / span) if span > 0 else None
        result["first_commit_after_s"] = round(first - spawn, 1)
    result["drained"] = end is not None
    stop_code = b.children.stop(proc, grace_s=45)
    committed = offsets.committed()
    offsets.close()
    outputs = count_records(b.bootstrap, out)
    uncommitted_view = count_records(b.bootstrap, out, "read_uncommitted")
    end_offsets = log_end(b.bootstrap, [out], PARTITIONS)
    result["clean"] = {
        "exit_code": stop_code,
        "inputs_committed": committed,
        "outputs_read_committed": outputs,
        "outputs_read_uncommitted": uncommitted_view,
        "output_log_end": end_offsets,
        "transaction_markers_in_output": end_offsets - uncommitted_view,
        "counts_equal": outputs == committed,
    }
    b.log(
        f"  faust clean run: {result.get('events_per_s')} events/s; inputs committed {committed:,}, "
        f"outputs {outputs:,}, transaction markers in the output topic "
        f"{end_offsets - uncommitted_view}"
    )
    # kill -9 half way, restart, drain: duplicates = outputs − inputs
    if time.monotonic() < deadline - 40:
        app_id, out = "bench-faust-kill", "bench-faust.out-kill"
        create_topics(b.bootstrap, {out: {}}, PARTITIONS)
        offsets = Offsets(b.bootstrap, app_id, inputs, PARTITIONS)
        proc, log = start(app_id, out)
        wait_committed(offsets, proc, log, total // 2, deadline - 30)
        b.children.stop(proc, sig=signal.SIGKILL)
        proc, log2 = start(app_id, out, "-restarted")
        _f, _n, end = wait_committed(offsets, proc, log2, total, deadline - 10)
        b.children.stop(proc, grace_s=45)
        committed = offsets.committed()
        offsets.close()
        outputs = count_records(b.bootstrap, out)
        result["kill9"] = {
            "drained": end is not None,
            "inputs_committed": committed,
            "outputs_read_committed": outputs,
            "duplicates": outputs - committed,
        }
        b.log(f"  faust kill -9 run: inputs committed {committed:,}, outputs {outputs:,} ({outputs - committed:+,})")
    markers = result["clean"]["transaction_markers_in_output"]
    kill = result.get("kill9")
    held = result["clean"]["counts_equal"] and markers > 0 and (kill is None or kill["duplicates"] == 0)
    reasons = []
    if not result["clean"]["counts_equal"]:
        reasons.append("clean run: committed outputs != committed inputs")
    if markers == 0:
        reasons.append(
            "no transaction markers in the output topic: the outputs were not written in "
            "transactions (faust sent them with its non-transactional producer)"
        )
    if kill is not None and kill["duplicates"] != 0:
        reasons.append(f"after kill -9 and restart: {kill['duplicates']:+,} outputs vs committed inputs")
    result["exactly_once_held"] = held
    result["exactly_once_notes"] = reasons
    return result
