"""Step 7: where one worker's time goes (py-spy if installed, else cProfile), summarised by ``profile_summary``."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from harness import (
    PY,
    ChildFailed,
    Offsets,
    StepTimeout,
    create_contract_topics,
    ensure_internal_topics,
    tail,
    write_config,
)
from session import PARTITIONS, Bench

from posrecon.config import Topics


def profile(b: Bench, deadline: float) -> dict[str, Any]:
    import profile_summary

    app_id = "bench-prof"
    topics = Topics(reconciled=f"{app_id}.reconciled", alerts=f"{app_id}.alerts", deadletter=f"{app_id}.deadletter")
    create_contract_topics(b.bootstrap, topics, PARTITIONS, inputs=False)
    ensure_internal_topics(b.bootstrap, app_id, PARTITIONS)
    config = write_config(b.work / f"{app_id}.toml", topics)
    log = b.work / "logs" / "profile-worker.log"
    log.unlink(missing_ok=True)
    pyspy = shutil.which("py-spy") or str(Path(PY).parent / "py-spy")
    seconds = b.args.profile_s
    cmd = b.worker_cmd(app_id, "prof", config, "--no-wall-clock-advance")
    out: Path
    if os.access(pyspy, os.X_OK):
        out = b.work / "profile-worker.raw"
        out.unlink(missing_ok=True)
        proc = b.children.spawn("profile-worker", cmd, log)
        wait_first_commit(b, app_id, proc, log, deadline)
        spy = subprocess.run(
            [
                pyspy,
                "record",
                "--pid",
                str(proc.pid),
                "--rate",
                "100",
                "--idle",
                "--format",
                "raw",
                "-o",
                str(out),
                "--duration",
                str(seconds),
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 30,
        )
        tool = "py-spy record --rate 100 --idle (sampling, blocking)"
        if spy.returncode != 0 or not out.exists():
            raise RuntimeError(f"py-spy failed ({spy.returncode}): {spy.stderr[-500:]}")
    else:
        out = b.work / "profile-worker.prof"
        out.unlink(missing_ok=True)
        proc = b.children.spawn("profile-worker", [PY, "-m", "cProfile", "-o", str(out), *cmd[1:]], log)
        wait_first_commit(b, app_id, proc, log, deadline)
        time.sleep(min(seconds, max(1.0, deadline - time.monotonic() - 20)))
        tool = "cProfile (py-spy not installed: pip install py-spy for a sampling profile)"
    b.children.stop(proc, grace_s=30)
    summary = profile_summary.summarize(out)
    b.log(f"  {tool}: {out}")
    for label, pct in list(summary.get("stages_pct", summary.get("top_self_pct", {})).items())[:12]:
        b.log(f"    {pct:5.1f}%  {label}")
    return {"tool": tool, "seconds": seconds, "file": str(out), **summary}


def wait_first_commit(b: Bench, group: str, proc: subprocess.Popen[bytes], log: Path, deadline: float) -> None:
    topics = Topics()
    offsets = Offsets(b.bootstrap, group, [topics.terminal, topics.settlement], PARTITIONS)
    try:
        while offsets.committed() == 0:
            if proc.poll() is not None:
                raise ChildFailed(f"worker exited ({proc.returncode}):\n{tail(log)}")
            if time.monotonic() > deadline:
                raise StepTimeout("worker did not commit in time")
            time.sleep(0.3)
    finally:
        offsets.close()
