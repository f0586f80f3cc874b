"""The live pipeline on a real broker: same outputs as replay, dead letters with headers, restart resumes."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from livekit import (
    WorkerProcess,
    app_of,
    feed_file,
    mixed_input,
    read_all,
    replay_oracle,
    run_until_drained,
    start_with_part_fed,
    verify,
)
from livekit import drain as _drain

pytestmark = pytest.mark.broker
PARTITIONS = 4


def test_live_outputs_equal_replay(bootstrap: str, fresh_topics: Any, tmp_path: Path) -> None:
    topics = fresh_topics(PARTITIONS)
    src = mixed_input(tmp_path / "input.jsonl", 600, seed=7)
    feed_file(bootstrap, topics, src)
    app = app_of(topics)
    worker = run_until_drained(bootstrap, topics, app, tmp_path)
    oracle = replay_oracle(src, tmp_path / "replay", PARTITIONS)
    assert len(oracle.reconciled) > 300 and len(oracle.alerts) > 50
    verdict = verify(read_all(bootstrap, topics), oracle)
    assert verdict.ok, verdict.problems
    assert "4111111111111111" not in worker.log()


def test_garbage_bytes_end_in_deadletter_with_reason_headers(bootstrap: str, fresh_topics: Any, tmp_path: Path) -> None:
    from confluent_kafka import Producer

    topics = fresh_topics(2)
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(topics.terminal, key=b"o1", value=b"\x00\xffnot avro 4111 1111 1111 1111", partition=1)
    producer.produce(topics.settlement, key=b"o2", value=b"\xc3\x01garbage", partition=0)
    producer.produce(topics.settlement, key=None, value=None, partition=1)
    producer.flush(10)
    app = app_of(topics)
    worker = WorkerProcess(bootstrap, topics, app, "w0", tmp_path)
    try:
        _drain(bootstrap, topics, app)
    finally:
        assert worker.stop() == 0
    out = read_all(bootstrap, topics)
    assert out.reconciled == [] and out.alerts == []
    letters = sorted(out.deadletters, key=lambda d: (d.headers["source.topic"], d.headers["source.partition"]))
    assert [d.headers["reason"] for d in letters] == ["DECODE_ERROR"] * 3
    assert {
        (d.headers["source.topic"], d.headers["source.partition"], d.headers["source.offset"]) for d in letters
    } == {(topics.settlement, "0", "0"), (topics.settlement, "1", "0"), (topics.terminal, "1", "0")}
    assert all(d.headers["exception.class"] == "DecodeError" for d in letters)
    terminal_letter = next(d for d in letters if d.headers["source.topic"] == topics.terminal)
    assert terminal_letter.key == b"o1" and terminal_letter.value is not None
    # masked in place (length-preserving, separators kept): only the last four digits remain
    assert b"4111 1111 1111 1111" not in terminal_letter.value
    assert terminal_letter.value.endswith(b"**** **** **** 1111")


def test_restarted_worker_resumes_without_loss_or_repeats(bootstrap: str, fresh_topics: Any, tmp_path: Path) -> None:
    topics = fresh_topics(PARTITIONS)
    src, total, app, first = start_with_part_fed(bootstrap, topics, tmp_path, 400, seed=11, divisor=2)
    _drain(bootstrap, topics, app)
    first.kill()  # no clean shutdown: state must come back from the changelog
    feed_file(bootstrap, topics, src, total // 2)
    log = run_until_drained(bootstrap, topics, app, tmp_path).log()
    assert '"orders_restored": 0' not in log.split("partitions assigned")[-1] or total < 10
    verdict = verify(read_all(bootstrap, topics), replay_oracle(src, tmp_path / "replay", PARTITIONS))
    assert verdict.ok, verdict.problems


def test_worker_refuses_topics_that_are_not_copartitioned(bootstrap: str, fresh_topics: Any, tmp_path: Path) -> None:
    from confluent_kafka.cimpl import NewTopic

    from posrecon.kafka.topics import admin_client

    topics = fresh_topics(2, create=False)
    admin = admin_client(bootstrap)
    futures = admin.create_topics([NewTopic(topics.terminal, 2, 1), NewTopic(topics.settlement, 3, 1)])
    for f in futures.values():
        f.result()
    worker = WorkerProcess(bootstrap, topics, "app-bad", "w0", tmp_path)
    code = worker.proc.wait(60)
    assert code == 2
    assert "co-partitioned" in worker.log() or "partition" in worker.log()
    time.sleep(0)
