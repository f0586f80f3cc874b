"""The case stage against a real broker: cases from alerts, auto-resolution, bad input to the dead letters (never
a crash), actions produced straight to the topic (unknown case, redelivery), and a kill -9: the books come back
from `<app>-cases-changelog` at the committed offsets, and every (case, version) is on pos.exceptions once."""

from __future__ import annotations

import os
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from caseskit import (
    OPERATOR,
    VIEWER,
    CasesProcess,
    ExceptionsReader,
    alert,
    call,
    produce_alerts,
    produce_raw,
    tokens_file,
    wait_until,
)
from posrecon.config import Topics
from posrecon.engine.case_actions import ExceptionAction, routing_key
from posrecon.kafka.partitioner import partition_for
from posrecon.serde.codec import AvroCodec


def dead_letters(bootstrap: str, topics: Topics, expected: int) -> list[dict[str, str]]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"dl-{topics.deadletter}",
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topics.deadletter])
    found: list[dict[str, str]] = []

    def more() -> bool:
        for msg in consumer.consume(50, timeout=0.5):
            if msg.error() is None:
                found.append({k: v.decode() for k, v in msg.headers() or []})
        return len(found) >= expected

    try:
        wait_until(more, what=f"{expected} dead letters")
    finally:
        consumer.close()
    return found


def produce_action(bootstrap: str, topics: Topics, action: ExceptionAction, partitions: int) -> None:
    key = routing_key(action).encode()
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(
        topics.exception_actions,
        AvroCodec("ExceptionAction").encode(action),
        key,  # type: ignore[arg-type]
        partition_for(key, partitions),
    )
    assert producer.flush(30) == 0


def action(action_id: str, alert_id: str, kind: str, order_id: str, note: str | None = None) -> ExceptionAction:
    return {
        "action_id": action_id,
        "alert_id": alert_id,
        "action": kind,
        "actor": "alice",
        "note": note,
        "assignee": None,
        "at": 1_800_000_000_000,
        "order_id": order_id,
        "batch_id": None,
        "merchant_id": None,
    }


def test_cases_survive_a_kill_and_bad_input_goes_to_the_dead_letters(
    bootstrap: str, fresh_topics: Any, tmp_path: Path
) -> None:
    topics: Topics = fresh_topics(3)
    tokens = tokens_file(tmp_path)
    stage = CasesProcess(bootstrap, topics, "cases-eos", tmp_path, tokens)
    reader = ExceptionsReader(bootstrap, topics)
    try:
        stage.wait_ready()
        produce_alerts(bootstrap, topics, [alert(f"a{i}", order_id=f"o{i}") for i in range(6)])
        produce_raw(bootstrap, topics.alerts, b"\x00garbage")  # not Avro
        produce_raw(bootstrap, topics.exception_actions, b"\xff\xff")
        produce_action(bootstrap, topics, action("", "a1", "RESOLVE", "o1"), 3)  # empty action_id
        letters = dead_letters(bootstrap, topics, 3)
        assert Counter(d["reason"] for d in letters) == {"DECODE_ERROR": 2, "EMPTY_ID": 1}
        assert {d["source.topic"] for d in letters} == {topics.alerts, topics.exception_actions}
        for i in range(6):
            reader.wait_for(lambda r, i=i: r["alert_id"] == f"a{i}" and r["version"] == 1)
        assert call(f"{stage.base}/cases/a2/actions", "POST", OPERATOR, {"action": "ACKNOWLEDGE"})[0] == 202
        reader.wait_for(lambda r: r["alert_id"] == "a2" and r["state"] == "ACKNOWLEDGED")

        os.kill(stage.proc.pid, signal.SIGKILL)  # no clean shutdown: the next one restores from the changelog
        stage.stop()
        stage = CasesProcess(bootstrap, topics, "cases-eos", tmp_path, tokens)
        stage.wait_ready()
        assert call(f"{stage.base}/cases/a2", token=VIEWER)[1]["case"]["state"] == "ACKNOWLEDGED"
        assert call(f"{stage.base}/cases?limit=500", token=VIEWER)[1]["total"] == 6

        # after the restart, straight to the topic: an action, its redelivery, one on an unknown case
        produce_action(bootstrap, topics, action("x1", "a2", "RESOLVE", "o2"), 3)
        produce_action(bootstrap, topics, action("x1", "a2", "RESOLVE", "o2"), 3)
        produce_action(bootstrap, topics, action("x2", "ghost", "ACKNOWLEDGE", "o9"), 3)
        produce_alerts(bootstrap, topics, [alert("r3", order_id="o3", status="RESOLVED", resolves="a3")])
        assert reader.wait_for(lambda r: r["alert_id"] == "a2" and r["version"] == 3)["state"] == "RESOLVED"
        ghost = reader.wait_for(lambda r: r["alert_id"] == "ghost")
        assert ghost["version"] == 0 and ghost["state"] == "UNKNOWN" and ghost["last_rejection"].startswith("unknown")
        assert reader.wait_for(lambda r: r["alert_id"] == "a3" and r["version"] == 2)["state"] == "AUTO_RESOLVED"
        with pytest.raises(AssertionError):  # the redelivered x1 is applied once: no version 4
            reader.wait_for(lambda r: r["alert_id"] == "a2" and r["version"] == 4, timeout_s=3)
        versions = Counter((r["alert_id"], r["version"]) for _, r in reader.records)
        assert max(versions.values()) == 1, versions  # exactly once across the kill
    finally:
        reader.close()
        stage.stop()


def test_alerts_deleted_before_the_stage_read_them_are_reported_and_the_rest_processed(
    bootstrap: str, fresh_topics: Any, tmp_path: Path
) -> None:
    topics: Topics = fresh_topics(1)
    tokens = tokens_file(tmp_path)
    stage = CasesProcess(bootstrap, topics, "cases-lost", tmp_path, tokens)
    reader = ExceptionsReader(bootstrap, topics)
    try:
        stage.wait_ready()
        produce_alerts(bootstrap, topics, [alert("before", order_id="o-b")])
        reader.wait_for(lambda r: r["alert_id"] == "before")
        assert stage.stop() == 0
        produce_alerts(bootstrap, topics, [alert(f"gone-{i}", order_id=f"o-g{i}") for i in range(3)])
        admin = AdminClient({"bootstrap.servers": bootstrap})
        probe = Consumer({"bootstrap.servers": bootstrap, "group.id": "probe"})
        end = probe.get_watermark_offsets(TopicPartition(topics.alerts, 0), timeout=10)[1]
        probe.close()
        for future in admin.delete_records([TopicPartition(topics.alerts, 0, end)]).values():
            future.result()
        produce_alerts(bootstrap, topics, [alert("after", order_id="o-a")])

        stage = CasesProcess(bootstrap, topics, "cases-lost", tmp_path, tokens)
        stage.wait_ready()
        reader.wait_for(lambda r: r["alert_id"] == "after")
        ids = {c["alert_id"] for c in call(f"{stage.base}/cases", token=VIEWER)[1]["items"]}
        assert ids == {"before", "after"}  # the deleted ones open no case; the stage went on past them
        assert "input records were deleted before the case stage read them" in stage.log()
        metrics = call(f"{stage.base}/metrics")[1]
        assert f'posrecon_input_records_lost_total{{topic="{topics.alerts}"}} 1.0'.encode() in metrics
    finally:
        reader.close()
        stage.stop()
