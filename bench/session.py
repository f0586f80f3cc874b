"""The benchmark run's shared plumbing: time-bounded steps, the broker's CPU, the worker command, live traffic."""

from __future__ import annotations

import argparse
import json
import os
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness import ChildFailed, Children, StepTimeout, cpu_seconds, worker_cmd

PARTITIONS = 12


def summary_line(log: Path) -> dict[str, Any]:
    """The JSON summary ``bench/passthrough.py`` prints last (``{"records": …}``), or {} if there is none."""
    lines = reversed(log.read_text().splitlines())
    return next((json.loads(line) for line in lines if line.startswith('{"records"')), {})


class Bench:
    """One benchmark run: its arguments, broker, child processes, results, and the time-bounded :meth:`step`."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work = Path(args.workdir).resolve()
        (self.work / "logs").mkdir(parents=True, exist_ok=True)
        self.children = Children()
        self.broker: Any = None
        self.broker_dir: Path | None = None
        self.bootstrap = ""
        self.results: dict[str, Any] = {"steps": {}}
        self.started = time.monotonic()
        self.budget_end = self.started + args.budget_s
        self.total_inputs = 0
        self.meta: dict[str, Any] = {}

    # --- plumbing ----------------------------------------------------------------------------------------

    def log(self, text: str) -> None:
        print(text, flush=True)

    def step(self, name: str, fn: Callable[[Bench, float], dict[str, Any]], timeout_s: float) -> dict[str, Any] | None:
        if name in self.args.skip:
            self.results["steps"][name] = {"status": "skipped (--skip)"}
            return None
        left = self.budget_end - time.monotonic()
        if left < min(30.0, timeout_s):
            self.results["steps"][name] = {"status": f"skipped: time budget ({self.args.budget_s:.0f} s) used up"}
            self.log(f"\n== {name}: skipped (time budget used up)")
            return None
        deadline = time.monotonic() + min(timeout_s, left)
        self.log(f"\n== {name} (limit {min(timeout_s, left):.0f} s, load average {os.getloadavg()[0]:.2f})")
        started = time.monotonic()
        load_before = os.getloadavg()
        try:
            figures = fn(self, deadline)
            record: dict[str, Any] = {"status": "ok", **figures}
        except (StepTimeout, ChildFailed, RuntimeError, TimeoutError, OSError, ValueError, KeyError) as exc:
            record = {"status": f"failed: {type(exc).__name__}: {exc}"}
            self.log(f"  FAILED: {type(exc).__name__}: {str(exc)[:2000]}")
            if self.args.verbose:
                traceback.print_exc()
        except Exception as exc:
            record = {"status": f"failed: {type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
            self.log(f"  FAILED: {type(exc).__name__}: {exc}")
            traceback.print_exc()
        finally:
            self.children.stop_all()
        record["step_s"] = round(time.monotonic() - started, 1)
        record["load_average_before"] = [round(x, 2) for x in load_before]
        record["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
        self.results["steps"][name] = record
        self.log(f"  ({record['step_s']} s)")
        return record

    def ok(self, name: str) -> dict[str, Any] | None:
        rec = self.results["steps"].get(name)
        return rec if rec is not None and rec.get("status") == "ok" else None

    def broker_cpu(self) -> float | None:
        pid = self.broker.pid if self.broker is not None else None
        return cpu_seconds(pid) if pid else None

    def worker_cmd(self, app_id: str, worker_id: str, config: Path, *extra: str) -> list[str]:
        return worker_cmd(self.bootstrap, app_id, worker_id, config, *extra)

    _live_lines: list[Any] | None = None
    live_rules: Any = None  # the rules the live lines were simulated with (v2: with merchant pricing)

    def live_jsonl(self) -> Path:
        return self.work / f"live-{self.args.contract}-{self.args.live_orders}.jsonl"

    def live_lines(self) -> list[Any]:
        """Simulated lines (full fault mix) for the live steps; also written as JSONL for the state step."""
        if self._live_lines is None:
            from posrecon.sim.command import write_input
            from posrecon.sim.generator import generate

            sim = generate(
                self.args.live_orders, self.args.seed + 1, partitions=PARTITIONS, contract=self.args.contract
            )
            self._live_lines = sim.lines
            self.live_rules = sim.truth.rules
            path = self.live_jsonl()
            if not path.exists():
                write_input(sim, path, progress=False)
        return self._live_lines
