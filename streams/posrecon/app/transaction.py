"""The transaction driver: the transactional producer, the batch's outbox and the offsets it commits.

One transaction per turn of the loop: a batch, and what comes in while the previous transaction commits
(``Worker.step``). ``send_offsets_to_transaction`` + ``commit_transaction`` are network round trips
(the group coordinator, then the transaction coordinator writing its markers): on a loaded 2-core machine
50-100 ms per transaction, during which the loop used to sit idle (about half of its time at a steady 11k
events/s). A :class:`PendingCommit` runs them on a helper thread while the loop already decodes and
reconciles the next batch. That batch's outputs wait in the outbox: nothing is produced until this commit
has succeeded and the next transaction has begun, so a transaction never holds records of two turns. If
the commit fails, the worker throws the prepared batch away with the rest of its state (it rebuilds from the
changelogs and rewinds to the committed offsets), exactly as after any failed transaction.

librdkafka can block forever in these calls after a broker restart (a stale coordinator handle; the calls'
own timeouts are not honoured, confluentinc/librdkafka#5511), hence the deadline: a commit that has not
returned ``stall_s`` after it started raises :class:`TransactionStalled` and the producer is replaced.

The producer's side is an explicit state machine (:class:`TxnState`, as aiokafka's transaction manager):

    UNINITIALIZED --open--> READY --begin--> IN_TRANSACTION --hand over the commit--> COMMITTING
    COMMITTING --committed--> READY          IN_TRANSACTION / COMMITTING --failed--> ABORTING
    ABORTING --aborted, or fatal / stalled / the abort failed--> REPLACING --new producer fenced the old--> READY
    any state but CLOSED --close--> CLOSED

Any other move raises :class:`InvalidTransition`: a bug in the driver, never a Kafka condition.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from enum import Enum
from typing import TYPE_CHECKING, Any

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from posrecon.app.errors import ProducerAction, TransactionStalled, on_abort_failure, on_transaction_failure
from posrecon.engine.pan import scrub_text

if TYPE_CHECKING:
    from posrecon.app.merge import TaskQueue
    from posrecon.app.outbox import Outbox
    from posrecon.app.telemetry import Telemetry

__all__ = ["DeadlinedCall", "InvalidTransition", "PendingCommit", "Transaction", "TransactionStalled", "TxnState"]

log = logging.getLogger("posrecon.worker")

Key = tuple[str, int]


class TxnState(Enum):
    UNINITIALIZED = "uninitialized"  # no producer yet
    READY = "ready"  # no transaction open
    IN_TRANSACTION = "in transaction"  # begun, the outbox being produced into it
    COMMITTING = "committing"  # offsets + commit running on the helper thread
    ABORTING = "aborting"  # a call failed: the transaction is being aborted
    REPLACING = "replacing"  # a new producer fences the old one and settles its transaction
    CLOSED = "closed"

    def can_become(self, target: TxnState) -> bool:
        return target in _TRANSITIONS[self]


_S = TxnState
_TRANSITIONS: dict[TxnState, frozenset[TxnState]] = {
    _S.UNINITIALIZED: frozenset({_S.READY, _S.CLOSED}),
    _S.READY: frozenset({_S.IN_TRANSACTION, _S.CLOSED}),
    _S.IN_TRANSACTION: frozenset({_S.COMMITTING, _S.ABORTING, _S.CLOSED}),
    _S.COMMITTING: frozenset({_S.READY, _S.ABORTING, _S.CLOSED}),
    _S.ABORTING: frozenset({_S.REPLACING, _S.CLOSED}),  # every failed transaction ends in a new producer
    _S.REPLACING: frozenset({_S.READY, _S.CLOSED}),
    _S.CLOSED: frozenset(),
}


class InvalidTransition(RuntimeError):
    """The driver tried a move the state machine does not have."""


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


def offset_fields(offsets: Iterable[TopicPartition]) -> dict[str, int]:
    """Offsets for a log line: ``{"topic[partition]": offset}``."""
    return {f"{tp.topic}[{tp.partition}]": tp.offset for tp in offsets}


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
        self.offsets = offsets
        self.records = records
        self.counts = counts
        self.latency_samples = latency_samples
        super().__init__(_end_transaction, producer, offsets, group_metadata)


class Transaction:
    """Owns everything a transaction is made of: the producer (and the stalled ones it replaced), the outbox,
    the commit in flight, the offsets the latest transaction commits (``sent_to``) and the offsets to commit
    for partitions whose unread records were deleted (``skipped_to``)."""

    def __init__(
        self, new_producer: Callable[[], Producer], outbox: Outbox, telemetry: Telemetry, stall_s: float
    ) -> None:
        self.new_producer = new_producer
        self.outbox = outbox
        self.telemetry = telemetry
        self.stall_s = stall_s
        self.state = TxnState.UNINITIALIZED
        self.producer: Producer | None = None
        self.stalled_producers: list[Producer | None] = []  # kept referenced: a thread may still be inside
        self.committing: PendingCommit | None = None  # the previous batch's transaction, being committed
        #: per partition, the offset the latest transaction begun commits (or the offset a restore resumed from)
        self.sent_to: dict[Key, int] = {}
        #: offsets to commit for partitions whose unread records were deleted (see Positions.records_lost)
        self.skipped_to: dict[Key, int] = {}
        self.dropped_batches = 0  # rebalances that ended what a turn had prepared (see drop_prepared)

    def move(self, target: TxnState) -> None:
        if not self.state.can_become(target):
            raise InvalidTransition(f"transaction {self.state.name} -> {target.name}")
        self.state = target

    def open(self) -> None:
        self.producer = self.new_producer()
        self.producer.init_transactions(30)
        self.move(TxnState.READY)

    # --- the batch's offsets ----------------------------------------------------------------------------

    def skip_to(self, key: Key, offset: int) -> None:
        """Commit ``offset`` for ``key`` with the next transaction, even if no record of it comes."""
        self.skipped_to[key] = offset

    def take_skipped(self) -> dict[Key, int]:
        """The skipped-to offsets, for the batch being prepared (a failed transaction rewinds to the committed
        offsets: the same gap is found again then)."""
        offsets = dict(self.skipped_to)
        self.skipped_to.clear()
        return offsets

    def drained_positions(self, consumer: Consumer, queues: Iterable[TaskQueue]) -> dict[Key, int]:
        """Consumer positions of drained partitions (end of partition, nothing left in the queue) that are
        beyond what the latest transaction commits.

        The worker commits the offset after each record it processed. On a topic written in transactions (the
        card sightings; an input whose producers use transactions) the offsets after a partition's last record
        are a commit marker, sometimes also aborted records and an abort marker: never delivered, so never
        committed, and the group's lag (consumer-group tools, the drain checks) stayed above 0 on them.
        librdkafka's position moves past them (``tests/integration/kafka/test_progress.py``) and only ever
        moves past what it delivered, so once a partition is drained its position is safe to commit.
        """
        ends = [TopicPartition(q.topic, q.partition) for q in queues if q.at_end and not q.records]
        if not ends:
            return {}
        drained: dict[Key, int] = {}
        sent_to = self.sent_to
        for tp in consumer.position(ends):
            key = (tp.topic, tp.partition)
            if tp.offset >= 0 and tp.offset > sent_to.get(key, -1):
                drained[key] = tp.offset
        return drained

    def forget(self, keys: Iterable[Key]) -> None:
        """Partitions revoked: nothing of theirs is committed any more."""
        for key in keys:
            self.skipped_to.pop(key, None)
            self.sent_to.pop(key, None)

    # --- begin, commit, abort ---------------------------------------------------------------------------

    def start(self, consumer: Consumer, offsets: dict[Key, int], records: int) -> bool:
        """Begin the transaction, produce the outbox into it and hand the commit to a helper thread. False if
        that failed (the transaction is then aborted and the batch dropped: the caller rebuilds)."""
        producer = self.producer
        assert producer is not None
        self.move(TxnState.IN_TRANSACTION)
        try:
            producer.begin_transaction()
            self.outbox.produce_into(producer)
            metadata = consumer.consumer_group_metadata()
        except KafkaException as exc:
            self.abort(exc)
            return False
        counts, samples = self.telemetry.take_batch()
        offset_list = [TopicPartition(t, p, o) for (t, p), o in sorted(offsets.items())]
        self.committing = PendingCommit(producer, offset_list, metadata, records, counts, samples)
        self.move(TxnState.COMMITTING)
        self.sent_to.update(offsets)
        return True

    def drop_prepared(self) -> None:
        """A rebalance: what this turn has prepared goes with the revoked partitions (Worker.step: what comes in
        while the previous transaction commits joins the batch, and a consume call may revoke its partitions);
        nothing of it was produced, the new owner reads its records again. Counted even when nothing is left to
        drop: a commit that failed in the revoke callback has aborted and cleared it already, and the turn must
        not commit the offsets it held for it."""
        self.outbox.clear()
        self.telemetry.take_batch()
        self.dropped_batches += 1

    def commit_running(self) -> bool:
        """Is the previous batch's transaction still being committed (its calls not returned yet)?"""
        pending = self.committing
        return pending is not None and pending.finished is None

    def finish(self) -> bool:
        """Wait for the transaction in flight (if any). True once it has committed; False if it failed, after
        aborting it (the caller rebuilds the state and rewinds, or is about to drop it anyway)."""
        pending = self.committing
        if pending is None:
            return True
        self.committing = None
        try:
            pending.wait(self.stall_s)
        except (KafkaException, TransactionStalled) as exc:
            self.abort(exc, pending.offsets)
            return False
        self.move(TxnState.READY)
        self.telemetry.committed(pending)
        return True

    def abort(self, exc: KafkaException | TransactionStalled, offsets: list[TopicPartition] | None = None) -> None:
        """End a failed transaction and forget the prepared batch: abort it where the producer can, then
        replace the producer, so that the transaction is settled on the broker before the caller rebuilds
        (see app/errors.py). ``offsets``: those the transaction was to commit (logged: after a broker failure
        the transaction may have committed after all, which the rebuild's offsets then show)."""
        self.move(TxnState.ABORTING)
        self.telemetry.aborted()
        fields: dict[str, Any] = {"error": scrub_text(str(exc))}
        if offsets is not None:
            fields["offsets"] = offset_fields(offsets)
        log.warning("transaction failed; aborting it", extra={"fields": fields})
        remedy = on_transaction_failure(exc)
        idle = False  # the old producer returned from its abort: nothing of it runs any more
        if remedy.action is ProducerAction.ABORT:
            assert self.producer is not None
            try:
                DeadlinedCall(self.producer.abort_transaction, 30).wait(self.stall_s)
                idle = True
                remedy = remedy._replace(why="fence the aborted transaction's producer")
            except (TransactionStalled, KafkaException) as abort_exc:
                remedy = on_abort_failure(abort_exc)
        self.replace_producer(remedy.why, idle)
        self.telemetry.take_batch()
        self.outbox.clear()
        self.skipped_to.clear()  # the rewind to the committed offsets finds the same gap again

    def replace_producer(self, why: str, idle: bool = False) -> None:
        """Replace the producer: a new one with the same transactional.id fences the old one and settles its
        last transaction on the coordinator (init_transactions returns once it is aborted, or completed if its
        commit was accepted), so nothing the old one may still send can commit. An ``idle`` old producer (its
        abort returned) is dropped; any other is kept referenced, as a thread may still be inside it."""
        self.move(TxnState.REPLACING)
        level = logging.INFO if idle else logging.WARNING
        log.log(level, "replacing the transactional producer", extra={"fields": {"why": why}})
        if not idle:
            self.stalled_producers.append(self.producer)
        self.producer = self.new_producer()
        self.producer.init_transactions(60)
        self.move(TxnState.READY)

    def close(self) -> None:
        if self.state is TxnState.CLOSED:
            return
        self.move(TxnState.CLOSED)
        if self.producer is not None:
            try:
                self.producer.flush(10)
            except KafkaException as exc:  # nothing is lost: an unfinished transaction is aborted by the broker
                log.warning("producer flush at close failed", extra={"fields": {"error": scrub_text(str(exc))}})
            self.producer = None
