"""The benchmark's input data: simulated traffic (full fault mix), encoded once as the Feeder would produce it.

``prepare(cache, orders, seed, partitions)`` simulates ``orders`` orders (``posrecon.sim.generator.generate``,
~2.85 lines per order), encodes every line with :class:`posrecon.kafka.feeder.Feeder`'s ``encode_line`` (JSON
line → schema check → Avro single-object encoding; malformed lines as their raw bytes, exactly what
``posrecon produce`` sends) in parallel processes, assigns each record its partition with Kafka's murmur2
partitioner (null keys: spread round-robin, as ``murmur2_random`` would spread them randomly), and caches the
result as one pickle per loader shard (``shard-<i>.pkl``: the records of partitions ``p % shards == i``, in
file order) plus ``meta.json``. A second run with the same parameters reuses the cache.

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

CACHE_VERSION = 2
#: records of one shard: (topic index 0 = terminal / 1 = settlement, partition, key, value, timestamp)
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
    feeder.codecs = {"terminal": AvroCodec("TerminalEvent"), "settlement": AvroCodec("SettlementNotice")}
    out: list[Record] = []
    last_ts: int | None = None
    for number in range(start, end):
        line = _LINES[number]
        topic, key, value, ts = feeder.encode_line(line.to_json_line())
        if ts is None:
            ts = last_ts if last_ts is not None else line.ingest_time
        last_ts = ts
        partition = partition_for(key, partitions) if key else number % partitions
        out.append((0 if topic == topics.terminal else 1, partition, key, value, ts))
    return out


def cache_dir_for(cache: Path, orders: int, seed: int, partitions: int, shards: int, contract: str) -> Path:
    return cache / f"input-{contract}-o{orders}-s{seed}-p{partitions}-x{shards}-v{CACHE_VERSION}"


def prepare(
    cache: Path,
    orders: int,
    seed: int,
    partitions: int,
    shards: int = 2,
    procs: int | None = None,
    log: Any = print,
    contract: str = "v1",
) -> dict[str, Any]:
    """Build (or reuse) the cached encoded input of a ``contract`` v1/v2 simulation; returns its ``meta.json``
    (with ``dir``, ``cached``)."""
    target = cache_dir_for(cache, orders, seed, partitions, shards, contract)
    meta_path = target / "meta.json"
    if meta_path.is_file():
        meta: dict[str, Any] = json.loads(meta_path.read_text())
        meta.update(dir=str(target), cached=True)
        return meta
    from posrecon.sim.generator import generate

    started = time.monotonic()
    log(f"  simulating {orders:,} orders (seed {seed}, {partitions} partitions, contract {contract}, full fault mix) …")
    sim = generate(orders, seed, partitions=partitions, contract=contract)
    sim_s = time.monotonic() - started
    _LINES[:] = sim.lines
    total = len(sim.lines)
    log(f"  {total:,} lines in {sim_s:.1f} s; encoding (Feeder.encode_line) …")
    started = time.monotonic()
    procs = procs or max(1, min(4, os.cpu_count() or 1))
    step = 20_000
    chunks = [(s, min(s + step, total), partitions) for s in range(0, total, step)]
    per_shard: list[list[Record]] = [[] for _ in range(shards)]
    with multiprocessing.get_context("fork").Pool(procs) as pool:
        for part in pool.imap(_encode_chunk, chunks):
            for rec in part:
                per_shard[rec[1] % shards].append(rec)
    encode_s = time.monotonic() - started
    _LINES.clear()
    tmp = target.with_name(target.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    counts = {"terminal": 0, "settlement": 0}
    value_bytes = 0
    for i, recs in enumerate(per_shard):
        with open(tmp / f"shard-{i}.pkl", "wb") as fh:
            pickle.dump(recs, fh, protocol=pickle.HIGHEST_PROTOCOL)
        for rec in recs:
            counts["terminal" if rec[0] == 0 else "settlement"] += 1
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
        "orders_with_outcome_expected": sum(1 for e in truth.orders.values() if e.outcome is not None),
        "scenarios": dict(truth.scenarios),
        "simulate_s": round(sim_s, 1),
        "encode_s": round(encode_s, 1),
    }
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
    try:
        tmp.rename(target)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    meta.update(dir=str(target), cached=False)
    return meta


def shard_paths(meta: dict[str, Any]) -> list[Path]:
    return [Path(meta["dir"]) / f"shard-{i}.pkl" for i in range(meta["shards"])]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=700_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--contract", choices=("v1", "v2"), default="v1")
    parser.add_argument("--cache", default=str(Path(__file__).resolve().parent.parent / ".cache" / "bench"))
    args = parser.parse_args(argv)
    meta = prepare(Path(args.cache), args.orders, args.seed, args.partitions, args.shards, contract=args.contract)
    print(json.dumps(meta, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
