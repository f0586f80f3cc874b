"""The benchmark's input data: simulated traffic (full fault mix), encoded once as the Feeder would produce it.

``prepare(cache, orders, seed, partitions)`` simulates ``orders`` orders (``posrecon.sim.generator.generate``,
~2.85 lines per order), encodes every line with :class:`posrecon.kafka.feeder.Feeder`'s ``encode_line`` (JSON
line → schema check → Avro single-object encoding; malformed lines as their raw bytes, exactly what
``posrecon produce`` sends) in parallel processes, assigns each record its partition with Kafka's murmur2
partitioner (null keys: spread round-robin, as ``murmur2_random`` would spread them randomly), and caches the
result as one pickle per loader shard (``shard-<i>.pkl``: the records of partitions ``p % shards == i``, in
file order) plus ``meta.json``. A second run with the same parameters reuses the cache.

Contract v2 also writes ``rules.toml`` (the rules the truth assumes: merchant pricing; the worker's config needs
them) and, when the mix has settlement batches, their control records (topic index 2, key batch_id) and what the
truth says of them (``batches_expected`` …). ``mix`` is ``posrecon simulate --mix``'s text (``batches=0``).

Run standalone to (re)build the cache: ``python bench/dataset.py --orders 700000``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import pickle
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: 3: control records encoded as SettlementBatch to topic index 2 (version 2 took them for undecodable lines);
#: contract v1 data has none, so its caches keep version 2 (a cached 710k set stays valid)
CACHE_VERSION = 3
CACHE_VERSION_V1 = 2
RULES_FILE = "rules.toml"
BATCH_TRUTH_FILE = "batch_truth.json"
#: records of one shard: (topic index 0 = terminal / 1 = settlement / 2 = batches, partition, key, value, timestamp)
Record = tuple[int, int, bytes | None, bytes, int]

_LINES: list[Any] = []  # the simulation's lines, inherited by the forked encoder processes


def _encode_chunk(args: tuple[int, int, int]) -> list[Record]:
    from posrecon.config import Topics
    from posrecon.kafka.feeder import Feeder
    from posrecon.kafka.partitioner import partition_for

    start, end, partitions = args
    topics = Topics()
    feeder = Feeder.__new__(Feeder)  # encode_line only: no producer needed
    from posrecon.serde.codec import AvroCodec

    feeder.topics = topics
    feeder.codecs = {
        "terminal": AvroCodec("TerminalEvent"),
        "settlement": AvroCodec("SettlementNotice"),
        "batch": AvroCodec("SettlementBatch"),
    }
    index = {topics.terminal: 0, topics.settlement: 1, topics.batches: 2}
    out: list[Record] = []
    last_ts: int | None = None
    for number in range(start, end):
        line = _LINES[number]
        topic, key, value, ts = feeder.encode_line(line.to_json_line())
        if ts is None:
            ts = last_ts if last_ts is not None else line.ingest_time
        last_ts = ts
        partition = partition_for(key, partitions) if key else number % partitions
        out.append((index[topic], partition, key, value, ts))
    return out


def _default_signals() -> None:
    """In an encoder process: the default SIGTERM/SIGINT (the pool's exit terminates its processes, which must not
    run bench/run.py's inherited handler: it printed "received SIGTERM" as if the run had been stopped)."""
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def cache_dir_for(
    cache: Path,
    orders: int,
    seed: int,
    partitions: int,
    shards: int,
    contract: str,
    mix: str | None = None,
    strip_batch_ids: bool = False,
) -> Path:
    version = CACHE_VERSION_V1 if contract == "v1" else CACHE_VERSION
    tag = f"-mix-{mix.replace(',', '+').replace(' ', '')}" if mix else ""
    tag += "-nobatchid" if strip_batch_ids else ""
    return cache / f"input-{contract}-o{orders}-s{seed}-p{partitions}-x{shards}-v{version}{tag}"


def prepare(
    cache: Path,
    orders: int,
    seed: int,
    partitions: int,
    shards: int = 2,
    procs: int | None = None,
    log: Any = print,
    contract: str = "v1",
    mix: str | None = None,
    strip_batch_ids: bool = False,
) -> dict[str, Any]:
    """Build (or reuse) the cached encoded input of a ``contract`` v1/v2 simulation (``mix``: as ``posrecon
    simulate --mix``); returns its ``meta.json`` (with ``dir``, ``cached``). ``strip_batch_ids``: every valid notice
    without its batch_id (``batches=0`` leaves out the control records only: the notices keep theirs)."""
    target = cache_dir_for(cache, orders, seed, partitions, shards, contract, mix, strip_batch_ids)
    meta_path = target / "meta.json"
    if meta_path.is_file():
        meta: dict[str, Any] = json.loads(meta_path.read_text())
        meta.update(dir=str(target), cached=True)
        return meta
    from posrecon.sim.generator import generate
    from posrecon.sim.mix import parse_mix

    started = time.monotonic()
    what = f"mix {mix}" if mix else "full fault mix"
    log(f"  simulating {orders:,} orders (seed {seed}, {partitions} partitions, contract {contract}, {what}) …")
    weights = parse_mix(mix, contract) if mix else None
    sim = generate(orders, seed, mix=weights, partitions=partitions, contract=contract)
    sim_s = time.monotonic() - started
    stripped = strip_notice_batch_ids(sim.lines) if strip_batch_ids else 0
    _LINES[:] = sim.lines
    total = len(sim.lines)
    log(f"  {total:,} lines in {sim_s:.1f} s; encoding (Feeder.encode_line) …")
    started = time.monotonic()
    procs = procs or max(1, min(4, os.cpu_count() or 1))
    step = 20_000
    chunks = [(s, min(s + step, total), partitions) for s in range(0, total, step)]
    per_shard: list[list[Record]] = [[] for _ in range(shards)]
    with multiprocessing.get_context("fork").Pool(procs, initializer=_default_signals) as pool:
        for part in pool.imap(_encode_chunk, chunks):
            for rec in part:
                per_shard[rec[1] % shards].append(rec)
    encode_s = time.monotonic() - started
    _LINES.clear()
    tmp = target.with_name(target.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    names = ("terminal", "settlement", "batches")
    counts = {"terminal": 0, "settlement": 0}
    value_bytes = 0
    for i, recs in enumerate(per_shard):
        with open(tmp / f"shard-{i}.pkl", "wb") as fh:
            pickle.dump(recs, fh, protocol=pickle.HIGHEST_PROTOCOL)
        for rec in recs:
            counts[names[rec[0]]] = counts.get(names[rec[0]], 0) + 1
            value_bytes += len(rec[3])
    truth = sim.truth
    meta = {
        "orders": orders,
        "seed": seed,
        "contract": contract,
        "partitions": partitions,
        "shards": shards,
        "records": total,
        "per_topic": counts,
        "value_bytes": value_bytes,
        "deadletters_expected": sum(truth.deadletters.values()),
        # what a correct run must output (the simulation's ground truth; `posrecon replay` matches it)
        "alerts_expected": sum(truth.expected_alerts().values()),
        "alerts_expected_by_kind": truth.expected_alerts(),
        "alerts_resolved_expected": sum(truth.expected_resolutions().values()),
        "orders_with_outcome_expected": sum(1 for e in truth.orders.values() if e.outcome is not None),
        "scenarios": dict(truth.scenarios),
        "simulate_s": round(sim_s, 1),
        "batch_ids_stripped": stripped,
        "encode_s": round(encode_s, 1),
    }
    if contract != "v1":
        meta.update(v2_expectations(truth, mix))
        from posrecon.sim.command import write_config

        write_config(tmp / RULES_FILE, truth.rules)
        (tmp / BATCH_TRUTH_FILE).write_text(json.dumps(batch_truth(truth)))
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
    try:
        tmp.rename(target)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    meta.update(dir=str(target), cached=False)
    return meta


def strip_notice_batch_ids(lines: Sequence[Any]) -> int:
    """Set the batch_id of every valid settlement notice to null (a shape the simulation draws for ~10 % of them);
    returns how many had one."""
    count = 0
    for line in lines:
        record = line.record
        if line.source == "settlement" and line.valid and type(record) is dict and record.get("batch_id") is not None:
            record["batch_id"] = None
            count += 1
    return count


def v2_expectations(truth: Any, mix: str | None) -> dict[str, Any]:
    """What a v2 truth adds to ``meta.json``: resolutions and settlement batches (statuses of their final
    records, batch alerts as "KIND/OPEN" / "KIND/RESOLVED" counts), and the rules file."""
    return {
        "mix": mix,
        "config_file": RULES_FILE,
        "batch_truth_file": BATCH_TRUTH_FILE,
        "resolutions_expected": sum(truth.expected_resolutions().values()),
        "batches_expected": len(truth.batches),
        "batch_statuses_expected": truth.expected_batch_statuses(),
        "batch_alerts_expected": truth.expected_batch_alerts(),
    }


def batch_truth(truth: Any) -> dict[str, dict[str, Any]]:
    """Per batch: its final status, its alerts as sorted "KIND/STATUS" and its fault (to name a diverging batch)."""
    return {
        batch_id: {
            "status": exp.status,
            "alerts": sorted([f"{k}/OPEN" for k in exp.alerts] + [f"{k}/RESOLVED" for k in exp.resolved]),
            "fault": ".".join(filter(None, (exp.fault, exp.variant))) or "none",
        }
        for batch_id, exp in truth.batches.items()
    }


def shard_paths(meta: dict[str, Any]) -> list[Path]:
    return [Path(meta["dir"]) / f"shard-{i}.pkl" for i in range(meta["shards"])]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=700_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--contract", choices=("v1", "v2"), default="v1")
    parser.add_argument("--mix", default=None, help="as posrecon simulate --mix (contract v2: batches=0)")
    parser.add_argument("--cache", default=str(Path(__file__).resolve().parent.parent / ".cache" / "bench"))
    args = parser.parse_args(argv)
    meta = prepare(
        Path(args.cache), args.orders, args.seed, args.partitions, args.shards, contract=args.contract, mix=args.mix
    )
    print(json.dumps(meta, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
