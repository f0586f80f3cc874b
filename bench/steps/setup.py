"""Steps 0-1: the broker and contract topics, the cached data set, the input topics loaded by two producers."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import dataset
from harness import BENCH_DIR, PY, StepTimeout, create_contract_topics, log_end, tail
from session import PARTITIONS, Bench

from posrecon.config import Topics


def start_broker(b: Bench, deadline: float) -> dict[str, Any]:
    from posrecon.localbroker import KAFKA_VERSION, LocalBroker

    b.broker_dir = Path(tempfile.mkdtemp(prefix="posrecon-bench-broker-"))
    b.broker = LocalBroker(b.broker_dir / "broker")
    started = time.monotonic()
    b.broker.start(timeout=max(10.0, deadline - time.monotonic()))
    b.bootstrap = b.broker.bootstrap
    create_contract_topics(b.bootstrap, Topics(), PARTITIONS)
    b.log(f"  broker {b.bootstrap} (Kafka {KAFKA_VERSION}, data {b.broker_dir}), topics created")
    return {"kafka": KAFKA_VERSION, "start_s": round(time.monotonic() - started, 1), "bootstrap": b.bootstrap}


def prepare_data(b: Bench, deadline: float) -> dict[str, Any]:
    # contract v2: the v2 order rules (split captures, refunds, fees, PAN scan, auto-resolution) without settlement
    # batches, whose cost the batches step measures on its own pair of data sets; every input then sits on the two
    # topics the raw baseline and the peers read
    v2 = b.args.contract == "v2"
    meta = dataset.prepare(
        b.work / "cache",
        b.args.orders,
        b.args.seed,
        PARTITIONS,
        shards=2,
        log=b.log,
        contract=b.args.contract,
        mix="batches=0" if v2 else None,
        strip_batch_ids=v2,
    )
    b.meta = meta
    b.log(
        f"  {meta['records']:,} records ({'cached' if meta['cached'] else 'simulated and encoded'}): "
        f"{meta['per_topic']}"
    )
    return {k: v for k, v in meta.items() if k != "scenarios"}


def load(b: Bench, deadline: float) -> dict[str, Any]:
    started = time.monotonic()
    cpu0 = b.broker_cpu()
    procs = [
        b.children.spawn(
            f"loader-{i}",
            [PY, str(BENCH_DIR / "loader.py"), "--bootstrap", b.bootstrap, "--shard", str(path)],
            b.work / "logs" / f"loader-{i}.log",
        )
        for i, path in enumerate(dataset.shard_paths(b.meta))
    ]
    for proc in procs:
        while proc.poll() is None:
            if time.monotonic() > deadline:
                raise StepTimeout("loading the input topics took too long")
            time.sleep(0.2)
        if proc.returncode != 0:
            raise RuntimeError(f"loader exited with {proc.returncode}: {tail(b.work / 'logs' / 'loader-0.log')}")
    seconds = time.monotonic() - started
    topics = Topics()
    b.total_inputs = log_end(b.bootstrap, [topics.terminal, topics.settlement], PARTITIONS)
    if b.total_inputs != b.meta["records"]:
        raise RuntimeError(f"input topics hold {b.total_inputs} records, expected {b.meta['records']}")
    cpu1 = b.broker_cpu()
    b.log(
        f"  {b.total_inputs:,} records loaded in {seconds:.1f} s ({b.total_inputs / seconds:,.0f}/s, "
        f"2 producer processes)"
    )
    return {
        "records": b.total_inputs,
        "seconds": round(seconds, 1),
        "records_per_s": round(b.total_inputs / seconds),
        "producers": len(procs),
        "broker_cpu_s": round(cpu1 - cpu0, 1) if cpu0 is not None and cpu1 is not None else None,
    }
