"""``make bench``: posrecon's live figures against a raw baseline, on a local broker this script starts.

One run, every step bounded in time, every process stopped on exit (also on Ctrl-C / SIGTERM):

 1. load: ≥ 2M simulated input records (710k orders, full fault mix, 12 partitions; simulated and encoded
    once, cached under ``--workdir``) into the input topics, by two producer processes;
 2. raw baseline, after 20 s of unmeasured passthrough warming the broker: ``bench/passthrough.py`` —
    consume → fastavro decode → encode → transactional produce with ``send_offsets_to_transaction`` per
    batch, the worker's loop shape, no rules; then the same with posrecon's compiled codec (the worker's
    decoder/encoder), reported for information;
 3. one posrecon worker (``posrecon run --no-wall-clock-advance``, exactly-once) over the same records;
 4. two workers (fresh app id = fresh consumer group) over the same records;
 5. latency at 50% of (3)'s rate (steady live traffic, timestamps = now; 10 s of warm-up traffic on the
    freshly created topics, then 30 s measured; the whole run is reported too) and deadline → alert delay in
    wall-clock mode; the faust option (``bench/faust_passthrough.py``: rate + exactly-once check);
 6. bytes of state per open order, and recovery time of a worker with 1M open orders in its changelog;
 7. a py-spy (else cProfile) profile of one worker: where the time goes.

Prints one table (figures next to their targets) and writes ``bench/results/bench-<UTC stamp>.json``.
Throughput = sustained events/s from the first committed transaction until the group has committed every
input record (and its card sightings), sampled from the group's committed offsets every 0.5 s.

``python bench/run.py [--orders 700000] [--quick] [--skip faust,profile] [--workdir DIR]``
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import dataset
from harness import (
    BENCH_DIR,
    PY,
    REPO,
    ChildFailed,
    Children,
    Offsets,
    StepTimeout,
    count_records,
    cpu_seconds,
    create_contract_topics,
    create_topics,
    ensure_internal_topics,
    free_port,
    log_end,
    rss_bytes,
    scrape,
    tail,
    topic_set,
    topic_stats,
    worker_cmd,
    write_config,
)
from machine import machine_info

from posrecon.config import Topics
from posrecon.kafka.progress import group_lag

PARTITIONS = 12

TARGETS = {
    "ratio_vs_baseline": 0.5,
    "worker_events_per_s": 20_000,
    "scaling_two_vs_one": 1.6,
    "latency_p99_ms": 500,
    "deadline_alert_ms": 2000,
    "state_bytes_per_open_order": 1024,
    "recovery_1m_s": 30,
}


def _summary_line(log: Path) -> dict[str, Any]:
    """The JSON summary ``bench/passthrough.py`` prints last (``{"records": …}``), or {} if there is none."""
    lines = reversed(log.read_text().splitlines())
    return next((json.loads(line) for line in lines if line.startswith('{"records"')), {})


class Bench:
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

    def step(self, name: str, fn: Callable[[float], dict[str, Any]], timeout_s: float) -> dict[str, Any] | None:
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
            figures = fn(deadline)
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

    # --- steps -------------------------------------------------------------------------------------------

    def start_broker(self, deadline: float) -> dict[str, Any]:
        from posrecon.kafka.broker import KAFKA_VERSION, LocalBroker

        self.broker_dir = Path(tempfile.mkdtemp(prefix="posrecon-bench-broker-"))
        self.broker = LocalBroker(self.broker_dir / "broker")
        started = time.monotonic()
        self.broker.start(timeout=max(10.0, deadline - time.monotonic()))
        self.bootstrap = self.broker.bootstrap
        create_contract_topics(self.bootstrap, Topics(), PARTITIONS)
        self.log(f"  broker {self.bootstrap} (Kafka {KAFKA_VERSION}, data {self.broker_dir}), topics created")
        return {"kafka": KAFKA_VERSION, "start_s": round(time.monotonic() - started, 1), "bootstrap": self.bootstrap}

    def prepare_data(self, deadline: float) -> dict[str, Any]:
        meta = dataset.prepare(
            self.work / "cache", self.args.orders, self.args.seed, PARTITIONS, shards=2, log=self.log
        )
        self.meta = meta
        self.log(
            f"  {meta['records']:,} records ({'cached' if meta['cached'] else 'simulated and encoded'}): "
            f"{meta['per_topic']}"
        )
        return {k: v for k, v in meta.items() if k != "scenarios"}

    def load(self, deadline: float) -> dict[str, Any]:
        started = time.monotonic()
        cpu0 = self.broker_cpu()
        procs = [
            self.children.spawn(
                f"loader-{i}",
                [PY, str(BENCH_DIR / "loader.py"), "--bootstrap", self.bootstrap, "--shard", str(path)],
                self.work / "logs" / f"loader-{i}.log",
            )
            for i, path in enumerate(dataset.shard_paths(self.meta))
        ]
        for proc in procs:
            while proc.poll() is None:
                if time.monotonic() > deadline:
                    raise StepTimeout("loading the input topics took too long")
                time.sleep(0.2)
            if proc.returncode != 0:
                raise RuntimeError(f"loader exited with {proc.returncode}: {tail(self.work / 'logs' / 'loader-0.log')}")
        seconds = time.monotonic() - started
        topics = Topics()
        self.total_inputs = log_end(self.bootstrap, [topics.terminal, topics.settlement], PARTITIONS)
        if self.total_inputs != self.meta["records"]:
            raise RuntimeError(f"input topics hold {self.total_inputs} records, expected {self.meta['records']}")
        cpu1 = self.broker_cpu()
        self.log(
            f"  {self.total_inputs:,} records loaded in {seconds:.1f} s ({self.total_inputs / seconds:,.0f}/s, "
            f"2 producer processes)"
        )
        return {
            "records": self.total_inputs,
            "seconds": round(seconds, 1),
            "records_per_s": round(self.total_inputs / seconds),
            "producers": len(procs),
            "broker_cpu_s": round(cpu1 - cpu0, 1) if cpu0 is not None and cpu1 is not None else None,
        }

    def drive(
        self,
        procs: list[tuple[subprocess.Popen[bytes], Path, int | None]],
        group: str,
        internal: list[str],
        deadline: float,
    ) -> dict[str, Any]:
        """Poll ``group``'s committed input offsets until every input record (and ``internal``) is committed."""
        topics = Topics()
        offsets = Offsets(self.bootstrap, group, [topics.terminal, topics.settlement], PARTITIONS)
        total = self.total_inputs
        spawn = time.monotonic()
        cpu_broker0 = self.broker_cpu()
        samples: list[tuple[float, int]] = []
        first: tuple[float, int] | None = None
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
                if done >= total and (not internal or group_lag(self.bootstrap, group, internal, internal) == 0):
                    end = now
                    break
                if now > next_print:
                    next_print = now + 10
                    self.log(f"  {now - spawn:5.0f} s: {done:,} / {total:,} committed")
                if now > deadline:
                    raise StepTimeout(f"{group}: {done:,} of {total:,} input records committed when time ran out")
                time.sleep(0.5)
            cpu = [cpu_seconds(proc.pid) for proc, _log, _port in procs]
            rss = [rss_bytes(proc.pid) for proc, _log, _port in procs]
            metrics = [scrape(port) if port else {} for _proc, _log, port in procs]
        finally:
            offsets.close()
        cpu_broker1 = self.broker_cpu()
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
        return {
            "events": total,
            "events_per_s": round(sustained),
            "events_per_s_10_90pct": round(steady) if steady else None,
            "first_commit_after_s": round(first[0] - spawn, 2),
            "drained_after_s": round(end - spawn, 2),
            "events_per_s_from_process_start": round(total / (end - spawn)),
            "process_cpu_s": [round(c, 1) if c is not None else None for c in cpu],
            "events_per_cpu_s": round(total / proc_cpu) if proc_cpu else None,
            "broker_cpu_s": round(cpu_broker1 - cpu_broker0, 1) if cpu_broker0 and cpu_broker1 else None,
            "rss_mib": [round(r / 2**20, 1) if r else None for r in rss],
            "transactions": int(tx) if tx else None,
            "mean_records_per_transaction": round(batch_sum / batch_count, 1) if batch_count else None,
            "samples": samples,
        }

    def passthrough(self, deadline: float, codec: str = "fastavro") -> dict[str, Any]:
        suffix = "" if codec == "fastavro" else f"-{codec}"
        out = f"bench.passthrough{suffix}"
        create_topics(self.bootstrap, {out: {}}, PARTITIONS)
        log = self.work / "logs" / f"passthrough{suffix}.log"
        log.unlink(missing_ok=True)
        proc = self.children.spawn(
            "passthrough",
            [
                PY,
                str(BENCH_DIR / "passthrough.py"),
                "--bootstrap",
                self.bootstrap,
                "--group",
                f"bench-passthrough{suffix}",
                "--out",
                out,
                "--codec",
                codec,
            ],
            log,
        )
        figures = self.drive([(proc, log, None)], f"bench-passthrough{suffix}", [], deadline)
        self.children.stop(proc)
        summary = _summary_line(log)
        figures["self_reported"] = summary
        outputs = count_records(self.bootstrap, out)
        figures["outputs_committed"] = outputs
        figures["exactly_once_count_check"] = outputs == self.total_inputs
        self.log(
            f"  raw baseline ({codec}): {figures['events_per_s']:,} events/s "
            f"(outputs {outputs:,} = inputs: {outputs == self.total_inputs})"
        )
        return figures

    def warm_up(self, deadline: float) -> dict[str, Any]:
        """Not measured: 20 s of the passthrough (own group, own output topic) before the baseline. Right after
        the load the broker's fetch path and transactional writes are cold (its CPU per 2M events was 2.3x
        that of the next step), and the first measured step, the baseline, paid for it."""
        out = "bench.warmup"
        create_topics(self.bootstrap, {out: {}}, PARTITIONS)
        log = self.work / "logs" / "warmup.log"
        log.unlink(missing_ok=True)
        cpu_broker0 = self.broker_cpu()
        started = time.monotonic()
        proc = self.children.spawn(
            "warmup",
            [PY, str(BENCH_DIR / "passthrough.py"), "--bootstrap", self.bootstrap, "--group", "bench-warmup",
             "--out", out, "--codec", "compiled", "--max-seconds", str(self.args.warmup_s)],
            log,
        )  # fmt: skip
        proc.wait(max(1.0, deadline - time.monotonic()))
        self.children.stop(proc)
        cpu_broker1 = self.broker_cpu()
        summary = _summary_line(log)
        self.log(f"  {summary.get('records', 0):,} records passed through in {time.monotonic() - started:.0f} s")
        return {
            "records": summary.get("records"),
            "seconds": round(time.monotonic() - started, 1),
            "broker_cpu_s": round(cpu_broker1 - cpu_broker0, 1) if cpu_broker0 and cpu_broker1 else None,
        }

    def workers(self, n: int, deadline: float, flow_control: bool = False) -> dict[str, Any]:
        app_id = f"bench-w{n}{'-fc' if flow_control else ''}"
        topics = Topics(reconciled=f"{app_id}.reconciled", alerts=f"{app_id}.alerts", deadletter=f"{app_id}.deadletter")
        create_contract_topics(self.bootstrap, topics, PARTITIONS, inputs=False)
        _, sightings, _ = ensure_internal_topics(self.bootstrap, app_id, PARTITIONS)
        config = write_config(self.work / f"{app_id}.toml", topics)
        procs = []
        for i in range(n):
            port = free_port()
            log = self.work / "logs" / f"{app_id}-{i}.log"
            log.unlink(missing_ok=True)
            cmd = self.worker_cmd(
                app_id, f"w{i}", config, "--no-wall-clock-advance", "--metrics-port", str(port),
                *shlex.split(self.args.worker_args),
            )  # fmt: skip
            if flow_control:
                cmd[1:3] = [str(BENCH_DIR / "worker_flow_control.py")]
            procs.append((self.children.spawn(f"{app_id}-{i}", cmd, log), log, port))
        figures = self.drive(procs, app_id, [sightings], deadline)
        for proc, _log, _port in procs:
            self.children.stop(proc)
        dead = count_records(self.bootstrap, topics.deadletter)
        figures["deadletters"] = dead
        figures["deadletters_expected"] = self.meta.get("deadletters_expected")
        figures["reconciled_records"], orders = topic_stats(self.bootstrap, topics.reconciled)
        figures["orders_with_outcome"] = orders
        figures["orders_with_outcome_expected"] = self.meta.get("orders_with_outcome_expected")
        figures["alerts"] = count_records(self.bootstrap, topics.alerts)
        figures["alerts_expected"] = self.meta.get("alerts_expected")
        # a correct run outputs what the simulation's truth says (`posrecon replay` does, for this data)
        checks = [
            ("deadletters", "deadletters_expected"),
            ("orders_with_outcome", "orders_with_outcome_expected"),
            ("alerts", "alerts_expected"),
        ]
        known = [(a, b) for a, b in checks if figures.get(b) is not None]
        figures["output_matches_truth"] = all(figures[a] == figures[b] for a, b in known) if known else None
        rebalances = sum(log.read_text(errors="replace").count('"partitions assigned"') for _p, log, _port in procs)
        figures["partition_assignments_logged"] = rebalances
        self.log(
            f"  {n} worker(s): {figures['events_per_s']:,} events/s sustained "
            f"({figures['events_per_s_10_90pct']} between 10% and 90%), drained after {figures['drained_after_s']} s"
        )
        diverges = "  <-- OUTPUT DIVERGES FROM THE TRUTH" if figures["output_matches_truth"] is False else ""
        self.log(
            f"  outputs: {figures['alerts']:,} alerts (truth {figures['alerts_expected']}), "
            f"{figures['orders_with_outcome']:,} orders decided (truth {figures['orders_with_outcome_expected']}), "
            f"{dead:,} dead letters (truth {figures['deadletters_expected']}){diverges}"
        )
        return figures

    def latency(self, deadline: float) -> dict[str, Any]:
        import live

        one = self.ok("worker_1")
        rate = 0.5 * one["events_per_s"] if one else self.args.fallback_rate
        lines = self.live_lines()
        figures = live.measure_latency(
            self.bootstrap, self.children, self.work, PARTITIONS, rate, self.args.latency_s, lines, deadline, self.log,
            shlex.split(self.args.latency_worker_args), self.args.latency_warmup_s,
        )  # fmt: skip
        figures["worker_args"] = self.args.latency_worker_args
        figures["rate_basis"] = "50% of the one-worker rate" if one else f"fallback {self.args.fallback_rate}/s"
        s = figures["input_to_reconciled_stamp"]
        v = figures["input_to_reconciled_visible"]
        self.log(
            f"  {figures['records']:,} records at {figures['rate_achieved_per_s']:,.0f}/s: input → reconciled "
            f"p50 {s['p50_ms']} p99 {s['p99_ms']} max {s['max_ms']} ms (record timestamps); visible "
            f"(read_committed) p50 {v['p50_ms']} p99 {v['p99_ms']} max {v['max_ms']} ms"
        )
        return figures

    _live_lines: list[Any] | None = None

    def live_lines(self) -> list[Any]:
        """Simulated lines (full fault mix) for the live steps; also written as JSONL for the state step."""
        if self._live_lines is None:
            from posrecon.sim.command import write_input
            from posrecon.sim.generator import generate

            sim = generate(self.args.live_orders, self.args.seed + 1, partitions=PARTITIONS)
            self._live_lines = sim.lines
            path = self.work / f"live-{self.args.live_orders}.jsonl"
            if not path.exists():
                write_input(sim, path, progress=False)
        return self._live_lines

    def deadline_alert(self, deadline: float) -> dict[str, Any]:
        import live

        figures = live.measure_deadline(self.bootstrap, self.children, self.work, PARTITIONS, deadline)
        d = figures["delay"]
        self.log(
            f"  {figures['alerts_found']}/{figures['orders']} EXPIRED_ORDER alerts; deadline → alert "
            f"p50 {d['p50_ms']} max {d['max_ms']} ms"
        )
        idle = [p.pid for _n, p, _l in self.children.procs]
        figures["idle_worker_rss_mib"] = round((rss_bytes(idle[0]) or 0) / 2**20, 1) if idle else None
        return figures

    def faust(self, deadline: float) -> dict[str, Any]:
        topics = topic_set("bench-faust")
        create_contract_topics(self.bootstrap, topics, PARTITIONS, outputs=False)
        per_partition = self.args.faust_per_partition
        procs = [
            self.children.spawn(
                f"faust-loader-{i}",
                [
                    PY,
                    str(BENCH_DIR / "loader.py"),
                    "--bootstrap",
                    self.bootstrap,
                    "--shard",
                    str(path),
                    "--terminal",
                    topics.terminal,
                    "--settlement",
                    topics.settlement,
                    "--limit-per-partition",
                    str(per_partition),
                ],
                self.work / "logs" / f"faust-loader-{i}.log",
            )
            for i, path in enumerate(dataset.shard_paths(self.meta))
        ]
        for proc in procs:
            proc.wait(max(1.0, deadline - time.monotonic()))
        inputs = [topics.terminal, topics.settlement]
        total = log_end(self.bootstrap, inputs, PARTITIONS)
        fdir = self.work / "faust"
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
                self.bootstrap,
                "--app-id",
                app_id,
                "--terminal",
                topics.terminal,
                "--settlement",
                topics.settlement,
                "--out",
                out,
            ]
            return self.children.spawn(app_id, cmd, log, cwd=fdir), log

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
        create_topics(self.bootstrap, {out: {}}, PARTITIONS)
        offsets = Offsets(self.bootstrap, app_id, inputs, PARTITIONS)
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
        stop_code = self.children.stop(proc, grace_s=45)
        committed = offsets.committed()
        offsets.close()
        outputs = count_records(self.bootstrap, out)
        uncommitted_view = count_records(self.bootstrap, out, "read_uncommitted")
        end_offsets = log_end(self.bootstrap, [out], PARTITIONS)
        result["clean"] = {
            "exit_code": stop_code,
            "inputs_committed": committed,
            "outputs_read_committed": outputs,
            "outputs_read_uncommitted": uncommitted_view,
            "output_log_end": end_offsets,
            "transaction_markers_in_output": end_offsets - uncommitted_view,
            "counts_equal": outputs == committed,
        }
        self.log(
            f"  faust clean run: {result.get('events_per_s')} events/s; inputs committed {committed:,}, "
            f"outputs {outputs:,}, transaction markers in the output topic "
            f"{end_offsets - uncommitted_view}"
        )
        # kill -9 half way, restart, drain: duplicates = outputs − inputs
        if time.monotonic() < deadline - 40:
            app_id, out = "bench-faust-kill", "bench-faust.out-kill"
            create_topics(self.bootstrap, {out: {}}, PARTITIONS)
            offsets = Offsets(self.bootstrap, app_id, inputs, PARTITIONS)
            proc, log = start(app_id, out)
            wait_committed(offsets, proc, log, total // 2, deadline - 30)
            self.children.stop(proc, sig=signal.SIGKILL)
            proc, log2 = start(app_id, out, "-restarted")
            _f, _n, end = wait_committed(offsets, proc, log2, total, deadline - 10)
            self.children.stop(proc, grace_s=45)
            committed = offsets.committed()
            offsets.close()
            outputs = count_records(self.bootstrap, out)
            result["kill9"] = {
                "drained": end is not None,
                "inputs_committed": committed,
                "outputs_read_committed": outputs,
                "duplicates": outputs - committed,
            }
            self.log(
                f"  faust kill -9 run: inputs committed {committed:,}, outputs {outputs:,} ({outputs - committed:+,})"
            )
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

    def state(self, deadline: float) -> dict[str, Any]:
        import recovery

        self.live_lines()
        figures = recovery.state_bytes(self.work / f"live-{self.args.live_orders}.jsonl")
        self.log(
            f"  {figures['heap_bytes_per_open_order']} heap bytes per open order ({figures['open_orders']:,} "
            f"open), changelog {figures['changelog_bytes_per_open_order']} bytes per open order"
        )
        return figures

    def recovery(self, deadline: float) -> dict[str, Any]:
        import recovery

        figures = recovery.measure_recovery(
            self.bootstrap, self.children, self.work, PARTITIONS, self.args.recovery_orders, deadline, self.log
        )
        idle = (self.ok("deadline") or {}).get("idle_worker_rss_mib")
        if idle and figures.get("rss_after_restore_mib"):
            figures["idle_worker_rss_mib"] = idle
            figures["rss_bytes_per_restored_order_net"] = round(
                (figures["rss_after_restore_mib"] - idle) * 2**20 / max(self.args.recovery_orders, 1), 1
            )
        self.log(
            f"  {figures['orders_restored']:,} orders restored: start → assigned {figures['start_to_assigned_s']}"
            f" s, → first record {figures['start_to_first_record_s']} s"
        )
        return figures

    def profile(self, deadline: float) -> dict[str, Any]:
        import profile_summary

        app_id = "bench-prof"
        topics = Topics(reconciled=f"{app_id}.reconciled", alerts=f"{app_id}.alerts", deadletter=f"{app_id}.deadletter")
        create_contract_topics(self.bootstrap, topics, PARTITIONS, inputs=False)
        ensure_internal_topics(self.bootstrap, app_id, PARTITIONS)
        config = write_config(self.work / f"{app_id}.toml", topics)
        log = self.work / "logs" / "profile-worker.log"
        log.unlink(missing_ok=True)
        pyspy = shutil.which("py-spy") or str(Path(PY).parent / "py-spy")
        seconds = self.args.profile_s
        cmd = self.worker_cmd(app_id, "prof", config, "--no-wall-clock-advance")
        out: Path
        if os.access(pyspy, os.X_OK):
            out = self.work / "profile-worker.raw"
            out.unlink(missing_ok=True)
            proc = self.children.spawn("profile-worker", cmd, log)
            self.wait_first_commit(app_id, proc, log, deadline)
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
            out = self.work / "profile-worker.prof"
            out.unlink(missing_ok=True)
            proc = self.children.spawn("profile-worker", [PY, "-m", "cProfile", "-o", str(out), *cmd[1:]], log)
            self.wait_first_commit(app_id, proc, log, deadline)
            time.sleep(min(seconds, max(1.0, deadline - time.monotonic() - 20)))
            tool = "cProfile (py-spy not installed: pip install py-spy for a sampling profile)"
        self.children.stop(proc, grace_s=30)
        summary = profile_summary.summarize(out)
        self.log(f"  {tool}: {out}")
        for label, pct in list(summary.get("stages_pct", summary.get("top_self_pct", {})).items())[:12]:
            self.log(f"    {pct:5.1f}%  {label}")
        return {"tool": tool, "seconds": seconds, "file": str(out), **summary}

    def wait_first_commit(self, group: str, proc: subprocess.Popen[bytes], log: Path, deadline: float) -> None:
        topics = Topics()
        offsets = Offsets(self.bootstrap, group, [topics.terminal, topics.settlement], PARTITIONS)
        try:
            while offsets.committed() == 0:
                if proc.poll() is not None:
                    raise ChildFailed(f"worker exited ({proc.returncode}):\n{tail(log)}")
                if time.monotonic() > deadline:
                    raise StepTimeout("worker did not commit in time")
                time.sleep(0.3)
        finally:
            offsets.close()

    # --- the run -----------------------------------------------------------------------------------------

    def run_steps(self) -> None:
        a = self.args
        self.step("dataset", self.prepare_data, 600)
        if self.ok("dataset"):
            self.step("load", self.load, 300)
        if self.ok("load"):
            self.step("warmup", self.warm_up, 60 + self.args.warmup_s)
            self.step("passthrough", self.passthrough, 300)
            self.step("passthrough_compiled", lambda d: self.passthrough(d, "compiled"), 300)
            self.step("worker_1", lambda d: self.workers(1, d), 480)
            self.step("workers_2", lambda d: self.workers(2, d), 480)
            if a.flow_control_experiment:
                self.step("worker_1_flow_control", lambda d: self.workers(1, d, flow_control=True), 480)
        self.step("latency", self.latency, 60 + 2 * (a.latency_s + a.latency_warmup_s))
        self.step("deadline", self.deadline_alert, 60)
        if self.ok("load"):
            self.step("faust", self.faust, a.faust_s)
        self.step("state", self.state, 180)
        self.step("recovery", self.recovery, 300)
        if self.ok("load"):
            self.step("profile", self.profile, a.profile_s + 60)

    def run(self) -> int:
        a = self.args
        self.results["command"] = "make bench  (python bench/run.py " + " ".join(sys.argv[1:]) + ")"
        self.results["started_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.results["machine"] = machine_info()
        self.results["versions"] = versions()
        self.results["parameters"] = {
            "orders": a.orders,
            "seed": a.seed,
            "partitions": PARTITIONS,
            "batch_max_records": 10_000,
            "latency_s": a.latency_s,
            "latency_warmup_s": a.latency_warmup_s,
            "recovery_orders": a.recovery_orders,
            "live_orders": a.live_orders,
            "worker_args": a.worker_args,
        }
        m = self.results["machine"]
        self.log(f"machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Python {m['python']}, {m['java']}")
        self.log(f"load average at start: {', '.join(f'{x:.2f}' for x in m['load_average'])}")
        interrupted = False
        try:
            self.step("broker", self.start_broker, 120)
            if self.ok("broker"):
                self.run_steps()
        except KeyboardInterrupt as exc:
            interrupted = str(exc) or "SIGINT"
            self.log("\ninterrupted: stopping processes and the broker …")
        finally:
            self.children.stop_all()
            if self.broker is not None:
                with contextlib.suppress(Exception):
                    self.broker.stop()
            if self.broker_dir is not None:
                shutil.rmtree(self.broker_dir, ignore_errors=True)
        self.results["interrupted"] = interrupted
        self.results["total_s"] = round(time.monotonic() - self.started, 1)
        self.results["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
        self.results["targets"] = TARGETS
        self.results["figures"] = self.figures()
        path = self.write()
        self.print_table()
        self.log(f"\nwrote {path}  (total {self.results['total_s']:.0f} s)")
        return 130 if interrupted else 0

    def figures(self) -> dict[str, Any]:
        f: dict[str, Any] = {}
        st = self.results["steps"]

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

    def write(self) -> Path:
        out = Path(self.args.results)
        out.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        path = out / f"bench-{stamp}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.results, indent=2, default=str) + "\n")
        tmp.replace(path)
        return path

    def print_table(self) -> None:
        f = self.results["figures"]
        t = TARGETS

        def num(v: Any, unit: str = "", digits: int = 0) -> str:
            if v is None:
                return "n/a"
            if isinstance(v, float) and digits:
                return f"{v:,.{digits}f}{unit}"
            return f"{v:,.0f}{unit}" if isinstance(v, int | float) else str(v)

        def verdict(value: Any, ok: Callable[[Any], bool]) -> str:
            return "n/a" if value is None else ("met" if ok(value) else "MISSED")

        lat = f.get("latency_stamp_ms") or {}
        vis = f.get("latency_visible_ms") or {}
        late = f.get("latency_stamp_incl_warmup_ms") or {}
        warm = self.args.latency_warmup_s
        dl = f.get("deadline_alert_ms") or {}
        rec_s = max(
            (
                v
                for v in (f.get("recovery_start_to_assigned_s"), f.get("recovery_start_to_first_record_s"))
                if v is not None
            ),
            default=None,
        )
        faust = self.results["steps"].get("faust", {})
        rows = [
            ("load: input records into 24 partitions", num(f.get("load_records_per_s"), " rec/s"), "", ""),
            ("raw baseline passthrough, EOS (1 process)", num(f.get("baseline_events_per_s"), " ev/s"), "", ""),
            (
                "  same, posrecon's compiled codec",
                num(f.get("baseline_compiled_codec_events_per_s"), " ev/s"),
                "(info)",
                "",
            ),
            (
                "posrecon, 1 worker, exactly-once",
                num(f.get("worker1_events_per_s"), " ev/s"),
                f">= {t['worker_events_per_s']:,} ev/s",
                verdict(f.get("worker1_events_per_s"), lambda v: v >= t["worker_events_per_s"]),
            ),
            (
                "  output = simulation truth?",
                {True: "yes", False: "NO (diverges)", None: "n/a"}[f.get("worker1_output_matches_truth")],
                "",
                "",
            ),
            (
                "posrecon / raw baseline",
                num(f.get("ratio_vs_baseline"), "", 2),
                f">= {t['ratio_vs_baseline']}",
                verdict(f.get("ratio_vs_baseline"), lambda v: v >= t["ratio_vs_baseline"]),
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
            (
                "2 workers / 1 worker",
                num(f.get("scaling_two_vs_one"), "", 2),
                f">= {t['scaling_two_vs_one']}",
                verdict(f.get("scaling_two_vs_one"), lambda v: v >= t["scaling_two_vs_one"]),
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
            (
                "state per open order (engine heap)",
                num(f.get("state_heap_bytes_per_open_order"), " B"),
                f"<= {t['state_bytes_per_open_order']} B",
                verdict(f.get("state_heap_bytes_per_open_order"), lambda v: v <= t["state_bytes_per_open_order"]),
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
        ]
        if "worker_1_flow_control" in self.results["steps"]:
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
        m = self.results["machine"]
        print(
            f"\n=== posrecon benchmark ({m['cpu']}, {m['cores']} cores; load average start "
            f"{m['load_average'][0]:.2f}, end {self.results['load_average_end'][0]:.2f}) ==="
        )
        print(f"{'figure':<46}{'value':>24}  {'target':<20}{'':<7}")
        for name, value, target, status in rows:
            print(f"{name:<46}{value:>24}  {target:<20}{status:<7}")
        for note in faust.get("exactly_once_notes", []) if faust.get("status") == "ok" else []:
            print(f"  faust: {note}")
        failed = [(k, v["status"]) for k, v in self.results["steps"].items() if v.get("status") != "ok"]
        for name, status in failed:
            print(f"  step {name}: {status[:300]}")


def versions() -> dict[str, Any]:
    from importlib import metadata

    import confluent_kafka

    from posrecon.kafka.broker import KAFKA_VERSION

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--orders", type=int, default=710_000, help="simulated orders to pre-load (710k ≈ 2.02M records)"
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--workdir", default=str(REPO / ".cache" / "bench"), help="cache + logs (default .cache/bench)")
    parser.add_argument("--results", default=str(BENCH_DIR / "results"))
    parser.add_argument(
        "--latency-s", type=float, default=30.0, help="seconds of steady traffic measured in the latency run"
    )
    parser.add_argument(
        "--latency-warmup-s",
        type=float,
        default=10.0,
        help="seconds of the same traffic before the measured ones (reported separately, not in the figure)",
    )
    parser.add_argument("--latency-worker-args", default="", help="extra worker options, e.g. --max-task-idle-ms 100")
    parser.add_argument("--worker-args", default="", help="extra worker options for the throughput steps")
    parser.add_argument(
        "--live-orders", type=int, default=200_000, help="simulated orders for the live traffic (~2.85 records each)"
    )
    parser.add_argument("--fallback-rate", type=float, default=5000.0, help="latency rate if the 1-worker step failed")
    parser.add_argument("--recovery-orders", type=int, default=1_000_000)
    parser.add_argument("--faust-per-partition", type=int, default=3000, help="faust input: records per partition")
    parser.add_argument("--faust-s", type=float, default=200.0, help="time limit of the faust step")
    parser.add_argument("--profile-s", type=int, default=30)
    parser.add_argument(
        "--warmup-s", type=float, default=20.0, help="seconds of unmeasured passthrough before the raw baseline"
    )
    parser.add_argument("--budget-s", type=float, default=1500.0, help="hard limit for the whole run")
    parser.add_argument("--skip", default="", help="comma-separated steps to skip (faust, profile, recovery, …)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small run to try the harness (100k orders, 200k recovery orders, 5 s warm-up + 15 s latency)",
    )
    parser.add_argument(
        "--flow-control-experiment",
        action="store_true",
        help="also run one worker with bench/worker_flow_control.py (merge flow control patched in)",
    )
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    args.skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    if args.quick:
        args.orders, args.recovery_orders, args.latency_s = 100_000, 200_000, 15.0
        args.latency_warmup_s = 5.0
        args.live_orders, args.faust_per_partition, args.profile_s = 40_000, 1000, 10

    def _interrupt(signum: int, _frame: object) -> None:
        print(f"\nreceived {signal.Signals(signum).name}", flush=True)
        raise KeyboardInterrupt(signal.Signals(signum).name)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    return Bench(args).run()


if __name__ == "__main__":
    sys.exit(main())
