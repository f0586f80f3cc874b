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
from typing import Any

from confluent_kafka import Producer, TopicPartition


class TransactionStalled(RuntimeError):
    """A transactional call did not return in time."""


class PendingCommit:
    """One transaction being committed, with what to account for once it is."""

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
        self.started = time.monotonic()
        self._outcome: list[BaseException | None] = []
        # a daemon thread: one stuck forever inside librdkafka must not keep the process from exiting
        self._thread = threading.Thread(
            target=self._run, args=(producer, offsets, group_metadata), name="posrecon-commit", daemon=True
        )
        self._thread.start()

    def _run(self, producer: Producer, offsets: list[TopicPartition], group_metadata: Any) -> None:
        try:
            if offsets:
                producer.send_offsets_to_transaction(offsets, group_metadata)
            producer.commit_transaction()
            self._outcome.append(None)
        except BaseException as exc:  # handed to the loop's thread by wait()
            self._outcome.append(exc)

    def wait(self, stall_s: float) -> None:
        """Return once committed. Raises the commit's exception (a KafkaException), or TransactionStalled if
        it has not returned ``stall_s`` seconds after it started."""
        self._thread.join(max(0.0, self.started + stall_s - time.monotonic()))
        if not self._outcome:
            raise TransactionStalled("send_offsets_to_transaction/commit_transaction stalled")
        if self._outcome[0] is not None:
            raise self._outcome[0]
