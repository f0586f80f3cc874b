"""Engine and replay throughput, with a raw baseline measured in the same run.

* engine: >= 1M simulated records, pre-decoded (dicts as fastavro returns them), fed to the engine alone;
  baseline: the same loop with a trivial per-order dict update instead of the engine (the Python ceiling
  for "look at every record and touch per-order state").
* replay: the same input through `posrecon replay` (orjson parse, strict schema check, engine, JSON output
  files; no Avro round trip: see posrecon/replay.py); baseline: JSON parse (the standard library's, and
  orjson's as a second row) + Avro round trip only.
* state: bytes of engine state per open order (tracemalloc, after a run that leaves orders open).

Every engine runs with the simulation's rules (``input-<orders>.toml`` beside the input, as ``simulate`` writes
``posrecon.toml``: on the v2 mix, merchant pricing tables), so the figures are those of the real v2 config.

Run: `python bench/engine_bench.py [--orders 350000]` (writes bench/results/engine-<stamp>.json).
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from fastavro import schemaless_reader, schemaless_writer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info
from state_shapes import shaped_state_bytes

from posrecon.config import RuleConfig, load_rules
from posrecon.engine.engine import ReconciliationEngine
from posrecon.gcpolicy import long_lived_state
from posrecon.replay import run_replay
from posrecon.serde.codec import AvroCodec, DecodeError
from posrecon.sim.command import write_config, write_input
from posrecon.sim.generator import generate


def _cpu() -> float:
    return time.process_time()


def load_records(path: Path) -> list[tuple[bool, dict[str, Any], int | None]]:
    codecs = {"terminal": AvroCodec("TerminalEvent"), "settlement": AvroCodec("SettlementNotice")}
    out: list[tuple[bool, dict[str, Any], int | None]] = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                doc = json.loads(line)
                out.append(
                    (doc["source"] == "terminal", codecs[doc["source"]].conform(doc["record"]), doc.get("ingest_time"))
                )
            except (ValueError, KeyError, TypeError, DecodeError):
                continue
    return out


def bench_engine(records: list[tuple[bool, dict[str, Any], int | None]], rules: RuleConfig, rounds: int = 3) -> float:
    """The engine under the same GC policy as its hosts (replay, worker): see posrecon/gcpolicy.py."""
    best = float("inf")
    for _ in range(rounds):
        engine = ReconciliationEngine(rules)
        on_t, on_s, take = engine.on_terminal_event, engine.on_settlement_notice, engine.take
        gc.collect()
        with long_lived_state() as collector:
            start = _cpu()
            for i, (terminal, rec, ingest) in enumerate(records):
                if terminal:
                    on_t(rec, 0, ingest, ingest)  # type: ignore[arg-type]
                else:
                    on_s(rec, 0, ingest, ingest)  # type: ignore[arg-type]
                if not i & 1023:
                    take()
                    collector.tick(1024)
            best = min(best, _cpu() - start)
    return len(records) / best


def bench_baseline(records: list[tuple[bool, dict[str, Any], int | None]], rounds: int = 3) -> float:
    """Raw loop: read the record's key fields and update a per-order dict (no rules)."""
    best = float("inf")
    for _ in range(rounds):
        state: dict[str, list[Any]] = {}
        gc.collect()
        start = _cpu()
        for terminal, rec, _ingest in records:
            order = state.get(rec["order_id"])
            if order is None:
                order = state[rec["order_id"]] = [0, None]
            order[0] += 1
            order[1] = rec["event_time"] if terminal else rec["settled_at"]
        best = min(best, _cpu() - start)
    return len(records) / best


def bench_replay(path: Path, out: Path, lines: int, rules: RuleConfig) -> float:
    start = _cpu()
    run_replay(path, out, rules, None, 1, progress=False)
    return lines / (_cpu() - start)


def bench_replay_baseline(path: Path, lines: int, loads: Callable[[str], Any] = json.loads) -> float:
    """Parse every line (``loads``: the standard library's, or orjson's as replay itself uses) and round-trip its
    record through Avro binary: the least a replay that checks its input as Kafka would can do."""
    codecs = {"terminal": AvroCodec("TerminalEvent"), "settlement": AvroCodec("SettlementNotice")}
    start = _cpu()
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                doc = loads(line)
                codec = codecs[doc["source"]]
                buf = io.BytesIO()
                schemaless_writer(buf, codec.schema, doc["record"])
                buf.seek(0)
                schemaless_reader(buf, codec.schema)
            except Exception:
                continue
    return lines / (_cpu() - start)


