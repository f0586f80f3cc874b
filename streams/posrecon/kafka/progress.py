"""How far a worker group has got: committed offsets against log ends (for the demo and tests)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition


def group_lag(
    bootstrap: str, group: str, topics: Sequence[str], transactional: Sequence[str] = (),
    client_config: Mapping[str, str] | None = None,
) -> int:  # fmt: skip
    """Records not yet committed by ``group`` on ``topics``.

    For topics written by transactional producers (``transactional``) the log end is a commit marker, so
    a partition counts as done once the committed offset reaches ``end - 1``.
    """
    consumer = Consumer(
        {
            **(client_config or {}),
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
        }
    )
    try:
        tps = []
        for topic in topics:
            meta = consumer.list_topics(topic, timeout=10).topics[topic]
            tps += [TopicPartition(topic, p) for p in sorted(meta.partitions)]
        committed = {(tp.topic, tp.partition): tp.offset for tp in consumer.committed(tps, timeout=10)}
        lag = 0
        for tp in tps:
            low, high = consumer.get_watermark_offsets(tp, timeout=10)
            done = committed.get((tp.topic, tp.partition), -1)
            if done < 0:
                done = low
            end = high - 1 if tp.topic in transactional and high > low else high
            lag += max(0, end - done)
        return lag
    finally:
        consumer.close()


def wait_drained(
    bootstrap: str, group: str, inputs: Sequence[str], internal: Sequence[str], timeout_s: float,
    client_config: Mapping[str, str] | None = None, settle_s: float = 1.0,
) -> float:  # fmt: skip
    """Block until ``group`` has committed everything on ``inputs`` and its ``internal`` (transactional)
    topics; returns seconds waited. Raises TimeoutError."""
    started = time.monotonic()

    def lag_now() -> int:
        try:
            return group_lag(bootstrap, group, [*inputs, *internal], internal, client_config)
        except KafkaException as exc:  # e.g. NOT_COORDINATOR while a fresh broker loads __consumer_offsets
            err = exc.args[0] if exc.args else None
            if isinstance(err, KafkaError) and err.fatal():
                raise
            return -1

    while True:
        lag = lag_now()
        if lag == 0:
            time.sleep(settle_s)  # let a last batch of sightings land, then confirm
            if lag_now() == 0:
                return time.monotonic() - started
        if time.monotonic() - started > timeout_s:
            raise TimeoutError(f"group {group} still {lag} records behind after {timeout_s} s")
        time.sleep(0.5)
