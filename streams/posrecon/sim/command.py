"""``posrecon simulate``: write a replay file of synthetic POS traffic and its ground truth."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tqdm import tqdm

from posrecon.config import load_rules
from posrecon.sim.generator import DEFAULT_FAULT_RATE, DEFAULT_START_MS, Simulation, generate
from posrecon.sim.mix import parse_mix
from posrecon.sim.timing import HOUR
from posrecon.sim.truth import write_truth

INPUT_FILE = "input.jsonl"
TRUTH_FILE = "truth.json"


def write_input(simulation: Simulation, path: Path, progress: bool) -> None:
    with (
        open(path, "w", encoding="utf-8") as fh,
        tqdm(
            total=len(simulation.lines),
            unit="line",
            desc="write",
            disable=not progress,
            file=sys.stderr,
        ) as bar,
    ):
        for number, line in enumerate(simulation.lines, 1):
            fh.write(line.to_json_line())
            fh.write("\n")
            if number % 8192 == 0:
                bar.update(8192)
        bar.update(len(simulation.lines) % 8192)


def summarize(simulation: Simulation, out: Path, seconds: float) -> str:
    truth = simulation.truth
    records = sum(1 for line in simulation.lines if line.raw is None)
    rows = [
        f"simulated {len(truth.orders)} orders, {len(simulation.lines)} lines ({records} JSON records) "
        f"in {seconds:.2f} s (seed {truth.seed})",
        "  scenarios: " + "  ".join(f"{k}={v}" for k, v in sorted(truth.scenarios.items())),
        "  expected alerts: " + "  ".join(f"{k}={v}" for k, v in truth.expected_alerts().items()),
        "  expected dead letters: " + "  ".join(f"{k}={v}" for k, v in sorted(truth.deadletters.items())),
        f"  until_ms: {truth.until_ms}",
    ]
    if simulation.infeasible:
        rows.append("  not generated (span too short for their deadlines): " + ", ".join(simulation.infeasible))
    rows += [
        f"  outputs: {out / INPUT_FILE}, {out / TRUTH_FILE}",
        f"  next: posrecon replay {out / INPUT_FILE} --out OUT --until {truth.until_ms}"
        f" && posrecon evaluate --truth {out / TRUTH_FILE} --out OUT",
    ]
    return "\n".join(rows)


def _main(args: argparse.Namespace) -> int:
    rules = load_rules(args.config)
    mix = parse_mix(args.mix) if args.mix else None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    show = sys.stderr.isatty() and not args.quiet
    started = time.perf_counter()
    with tqdm(total=args.orders, unit="order", desc="simulate", disable=not show, file=sys.stderr) as bar:
        simulation = generate(
            args.orders,
            args.seed,
            rules,
            args.start_ms,
            int(args.span_hours * HOUR),
            args.fault_rate,
            mix,
            progress=bar.update,
            partitions=args.partitions,
        )
    write_input(simulation, out / INPUT_FILE, show)
    write_truth(out / TRUTH_FILE, simulation.truth)
    print(summarize(simulation, out, time.perf_counter() - started))
    if args.kafka:
        from posrecon.kafka.produce_command import produce_file

        produce_file(out / INPUT_FILE, args.bootstrap, args.config, args.rate, show)
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "simulate",
        help="generate synthetic POS traffic (replay format) with its ground truth",
        description=(
            "Write DIR/input.jsonl (terminal events and settlement notices in arrival order, with injected\n"
            "faults and undecodable lines) and DIR/truth.json (what a correct engine must output).\n"
            "Deterministic for a seed."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--orders", type=int, required=True, metavar="N", help="number of orders to simulate")
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory (created if missing)")
    parser.add_argument("--seed", type=int, default=1, metavar="S", help="random seed (default 1)")
    parser.add_argument("--config", metavar="FILE.toml", help="rule parameters (TOML, contract key names)")
    parser.add_argument(
        "--fault-rate",
        type=float,
        default=DEFAULT_FAULT_RATE,
        metavar="F",
        help=f"share of orders that get a non-normal scenario (default {DEFAULT_FAULT_RATE})",
    )
    parser.add_argument("--span-hours", type=float, default=72.0, metavar="H", help="orders start over H hours (72)")
    parser.add_argument(
        "--start-ms",
        type=int,
        default=DEFAULT_START_MS,
        metavar="T",
        help=f"epoch ms of the first possible order (default {DEFAULT_START_MS}, 2026-01-01T00:00Z)",
    )
    parser.add_argument(
        "--mix",
        metavar="NAME=W,...",
        help="relative weights of the fault scenarios (default 1 each, 0 disables one): late=3,garbage=0",
    )
    parser.add_argument(
        "--partitions",
        type=int,
        default=1,
        metavar="N",
        help="also make the truth hold with a watermark per partition on N partitions (replay --partitions N,"
        " live on N partitions): pacemaker orders are added where a partition's traffic is thin (default 1)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--kafka",
        action="store_true",
        help="also produce the traffic to the input topics (Kafka timestamp = ingest_time, key = order_id)",
    )
    parser.add_argument("--bootstrap", help="Kafka bootstrap servers for --kafka (default: the local broker)")
    parser.add_argument(
        "--rate", type=float, default=None, help="with --kafka: records per second (default: unthrottled)"
    )
    parser.set_defaults(func=_main)
