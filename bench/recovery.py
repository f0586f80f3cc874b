"""State figures for ``bench/run.py``: bytes per open order, and recovery time with 1M open orders.

* bytes per open order: ``engine_bench.state_bytes_per_open_order`` (tracemalloc: engine heap / open orders
  after a simulated run that leaves orders open), plus the changelog bytes (key + value) per open order.
* recovery: 1M approved-but-unsettled orders written straight into a fresh app's order-state changelog
  (rows built by the engine itself for one order, then varied per order id, ``state_store.encode_order``
  format, each on the partition Kafka's partitioner gives its order id, plus every partition's watermark),
  one SETTLED notice for one of them waiting on the input topic, then one worker started: time from
  process start to its "partitions assigned" log line (with ``orders_restored``) and to the
  ``pos.reconciled`` record of that notice (the first record processed after the restart).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from harness import (
    Children,
    StepTimeout,
    create_contract_topics,
    ensure_internal_topics,
    log_ts_ms,
    now_ms,
    rss_bytes,
    tail,
    topic_set,
    wait_for_log,
    worker_cmd,
    write_config,
)

from posrecon.app.state_store import WATERMARK_KEY, encode_order
from posrecon.config import RuleConfig
from posrecon.engine.engine import ReconciliationEngine
from posrecon.kafka.outputs import read_topic
from posrecon.kafka.partitioner import partition_for
from posrecon.serde.codec import AvroCodec


def state_bytes(sim_jsonl: Path, rules: RuleConfig) -> dict[str, Any]:
    """``rules``: those the traffic was simulated with (v2: its merchant pricing)."""
    import engine_bench

    records = engine_bench.load_records(sim_jsonl)
    per_order, open_orders = engine_bench.state_bytes_per_open_order(records, rules)
    engine = engine_bench.feed(ReconciliationEngine(rules), records)
    rows = [
        len(oid.encode()) + len(encode_order(o) or b"") for b in engine.books.values() for oid, o in b.orders.items()
    ]
    return {
        "records": len(records),
        "open_orders": open_orders,
        "heap_bytes_per_open_order": round(per_order, 1),
        "changelog_bytes_per_open_order": round(sum(rows) / max(len(rows), 1), 1),
    }


def _template(now: int) -> tuple[bytes, str]:
    """(changelog row with placeholders, order id placeholder) built by the engine for one order.

    Each placeholder is exactly as long as what replaces it: the row format length-prefixes strings."""
    engine = ReconciliationEngine()
    engine.book(0).dirty = {}
    oid = "ord-rec-@@ID@@@@"
    base = {
        "order_id": oid,
        "merchant_id": "mch-@@M@@",
        "terminal_id": "trm-@@M@@-01",
        "amount_minor": 4242,
        "currency": "EUR",
        "card_token": "tok_@@TOKEN@@@@@@@@@",
        "attempt": 1,
        "decline_code": None,
    }
    engine.on_terminal_event(
        {
            **base,
            "event_id": "ev-@@ID@@@@-c",
            "event_type": "ORDER_CREATED",  # type: ignore[typeddict-item]
            "event_time": now,
        },
        0,
        now,
        now,
    )
    engine.on_terminal_event(
        {
            **base,
            "event_id": "ev-@@ID@@@@-a",
            "event_type": "AUTH_APPROVED",  # type: ignore[typeddict-item]
            "event_time": now + 900,
        },
        0,
        now + 900,
        now + 900,
    )
    row = encode_order(engine.book(0).orders[oid])
    assert row is not None
    return row, oid


def write_changelog(bootstrap: str, topic: str, partitions: int, orders: int, now: int) -> dict[str, Any]:
    template, _ = _template(now)
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "linger.ms": 50,
            "batch.size": 1_000_000,
            "queue.buffering.max.messages": 1_000_000,
            "log_level": 4,
        }
    )
    started = time.monotonic()
    total_bytes = 0
    for i in range(orders):
        ident = f"{i:08d}"
        key = f"ord-rec-{ident}".encode()
        value = (
            template.replace(b"@@ID@@@@", ident.encode())
            .replace(b"@@M@@", f"{i % 5000:05d}".encode())
            .replace(b"@@TOKEN@@@@@@@@@", f"{(i * 2654435761) % (1 << 64):016x}".encode())
        )
        total_bytes += len(key) + len(value)
        while True:
            try:
                producer.produce(topic, value, key, partition_for(key, partitions))
                break
            except BufferError:
                producer.poll(0.05)
        if not i & 4095:
            producer.poll(0)
    for p in range(partitions):
        producer.produce(topic, str(now + 900).encode(), WATERMARK_KEY, p)
    left = producer.flush(120)
    if left:
        raise StepTimeout(f"{left} changelog records not delivered")
    return {
        "orders": orders,
        "write_s": round(time.monotonic() - started, 1),
        "changelog_bytes_per_order": round(total_bytes / orders, 1),
    }


def measure_recovery(
    bootstrap: str,
    children: Children,
    work: Path,
    partitions: int,
    orders: int,
    deadline: float,
    log: Callable[[str], None],
) -> dict[str, Any]:
    topics = topic_set("bench-rec")
    create_contract_topics(bootstrap, topics, partitions)
    app_id = "bench-rec"
    changelog, _, _ = ensure_internal_topics(bootstrap, app_id, partitions)
    now = now_ms() - 60_000  # approvals a minute old: no deadline falls due when the notice arrives
    log(f"  writing {orders:,} open orders into {changelog} …")
    written = write_changelog(bootstrap, changelog, partitions, orders, now)
    log(f"  written in {written['write_s']} s ({written['changelog_bytes_per_order']} bytes per order)")
    # the first record after the restart: the SETTLED notice of one restored order
    target = f"ord-rec-{orders // 2:08d}"
    notice = {
        "notice_id": "nt-rec-1",
        "order_id": target,
        "merchant_id": f"mch-{(orders // 2) % 5000:05d}",
        "status": "SETTLED",
        "amount_minor": 4242,
        "currency": "EUR",
        "settled_at": now_ms(),
        "batch_id": None,
        "fee_minor": 0,
    }
    producer = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random", "log_level": 4})
    producer.produce(
        topics.settlement, AvroCodec("SettlementNotice").encode(notice), target.encode(), timestamp=now_ms()
    )
    producer.flush(10)
    config = write_config(work / "rec.toml", topics)
    wlog = work / "logs" / "recovery-worker.log"
    spawn_ms = now_ms()
    proc = children.spawn(
        "recovery-worker",
        worker_cmd(bootstrap, app_id, "rec-0", config, "--no-wall-clock-advance"),
        wlog,
    )
    started = wait_for_log(wlog, "worker started", deadline, proc)
    assigned = wait_for_log(wlog, "partitions assigned", deadline, proc)
    rss_after_restore = rss_bytes(proc.pid)
    first_ts = None
    while first_ts is None:
        if time.monotonic() > deadline:
            raise StepTimeout(f"no reconciled record after the restart:\n{tail(wlog)}")
        if proc.poll() is not None:
            raise RuntimeError(f"recovery worker exited:\n{tail(wlog)}")
        msgs = read_topic(bootstrap, topics.reconciled, timeout_s=20)
        if msgs:
            first_ts = msgs[0].timestamp()[1]
        else:
            time.sleep(0.25)
    return {
        **written,
        "orders_restored": assigned.get("orders_restored"),
        "worker_restore_s": assigned.get("restore_s"),
        "start_to_worker_started_s": round((log_ts_ms(started) - spawn_ms) / 1000, 2),
        "start_to_assigned_s": round((log_ts_ms(assigned) - spawn_ms) / 1000, 2),
        "start_to_first_record_s": round((first_ts - spawn_ms) / 1000, 2),
        "rss_after_restore_mib": round((rss_after_restore or 0) / 2**20, 1),
        "rss_bytes_per_restored_order": round((rss_after_restore or 0) / max(orders, 1), 1),
    }


if __name__ == "__main__":
    print(json.dumps(_template(now_ms())[0]))
