"""PendingCommit: the end of a transaction on a helper thread, with a deadline."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from posrecon.app.transaction import PendingCommit, TransactionStalled


class FakeProducer:
    def __init__(self, fail: KafkaException | None = None, block: threading.Event | None = None) -> None:
        self.calls: list[str] = []
        self.fail = fail
        self.block = block

    def send_offsets_to_transaction(self, offsets: list[TopicPartition], metadata: Any) -> None:
        self.calls.append(f"offsets {[(tp.topic, tp.partition, tp.offset) for tp in offsets]} {metadata}")

    def commit_transaction(self) -> None:
        if self.block is not None:
            self.block.wait(5)
        if self.fail is not None:
            raise self.fail
        self.calls.append("commit")


def pending(producer: FakeProducer, offsets: list[TopicPartition] | None = None) -> PendingCommit:
    return PendingCommit(producer, offsets or [], "meta", 7, {("events", "x"): 1}, [123])  # type: ignore[arg-type]


def test_offsets_then_commit_and_what_to_account_for() -> None:
    producer = FakeProducer()
    commit = pending(producer, [TopicPartition("t", 1, 42)])
    commit.wait(5)
    assert producer.calls == ["offsets [('t', 1, 42)] meta", "commit"]
    assert (commit.records, commit.counts, commit.latency_samples) == (7, {("events", "x"): 1}, [123])


def test_no_offsets_means_commit_only() -> None:
    producer = FakeProducer()
    pending(producer).wait(5)
    assert producer.calls == ["commit"]


def test_a_failed_commit_raises_in_the_waiting_thread() -> None:
    failure = KafkaException(KafkaError(KafkaError._FENCED, "fenced"))
    with pytest.raises(KafkaException) as info:
        pending(FakeProducer(fail=failure)).wait(5)
    assert info.value is failure


def test_a_commit_that_does_not_return_is_a_stall_after_the_deadline_from_its_start() -> None:
    release = threading.Event()
    commit = pending(FakeProducer(block=release))
    time.sleep(0.2)  # the deadline counts from the start of the commit, not from wait()
    started = time.monotonic()
    with pytest.raises(TransactionStalled):
        commit.wait(0.3)
    assert time.monotonic() - started < 0.25
    release.set()
