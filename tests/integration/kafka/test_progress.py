"""group_lag against a real broker: a transactional topic whose tail is markers and aborted records counts as
caught up once the group has committed the offset after its last committed record."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from posrecon.kafka.progress import group_lag, partition_lags, visible_by_partition


def _txn_producer(bootstrap: str, tid: str) -> Producer:
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": tid})
    producer.init_transactions(30)
    return producer


def test_a_tail_of_a_commit_marker_then_an_abort_marker_is_not_lag(bootstrap: str) -> None:
    topic, group = f"progress-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept referenced until the topic exists
    for future in admin.create_topics([NewTopic(topic, 1, 1)]).values():
        future.result(30)
    writer, killed = _txn_producer(bootstrap, f"{topic}-a"), _txn_producer(bootstrap, f"{topic}-b")
    writer.begin_transaction()
    for i in range(3):
        writer.produce(topic, b"r%d" % i, partition=0)  # offsets 0-2, commit marker 3
    writer.commit_transaction(30)
    killed.begin_transaction()
    killed.produce(topic, b"aborted", partition=0)  # offset 4
    killed.flush(30)
    writer.begin_transaction()
    writer.produce(topic, b"r3", partition=0)  # offset 5, commit marker 6
    writer.commit_transaction(30)
    killed.abort_transaction(30)  # abort marker 7: the tail is two markers after the last record

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
        }
    )
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        got = []
        while len(got) < 4:
            got += [m for m in consumer.consume(10, 1.0) if m.error() is None]
        assert [m.value() for m in got] == [b"r0", b"r1", b"r2", b"r3"]
        # librdkafka moves the position past the markers and the aborted record: the worker commits it once a
        # partition is drained (Transaction.drained_positions), so the group's lag reaches 0 on such a tail
        end = time.monotonic() + 10
        while consumer.position([TopicPartition(topic, 0)])[0].offset != 8 and time.monotonic() < end:
            consumer.consume(10, 0.2)
        assert consumer.position([TopicPartition(topic, 0)])[0].offset == 8
        assert consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10) == (0, 8)
        consumer.commit(offsets=[TopicPartition(topic, 0, 3)], asynchronous=False)
        assert group_lag(bootstrap, group, [topic], [topic]) == 1  # r3 is still to be read
        consumer.commit(offsets=[TopicPartition(topic, 0, got[-1].offset() + 1)], asynchronous=False)
        assert group_lag(bootstrap, group, [topic], [topic]) == 0  # (end - 1 - committed would say 1)
        assert group_lag(bootstrap, group, [topic], []) == 2  # as a plain topic: offsets, not records
    finally:
        consumer.close()
    assert visible_by_partition(bootstrap, [TopicPartition(topic, 0, 0)]) == {(topic, 0): 4}
    (row,) = partition_lags(bootstrap, group, [topic], [topic])
    assert (row.committed, row.low, row.high, row.lag) == (6, 0, 8, 0)
