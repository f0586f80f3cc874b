"""Recovery time with many open orders in state: time from restarting a SIGKILLed worker to processing again.

N approvals without settlement (open orders: each has a pending MISSING_SETTLEMENT deadline, a card
sighting and a card-index entry) are fed and processed; the worker is SIGKILLed; a few settlement notices
for open orders are fed; a new process with the same worker id is started and the clock runs until their
MATCHED decisions are readable (read_committed) in ``pos.reconciled``. That span includes the
consumer-group session timeout of the killed member (10 s: the group waits for it before reassigning),
the changelog restore (logged as ``restore_s``) and the first transaction.

CI: 50,000 open orders. Soak (POSRECON_SOAK=1): 1,000,000, goal <= 30 s. Figures are printed; the soak run
also stores them in tests/chaos/last_recovery.json.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from chaoskit import Figures, app_of, assigned_lines, check_exactly_once, drain, retrying
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from livekit import WorkerProcess, replay_oracle
from posrecon.config import Topics
from posrecon.kafka.feeder import Feeder
from posrecon.serde.codec import AvroCodec

PARTITIONS = 4
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
HERE = Path(__file__).resolve().parent


def open_order_lines(count: int, seed: int) -> list[str]:
    """``count`` AUTH_APPROVED events of distinct orders and cards, all within 14 h (no deadline fires)."""
    rng = random.Random(seed)
    step = max(1, 14 * 3_600_000 // count)
    out = []
    for i in range(count):
        t = T0 + i * step
        rec = {
            "event_id": f"ap-{i}",
            "order_id": f"open-{i}",
            "merchant_id": f"m{i % 97}",
            "terminal_id": f"t{i % 389}",
            "event_type": "AUTH_APPROVED",
            "amount_minor": rng.randrange(100, 90_000),
            "currency": "EUR",
            "card_token": f"tok_{i:08x}",
            "event_time": t,
            "attempt": 1,
            "decline_code": None,
        }
        out.append(json.dumps({"source": "terminal", "ingest_time": t + 50, "record": rec}))
    return out


def probe_lines(lines: list[str], picks: int, seed: int) -> tuple[list[str], set[str]]:
    rng = random.Random(seed)
    last = json.loads(lines[-1])["record"]["event_time"]
    out, ids = [], set()
    for line in rng.sample(lines, picks):
        rec = json.loads(line)["record"]
        settled = last + 60_000 + len(out)
        note = {
            "notice_id": f"probe-{rec['order_id']}",
            "order_id": rec["order_id"],
            "merchant_id": rec["merchant_id"],
            "status": "SETTLED",
            "amount_minor": rec["amount_minor"],
            "currency": "EUR",
            "settled_at": settled,
            "batch_id": None,
            "fee_minor": 0,
        }
        out.append(json.dumps({"source": "settlement", "ingest_time": settled + 50, "record": note}))
        ids.add(rec["order_id"])
    return out, ids


def wait_for_reconciled(bootstrap: str, topic: str, order_ids: set[str], timeout: float) -> float:
    """Seconds until every order id has a committed row in ``topic``."""
    started = time.monotonic()
    codec = AvroCodec("ReconciledOrder")
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"probe-{time.monotonic_ns()}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    try:
        meta = retrying(consumer.list_topics, topic, timeout=10).topics[topic]
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions])
        seen: set[str] = set()
        while not order_ids <= seen:
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"only {len(seen & order_ids)}/{len(order_ids)} probes decided in {timeout} s")
            for msg in consumer.consume(1000, timeout=0.2):
                if msg.error() is None:
                    seen.add(codec.decode(msg.value())["order_id"])
                elif msg.error().code() != KafkaError._PARTITION_EOF:
                    continue
        return time.monotonic() - started
    finally:
        consumer.close()


def measure_recovery(
    bootstrap: str,
    topics: Topics,
    spawn: Callable[..., WorkerProcess],
    tmp_path: Path,
    count: int,
    *,
    verify_outputs: bool,
) -> Figures:
    app = app_of(topics)
    figures = Figures(events=count)
    lines = open_order_lines(count, seed=count)
    probes, probe_ids = probe_lines(lines, 8, seed=1)
    started = time.monotonic()
    feeder = Feeder(bootstrap, topics)
    feeder.feed(lines)
    fed_s = time.monotonic() - started
    # static membership (KIP-345), as a StatefulSet runs it: the restarted w0 takes its partitions back at once
    # instead of waiting for the killed member's session to time out (10 s)
    first = spawn(bootstrap, topics, app, "w0", extra=["--static-membership"])
    processed_s = drain(bootstrap, topics, app, timeout=max(300, count / 500), alive=first.alive)
    first.kill()
    figures.kills = 1
    Feeder(bootstrap, topics).feed(probes)

    restarted = time.monotonic()
    second = spawn(bootstrap, topics, app, "w0", extra=["--static-membership"])
    wait_for_reconciled(bootstrap, topics.reconciled, probe_ids, 600)
    figures.recovery_seconds = round(time.monotonic() - restarted, 2)
    # the log lines of the new incarnation only (the log file is appended by each process of a worker id)
    log = second.log()
    log = log[log.rfind('"worker started"') :]
    rows = assigned_lines(log)
    assert rows, log[-2000:]
    figures.restore_seconds = round(sum(r["restore_s"] for r in rows), 2)
    figures.open_orders_restored = sum(r["orders_restored"] for r in rows)
    figures.notes.append(
        f"fed {count} approvals in {fed_s:.1f} s; first worker processed them in {processed_s:.1f} s "
        f"({count / max(processed_s, 1e-9):.0f}/s); restart -> 8 probe decisions readable in "
        f"{figures.recovery_seconds} s (changelog restore {figures.restore_seconds} s, the rest is "
        f"process start, rejoining the group with static membership and the first transaction)"
    )
    if verify_outputs:
        src = tmp_path / "open.jsonl"
        src.write_text("\n".join(lines + probes) + "\n")
        check = check_exactly_once(
            bootstrap, topics, app, replay_oracle(src, tmp_path / "replay", PARTITIONS), alive=second.alive
        )
        assert check.ok, check.explain()
    assert second.stop() == 0, second.log()[-3000:]
    figures.wall_seconds = round(time.monotonic() - started, 1)
    print(figures.summary())
    assert figures.open_orders_restored >= count, figures
    return figures


@pytest.mark.chaos
@pytest.mark.broker
def test_recovery_with_50k_open_orders(
    warm_bootstrap: str, make_topics: Callable[..., Topics], spawn: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    figures = measure_recovery(
        warm_bootstrap, make_topics(warm_bootstrap, PARTITIONS), spawn, tmp_path, 50_000, verify_outputs=True
    )
    assert figures.recovery_seconds is not None and figures.recovery_seconds <= 45, figures.summary()


@pytest.mark.chaos
@pytest.mark.soak
@pytest.mark.broker
def test_recovery_with_1m_open_orders(
    warm_bootstrap: str, make_topics: Callable[..., Topics], spawn: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    figures = measure_recovery(
        warm_bootstrap, make_topics(warm_bootstrap, PARTITIONS), spawn, tmp_path, 1_000_000, verify_outputs=False
    )
    summary: dict[str, Any] = json.loads(figures.summary().split(": ", 1)[1])
    (HERE / "last_recovery.json").write_text(json.dumps(summary, indent=2) + "\n")
    assert figures.recovery_seconds is not None and figures.recovery_seconds <= 30, figures.summary()
