"""The end of a Kafka transaction, run off the worker's loop.

``send_offsets_to_transaction`` + ``commit_transaction`` are network round trips (the group coordinator,
then the transaction coordinator writing its markers): on a loaded 2-core machine 50-100 ms per
transaction, during which the loop used to sit idle (about half of its time at a steady 11k events/s).
A :class:`PendingCommit` runs them on a helper thread while the loop already decodes and reconciles the
next batch. That batch's outputs wait in the worker's outbox: nothing is produced until this commit has
succeeded and the next transaction has begun, so a transaction never holds records of two batches. If the
commit fails, the worker throws the prepared batch away with the rest of its state (it rebuilds from the
changelogs and rewinds to the committed offsets), exactly as after any failed transaction.

librdkafka can block forever in these calls after a broker restart (a stale coordinator handle; the calls'
own timeouts are not honoured, confluentinc/librdkafka#5511), hence the deadline: a commit that has not
returned ``stall_s`` after it started raises :class:`TransactionStalled` and the worker replaces the producer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import Producer, TopicPartition


class TransactionStalled(RuntimeError):
    """A transactional call did not return in time."""


class DeadlinedCall:
    """``call(*args)`` on a daemon thread; :meth:`wait` hands over its outcome, or gives up on it after a
    deadline counted from the start (the thread is left behind: one stuck forever inside librdkafka must
    not keep the process from exiting)."""

    def __init__(self, call: Callable[..., object], *args: Any) -> None:
        self.name = getattr(call, "__name__", str(call))
        self.started = time.monotonic()
        self.finished: float | None = None
        self._outcome: list[BaseException | None] = []
        self._thread = threading.Thread(target=self._run, args=(call, *args), name="posrecon-txn", daemon=True)
        self._thread.start()

    def _run(self, call: Callable[..., object], *args: Any) -> None:
        try:
            call(*args)
            self._outcome.append(None)
        except BaseException as exc:  # handed to the waiting thread by wait()
            self._outcome.append(exc)
        self.finished = time.monotonic()

    def wait(self, stall_s: float) -> None:
        """Return once the call has returned. Raises its exception, or TransactionStalled if it has not
        returned ``stall_s`` seconds after it started."""
        self._thread.join(max(0.0, self.started + stall_s - time.monotonic()))
        if not self._outcome:
            raise TransactionStalled(f"{self.name} stalled")
        if self._outcome[0] is not None:
            raise self._outcome[0]

    @property
    def seconds(self) -> float:
        """How long the call took (so far, while it runs)."""
        return (self.finished or time.monotonic()) - self.started


def _end_transaction(producer: Producer, offsets: list[TopicPartition], group_metadata: Any) -> None:
    if offsets:
        producer.send_offsets_to_transaction(offsets, group_metadata)
    producer.commit_transaction()


class PendingCommit(DeadlinedCall):
    """One transaction being committed (send_offsets_to_transaction, then commit_transaction), with what to
    account for once it is."""

    def __init__(
        self,
        producer: Producer,
        offsets: list[TopicPartition],
        group_metadata: Any,
        records: int,
        counts: dict[tuple[str, ...], int],
        latency_samples: list[int],
    ) -> None:
        self.records = records
        self.counts = counts
        self.latency_samples = latency_samples
        super().__init__(_end_transaction, producer, offsets, group_metadata)