def feed(engine: ReconciliationEngine, records: list[tuple[bool, dict[str, Any], int | None]]) -> ReconciliationEngine:
    """Every record into ``engine``, its outputs dropped as they come: what stays is the state (not timed: the
    measured loop is :func:`bench_engine`'s, with its methods bound once)."""
    for terminal, rec, ingest in records:
        if terminal:
            engine.on_terminal_event(rec, 0, ingest, ingest)  # type: ignore[arg-type]
        else:
            engine.on_settlement_notice(rec, 0, ingest, ingest)  # type: ignore[arg-type]
        engine.reconciled.clear()
        engine.alerts.clear()
    return engine


def state_bytes_per_open_order(
    records: list[tuple[bool, dict[str, Any], int | None]], rules: RuleConfig
) -> tuple[float, int]:
    """Traced heap bytes held by the engine divided by its open orders (records kept alive outside)."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    engine = feed(ReconciliationEngine(rules), records)
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    held = sum(s.size_diff for s in after.compare_to(before, "filename"))
    orders = engine.open_orders()
    return held / max(orders, 1), orders


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=350_000, help="simulated orders (350k ≈ 1M records)")
    parser.add_argument("--workdir", default="/tmp/posrecon-bench")
    parser.add_argument("--results", default=str(Path(__file__).resolve().parent / "results"))
    args = parser.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    src = work / f"input-{args.orders}.jsonl"
    config = src.with_suffix(".toml")  # the simulation's rules (v2: merchant pricing tables), as `simulate` writes
    if not (src.exists() and config.exists()):
        print(f"simulating {args.orders} orders …", flush=True)
        simulation = generate(args.orders, 42)
        write_input(simulation, src, progress=False)
        write_config(config, simulation.truth.rules)
    rules = load_rules(config)
    with open(src, encoding="utf-8") as fh:
        lines = sum(1 for _ in fh)
    records = load_records(src)
    print(f"input: {lines} lines, {len(records)} decodable records", flush=True)
    result: dict[str, Any] = {"machine": machine_info(), "lines": lines, "records": len(records), "rules": str(config)}
    result["engine_baseline_records_per_s"] = bench_baseline(records)
    result["engine_records_per_s"] = bench_engine(records, rules)
    result["replay_baseline_lines_per_s"] = bench_replay_baseline(src, lines)
    result["replay_baseline_orjson_lines_per_s"] = bench_replay_baseline(src, lines, orjson.loads)
    result["replay_lines_per_s"] = bench_replay(src, work / "replay-out", lines, rules)
    per_order, open_orders = state_bytes_per_open_order(records, rules)
    result["state_bytes_per_open_order"] = per_order
    result["open_orders_measured"] = open_orders
    result["state_bytes_per_shape"] = shaped_state_bytes(RuleConfig())
    result["engine_vs_baseline"] = result["engine_records_per_s"] / result["engine_baseline_records_per_s"]
    result["replay_vs_baseline"] = result["replay_lines_per_s"] / result["replay_baseline_lines_per_s"]
    result["replay_vs_orjson_baseline"] = result["replay_lines_per_s"] / result["replay_baseline_orjson_lines_per_s"]
    m = result["machine"]
    print(f"machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Python {m['python']}")
    print(f"load average at start: {m['load_average']}")
    rows = [
        ("engine alone (1 core, CPU time)", result["engine_records_per_s"], "records/s", "target >= 150k"),
        ("  raw baseline: per-order dict touch", result["engine_baseline_records_per_s"], "records/s", ""),
        ("replay (JSON + schema + engine + files)", result["replay_lines_per_s"], "lines/s", "target >= 30k"),
        ("  raw baseline: JSON + Avro round trip", result["replay_baseline_lines_per_s"], "lines/s", ""),
        ("  the same, parsed with orjson", result["replay_baseline_orjson_lines_per_s"], "lines/s", ""),
        ("state per open order", per_order, "bytes", "target <= 1024"),
        *((f"  {shape}", b, "bytes", "") for shape, b in result["state_bytes_per_shape"].items()),
    ]
    for name, value, unit, target in rows:
        print(f"{name:<42}{value:>14,.0f} {unit:<10}{target}")
    print(
        f"replay ÷ baseline: {result['replay_vs_baseline']:.2f} (JSON parsed by the standard library; target >= 1.0),"
        f" {result['replay_vs_orjson_baseline']:.2f} (parsed by orjson, as replay does)"
    )
    out = Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    (out / f"engine-{stamp}.json").write_text(json.dumps(result, indent=2))
    print(f"wrote {out / f'engine-{stamp}.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
