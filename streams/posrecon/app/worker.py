"""The live worker: Kafka in, engine, Kafka out — exactly once, through Kafka transactions (KIP-447).

One consumer (group ``app_id``, range assignment so partition p of both input topics lands on the same
worker) and one transactional producer per process. Each loop turn takes a batch of records in timestamp
order per task, feeds the engine, and in ONE transaction produces: the decisions, alerts, dead letters,
card sightings for the card partitions other workers own (repartitioned by card key for the cross-order
duplicate-charge check; those it owns it applies in place), the changelog of every order and card key
touched, and the consumed offsets (``send_offsets_to_transaction`` with the consumer group metadata, so a
fenced zombie cannot commit). A crash anywhere leaves either the whole batch or none of it.

This file is the set-up, the loop and the rebalance callbacks; the rooms it drives: app/intake.py (input
queues, batch choice, flow control, caught-up and idle inputs), app/transaction.py (the transaction state
machine), app/outbox.py (what a batch writes), app/restore.py, app/telemetry.py, app/errors.py (the error
policy); the Kafka clients are built in kafka/clients.py.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial

from confluent_kafka import Consumer, Message, Producer, TopicPartition

from posrecon.app.batch_stage import BatchStage
from posrecon.app.end_offsets import EndOffsets
from posrecon.app.errors import rejected, undecodable
from posrecon.app.intake import Intake
from posrecon.app.internal_topics import create_internal_topics, internal_topics
from posrecon.app.merge import TaskQueue
from posrecon.app.outbox import Outbox
from posrecon.app.restore import committed_offsets, restore_state, resume_positions
from posrecon.app.telemetry import Telemetry, wall_ms
from posrecon.app.transaction import Transaction, offset_fields
from posrecon.config import Settings
from posrecon.engine.cards import CardIndex
from posrecon.engine.engine import ReconciliationEngine
from posrecon.engine.model import Rejection
from posrecon.engine.record_feed import RecordFeed
from posrecon.gcpolicy import long_lived_state
from posrecon.kafka import clients
from posrecon.kafka.topics import check_copartitioned
from posrecon.metrics import WorkerMetrics
from posrecon.serde.codec import DecodeError
from posrecon.serde.wire import codec_for

log = logging.getLogger("posrecon.worker")

Offsets = dict[tuple[str, int], int]  # (topic, partition) -> the offset a transaction commits
#: how many batches one transaction may take in while the previous one commits (see :meth:`Worker.step`)
BATCHES_PER_COMMIT = 4


@dataclass(frozen=True)
class WorkerOptions:
    bootstrap: str
    app_id: str = "posrecon"
    worker_id: str = "0"
    # when behind: 10,000 input records per transaction drained 2M records at 29.4-30.2k events/s where 5,000 gave
    # 23.4-26.0k (fewer commits and markers, more changelog rows coalesced; 20,000 no better: docs/performance.md)
    batch_max_records: int = 10_000
    max_task_idle_ms: int = 100
    #: advance an idle partition's watermark to wall clock minus this lag; None disables (replay-equal mode)
    wall_clock_lag_ms: int | None = 300_000
    idle_advance_after_ms: int = 2_000
    transaction_timeout_ms: int = 10_000  # a dead producer's open transaction blocks restores until aborted
    #: a send_offsets/commit call blocked longer than this replaces the producer (librdkafka can hang there)
    transaction_stall_s: float = 15.0
    #: replication factor of the internal topics the worker creates (3 in production clusters)
    internal_replication: int = 1
    #: flow control: pause fetching a partition with more records than this buffered, resume below the low mark
    queue_high_records: int = 5_000
    queue_low_records: int = 1_000
    #: static group membership (KIP-345, group.instance.id = <app-id>-<worker-id>): a worker restarted with the
    #: same id gets its partitions back at once instead of after the session timeout; a worker that stops
    #: cleanly then keeps them (idle) until it returns or the session times out
    static_membership: bool = False
    client_config: Mapping[str, str] = field(default_factory=dict)


class WorkerReadouts:
    """What the command, the ops API and the tests read of a running worker (its parts own the values)."""

    transaction: Transaction
    intake: Intake
    telemetry: Telemetry

    @property
    def producer(self) -> Producer | None:
        return self.transaction.producer

    @producer.setter
    def producer(self, producer: Producer | None) -> None:  # a test double may wrap it (tests/chaos/zombie_worker)
        self.transaction.producer = producer

    @property
    def has_abandoned_producers(self) -> bool:
        return bool(self.transaction.stalled_producers)

    @property
    def queues(self) -> dict[tuple[str, int], TaskQueue]:
        return self.intake.queues

    @property
    def tasks(self) -> set[int]:
        return self.intake.tasks

    @property
    def processed(self) -> int:
        return self.telemetry.processed

    @property
    def input_pauses(self) -> int:
        return self.intake.input_pauses


class Worker(WorkerReadouts):
    def __init__(self, settings: Settings, options: WorkerOptions, metrics: WorkerMetrics | None = None) -> None:
        self.settings = settings
        self.options = options
        self.topics = settings.topics
        self.metrics = metrics or WorkerMetrics()
        internal = internal_topics(options.app_id)
        self.changelog, self.sightings_topic, self.card_changelog = internal
        self.client_config = clients.shared_config(settings.kafka, options.client_config, options.bootstrap)
        # inputs: single-object or Confluent-framed, whatever [serde] says the outputs are (serde/wire.py)
        self.terminal_codec = codec_for("TerminalEvent", settings.serde)
        self.settlement_codec = codec_for("SettlementNotice", settings.serde)
        self.partitions = 0
        self.cards: dict[int, CardIndex] = {}  # the card partitions owned (shared with outbox and intake)
        self.telemetry = Telemetry(self.metrics)
        self.outbox = Outbox(settings, internal, self.cards, self.telemetry.counts, self.metrics)
        self.batch_stage = BatchStage(settings, options.app_id, self.outbox, self.metrics)  # app/batch_stage.py
        self.engine = self._new_engine()
        new_producer = partial(
            clients.transactional_producer,
            self.client_config,
            f"{options.app_id}-{options.worker_id}",
            options.transaction_timeout_ms,
        )
        self.transaction = Transaction(new_producer, self.outbox, self.telemetry, options.transaction_stall_s)
        self.intake = Intake(
            options, self.topics, self.sightings_topic, self.metrics, self.cards, self.transaction.skip_to
        )
        self.stopping = False
        # the per-record loop, compiled with the engine: decode, count, engine; the rest comes back here
        self.feed = RecordFeed(
            self.topics.terminal,
            self.topics.settlement,
            (self.terminal_codec.decoding(), self.settlement_codec.decoding()),
            self.telemetry.counts,
            self.telemetry.latency_samples,
            self._other,
            self._undecodable,
            self._rejected,
            self.batch_stage.routing,
        )
        self.consumer: Consumer | None = None
        self.ready = False  # partitions assigned and state restored (GET /readyz)
        self.last_turn = time.monotonic()  # the loop's heartbeat (GET /healthz)
        self._closing = False  # close() has begun: a late assignment is not restored (see _on_assign)
        self._offset_reader: Consumer

    def _new_engine(self) -> ReconciliationEngine:
        return ReconciliationEngine(
            self.settings.rules,
            self.partitions,
            collect_card_sightings=True,
            collect_auth_latencies=True,
            collect_batch_sightings=True,
            count_batches=self.batch_stage.enabled,
        )

    # --- lifecycle -------------------------------------------------------------------------------------

    def setup(self) -> None:
        config, options = self.client_config, self.options
        admin = clients.admin(config)
        self.partitions = self.outbox.partitions = check_copartitioned(admin, self.topics)
        end_offsets = EndOffsets(lambda: clients.admin(config))
        create_internal_topics(admin, options.app_id, self.partitions, options.internal_replication)
        batch_inputs = self.batch_stage.setup(admin, self.partitions, options.internal_replication)
        self.engine = self._new_engine()  # (no state yet) with the batch stage on or off, as setup found it
        self.transaction.open()
        self._offset_reader = clients.offset_reader(config, options.app_id)
        instance_id = f"{options.app_id}-{options.worker_id}" if options.static_membership else None
        self.consumer = clients.group_consumer(config, options.app_id, instance_id)
        self.intake.attach(self.consumer, end_offsets)
        inputs = [self.topics.terminal, self.topics.settlement, self.sightings_topic, *batch_inputs]
        for topic in inputs:
            self.metrics.input_records_lost.labels(topic)  # at 0 from the start, so increase() sees the first
        self.consumer.subscribe(inputs, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_revoke)
        fields = {
            "app_id": options.app_id,
            "worker_id": options.worker_id,
            "partitions": self.partitions,
            "bootstrap": options.bootstrap,
            "wire_format": self.settings.serde.format,
        }
        log.info("worker started", extra={"fields": fields})

    def run(self, max_seconds: float | None = None) -> None:
        self.setup()
        assert self.consumer is not None
        self.metrics.up.set(1)
        started = time.monotonic()
        try:
            with long_lived_state() as collector:
                while not self.stopping:
                    if max_seconds is not None and time.monotonic() - started > max_seconds:
                        break
                    collector.tick(self.step())
                self._finish_commit(rebuild=False)  # the last batch's transaction, before the clients close
        finally:
            self.metrics.up.set(0)
            self.close()

    def close(self) -> None:
        self._closing = True
        if self.consumer is not None:
            self.consumer.close()  # may still call the rebalance callbacks (see _on_assign)
            self.consumer = None
            self.intake.attach(None)
        reader = getattr(self, "_offset_reader", None)
        if reader is not None:
            reader.close()
        self.transaction.close()

    # --- rebalance -------------------------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self._closing:
            # a rebalance that completes inside consumer.close() (a member joined meanwhile): nothing will be
            # consumed any more, so no state is restored; the close leaves the group right after
            consumer.assign(partitions)
            return
        if self.stopping:
            # SIGTERM came before this rebalance: the loop ends after this turn, and a restore (seconds for a
            # million orders) would only hold the exit past its grace period. No partition is taken on, so no
            # record arrives without its state; the close leaves the group and another worker takes them
            consumer.assign([])
            return
        self._finish_commit(rebuild=False)  # (none in flight after a revoke; kept for safety)
        # resume exactly from the offsets the state was restored for; with auto.offset.reset=error, a position
        # that is no longer on the broker then surfaces as an error (see Positions.records_lost), never silently
        consumer.assign(self._restore(partitions))

    def _restore(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        """Rebuild the state of ``partitions`` and return the positions to resume them from (app/restore.py:
        the committed offsets first, then the changelogs)."""
        self.ready = False
        started = time.monotonic()
        committed = committed_offsets(self._offset_reader, partitions)
        now = wall_ms()
        intake = self.intake
        intake.queues.update(((tp.topic, tp.partition), TaskQueue(tp.topic, tp.partition)) for tp in partitions)
        internal = (self.changelog, self.sightings_topic, self.card_changelog)
        restored = restore_state(
            self.client_config, internal, self.settings.rules, self.partitions, self.engine, self.cards, partitions
        )
        batches = self.batch_stage.restore(self.client_config, partitions)
        for p in restored.inputs:
            intake.tasks.add(p)
            intake.last_activity[p] = now
        self.metrics.restore_seconds.set(elapsed := time.monotonic() - started)
        self.metrics.assigned_partitions.set(len(intake.tasks))
        self.ready = True
        fields = {
            "inputs": restored.inputs,
            "card_partitions": restored.card_partitions,
            "orders_restored": restored.orders,
            "batches_restored": batches,
            "restore_s": round(elapsed, 3),
            "committed": offset_fields(committed),
        }
        log.info("partitions assigned", extra={"fields": fields})
        resume = resume_positions(committed, restored.offsets, self.transaction.skip_to)  # (defect 12)
        self.transaction.sent_to.update(((tp.topic, tp.partition), tp.offset) for tp in resume)
        intake.positions.resumed_from.update(((tp.topic, tp.partition), tp.offset) for tp in resume)
        return resume

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # the transaction in flight carries offsets of these partitions: it ends (commits or aborts) before the
        # group moves on; the state it leaves is dropped below anyway (eager rebalance: every partition goes)
        self._finish_commit(rebuild=False)
        self.transaction.drop_prepared()
        self.ready = False
        keys = [(tp.topic, tp.partition) for tp in partitions]
        self.intake.resume_paused(consumer, keys)
        self.transaction.forget(keys)
        self.intake.forget(keys)
        for topic, partition in keys:
            self.metrics.forget_partition(topic, partition)
            if topic == self.sightings_topic:
                self.cards.pop(partition, None)
            elif topic in self.batch_stage.inputs:
                self.batch_stage.revoke([partition])
            else:
                self.engine.books.pop(partition, None)
        self.metrics.assigned_partitions.set(len(self.intake.tasks))
        log.info("partitions revoked", extra={"fields": {"count": len(partitions)}})

    # --- one turn of the loop ------------------------------------------------------------------------------

    def step(self) -> int:
        consumer = self.consumer
        assert consumer is not None
        self.last_turn = time.monotonic()
        now = wall_ms()
        self.intake.credit_stall(now)
        txn = self.transaction
        offsets, records = self._take_batch(consumer, now, 0.05)
        # while the previous transaction commits (round trips, the broker's acks: the loop would only wait), what
        # comes in meanwhile joins this batch, up to BATCHES_PER_COMMIT batches (docs/performance.md, session 21;
        # not a backlog's next batches when the commit is done: session 22, the latency step's p99 doubled)
        cap, dropped = self.options.batch_max_records * BATCHES_PER_COMMIT, txn.dropped_batches
        while offsets is not None and records < cap and txn.commit_running():
            more, taken = self._take_batch(consumer, wall_ms(), 0)
            if txn.dropped_batches != dropped:  # a rebalance dropped what this turn had prepared (_on_revoke)
                offsets, records = more, 0
            else:
                offsets.update((k, max(o, offsets.get(k, -1))) for k, o in (more or {}).items())
            records += taken
            if not taken:
                break
        if self._finish_commit() and offsets is not None and not txn.start(consumer, offsets, records):
            self._rebuild()
        self.telemetry.report(self.engine, consumer, self.intake, now)
        return records

    def _take_batch(self, consumer: Consumer, now: int, timeout: float) -> tuple[Offsets | None, int]:
        """Take in and select a batch, and reconcile it into the outbox: the offsets it commits (None: nothing
        to commit) and its number of records."""
        intake = self.intake
        intake.fetch(consumer, timeout)
        batch = intake.select(now)
        self.batch_stage.select(intake, batch, len(batch) + self.options.batch_max_records // 2, now)
        idle = intake.idle_partitions(self.engine, now) if self.options.wall_clock_lag_ms is not None else []
        intake.positions.end_offsets.poll()  # answers from earlier turns in, this turn's questions out
        txn = self.transaction
        drained = txn.drained_positions(consumer, intake.queues.values())
        offsets = self._prepare(batch, idle, now, drained) if batch or idle or txn.skipped_to or drained else None
        return offsets, len(batch)

    def _prepare(
        self, batch: list[Message], idle: list[int], now: int, drained: dict[tuple[str, int], int]
    ) -> dict[tuple[str, int], int]:
        """Reconcile ``batch`` (and advance ``idle`` partitions) into the outbox; returns the offsets the
        transaction will commit (``drained``: see :meth:`Transaction.drained_positions`). Runs while the
        previous batch's transaction is still being committed."""
        offsets = self.transaction.take_skipped()
        self.feed.feed(self.engine, batch, now, offsets)
        for key, position in drained.items():
            offsets[key] = max(position, offsets.get(key, -1))
        self.outbox.write_offsets(offsets)
        lag = self.options.wall_clock_lag_ms or 0
        for p in idle:
            self.engine.advance(p, now - lag, now)
            self.intake.last_activity[p] = now
        self.outbox.emit(self.engine, now)
        self.batch_stage.prepare(self.engine, now)
        self.outbox.write_changelogs(self.engine)
        return offsets

    # --- what the record feed hands back (engine/record_feed.py) ------------------------------------------------

    def _other(self, msg: Message, now: int) -> None:
        """A record of the worker's internal inputs: a card sighting routed here, or a batch stage record."""
        partition = msg.partition()
        assert partition is not None
        if msg.topic() == self.sightings_topic:
            self.outbox.card_sighting(msg, partition, now)
        else:
            self.batch_stage.on_record(msg, self.engine, now)

    def _undecodable(self, msg: Message, exc: ValueError) -> None:
        if not isinstance(exc, DecodeError):  # not the codec's verdict on the bytes: a bug, not a dead letter
            raise exc
        self.outbox.dead_letter(msg, undecodable(exc))

    def _rejected(self, msg: Message, rejection: Rejection) -> None:
        self.outbox.dead_letter(msg, rejected(rejection))

    # --- the end of a transaction --------------------------------------------------------------------------

    def _finish_commit(self, rebuild: bool = True) -> bool:
        """Wait for the transaction in flight (if any). True once it has committed; False if it failed, after
        aborting it and -- with ``rebuild`` -- rebuilding the state and rewinding (:meth:`_rebuild`)."""
        if self.transaction.finish():
            return True
        if rebuild:
            self._rebuild()
        return False

    def _rebuild(self) -> None:
        """After a failed (and aborted) transaction: rebuild the state from the changelogs and rewind to the
        committed offsets."""
        log.warning("rebuilding the state from the changelogs and rewinding to the committed offsets")
        consumer = self.consumer
        assert consumer is not None
        self.engine.take()
        assert self.engine.card_sightings is not None
        self.engine.card_sightings.clear()
        assignment = consumer.assignment()
        self.engine = self._new_engine()
        self.cards.clear()
        self.intake.tasks.clear()
        self.intake.resume_paused(consumer)
        for tp in self._restore(assignment):
            consumer.seek(tp)
