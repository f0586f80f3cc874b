"""The Confluent wire format end to end on a real broker (issue 16): inputs written by confluent-kafka's own
AvroSerializer (half of them; the other half single-object, settlement notices with the v1 schema), the worker
with ``[serde] format = "confluent"``, and a ledger consumer that knows nothing of posrecon (confluent-kafka's
DeserializingConsumer with AvroDeserializer, read_committed) reads every decision and alert: the same records
as a single-object run of the same input, and as the replay oracle.

The registry is confluent-kafka's in-process ``mock://`` one (no registry server runs here). It lives in one
process: its schemas are per client object, shared through posrecon.serde.wire.registry_client. So both
workers run in this test's process (a thread each, as ``posrecon run --no-wall-clock-advance`` would), not as
``posrecon run`` subprocesses, which would each have their own empty mock registry.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import DeserializingConsumer, KafkaError, Producer, TopicPartition
from confluent_kafka.error import ConsumeError
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext, StringDeserializer

from livekit import ALERT_COMPARED, drain, mixed_input, replay_oracle, verify
from posrecon.app.worker import Worker, WorkerOptions
from posrecon.config import SerdeSettings, Settings, Topics
from posrecon.kafka.feeder import Feeder
from posrecon.kafka.outputs import Outputs, read_outputs
from posrecon.serde.codec import MAGIC, AvroCodec
from posrecon.serde.confluent import confluent_header
from posrecon.serde.schemas import load_schema_json
from posrecon.serde.wire import contract_schema, registry_client

pytestmark = pytest.mark.broker
PARTITIONS = 4
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class MixedFeeder(Feeder):
    """The replay input as producers would send it, every other record framed by confluent-kafka's
    AvroSerializer (terminal events with the current schema, settlement notices with v1); the rest, and the lines
    that do not fit, exactly as the single-object Feeder sends them."""

    def __init__(self, bootstrap: str, topics: Topics, client: SchemaRegistryClient) -> None:
        super().__init__(bootstrap, topics)
        self.serializers = {
            topics.terminal: (
                AvroCodec("TerminalEvent"),
                AvroSerializer(client, contract_schema("TerminalEvent").schema_str),
            ),
            topics.settlement: (
                AvroCodec("SettlementNotice"),
                AvroSerializer(client, json.dumps(load_schema_json("SettlementNotice", "v1"))),
            ),
        }
        self.lines = 0
        self.framed = 0

    def encode_line(self, line: str) -> tuple[str, bytes | None, bytes, int | None]:
        topic, key, value, ts = super().encode_line(line)
        self.lines += 1
        if self.lines % 2 and value.startswith(MAGIC) and topic in self.serializers:
            codec, serializer = self.serializers[topic]
            framed = serializer(codec.decode(value), SerializationContext(topic, MessageField.VALUE))
            assert framed is not None
            self.framed += 1
            return topic, key, framed, ts
        return topic, key, value, ts


def run_worker(bootstrap: str, settings: Settings, app: str) -> None:
    """One worker in this process until its inputs are drained (replay-equal mode: no wall-clock advance)."""
    worker = Worker(settings, WorkerOptions(bootstrap=bootstrap, app_id=app, worker_id="w0", wall_clock_lag_ms=None))
    failed: list[BaseException] = []

    def _run() -> None:
        try:
            worker.run()
        except BaseException as exc:  # surfaced in the test's thread
            failed.append(exc)

    thread = threading.Thread(target=_run, name=f"worker-{app}", daemon=True)
    thread.start()
    try:
        drain(bootstrap, settings.topics, app)
    finally:
        worker.stopping = True
        thread.join(60)
    assert not thread.is_alive() and not failed, failed


def ledger_read(bootstrap: str, topic: str, client: SchemaRegistryClient) -> list[tuple[str, dict[str, Any]]]:
    """What a ledger with confluent-kafka alone reads: (key, value) of every committed record of ``topic``."""
    consumer = DeserializingConsumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"ledger-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            "key.deserializer": StringDeserializer("utf_8"),
            "value.deserializer": AvroDeserializer(client),
        }
    )
    try:
        partitions = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        pending = set(partitions)
        out: list[tuple[str, dict[str, Any]]] = []
        while pending:
            try:
                msg = consumer.poll(10)
            except ConsumeError as exc:  # the DeserializingConsumer raises the end of a partition
                assert exc.code == KafkaError._PARTITION_EOF and exc.kafka_message is not None, exc
                pending.discard(exc.kafka_message.partition())
                continue
            assert msg is not None, f"{topic}: no end of partitions {pending}"
            out.append((msg.key(), msg.value()))  # type: ignore[arg-type]  # deserialized: str and dict
        return out
    finally:
        consumer.close()


def epoch_ms(value: dict[str, Any]) -> dict[str, Any]:
    """The registered schema keeps timestamp-millis: AvroDeserializer gives datetimes, the engine epoch ms."""
    return {k: (v - EPOCH) // timedelta(milliseconds=1) if isinstance(v, datetime) else v for k, v in value.items()}


def decisions(rows: list[tuple[Any, dict[str, Any]]]) -> dict[tuple[str, int], dict[str, Any]]:
    keyed = {(v["order_id"], v["revision"]): v for _, v in rows}
    assert len(keyed) == len(rows), "a decision twice"
    assert all(key == v["order_id"] for key, v in rows)
    return keyed


def alerts(rows: list[tuple[Any, dict[str, Any]]]) -> dict[str, tuple[Any, ...]]:
    keyed = {v["alert_id"]: tuple(v[f] for f in ALERT_COMPARED) for _, v in rows}
    assert len(keyed) == len(rows), "an alert twice"
    return keyed


def as_rows(outputs: Outputs) -> tuple[list[tuple[Any, dict[str, Any]]], list[tuple[Any, dict[str, Any]]]]:
    return (
        [(r.key.decode() if r.key else None, r.value) for r in outputs.reconciled],
        [(r.key.decode() if r.key else None, r.value) for r in outputs.alerts],
    )


def test_a_confluent_run_reads_back_with_avro_deserializer_equal_to_the_single_object_run(
    bootstrap: str, fresh_topics: Any, tmp_path: Path
) -> None:
    src = mixed_input(tmp_path / "input.jsonl", 300, seed=16)
    lines = src.read_text().splitlines()
    oracle = replay_oracle(src, tmp_path / "replay", PARTITIONS)

    single_topics = fresh_topics(PARTITIONS)
    Feeder(bootstrap, single_topics).feed(lines)
    run_worker(bootstrap, Settings(topics=single_topics), "app-single-" + uuid.uuid4().hex[:6])
    single = read_outputs(bootstrap, single_topics)
    verdict = verify(single, oracle)
    assert verdict.ok, verdict.problems

    serde = SerdeSettings(format="confluent", registry_url=f"mock://it-{uuid.uuid4().hex}")
    client = registry_client(serde)  # the worker's own client: the same in-process registry
    topics = fresh_topics(PARTITIONS)
    feeder = MixedFeeder(bootstrap, topics, client)
    feeder.feed(lines)
    assert 0 < feeder.framed < feeder.lines
    unknown = (
        confluent_header(987_654)
        + AvroCodec("TerminalEvent").encode_reference(
            AvroCodec("TerminalEvent").conform(json.loads(lines[0])["record"])
        )[10:]
    )
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(topics.terminal, unknown, b"ord-unknown-id", 0)
    producer.flush(10)
    run_worker(bootstrap, Settings(topics=topics, serde=serde), "app-confluent-" + uuid.uuid4().hex[:6])

    assert sorted(client.get_subjects()) == sorted(
        f"{t}-value"
        for t in (topics.terminal, topics.settlement, topics.reconciled, topics.alerts, topics.batch_reconciled)
    )
    reconciled = ledger_read(bootstrap, topics.reconciled, client)
    alert_rows = ledger_read(bootstrap, topics.alerts, client)
    single_reconciled, single_alerts = as_rows(single)
    assert len(reconciled) == len(single_reconciled) > 150 and len(alert_rows) == len(single_alerts) > 30
    assert decisions([(k, epoch_ms(v)) for k, v in reconciled]) == decisions(single_reconciled)
    assert alerts([(k, epoch_ms(v)) for k, v in alert_rows]) == alerts(single_alerts)

    # posrecon's own reader of the run (both formats) agrees with replay; the unknown id is one more dead letter
    confluent_outputs = read_outputs(bootstrap, topics, serde=serde)
    oracle.deadletters["DECODE_ERROR"] += 1
    verdict = verify(confluent_outputs, oracle)
    assert verdict.ok, verdict.problems
    letters = [d for d in confluent_outputs.deadletters if d.key == b"ord-unknown-id"]
    assert [(d.headers["reason"], d.headers["exception.class"]) for d in letters] == [("DECODE_ERROR", "DecodeError")]
    assert "unknown schema id 987654 for TerminalEvent" in letters[0].headers["exception.message"]
    assert Counter(d.headers["reason"] for d in confluent_outputs.deadletters) == oracle.deadletters
