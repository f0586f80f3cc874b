"""``posrecon simulate``: write a replay file of synthetic POS traffic and its ground truth."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from tqdm import tqdm

from posrecon.config import RuleConfig, load_rules
from posrecon.sim.generator import DEFAULT_FAULT_RATE, DEFAULT_START_MS, Simulation, generate
from posrecon.sim.mix import parse_mix
from posrecon.sim.timing import HOUR
from posrecon.sim.truth import write_truth
from posrecon.sim.vocabulary import BATCH, CONTRACT_V1, CONTRACT_V2, CONTRACTS

INPUT_FILE = "input.jsonl"
TRUTH_FILE = "truth.json"
CONFIG_FILE = "posrecon.toml"


def write_config(path: Path, rules: RuleConfig) -> None:
    """The rules as a TOML config for ``replay --config``/``run --config``: every top-level key, then one
    ``[merchants."<id>"]`` table per merchant with its own terms."""
    rows = ["# written by posrecon simulate: the rules its truth.json assumes"]
    for key, value in dataclasses.asdict(rules).items():
        if key == "merchants" or value is None:
            continue
        rows.append(f"{key} = {json.dumps(list(value) if isinstance(value, tuple) else value)}")
    for merchant_id, table in sorted(rules.merchants.items()):
        rows += ["", f"[merchants.{json.dumps(merchant_id)}]"]
        rows += [f"{key} = {value}" for key, value in table.items() if value is not None]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


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


def _counts(counts: dict[str, int]) -> str:
    return "  ".join(f"{k}={v}" for k, v in counts.items())


def summarize(simulation: Simulation, out: Path, seconds: float) -> str:
    truth = simulation.truth
    records = sum(1 for line in simulation.lines if line.raw is None)
    rows = [
        f"simulated {len(truth.orders)} orders, {len(simulation.lines)} lines ({records} JSON records) "
        f"in {seconds:.2f} s (seed {truth.seed}, contract {truth.contract})",
        "  scenarios: " + "  ".join(f"{k}={v}" for k, v in sorted(truth.scenarios.items())),
        "  expected alerts: " + "  ".join(f"{k}={v}" for k, v in truth.expected_alerts().items()),
        "  expected dead letters: " + "  ".join(f"{k}={v}" for k, v in sorted(truth.deadletters.items())),
        f"  until_ms: {truth.until_ms}",
    ]
    if truth.contract != CONTRACT_V1:
        resolved = truth.expected_resolutions()
        rows.insert(3, "  expected resolutions: " + "  ".join(f"{k}={v}" for k, v in resolved.items()))
    if truth.batches:
        controls = sum(1 for line in simulation.lines if line.source == BATCH)
        rows[4:4] = [
            f"  settlement batches: {len(truth.batches)} ({controls} control records)",
            f"  batch faults: {_counts(truth.batch_faults())}",
            f"  expected batch statuses: {_counts(truth.expected_batch_statuses())}",
            f"  expected batch alerts: {_counts(truth.expected_batch_alerts())}",
        ]
    config = f" --config {out / truth.config_file}" if truth.config_file else ""
    if simulation.infeasible:
        rows.append("  not generated (span too short for their deadlines): " + ", ".join(simulation.infeasible))
    outputs = [out / INPUT_FILE, out / TRUTH_FILE] + ([out / truth.config_file] if truth.config_file else [])
    rows += [
        "  outputs: " + ", ".join(map(str, outputs)),
        f"  next: posrecon replay {out / INPUT_FILE} --out OUT --until {truth.until_ms}{config}"
        f" && posrecon evaluate --truth {out / TRUTH_FILE} --out OUT",
    ]
    return "\n".join(rows)


def _main(args: argparse.Namespace) -> int:
    try:
        rules = load_rules(args.config)
        mix = parse_mix(args.mix, args.contract) if args.mix else None
    except ValueError as exc:
        print(f"simulate: {exc}", file=sys.stderr)
        return 2
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
            contract=args.contract,
        )
    if args.contract == CONTRACT_V2:
        simulation = dataclasses.replace(
            simulation, truth=dataclasses.replace(simulation.truth, config_file=CONFIG_FILE)
        )
        write_config(out / CONFIG_FILE, simulation.truth.rules)
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
            "Write DIR/input.jsonl (terminal events, settlement notices and, contract v2, settlement batches'\n"
            "control records in arrival order, with injected faults and undecodable lines) and DIR/truth.json\n"
            "(what a correct engine must output).\n"
            "Deterministic for a seed."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--orders", type=int, required=True, metavar="N", help="number of orders to simulate")
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory (created if missing)")
    parser.add_argument("--seed", type=int, default=1, metavar="S", help="random seed (default 1)")
    parser.add_argument("--config", metavar="FILE.toml", help="rule parameters (TOML, contract key names)")
    parser.add_argument(
        "--contract",
        choices=CONTRACTS,
        default=CONTRACT_V2,
        help="v2 (default): the v2 scenarios too, truth format 2 (alerts that resolve), merchant pricing written to"
        f" DIR/{CONFIG_FILE} (pass it to replay/run --config); v1: the v1 simulation byte for byte, truth format 1",
    )
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
        help="relative weights of the fault scenarios (default 1 each, 0 disables one): late=3,garbage=0;"
        " contract v2: batches=0 leaves out settlement batches (control records), batch_<fault>=W weighs the batch"
        " faults (drawn for --fault-rate of the batches; 100k orders give about 1,400 batches)",
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
        help="also produce the traffic to the input topics (Kafka timestamp = ingest_time, key = order_id; control"
        " records to the settlement-batches topic, key = batch_id)",
    )
    parser.add_argument("--bootstrap", help="Kafka bootstrap servers for --kafka (default: the local broker)")
    parser.add_argument(
        "--rate", type=float, default=None, help="with --kafka: records per second (default: unthrottled)"
    )
    parser.set_defaults(func=_main)
