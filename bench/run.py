"""``make bench``: posrecon's live figures against a raw baseline, on a local broker this script starts.

One run, every step bounded in time, every process stopped on exit (also on Ctrl-C / SIGTERM):

 1. load: ≥ 2M simulated input records (710k orders, full fault mix, 12 partitions; simulated and encoded
    once, cached under ``--workdir``) into the input topics, by two producer processes;
 2. raw baseline, after 20 s of unmeasured passthrough warming the broker: ``bench/passthrough.py`` —
    consume → fastavro decode → encode → transactional produce with ``send_offsets_to_transaction`` per
    batch, the worker's loop shape, no rules; then the same with posrecon's compiled codec (the worker's
    decoder/encoder), reported for information;
 3. one posrecon worker (``posrecon run --no-wall-clock-advance``, exactly-once) over the same records;
 4. two workers (fresh app id = fresh consumer group) over the same records; then the Quix Streams peer
    (``bench/quix_join.py`` in ``.venv-quix``: the order join, exactly-once, its own state store) over the same
    pre-loaded records, so that the ratio compares runs a minute apart; then ``batches``: one worker over
    a contract v2 mix with settlement batches and one over the same mix without (``--batch-orders`` orders
    each, own topics, same seed): the cost of the batch stage's repartition (``bench/steps/batches.py``);
 5. latency at 50% of (3)'s rate (steady live traffic, timestamps = now; 10 s of warm-up traffic on the
    freshly created topics, then 30 s measured; the whole run is reported too) and deadline → alert delay in
    wall-clock mode; the faust option (``bench/faust_passthrough.py``: rate + exactly-once check);
 6. bytes of state per open order, and recovery time of a worker with 1M open orders in its changelog;
 7. a py-spy (else cProfile) profile of one worker: where the time goes.

Prints one table (figures next to their targets) and writes ``bench/results/bench-<UTC stamp>.json``.
Throughput = sustained events/s from the first committed transaction until the group has committed every
input record (and its card sightings), sampled from the group's committed offsets every 0.5 s.

``python bench/run.py [--orders 700000] [--quick] [--skip faust,quix,profile] [--workdir DIR]``
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import report
from harness import BENCH_DIR, REPO
from machine import machine_info
from session import PARTITIONS, Bench
from steps import batches, faust, live_traffic, profile, quix, setup, throughput


def run_steps(b: Bench) -> None:
    a = b.args
    b.step("dataset", setup.prepare_data, 600)
    if b.ok("dataset"):
        b.step("load", setup.load, 300)
    if b.ok("load"):
        b.step("warmup", throughput.warm_up, 60 + b.args.warmup_s)
        b.step("passthrough", throughput.passthrough, 300)
        b.step("passthrough_compiled", lambda b, d: throughput.passthrough(b, d, "compiled"), 300)
        b.step("worker_1", lambda b, d: throughput.workers(b, 1, d), 480)
        b.step("workers_2", lambda b, d: throughput.workers(b, 2, d), 480)
        # the peer next: this machine's speed drifts by up to a fifth within an hour (docs/performance.md, session
        # 20), so the ratio compares runs a minute apart; not between the two worker steps, where one run measured
        # two workers at 0.77 of one worker's events per CPU-second (0.95-0.98 otherwise)
        missing = quix.missing_reason(Path(a.quix_python))
        if missing is not None and "quix" not in a.skip:
            b.results["steps"]["quix"] = {"status": missing}
            b.log(f"\n== quix: {missing}")
        else:
            b.step("quix", quix.quix, a.quix_s)
        if a.pairs and missing is None:
            alternating_pairs(b)
        if a.flow_control_experiment:
            b.step("worker_1_flow_control", lambda b, d: throughput.workers(b, 1, d, flow_control=True), 480)
    b.step("batches", batches.batches, 900)
    b.step("latency", live_traffic.latency, 60 + 2 * (a.latency_s + a.latency_warmup_s))
    b.step("deadline", live_traffic.deadline_alert, 60)
    if b.ok("load"):
        b.step("faust", faust.faust, a.faust_s)
    b.step("state", live_traffic.state, 180)
    b.step("recovery", live_traffic.recovery, 300)
    if b.ok("load"):
        b.step("profile", profile.profile, a.profile_s + 60)


def alternating_pairs(b: Bench) -> None:
    """One worker, two workers and the Quix peer in turn, ``--pairs`` times, each in a group of its own: the
    machine's speed drifts by up to a fifth within an hour (docs/performance.md, sessions 20 and 23), so a ratio
    of two runs far apart says little, the mean of alternating rounds more. Each round gives posrecon ÷ Quix
    and two workers' events per CPU-second ÷ one worker's."""
    ratios, scaling = [], []
    for i in range(b.args.pairs):
        tag = f"-p{i + 1}"
        one = b.step(f"pair{i + 1}_worker_1", lambda b, d, tag=tag: throughput.workers(b, 1, d, tag=tag), 480)
        two = b.step(f"pair{i + 1}_workers_2", lambda b, d, tag=tag: throughput.workers(b, 2, d, tag=tag), 480)
        peer = b.step(f"pair{i + 1}_quix", lambda b, d, tag=tag: quix.quix(b, d, tag=tag), b.args.quix_s)
        if one and peer and one.get("events_per_s") and peer.get("events_per_s"):
            ratios.append(one["events_per_s"] / peer["events_per_s"])
            b.log(f"  round {i + 1}: posrecon ÷ Quix {ratios[-1]:.2f}")
        if one and two and one.get("events_per_cpu_s") and two.get("events_per_cpu_s"):
            scaling.append(two["events_per_cpu_s"] / one["events_per_cpu_s"])
            b.log(f"  round {i + 1}: two workers per CPU-second ÷ one {scaling[-1]:.2f}")
    pairs: dict[str, Any] = {}
    if ratios:
        pairs.update(ratios=[round(r, 3) for r in ratios], mean=round(sum(ratios) / len(ratios), 3))
        b.log(f"\n== posrecon ÷ Quix over {len(ratios)} alternating rounds: {pairs['mean']:.2f}")
    if scaling:
        pairs["scaling_per_cpu_s"] = [round(r, 3) for r in scaling]
        pairs["scaling_per_cpu_s_mean"] = round(sum(scaling) / len(scaling), 3)
        b.log(f"== two workers per CPU-second ÷ one over {len(scaling)} rounds: {pairs['scaling_per_cpu_s_mean']:.2f}")
    if pairs:
        b.results["pairs"] = pairs


def run(b: Bench) -> int:
    a = b.args
    b.results["command"] = "make bench  (python bench/run.py " + " ".join(sys.argv[1:]) + ")"
    b.results["started_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    b.results["machine"] = machine_info()
    b.results["versions"] = report.versions()
    b.results["parameters"] = {
        "orders": a.orders,
        "seed": a.seed,
        "contract": a.contract,
        "partitions": PARTITIONS,
        "batch_max_records": 10_000,
        "latency_s": a.latency_s,
        "latency_warmup_s": a.latency_warmup_s,
        "recovery_orders": a.recovery_orders,
        "batch_orders": a.batch_orders,
        "batch_workers": a.batch_workers,
        "live_orders": a.live_orders,
        "worker_args": a.worker_args,
    }
    m = b.results["machine"]
    b.log(f"machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Python {m['python']}, {m['java']}")
    b.log(f"load average at start: {', '.join(f'{x:.2f}' for x in m['load_average'])}")
    interrupted: bool | str = False
    try:
        b.step("broker", setup.start_broker, 120)
        if b.ok("broker"):
            run_steps(b)
    except KeyboardInterrupt as exc:
        interrupted = str(exc) or "SIGINT"
        b.log("\ninterrupted: stopping processes and the broker …")
    finally:
        b.children.stop_all()
        if b.broker is not None:
            with contextlib.suppress(Exception):
                b.broker.stop()
        if b.broker_dir is not None:
            shutil.rmtree(b.broker_dir, ignore_errors=True)
    b.results["interrupted"] = interrupted
    b.results["total_s"] = round(time.monotonic() - b.started, 1)
    b.results["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    b.results["targets"] = report.TARGETS
    b.results["figures"] = report.figures(b.results)
    path = report.write(b.results, b.args.results)
    report.print_table(b.results, b.args.latency_warmup_s)
    b.log(f"\nwrote {path}  (total {b.results['total_s']:.0f} s)")
    return 130 if interrupted else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--orders", type=int, default=710_000, help="simulated orders to pre-load (710k ≈ 2.02M records)"
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--contract",
        choices=("v1", "v2"),
        default="v1",
        help="simulated traffic's contract (v1 keeps the figures comparable with earlier results)",
    )
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
    parser.add_argument(
        "--batch-orders",
        type=int,
        default=None,
        help="orders of each v2 data set of the batches step, with and without settlement batches (150k; quick 30k)",
    )
    parser.add_argument(
        "--batch-workers",
        type=int,
        default=1,
        help="workers of the batches step (1: every batch partition is local, nothing crosses the repartition topic)",
    )
    parser.add_argument("--faust-per-partition", type=int, default=3000, help="faust input: records per partition")
    parser.add_argument("--faust-s", type=float, default=200.0, help="time limit of the faust step")
    parser.add_argument(
        "--quix-python",
        default=str(quix.DEFAULT_PYTHON),
        help="the Python of the Quix Streams venv (default .venv-quix/bin/python; the step is skipped without it)",
    )
    parser.add_argument("--quix-s", type=float, default=300.0, help="time limit of the Quix Streams step")
    parser.add_argument(
        "--pairs", type=int, default=0, help="then N alternating rounds: 1 worker, 2 workers, Quix (default 0)"
    )
    parser.add_argument("--profile-s", type=int, default=30)
    parser.add_argument(
        "--warmup-s", type=float, default=20.0, help="seconds of unmeasured passthrough before the raw baseline"
    )
    parser.add_argument("--budget-s", type=float, default=1800.0, help="hard limit for the whole run")
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
    if args.batch_orders is None:
        args.batch_orders = 30_000 if args.quick else 150_000

    def _interrupt(signum: int, _frame: object) -> None:
        print(f"\nreceived {signal.Signals(signum).name}", flush=True)
        raise KeyboardInterrupt(signal.Signals(signum).name)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    return run(Bench(args))


if __name__ == "__main__":
    sys.exit(main())
