"""Worker.close: librdkafka may complete a rebalance inside consumer.close() and call the assign callback
there (test_rebalance once failed on it: the state restore asked the already closed offset reader). And a
worker told to stop (SIGTERM) takes on no partition in a rebalance that follows (the takeover chaos test once
timed out on its stop: a full restore ran after the signal)."""

from __future__ import annotations

from typing import Any

from confluent_kafka import TopicPartition

from posrecon.app.worker import Worker, WorkerOptions
from posrecon.config import Settings


class ClosingConsumer:
    """A consumer whose close() runs the worker's assign callback, as librdkafka can."""

    def __init__(self, worker: Worker, reader: OffsetReader) -> None:
        self.worker, self.reader = worker, reader
        self.assigned: list[TopicPartition] | None = None

    def close(self) -> None:
        self.worker._on_assign(self, [TopicPartition("pos.terminal-events", 0)])  # type: ignore[arg-type]

    def assign(self, partitions: list[TopicPartition]) -> None:
        self.assigned = partitions


class OffsetReader:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True

    def committed(self, *_args: Any, **_kwargs: Any) -> list[TopicPartition]:
        raise RuntimeError("Consumer closed" if self.closed else "a restore must not run during close()")


def test_an_assignment_during_close_is_not_restored_and_the_close_completes() -> None:
    worker = Worker(Settings(), WorkerOptions(bootstrap="unused"))
    reader = OffsetReader()
    consumer = ClosingConsumer(worker, reader)
    worker._offset_reader = reader  # type: ignore[assignment]
    worker.consumer = consumer  # type: ignore[assignment]
    worker.close()
    assert consumer.assigned == [TopicPartition("pos.terminal-events", 0)]
    assert reader.closed and worker.consumer is None


def test_an_assignment_after_sigterm_takes_on_no_partition_and_restores_nothing() -> None:
    worker = Worker(Settings(), WorkerOptions(bootstrap="unused"))
    reader = OffsetReader()
    consumer = ClosingConsumer(worker, reader)
    worker._offset_reader = reader  # type: ignore[assignment]
    worker.stopping = True  # what the SIGTERM handler sets
    worker._on_assign(consumer, [TopicPartition("pos.terminal-events", 0)])  # type: ignore[arg-type]
    assert consumer.assigned == [] and not worker.ready and not worker.intake.tasks
