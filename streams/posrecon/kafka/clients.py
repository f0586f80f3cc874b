"""The live worker's Kafka clients: how each is built and configured (the app only asks for them).

One consumer in the group (range assignment, so partition p of both input topics lands on the same worker),
a side consumer of the same group that only reads committed offsets, and one transactional producer.
``client_config`` is the librdkafka configuration every client shares (security, timeouts …).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from posrecon.kafka.topics import admin_client

__all__ = [
    "KAFKA_LOG",
    "admin",
    "group_consumer",
    "offset_reader",
    "producer_config",
    "shared_config",
    "transactional_producer",
]


#: the logger librdkafka's messages arrive on (level from librdkafka's syslog level: 3 error, 4 warning …)
KAFKA_LOG = logging.getLogger("posrecon.kafka.librdkafka")


def shared_config(settings_kafka: Mapping[str, str], overrides: Mapping[str, str], bootstrap: str) -> dict[str, Any]:
    """The configuration every client of a worker starts from: the settings' ``kafka`` section, the
    options' overrides, and the bootstrap servers."""
    config: dict[str, Any] = {**settings_kafka, **overrides}
    config["bootstrap.servers"] = bootstrap
    # librdkafka's own log lines (a broker gone, a failed connection) through the JSON log and its card-number
    # scrubber instead of raw ``%3|…`` lines on stderr; served by the consumer's consume and the producer's
    # poll / flush calls, so never from librdkafka's threads
    config["logger"] = KAFKA_LOG
    return config


def admin(config: Mapping[str, Any]) -> AdminClient:
    return admin_client(config["bootstrap.servers"], config)


def group_consumer(config: Mapping[str, Any], group_id: str, instance_id: str | None) -> Consumer:
    """The worker's consumer: offsets are committed only inside its transactions, and only committed input
    is read. ``instance_id`` turns on static membership (KIP-345)."""
    return Consumer(
        {
            **config,
            "group.id": group_id,
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            # a new group starts at the beginning (the restore assigns OFFSET_BEGINNING explicitly); any other
            # reset means records vanished before we read them: reported, not silent (Positions.records_lost)
            "auto.offset.reset": "error",
            "partition.assignment.strategy": "range",
            "enable.partition.eof": True,
            "fetch.wait.max.ms": 50,
            "session.timeout.ms": 10_000,
            "heartbeat.interval.ms": 1_000,
            **({"group.instance.id": instance_id} if instance_id is not None else {}),
        }
    )


def offset_reader(config: Mapping[str, Any], group_id: str) -> Consumer:
    """Reads the group's committed offsets for restores; never subscribes, so never a member."""
    return Consumer({**config, "group.id": group_id, "isolation.level": "read_committed", "enable.auto.commit": False})


#: librdkafka's default retry backoff is 100 ms, and a transaction's first AddOffsetsToTxn / AddPartitionsToTxn
#: often meets CONCURRENT_TRANSACTIONS (the coordinator still writing the previous commit's markers; half the
#: transactions under live traffic here): each of those cost a 100-ms wait. The Java producer retries it on
#: AddPartitionsToTxn after 20 ms (KAFKA-5477); so does this one. Other retries back off exponentially from it to
#: ``retry.backoff.max.ms`` (1 s). ``[kafka] retry.backoff.ms`` overrides it.
TRANSACTIONAL_DEFAULTS: Mapping[str, Any] = {"retry.backoff.ms": 20}


def transactional_producer(config: Mapping[str, Any], transactional_id: str, transaction_timeout_ms: int) -> Producer:
    return Producer(producer_config(config, transactional_id, transaction_timeout_ms))


def producer_config(config: Mapping[str, Any], transactional_id: str, transaction_timeout_ms: int) -> dict[str, Any]:
    """The transactional producer's librdkafka configuration (the worker's settings win over its defaults)."""
    return {
        **TRANSACTIONAL_DEFAULTS,
        **config,
        "transactional.id": transactional_id,
        "transaction.timeout.ms": transaction_timeout_ms,
        "partitioner": "murmur2_random",
        "linger.ms": 5,
        "queue.buffering.max.messages": 500_000,
    }
