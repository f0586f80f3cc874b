"""Against a real broker: topic creation, co-partitioning check, murmur2 parity with librdkafka,
transactions, and LocalBroker kill/restart."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from posrecon.config import Topics
from posrecon.kafka.partitioner import partition_for
from posrecon.kafka.topics import (
    CoPartitioningError,
    check_copartitioned,
    create_topics,
    describe_configs,
    describe_topics,
)
from posrecon.localbroker import LocalBroker, port_is_open

FreshTopics = Callable[..., Topics]  # the `fresh_topics` fixture (tests/integration/conftest.py)

pytestmark = pytest.mark.broker


def _partition_counts(bootstrap: str, names: list[str]) -> dict[str, int]:
    metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10)
    return {name: len(metadata.topics[name].partitions) for name in names}


def test_create_topics_compacts_reconciled_and_is_idempotent(bootstrap: str, fresh_topics: FreshTopics) -> None:
    topics = fresh_topics(partitions=12)
    names = [topics.terminal, topics.settlement, topics.reconciled, topics.alerts, topics.deadletter]
    assert _partition_counts(bootstrap, names) == dict.fromkeys(names, 12)

    admin = AdminClient({"bootstrap.servers": bootstrap})
    configs = describe_configs(admin, names)
    assert configs[topics.reconciled]["cleanup.policy"] == "compact"
    for name in (topics.terminal, topics.settlement, topics.alerts, topics.deadletter):
        assert configs[name]["cleanup.policy"] == "delete"
    assert check_copartitioned(bootstrap, topics) == 12
    assert check_copartitioned(admin, topics) == 12

    create_topics(bootstrap, topics, partitions=12)  # again: already exists is fine
    create_topics(bootstrap, topics, partitions=3)  # different count for existing topics: kept, warned
    assert _partition_counts(bootstrap, names) == dict.fromkeys(names, 12)
    listed = {row[0]: row for row in describe_topics(admin)}
    assert listed[topics.reconciled][1:] == (12, 1, "compact")
    # the dev broker keeps simulated history (2026-01-01 timestamps) whatever the clock says: defect 9
    for name in (topics.terminal, topics.settlement):
        assert configs[name]["retention.ms"] == "-1", name


def test_check_copartitioned_raises_on_mismatch(bootstrap: str, fresh_topics: FreshTopics) -> None:
    topics = fresh_topics(create=False)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    with pytest.raises(CoPartitioningError, match="do not exist"):
        check_copartitioned(admin, topics)

    futures = admin.create_topics(
        [NewTopic(topics.terminal, num_partitions=12), NewTopic(topics.settlement, num_partitions=6)]
    )
    for future in futures.values():
        future.result()
    time.sleep(0.5)
    with pytest.raises(CoPartitioningError) as info:
        check_copartitioned(bootstrap, topics)
    assert topics.terminal in str(info.value) and topics.settlement in str(info.value)
    assert "12" in str(info.value) and "6" in str(info.value)
    # create_topics keeps the existing input topics and refuses to leave them mismatched
    with pytest.raises(CoPartitioningError):
        create_topics(bootstrap, topics, partitions=12)

    only_one = Topics(terminal=topics.terminal, settlement=f"missing.{uuid.uuid4().hex}")
    with pytest.raises(CoPartitioningError, match="do not exist"):
        check_copartitioned(bootstrap, only_one)


def _random_keys(count: int, seed: int) -> list[bytes]:
    rnd = random.Random(seed)
    keys: set[bytes] = set()
    while len(keys) < count:
        kind = rnd.randrange(3)
        if kind == 0:
            keys.add(rnd.randbytes(rnd.randint(1, 48)))  # arbitrary bytes, every tail length
        elif kind == 1:
            keys.add(f"ORD-{rnd.randrange(10**9):09d}".encode())
        else:
            keys.add(f"订单-{uuid.UUID(int=rnd.getrandbits(128))}".encode())
    return sorted(keys)


def test_partition_for_matches_librdkafka_murmur2_random(bootstrap: str, fresh_topics: FreshTopics) -> None:
    topics = fresh_topics(partitions=12)
    topic = topics.terminal
    delivered: dict[bytes, int] = {}
    errors: list[str] = []

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            errors.append(str(err))
            return
        key = msg.key()
        partition = msg.partition()
        assert isinstance(key, bytes) and partition is not None
        delivered[key] = partition

    producer = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random", "linger.ms": 5})
    keys = _random_keys(500, seed=20240611)
    for key in keys:
        producer.produce(topic, key=key, value=b"x", on_delivery=on_delivery)
        producer.poll(0)
    assert producer.flush(30) == 0
    assert not errors
    assert len(delivered) == len(keys)
    mismatches = {k: (p, partition_for(k, 12)) for k, p in delivered.items() if p != partition_for(k, 12)}
    assert not mismatches
    assert len(set(delivered.values())) == 12  # 500 keys spread over all partitions


def _consume_all(bootstrap: str, topic: str, isolation: str, until: int, timeout: float = 30.0) -> list[bytes]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"t-{uuid.uuid4().hex}",
            "isolation.level": isolation,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        values: list[bytes] = []
        deadline = time.monotonic() + timeout
        while len(values) < until and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error() is not None:
                continue
            value = msg.value()
            assert isinstance(value, bytes)
            values.append(value)
        return values
    finally:
        consumer.close()


def test_transactional_produce_and_read_committed(bootstrap: str, fresh_topics: FreshTopics) -> None:
    topic = fresh_topics(partitions=1).reconciled
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"t-{uuid.uuid4().hex}"})
    producer.init_transactions(30)

    producer.begin_transaction()
    for i in range(5):
        producer.produce(topic, key=f"o{i}".encode(), value=f"aborted-{i}".encode())
    producer.flush(10)
    producer.abort_transaction(30)

    producer.begin_transaction()
    for i in range(5):
        producer.produce(topic, key=f"o{i}".encode(), value=f"committed-{i}".encode())
    producer.commit_transaction(30)

    committed = _consume_all(bootstrap, topic, "read_committed", until=5)
    assert committed == [f"committed-{i}".encode() for i in range(5)]
    everything = _consume_all(bootstrap, topic, "read_uncommitted", until=10)
    assert [v for v in everything if v.startswith(b"aborted-")] == [f"aborted-{i}".encode() for i in range(5)]


def test_local_broker_kill_and_restart_keep_ports_and_data(tmp_path: Path) -> None:
    """A second, private broker: start is idempotent, kill -9 + restart comes back with the data."""
    broker = LocalBroker(tmp_path / "kafka")
    try:
        broker.start()
        port, controller_port, pid = broker.port, broker.controller_port, broker.pid
        assert port is not None and port_is_open(port)
        broker.start()  # already running: no-op
        assert broker.pid == pid
        twin = LocalBroker(tmp_path / "kafka")  # same data dir, ports unknown: adopts the running broker
        twin.start()
        assert (twin.pid, twin.port, twin.controller_port) == (pid, port, controller_port)
        topics = Topics(terminal="in.a", settlement="in.b", reconciled="rec", alerts="al", deadletter="dl")
        create_topics(broker.bootstrap, topics, partitions=3)

        assert broker.kill() is True
        assert not broker.status().running
        broker.restart()
        assert (broker.port, broker.controller_port) == (port, controller_port)
        assert broker.pid != pid and broker.status().running
        assert check_copartitioned(broker.bootstrap, topics) == 3

        broker.restart()  # graceful stop + start
        assert check_copartitioned(broker.bootstrap, topics) == 3
    finally:
        broker.stop()
    assert not broker.status().running
    assert not (tmp_path / "kafka" / "broker.pid").exists()
