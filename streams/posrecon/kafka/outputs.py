"""Read the output topics back (``read_committed``): for verifiers, the demo summary and tests."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from posrecon.config import SerdeSettings, Topics
from posrecon.serde.wire import codec_for


@dataclass
class DeadLetterRecord:
    key: bytes | None
    value: bytes | None
    headers: dict[str, str]
    partition: int
    offset: int


@dataclass
class OutputRecord:
    key: bytes | None
    value: dict[str, Any]
    partition: int
    offset: int
    timestamp: int


@dataclass
class Outputs:
    reconciled: list[OutputRecord] = field(default_factory=list)
    alerts: list[OutputRecord] = field(default_factory=list)
    deadletters: list[DeadLetterRecord] = field(default_factory=list)
    batch_reconciled: list[OutputRecord] = field(default_factory=list)


def read_topic(
    bootstrap: str, topic: str, client_config: Mapping[str, str] | None = None, timeout_s: float = 60.0
) -> list[Any]:
    """Every committed message of ``topic``, partition by partition, in offset order."""
    consumer = Consumer(
        {
            **(client_config or {}),
            "bootstrap.servers": bootstrap,
            "group.id": f"posrecon-reader-{time.monotonic_ns()}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        parts = sorted(metadata.topics[topic].partitions)
        pending = set()
        tps = []
        for p in parts:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high > low:
                pending.add(p)
                tps.append(TopicPartition(topic, p, OFFSET_BEGINNING))
        out: list[Any] = []
        if not tps:
            return out
        consumer.assign(tps)
        deadline = time.monotonic() + timeout_s
        while pending and time.monotonic() < deadline:
            for msg in consumer.consume(5000, timeout=0.5):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        pending.discard(msg.partition())
                    continue
                out.append(msg)
        if pending:
            raise TimeoutError(f"reading {topic}: partitions {sorted(pending)} did not reach their end")
        out.sort(key=lambda m: (m.partition(), m.offset()))
        return out
    finally:
        consumer.close()


def read_outputs(
    bootstrap: str,
    topics: Topics,
    client_config: Mapping[str, str] | None = None,
    timeout_s: float = 60.0,
    serde: SerdeSettings | None = None,
) -> Outputs:
    """The output topics, decoded (``serde``: the deployment's wire settings; with a registry, both formats)."""
    serde = serde or SerdeSettings()
    reconciled_codec, alert_codec = codec_for("ReconciledOrder", serde), codec_for("Alert", serde)
    result = Outputs()
    for msg in read_topic(bootstrap, topics.reconciled, client_config, timeout_s):
        result.reconciled.append(
            OutputRecord(
                msg.key(),
                reconciled_codec.decode(msg.value()),
                msg.partition(),
                msg.offset(),
                msg.timestamp()[1],
            )
        )
    for msg in read_topic(bootstrap, topics.alerts, client_config, timeout_s):
        result.alerts.append(
            OutputRecord(msg.key(), alert_codec.decode(msg.value()), msg.partition(), msg.offset(), msg.timestamp()[1])
        )
    for msg in read_topic(bootstrap, topics.deadletter, client_config, timeout_s):
        headers = {k: (v or b"").decode("utf-8", "replace") for k, v in (msg.headers() or [])}
        result.deadletters.append(DeadLetterRecord(msg.key(), msg.value(), headers, msg.partition(), msg.offset()))
    batch_codec = codec_for("BatchReconciliation", serde)
    for msg in read_topic(bootstrap, topics.batch_reconciled, client_config, timeout_s):
        result.batch_reconciled.append(
            OutputRecord(msg.key(), batch_codec.decode(msg.value()), msg.partition(), msg.offset(), msg.timestamp()[1])
        )
    return result
