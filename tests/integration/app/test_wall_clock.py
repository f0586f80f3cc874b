"""Wall-clock mode: an idle partition's watermark follows the clock, so deadlines fire on a quiet night.

Orders are created (terminal side only; the settlement topic stays empty, as at night) with their
``order_ttl_ms`` deadline a few seconds ahead of the wall clock. With ``--wall-clock-lag-ms 0`` the worker
must advance the idle partitions and emit EXPIRED_ORDER for each, at the deadline, within seconds.
(A bug in the fresh end-offset check once kept idle partitions from ever advancing: 0 of 24 alerts.)
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from livekit import WorkerProcess, app_of, read_all
from posrecon.config import RuleConfig
from posrecon.serde.codec import AvroCodec

pytestmark = pytest.mark.broker
PARTITIONS = 4
ORDERS = 6


def test_idle_partitions_follow_the_wall_clock_and_deadlines_fire(
    bootstrap: str, fresh_topics: Any, tmp_path: Path
) -> None:
    topics = fresh_topics(PARTITIONS)
    app = app_of(topics)
    worker = WorkerProcess(
        bootstrap, topics, app, "w0", tmp_path, ["--wall-clock-lag-ms", "0", "--idle-advance-after-ms", "500"]
    )
    try:
        deadline = time.monotonic() + 60
        while "partitions assigned" not in worker.log():
            assert time.monotonic() < deadline and worker.alive(), worker.log()[-3000:]
            time.sleep(0.2)
        ttl = RuleConfig().order_ttl_ms
        codec = AvroCodec("TerminalEvent")
        producer = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random"})
        now = time.time_ns() // 1_000_000
        due: dict[str, int] = {}
        for i in range(ORDERS):
            order_id = f"wc-{now}-{i}"
            event_time = now - ttl + 3_000 + 200 * i  # deadlines 3.0 ... 4.0 s from now
            record = {
                "event_id": f"ev-{order_id}",
                "order_id": order_id,
                "merchant_id": "m-1",
                "terminal_id": "t-1",
                "event_type": "ORDER_CREATED",
                "amount_minor": 1000,
                "currency": "EUR",
                "card_token": None,
                "event_time": event_time,
                "attempt": 1,
                "decline_code": None,
            }
            producer.produce(topics.terminal, codec.encode(record), order_id.encode(), timestamp=event_time)
            due[order_id] = event_time + ttl
        assert producer.flush(10) == 0
        expired: dict[str, int] = {}
        while len(expired) < ORDERS and time.monotonic() < deadline + 30:
            time.sleep(1.0)
            for alert in read_all(bootstrap, topics).alerts:
                if alert.value["kind"] == "EXPIRED_ORDER" and alert.value["order_id"] in due:
                    expired[alert.value["order_id"]] = alert.value["event_time"]
    finally:
        assert worker.stop() == 0, worker.log()[-3000:]
    assert expired == due, f"EXPIRED_ORDER alerts for {len(expired)}/{ORDERS} orders:\n{worker.log()[-3000:]}"
