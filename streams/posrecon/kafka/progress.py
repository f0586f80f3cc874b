"""How far a worker group has got: committed offsets against log ends (for the demo and tests)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition


@dataclass(frozen=True)
class PartitionLag:
    topic: str
    partition: int
    committed: int  # the group's committed offset (the log start where it has committed nothing)
    low: int
    high: int
    lag: int  # records still to process (see partition_lags)

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}] committed={self.committed} low={self.low} high={self.high}"


def group_lag(
    bootstrap: str,
    group: str,
    topics: Sequence[str],
    transactional: Sequence[str] = (),
    client_config: Mapping[str, str] | None = None,
) -> int:
    """Records not yet committed by ``group`` on ``topics`` (the sum of :func:`partition_lags`)."""
    return sum(row.lag for row in partition_lags(bootstrap, group, topics, transactional, client_config))


def partition_lags(
    bootstrap: str,
    group: str,
    topics: Sequence[str],
    transactional: Sequence[str] = (),
    client_config: Mapping[str, str] | None = None,
) -> list[PartitionLag]:
    """Per partition of ``topics``: the group's committed offset, the log's ends, and the records still to
    process.

    On topics written by transactional producers (``transactional``) the offsets after the last record are
    not all records: commit and abort markers, and records of aborted transactions, take offsets too, and a
    consumer commits the offset after the last record it was given. A partition's tail can hold several of
    them (a commit marker, then the abort marker that the coordinator writes when a killed producer's
    transaction times out), so the lag there is counted as what a ``read_committed`` consumer would still be
    given after the committed offset (exactly when that is a short tail; ``end - committed - 1`` otherwise;
    0 when only one offset is left, the usual commit marker).
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
        rows: list[PartitionLag] = []
        tails: list[TopicPartition] = []
        for tp in tps:
            low, high = consumer.get_watermark_offsets(tp, timeout=10)
            done = committed.get((tp.topic, tp.partition), -1)
            if done < 0:
                done = low
            lag = 0
            if tp.topic not in transactional:
                lag = max(0, high - done)
            elif high - done > EXACT_TAIL:
                lag = high - done - 1
            elif high - done > 1:  # one offset after the committed one: its commit marker (the usual end)
                tails.append(TopicPartition(tp.topic, tp.partition, done))
            rows.append(PartitionLag(tp.topic, tp.partition, done, low, high, lag))
        if tails:
            visible = visible_by_partition(bootstrap, tails, client_config)
            rows = [replace(row, lag=visible.get((row.topic, row.partition), row.lag)) for row in rows]
        return rows
    finally:
        consumer.close()


#: transactional tails up to this many offsets are read to count their records exactly
EXACT_TAIL = 1_000


def visible_by_partition(
    bootstrap: str,
    starts: Sequence[TopicPartition],
    client_config: Mapping[str, str] | None = None,
    timeout_s: float = 10.0,
) -> dict[tuple[str, int], int]:
    """How many records a ``read_committed`` consumer is given from each ``starts`` offset to the end of its
    partition (markers, aborted records and the open transactions' records do not count). A partition whose
    end is not reached within ``timeout_s`` counts one more than was read (still behind)."""
    consumer = Consumer(
        {
            **(client_config or {}),
            "bootstrap.servers": bootstrap,
            "group.id": "posrecon-progress-probe",  # never joins or commits: assign() only
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        consumer.assign(list(starts))
        counts = {(tp.topic, tp.partition): 0 for tp in starts}
        open_tps = set(counts)
        deadline = time.monotonic() + timeout_s
        while open_tps and time.monotonic() < deadline:
            for msg in consumer.consume(500, 0.2):
                err = msg.error()
                key = (msg.topic(), msg.partition())
                if err is None:
                    counts[key] += 1  # type: ignore[index]
                elif err.code() == KafkaError._PARTITION_EOF:
                    open_tps.discard(key)
        for key in open_tps:  # not at the end in time: still behind
            counts[key] += 1
        return counts
    finally:
        consumer.close()


def wait_drained(
    bootstrap: str,
    group: str,
    inputs: Sequence[str],
    internal: Sequence[str],
    timeout_s: float,
    client_config: Mapping[str, str] | None = None,
    settle_s: float = 1.0,
) -> float:
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
