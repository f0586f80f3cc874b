"""The live worker: Kafka in, engine, Kafka out — exactly once, through Kafka transactions (KIP-447).

One consumer (group ``app_id``, range assignment so partition p of both input topics lands on the same
worker) and one transactional producer per process. Each loop turn takes a batch of records in timestamp
order per task, feeds the engine, and in ONE transaction produces: the decisions, alerts, dead letters,
card sightings for the card partitions other workers own (repartitioned by card key for the cross-order
duplicate-charge check; those it owns it applies in place), the changelog of every order and card key
touched, and the consumed offsets (``send_offsets_to_transaction`` with the consumer group metadata, so a
fenced zombie cannot commit). A crash anywhere leaves either the whole batch or none of it.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    OFFSET_INVALID,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from posrecon.app.commit import DeadlinedCall, PendingCommit, TransactionStalled
from posrecon.app.end_offsets import EndOffsets
from posrecon.app.internal_topics import create_internal_topics, internal_topics
from posrecon.app.merge import TaskMerger, TaskQueue
from posrecon.app.state_store import (
    WATERMARK_KEY,
    encode_bucket,
    encode_card_key,
    encode_card_watermarks,
    encode_order,
    load_books,
    load_card_index,
    pack_row,
    read_changelog,
    unpack_row,
)
from posrecon.config import Settings
from posrecon.deadletter import DeadLetter
from posrecon.engine.cards import CardIndex, CardSighting, duplicate_charge_alert
from posrecon.engine.engine import NO_WATERMARK, ReconciliationEngine
from posrecon.engine.model import Alert, InvalidReason, ReconciledOrder
from posrecon.engine.order import TerminalPhase
from posrecon.engine.pan import scrub_text
from posrecon.gcpolicy import long_lived_state
from posrecon.kafka.partitioner import partition_for
from posrecon.kafka.topics import admin_client, check_copartitioned
from posrecon.metrics import PENDING_AGE_BUCKETS, WorkerMetrics, observe_all
from posrecon.serde.codec import AvroCodec, DecodeError

log = logging.getLogger("posrecon.worker")


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


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class Worker:
    #: the most of one loop turn that counts as waiting for input (more is a stall: see TaskMerger.discount)
    STEP_CREDIT_MS = 250
    #: an end offset answer younger than this counts as a fresh look at the broker (see _caught_up)
    END_OFFSET_FRESH_MS = 500
    #: records asked of the consumer per consume() call (a turn makes several while the input is behind)
    CONSUME_CHUNK = 2000
    #: a transaction commit slower than this is logged as a warning (every one at DEBUG)
    SLOW_COMMIT_S = 1.0

    def __init__(self, settings: Settings, options: WorkerOptions, metrics: WorkerMetrics | None = None) -> None:
        self.settings = settings
        self.options = options
        self.topics = settings.topics
        self.metrics = metrics or WorkerMetrics()
        self.changelog, self.sightings_topic, self.card_changelog = internal_topics(options.app_id)
        self.client_config: dict[str, Any] = {**settings.kafka, **options.client_config}
        self.client_config["bootstrap.servers"] = options.bootstrap
        self.terminal_codec = AvroCodec("TerminalEvent")
        self.settlement_codec = AvroCodec("SettlementNotice")
        self.reconciled_codec = AvroCodec("ReconciledOrder")
        self.alert_codec = AvroCodec("Alert")
        self.partitions = 0
        self.engine = self._new_engine()
        self.cards: dict[int, CardIndex] = {}
        self.queues: dict[tuple[str, int], TaskQueue] = {}
        self.tasks: set[int] = set()
        self.merger = TaskMerger(options.max_task_idle_ms)
        self.last_activity: dict[int, int] = {}
        self._turn = 0  # rotates which task (and card partition) a batch serves first (see _select)
        self.stopping = False
        self.processed = 0
        self._pending_latency: list[int] = []
        self._sampled = 0
        #: metric increments of the current batch, applied once per label set after the commit
        self._counts: dict[tuple[str, ...], int] = {}
        self._last_gauges = 0.0
        self.consumer: Consumer | None = None
        self.producer: Producer | None = None
        self.ready = False  # partitions assigned and state restored (GET /readyz)
        self._stalled_producers: list[Producer | None] = []
        self.last_turn = time.monotonic()  # the loop's heartbeat (GET /healthz)
        self._last_step_ms = _wall_ms()
        self.input_pauses = 0
        #: offsets to commit for partitions whose unread records were deleted (see _records_lost)
        self._skipped_to: dict[tuple[str, int], int] = {}
        self._closing = False  # close() has begun: a late assignment is not restored (see _on_assign)
        #: per partition, the offset the latest transaction begun commits (or the restored committed offset)
        self._sent_to: dict[tuple[str, int], int] = {}
        #: per partition, the offset it was assigned at after the restore (OFFSET_BEGINNING where the group
        #: had committed nothing): where a partition resumes that has not delivered a record since
        self._resumed_from: dict[tuple[str, int], int] = {}
        #: records of the batch being prepared: produced once its transaction has begun (see app/commit.py)
        # (topic, value, key, partition or -1 for the partitioner, headers): Producer.produce's positional order
        self._outbox: list[tuple[str, bytes | None, bytes | None, int, list[tuple[str, bytes]] | None]] = []
        self._committing: PendingCommit | None = None  # the previous batch's transaction, being committed
        self.end_offsets: EndOffsets  # set up with the Kafka clients (setup)
        self._offset_reader: Consumer

    def _new_engine(self) -> ReconciliationEngine:
        engine = ReconciliationEngine(self.settings.rules, self.partitions)
        engine.card_sightings = []
        engine.auth_latencies = []
        return engine

    # --- lifecycle -------------------------------------------------------------------------------------

    def setup(self) -> None:
        admin = admin_client(self.options.bootstrap, self.client_config)
        self.partitions = check_copartitioned(admin, self.topics)
        self.end_offsets = EndOffsets(lambda: admin_client(self.options.bootstrap, self.client_config))
        create_internal_topics(admin, self.options.app_id, self.partitions, self.options.internal_replication)
        self.producer = self._new_producer()
        self.producer.init_transactions(30)
        # reads the group's committed offsets for restores (see _restore); never subscribes, so never a member
        self._offset_reader = Consumer({**self.client_config, "group.id": self.options.app_id,
                                        "isolation.level": "read_committed", "enable.auto.commit": False})  # fmt: skip
        self.consumer = Consumer(
            {
                **self.client_config,
                "group.id": self.options.app_id,
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                # a new group starts at the beginning (_restore assigns OFFSET_BEGINNING explicitly); any other
                # reset means records vanished before we read them: reported, not silent (_records_lost)
                "auto.offset.reset": "error",
                "partition.assignment.strategy": "range",
                "enable.partition.eof": True,
                "fetch.wait.max.ms": 50,
                "session.timeout.ms": 10_000,
                "heartbeat.interval.ms": 1_000,
                **({"group.instance.id": f"{self.options.app_id}-{self.options.worker_id}"}
                   if self.options.static_membership else {}),
            }
        )  # fmt: skip
        for topic in (self.topics.terminal, self.topics.settlement, self.sightings_topic):
            self.metrics.input_records_lost.labels(topic)  # at 0 from the start, so increase() sees the first
        self.consumer.subscribe(
            [self.topics.terminal, self.topics.settlement, self.sightings_topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_revoke,
        )
        log.info(
            "worker started",
            extra={"fields": {"app_id": self.options.app_id, "worker_id": self.options.worker_id,
                              "partitions": self.partitions, "bootstrap": self.options.bootstrap}},
        )  # fmt: skip

    @property
    def has_abandoned_producers(self) -> bool:
        return bool(self._stalled_producers)

    def _new_producer(self) -> Producer:
        return Producer(
            {
                **self.client_config,
                "transactional.id": f"{self.options.app_id}-{self.options.worker_id}",
                "transaction.timeout.ms": self.options.transaction_timeout_ms,
                "partitioner": "murmur2_random",
                "linger.ms": 5,
                "queue.buffering.max.messages": 500_000,
            }
        )

    def install_signal_handlers(self) -> None:
        def _stop(signum: int, _frame: object) -> None:
            self.stopping = True

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)

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
        reader = getattr(self, "_offset_reader", None)
        if reader is not None:
            reader.close()
        if self.producer is not None:
            try:
                self.producer.flush(10)
            except KafkaException as exc:  # nothing is lost: an unfinished transaction is aborted by the broker
                log.warning("producer flush at close failed", extra={"fields": {"error": scrub_text(str(exc))}})
            self.producer = None

    # --- rebalance -------------------------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self._closing:
            # a rebalance that completes inside consumer.close() (a member joined meanwhile): nothing will be
            # consumed any more, so no state is restored; the close leaves the group right after
            consumer.assign(partitions)
            return
        self._finish_commit(rebuild=False)  # (none in flight after a revoke; kept for safety)
        # resume exactly from the offsets the state was restored for; with auto.offset.reset=error, a position
        # that is no longer on the broker then surfaces as an error (see _records_lost), never silently
        consumer.assign(self._restore(partitions))

    def _restore(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        """Rebuild the state of ``partitions`` and return the positions to resume them from.

        The committed offsets are fetched FIRST. Under read_committed librdkafka asks for stable offsets
        (``require_stable``), so this waits while any transaction carrying offsets for these partitions is
        still open -- e.g. a zombie that sent its offsets before it froze and commits after waking up. Only
        then is the state read, so it is the state that matches the offsets we resume from.

        The offsets are fetched by a side consumer of the same group that never joins it: the same call on
        the main consumer, early in an assignment, intermittently left it fetching nothing at all (3 in ~12
        runs of test_restarted_worker_resumes_without_loss_or_repeats, inside or outside the callback).
        """
        self.ready = False
        started = time.monotonic()
        committed = self._committed(partitions, self._offset_reader)
        now = _wall_ms()
        inputs = sorted({tp.partition for tp in partitions if tp.topic != self.sightings_topic})
        card_parts = sorted({tp.partition for tp in partitions if tp.topic == self.sightings_topic})
        for tp in partitions:
            self.queues[(tp.topic, tp.partition)] = TaskQueue(tp.topic, tp.partition)
        books = read_changelog(self.client_config, self.changelog, inputs)
        orders = load_books(self.engine, books)
        for p in inputs:
            self.engine.book(p).dirty = set()
            self.tasks.add(p)
            self.last_activity[p] = now
        for q, entries in read_changelog(self.client_config, self.card_changelog, card_parts).items():
            index = self.cards[q] = CardIndex(self.settings.rules, sources=self.partitions)
            load_card_index(index, entries)
        elapsed = time.monotonic() - started
        self.metrics.restore_seconds.set(elapsed)
        self.metrics.assigned_partitions.set(len(self.tasks))
        self.ready = True
        fields = {"inputs": inputs, "card_partitions": card_parts, "orders_restored": orders}
        log.info("partitions assigned", extra={"fields": {**fields, "restore_s": round(elapsed, 3)}})
        for tp in committed:
            self._sent_to[(tp.topic, tp.partition)] = tp.offset
        # OFFSET_BEGINNING (-2) where the group has committed nothing yet
        resume = [TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else -2) for tp in committed]
        self._resumed_from.update(((tp.topic, tp.partition), tp.offset) for tp in resume)
        return resume

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # the transaction in flight carries offsets of these partitions: it ends (commits or aborts) before the
        # group moves on; the state it leaves is dropped below anyway (eager rebalance: every partition goes)
        self._finish_commit(rebuild=False)
        self.ready = False
        paused = [tp for tp in partitions if (q := self.queues.get((tp.topic, tp.partition))) and q.paused]
        if paused:
            consumer.resume(paused)
        self.end_offsets.forget((tp.topic, tp.partition) for tp in partitions)
        for tp in partitions:
            self._skipped_to.pop((tp.topic, tp.partition), None)
            self._sent_to.pop((tp.topic, tp.partition), None)
            self._resumed_from.pop((tp.topic, tp.partition), None)
        for tp in partitions:
            self.queues.pop((tp.topic, tp.partition), None)
            self.metrics.forget_partition(tp.topic, tp.partition)
            if tp.topic == self.sightings_topic:
                self.cards.pop(tp.partition, None)
            else:
                self.engine.books.pop(tp.partition, None)
                self.tasks.discard(tp.partition)
        self.metrics.assigned_partitions.set(len(self.tasks))
        log.info("partitions revoked", extra={"fields": {"count": len(partitions)}})

    # --- one turn of the loop ------------------------------------------------------------------------------

    def step(self) -> int:
        consumer = self.consumer
        assert consumer is not None
        self.last_turn = time.monotonic()
        now = _wall_ms()
        gap = now - self._last_step_ms
        self._last_step_ms = now
        if gap > self.STEP_CREDIT_MS:
            # the loop did not run (a process stall, or a slow turn): that time is not waiting for input
            stalled = gap - self.STEP_CREDIT_MS
            TaskMerger.discount(self.queues.values(), stalled)
            for p in self.last_activity:
                self.last_activity[p] += stalled
        # one turn takes in up to a batch: when the input is behind, more per transaction (a commit costs
        # round trips, not CPU: fixed 2,000-record turns capped the worker at 2,000 records per commit)
        fetched = self._take_in(consumer.consume(self.CONSUME_CHUNK, timeout=0.05))
        taken = fetched
        while fetched == self.CONSUME_CHUNK and taken < self.options.batch_max_records:
            fetched = self._take_in(consumer.consume(self.CONSUME_CHUNK, timeout=0))
            taken += fetched
        self._refresh_backlog()
        self._flow_control()
        batch = self._select(now)
        idle = self._idle_partitions(now) if self.options.wall_clock_lag_ms is not None else []
        self.end_offsets.poll()  # answers from earlier turns in, this turn's questions out
        drained = self._drained_positions()
        offsets = self._prepare(batch, idle, now, drained) if batch or idle or self._skipped_to or drained else None
        if self._finish_commit() and offsets is not None:
            self._start_commit(offsets, len(batch))
        if time.monotonic() - self._last_gauges > 5:
            self._update_gauges()
            self._report_waiting(now)
            if log.isEnabledFor(logging.DEBUG):
                self._log_status(now)
        return len(batch)

    def _take_in(self, messages: list[Message]) -> int:
        """Put consumed records into their task queues; handle end-of-partition and consumer errors.
        Returns how many messages (records and events) there were."""
        for msg in messages:
            err = msg.error()
            tp = (msg.topic(), msg.partition())
            queue = self.queues.get(tp)  # type: ignore[arg-type]
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    if queue is not None:
                        queue.at_end = True
                        queue.end_offset = msg.offset() or 0
                    continue
                if err.code() == KafkaError._AUTO_OFFSET_RESET:
                    self._records_lost(msg)
                    continue
                if err.fatal():
                    raise KafkaException(err)
                log.warning("consumer error", extra={"fields": {"error": str(err)}})
                continue
            if queue is None:  # revoked meanwhile
                continue
            queue.records.append(msg)
            queue.at_end = False
            queue.waiting_since = None
        return len(messages)

    def _log_status(self, now: int) -> None:
        """Every queue's state, every 5 s at DEBUG (``--log-level DEBUG``): for diagnosing a task that is stuck."""
        consumer = self.consumer
        assert consumer is not None
        queues = []
        for queue in self.queues.values():
            position, low, high = self._local_view(queue)
            queues.append([queue.topic.rsplit(".", 1)[0], queue.partition, len(queue.records), queue.at_end,
                           queue.end_offset, queue.backlog, queue.paused, position, low, high,
                           None if queue.waiting_since is None else now - queue.waiting_since])  # fmt: skip
        fields = {"assignment": len(consumer.assignment()), "processed": self.processed, "queues": queues}
        log.debug("worker status", extra={"fields": fields})

    def _records_lost(self, msg: Message) -> None:
        """The next offset to read is not on the broker. Below the log start: records were deleted by
        time/size retention before this group processed them. Nothing brings them back; say so loudly, count
        them (``posrecon_input_records_lost_total``, alert PosreconInputRecordsLost) and go on from the log
        start. Beyond the log end (a log truncated by an unclean leader election): go on from the new end,
        never from the start, which would process the partition a second time.
        Production input topics need a retention longer than any backlog the workers may fall behind."""
        consumer = self.consumer
        topic, partition, wanted = msg.topic(), msg.partition(), msg.offset()
        assert consumer is not None and topic is not None and partition is not None
        try:
            start, end = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10, cached=False)
        except KafkaException:
            start = end = -1
        truncated = wanted is not None and 0 <= end < wanted
        lost = start - wanted if wanted is not None and wanted >= 0 and start > wanted else 0
        self.metrics.input_records_lost.labels(topic).inc(lost)
        log.error(
            "input offset out of range: the log was truncated; resuming at the log end" if truncated else
            "input records were deleted before they were processed; resuming at the log start",
            extra={"fields": {"topic": topic, "partition": partition, "next_offset": wanted, "log_start": start,
                              "log_end": end, "records_lost": lost, "error": scrub_text(str(msg.error()))}},
        )  # fmt: skip
        resume_at = OFFSET_END if truncated else OFFSET_BEGINNING
        resume_offset = end if truncated else start
        if resume_offset >= 0:  # committed with the next transaction, even if no record of it comes
            self._skipped_to[(topic, partition)] = resume_offset
        # the partition's fetcher has stopped (auto.offset.reset=error) and cannot be seek()ed: assign again,
        # everything else at its position, or where it was assigned after the restore if it has delivered
        # nothing yet. Not INVALID: that means "the committed offset", and a partition the group never
        # committed (a card-sightings partition nobody wrote to) then fails with "no previously committed
        # offset" -- and, assigned INVALID again here, failed forever. The pauses of flow control re-applied.
        assignment = consumer.assignment()
        positions = consumer.position(assignment)
        lost_tp = (topic, partition)
        self._resumed_from[lost_tp] = resume_at
        consumer.assign([TopicPartition(tp.topic, tp.partition, resume_at if (tp.topic, tp.partition) == lost_tp
                                        else self._resume_position(tp))
                         for tp in positions])  # fmt: skip
        paused = [TopicPartition(q.topic, q.partition) for q in self.queues.values() if q.paused]
        if paused:
            consumer.pause(paused)

    def _resume_position(self, tp: TopicPartition) -> int:
        """Where ``tp`` goes on from: its position (an offset, or the logical one it was last assigned at),
        or where it was assigned at after the restore if its position is INVALID (nothing delivered yet)."""
        if tp.offset != OFFSET_INVALID:
            return int(tp.offset)
        return self._resumed_from.get((tp.topic, tp.partition), OFFSET_BEGINNING)

    def _local_view(self, queue: TaskQueue) -> tuple[int, int, int]:
        """(position, low, high) of the queue's partition as the consumer last saw them (no broker request);
        -1 each when unknown."""
        consumer = self.consumer
        assert consumer is not None
        tp = TopicPartition(queue.topic, queue.partition)
        try:
            low, high = consumer.get_watermark_offsets(tp, cached=True)
            return consumer.position([tp])[0].offset, low, high
        except KafkaException:
            return -1, -1, -1

    def _report_waiting(self, now: int) -> None:
        """Log the tasks that have waited more than 5 s for one of their inputs (an on-call clue: a stuck
        producer, an input transaction left open, or a partition that fell far behind the other)."""
        for queue in self.queues.values():
            other = self._other_side(queue.topic, queue.partition)
            if other is None or not other.records or queue.records:
                continue  # not an input, or the task is not blocked on this side
            if queue.waiting_since is None or now - queue.waiting_since < 5_000:
                continue
            position, _, high = self._local_view(queue)
            fields = {"topic": queue.topic, "partition": queue.partition, "waited_ms": now - queue.waiting_since,
                      "at_end": queue.at_end, "end_offset": queue.end_offset, "backlog": queue.backlog,
                      "paused": queue.paused, "position": position, "cached_high": high}  # fmt: skip
            log.info("task waiting for input", extra={"fields": fields})

    def _refresh_backlog(self) -> None:
        """For empty input queues: are there records on the broker we have not fetched yet?"""
        consumer = self.consumer
        assert consumer is not None
        for (topic, partition), queue in self.queues.items():
            if queue.records or queue.at_end or topic == self.sightings_topic:
                continue
            tp = TopicPartition(topic, partition)
            position = consumer.position([tp])[0].offset
            high = consumer.get_watermark_offsets(tp, cached=True)[1]
            queue.backlog = position < 0 or high < 0 or position < high

    def _other_side(self, topic: str, partition: int) -> TaskQueue | None:
        """The queue of the task's other input (None for the card-sightings topic)."""
        if topic == self.topics.terminal:
            return self.queues.get((self.topics.settlement, partition))
        if topic == self.topics.settlement:
            return self.queues.get((self.topics.terminal, partition))
        return None

    def _flow_control(self) -> None:
        """Bound what is buffered per partition (pause above the high mark, resume below the low mark).

        Unbounded queues let librdkafka prefetch one topic far ahead of the other: the records a blocked task
        waits for then sit behind thousands of others (librdkafka keeps one prefetch queue for all partitions,
        up to 100k messages). So a partition is also paused while its task waits for the other side, which has
        records on the broker. Pausing a partition drops its prefetched records in librdkafka; on resume it
        fetches again from the position of the last record handed to us.
        """
        consumer = self.consumer
        assert consumer is not None
        high, low = self.options.queue_high_records, self.options.queue_low_records
        pause: list[TopicPartition] = []
        resume: list[TopicPartition] = []
        for (topic, partition), queue in self.queues.items():
            depth = len(queue.records)
            other = self._other_side(topic, partition)
            # a task waiting for its other side cannot use more of this one: stop fetching it, so that
            # librdkafka's single prefetch queue makes room for the records the task waits for
            blocked = other is not None and depth > low and not other.records and other.backlog and not other.at_end
            if not queue.paused and (depth > high or blocked):
                queue.paused = True
                pause.append(TopicPartition(topic, partition))
            elif queue.paused and depth < low:
                queue.paused = False
                resume.append(TopicPartition(topic, partition))
        if pause:
            consumer.pause(pause)
            self.input_pauses += len(pause)
            self.metrics.input_pauses.inc(len(pause))
        if resume:
            consumer.resume(resume)

    def _ask_end(self, queue: TaskQueue) -> None:
        """A task has begun to wait for this (empty, apparently caught-up) side: ask for its end offset now, so
        that an answer asked after the wait began is there when the idle wait ends (:meth:`_caught_up`). Asked
        only then, the answer took one or two more loop turns: the last records before a lull waited
        ~100-300 ms longer (make bench: the last second of traffic had p50 527 ms against ~150 ms before)."""
        key = (queue.topic, queue.partition)
        known = self.end_offsets.known.get(key)
        if known is None or queue.waiting_since is None or known[1] < queue.waiting_since:
            self.end_offsets.want(key)

    def _caught_up(self, queue: TaskQueue) -> bool:
        """A fresh look at the broker: has the consumer really read everything of this partition?

        Only an end offset asked for after the task began to wait (and within the last ``END_OFFSET_FRESH_MS``,
        or ``max_task_idle_ms`` if longer) counts; until one has arrived the answer is "not yet" and the task
        keeps waiting. The question goes to an admin client, off the loop (:class:`EndOffsets`). The window is
        not the idle wait itself: an answer takes a loop turn or two (a commit each), so with a 100 ms idle wait
        no answer was ever young enough and every wait ended in the synchronous fallback below (make bench:
        deadline -> alert 4.9 s instead of 0.6 s, latency p99 1.2 s).
        """
        consumer = self.consumer
        assert consumer is not None
        now = _wall_ms()
        fresh_ms = max(self.options.max_task_idle_ms, self.END_OFFSET_FRESH_MS)
        asked_after = now - fresh_ms
        if queue.waiting_since is not None:
            asked_after = max(asked_after, queue.waiting_since)
        tp = TopicPartition(queue.topic, queue.partition)
        end = self.end_offsets.answer((queue.topic, queue.partition), asked_after)
        if end is None:
            if queue.waiting_since is None or now - queue.waiting_since < 5 * fresh_ms:
                return False
            try:  # the admin client is slow to answer (e.g. just after a broker restart): ask the consumer
                end = consumer.get_watermark_offsets(tp, timeout=2, cached=False)[1]
            except KafkaException:
                return False
        position = consumer.position([tp])[0].offset
        return max(position, queue.end_offset if queue.at_end else -1) >= end

    def _select(self, now: int) -> list[Message]:
        """The next batch: card sightings (up to half of it), the tasks' records in timestamp order, then
        more sightings if there is room. Sightings are an independent stage (each card partition in its own
        order), so serving them first only keeps them from piling up behind a backlog of input: taken last,
        165k of them were left for the end of a 2M-record drain.

        Tasks (and card partitions) are served in partition order from a first one that rotates with every
        batch. Always starting at partition 0, a backlog was worked off partition after partition and the
        last ones' records waited for all the others (at a start behind a 3 s backlog, 1 % of the decisions
        took 10 s). Equal shares of each batch for every task cost 15-20 % of the throughput instead: every
        transaction then wrote to every output partition (72 here, ~12 in partition order), and the broker
        writes a marker on each and checks each one's first write (broker CPU per 2M events 20 -> 28 s).
        """
        out: list[Any] = []
        limit = self.options.batch_max_records
        self._turn += 1
        self._take_sightings(out, limit // 2)
        for p in self._rotation(self.tasks):
            first = self.queues.get((self.topics.terminal, p))
            second = self.queues.get((self.topics.settlement, p))
            if first is None or second is None:
                continue
            before = len(out)
            self.merger.take(first, second, limit - len(out), now, out, self._caught_up, self._ask_end)
            if len(out) > before:
                self.last_activity[p] = now
            if len(out) >= limit:
                return out
        self._take_sightings(out, limit)
        return out

    def _rotation(self, partitions: Iterable[int]) -> list[int]:
        """``partitions`` in order, starting from the one this batch serves first (see :meth:`_select`)."""
        ordered = sorted(partitions)
        start = self._turn % len(ordered) if ordered else 0
        return ordered[start:] + ordered[:start]

    def _take_sightings(self, out: list[Any], limit: int) -> None:
        for q in self._rotation(self.cards):
            queue = self.queues.get((self.sightings_topic, q))
            while queue is not None and queue.records and len(out) < limit:
                out.append(queue.records.popleft())

    def _idle_partitions(self, now: int) -> list[int]:
        idle = []
        for p in self.tasks:
            first = self.queues.get((self.topics.terminal, p))
            second = self.queues.get((self.topics.settlement, p))
            if first is None or second is None or first.records or second.records:
                continue
            if (
                first.at_end
                and second.at_end
                and now - self.last_activity.get(p, now) >= self.options.idle_advance_after_ms
            ):
                lag = self.options.wall_clock_lag_ms or 0
                watermark = self.engine.book(p).watermark
                # a partition that never saw a record keeps no watermark: a backlog may still be on its way
                if (
                    NO_WATERMARK < watermark < now - lag - self.options.idle_advance_after_ms
                    and self._caught_up(first)
                    and self._caught_up(second)
                ):
                    idle.append(p)
        return sorted(idle)

    # --- the transaction -------------------------------------------------------------------------------

    def _prepare(
        self, batch: list[Message], idle: list[int], now: int, drained: dict[tuple[str, int], int]
    ) -> dict[tuple[str, int], int]:
        """Reconcile ``batch`` (and advance ``idle`` partitions) into the outbox; returns the offsets the
        transaction will commit (``drained``: see :meth:`_drained_positions`). Runs while the previous batch's
        transaction is still being committed."""
        offsets: dict[tuple[str, int], int] = dict(self._skipped_to)
        self._skipped_to.clear()  # a failed transaction rewinds to the committed offsets: found again then
        for msg in batch:
            self._process(msg, now)
            offsets[(msg.topic(), msg.partition())] = msg.offset() + 1  # type: ignore[index,operator]
        for key, position in drained.items():
            offsets[key] = max(position, offsets.get(key, -1))
        lag = self.options.wall_clock_lag_ms or 0
        for p in idle:
            self.engine.advance(p, now - lag, now)
            self.last_activity[p] = now
        self._emit(now)
        self._write_changelogs()
        return offsets

    def _drained_positions(self) -> dict[tuple[str, int], int]:
        """Consumer positions of drained partitions (end of partition, nothing left in the queue) that are
        beyond what the latest transaction commits.

        The worker commits the offset after each record it processed. On a topic written in transactions (the
        card sightings; an input whose producers use transactions) the offsets after a partition's last record
        are a commit marker, sometimes also aborted records and an abort marker: never delivered, so never
        committed, and the group's lag (consumer-group tools, the drain checks) stayed above 0 on them.
        librdkafka's position moves past them (``tests/integration/kafka/test_progress.py``) and only ever
        moves past what it delivered, so once a partition is drained its position is safe to commit.
        """
        consumer = self.consumer
        assert consumer is not None
        ends = [TopicPartition(q.topic, q.partition) for q in self.queues.values() if q.at_end and not q.records]
        if not ends:
            return {}
        drained: dict[tuple[str, int], int] = {}
        for tp in consumer.position(ends):
            key = (tp.topic, tp.partition)
            if tp.offset >= 0 and tp.offset > self._sent_to.get(key, -1):
                drained[key] = tp.offset
        return drained

    def _start_commit(self, offsets: dict[tuple[str, int], int], records: int) -> None:
        """Begin the transaction, produce the outbox into it and hand the commit to a helper thread."""
        producer = self.producer
        consumer = self.consumer
        assert producer is not None and consumer is not None
        try:
            producer.begin_transaction()
            self._produce_outbox(producer)
            metadata = consumer.consumer_group_metadata()
        except KafkaException as exc:
            self._recover(exc)
            return
        self._committing = PendingCommit(
            producer, [TopicPartition(t, p, o) for (t, p), o in sorted(offsets.items())], metadata, records,
            self._counts, self._pending_latency,
        )  # fmt: skip
        self._counts = {}
        self._pending_latency = []
        self._sent_to.update(offsets)

    def _finish_commit(self, rebuild: bool = True) -> bool:
        """Wait for the transaction in flight (if any). True once it has committed; False if it failed, after
        aborting it and -- with ``rebuild`` -- rebuilding the state and rewinding (:meth:`_recover`)."""
        pending = self._committing
        if pending is None:
            return True
        self._committing = None
        failure: KafkaException | None = None
        try:
            pending.wait(self.options.transaction_stall_s)
        except KafkaException as exc:
            failure = exc
        except TransactionStalled as exc:
            self._replace_producer(str(exc))
        else:
            self._committed_batch(pending)
            return True
        if rebuild:
            self._recover(failure)
        else:
            self._abort(failure)
        return False

    def _committed_batch(self, pending: PendingCommit) -> None:
        self.metrics.transactions.labels("committed").inc()
        self.metrics.batch_records.observe(pending.records)
        seconds = pending.seconds
        self.metrics.commit_seconds.observe(seconds)
        fields = {"fields": {"commit_s": round(seconds, 3), "records": pending.records}}
        if seconds > self.SLOW_COMMIT_S:
            log.warning("slow transaction commit", extra=fields)
        elif log.isEnabledFor(logging.DEBUG):
            log.debug("transaction committed", extra=fields)
        self._flush_counts(pending.counts)
        self.processed += pending.records
        done = _wall_ms()
        observe_all(self.metrics.processing_latency, [max(0, done - ts) / 1000 for ts in pending.latency_samples])

    def _guarded(self, call: Any, *args: Any) -> None:
        """Run a blocking transactional call with a deadline (``transaction_stall_s``): librdkafka can block
        forever in them after a broker restart. Raises :class:`TransactionStalled` on a stall."""
        DeadlinedCall(call, *args).wait(self.options.transaction_stall_s)

    def _replace_producer(self, why: str) -> None:
        """Abandon a stalled producer: a new one with the same transactional.id fences it and aborts its
        open transaction (init_transactions), so nothing it may still send can commit."""
        log.warning("transactional producer stalled; replacing it", extra={"fields": {"why": why}})
        self._stalled_producers.append(self.producer)  # keep it referenced: its thread may still be inside
        self.producer = self._new_producer()
        self.producer.init_transactions(60)

    def _recover(self, exc: KafkaException | None) -> None:
        """Abort, then rebuild state from the changelogs and rewind to the committed offsets."""
        self._abort(exc)
        log.warning("rebuilding the state from the changelogs and rewinding to the committed offsets")
        assert self.consumer is not None
        self.engine.take()
        assert self.engine.card_sightings is not None
        self.engine.card_sightings.clear()
        assignment = self.consumer.assignment()
        self.engine = self._new_engine()
        self.cards.clear()
        self.tasks.clear()
        paused = [TopicPartition(t, p) for (t, p), q in self.queues.items() if q.paused]
        if paused:
            self.consumer.resume(paused)
        for tp in self._restore(assignment):
            self.consumer.seek(tp)

    def _abort(self, exc: KafkaException | None) -> None:
        """End a failed transaction (abort it, or replace the producer) and forget the prepared batch."""
        err = exc.args[0] if exc is not None and exc.args and isinstance(exc.args[0], KafkaError) else None
        self.metrics.transactions.labels("aborted").inc()
        log.warning("transaction failed; aborting it", extra={"fields": {"error": scrub_text(str(exc))}})
        assert self.producer is not None and self.consumer is not None
        if exc is not None and err is not None and err.fatal():
            # a fatal producer error (e.g. fenced, or the coordinator already aborted the transaction): start
            # over with a new producer; init_transactions fences whatever the old one still holds
            self._replace_producer(f"fatal producer error: {err}")
        elif exc is not None:
            try:
                self._guarded(self.producer.abort_transaction, 30)
            except TransactionStalled:
                self._replace_producer("abort_transaction stalled")
            except KafkaException as abort_exc:
                abort_err = abort_exc.args[0] if abort_exc.args else None
                if not isinstance(abort_err, KafkaError) or abort_err.fatal() or not abort_err.retriable():
                    self._replace_producer(f"abort failed: {abort_err}")
        self._pending_latency.clear()
        self._counts.clear()
        self._outbox.clear()
        self._skipped_to.clear()  # the rewind to the committed offsets finds the same gap again

    def _committed(self, assignment: list[TopicPartition], consumer: Consumer | None = None) -> list[TopicPartition]:
        """The group's committed offsets, retrying while the coordinator is unavailable."""
        consumer = consumer or self.consumer
        assert consumer is not None
        deadline = time.monotonic() + 120
        while True:
            try:
                return list(consumer.committed(assignment, timeout=15))
            except KafkaException as exc:
                err = exc.args[0] if exc.args else None
                if (isinstance(err, KafkaError) and err.fatal()) or time.monotonic() > deadline:
                    raise
                time.sleep(1)

    def _process(self, msg: Message, now: int) -> None:
        topic = msg.topic()
        partition = msg.partition()
        assert topic is not None and partition is not None
        ts = msg.timestamp()[1]
        if topic == self.sightings_topic:
            self._card_sighting(msg, partition, now)
            return
        terminal = topic == self.topics.terminal
        codec = self.terminal_codec if terminal else self.settlement_codec
        try:
            record: Any = codec.decode(msg.value())
        except DecodeError as exc:
            self._dead_letter(msg, InvalidReason.DECODE_ERROR.value, str(exc), "DecodeError")
            return
        counts = self._counts
        label = ("events", "terminal", record["event_type"]) if terminal else ("events", "settlement", record["status"])
        counts[label] = counts.get(label, 0) + 1
        before = self.engine.stats.duplicates_dropped
        if terminal:
            rejection = self.engine.on_terminal_event(record, partition, ts, now)
        else:
            rejection = self.engine.on_settlement_notice(record, partition, ts, now)
        if rejection is not None:
            self._dead_letter(msg, rejection.reason.value, rejection.detail, "InvalidRecord")
        elif self.engine.stats.duplicates_dropped != before:
            counts[("redeliveries",)] = counts.get(("redeliveries",), 0) + 1
        self._sampled += 1
        if not self._sampled & 15:  # one latency sample in 16 records
            self._pending_latency.append(ts)

    def _card_sighting(self, msg: Message, partition: int, now: int) -> None:
        index = self.cards.get(partition)
        if index is None:
            return
        try:
            raw = unpack_row(msg.value() or b"")
            sighting = CardSighting(tuple(raw[0]), *raw[1:8])
        except (ValueError, IndexError, TypeError) as exc:
            self._dead_letter(msg, InvalidReason.DECODE_ERROR.value, f"bad card sighting: {exc}", type(exc).__name__)
            return
        self._apply_sighting(index, sighting, now)

    def _apply_sighting(self, index: CardIndex, sighting: CardSighting, now: int) -> None:
        """The card stage: ``sighting`` into its card partition's index, a DUPLICATE_CHARGE per pair found."""
        for dup in index.apply(sighting):
            self._send_alert(duplicate_charge_alert(dup, self.settings.rules, now))

    def _route_sightings(self, sightings: list[CardSighting], now: int) -> None:
        """Each card sighting to the card stage of its card partition (murmur2 of the card key, as a keyed
        record would be partitioned). A card partition this worker owns applies it at once, in this batch's
        transaction; any other goes through ``<app>-card-sightings`` to its owner.

        The round trip through the topic was a sixth of the work of a worker that owns every partition (pack,
        produce, fetch, unpack, merge bookkeeping for about one record in three), and a broker write and read.
        Applied here, a card partition sees its own worker's sightings in the order they were made, and the
        other workers' ones whenever they arrive: one interleaving of the same per-source orders, which the
        card index is built for (the watermark is the minimum over sources, see engine/cards.py) and which
        the topic never fixed either. With one worker it is exactly the order the topic gave: every sighting
        of a card partition came from this worker, in this order.
        """
        cards = self.cards
        partitions = self.partitions
        for s in sightings:
            k = s.key
            key = f"{k[0]}|{k[1]}|{k[2]}|{k[3]}".encode()
            q = partition_for(key, partitions)
            index = cards.get(q)
            if index is None:
                self._send(self.sightings_topic, key, pack_row([list(k), *s[1:]]), None, q)
            else:
                self._apply_sighting(index, s, now)

    def _emit(self, now: int) -> None:
        reconciled, alerts = self.engine.take()
        lags: list[float] = []
        for rec in reconciled:
            self._send_reconciled(rec, lags)
        observe_all(self.metrics.settlement_lag, lags)
        for alert in alerts:
            self._send_alert(alert)
        sightings = self.engine.card_sightings
        assert sightings is not None
        if sightings:
            self._route_sightings(sightings, now)
            sightings.clear()
        latencies = self.engine.auth_latencies
        assert latencies is not None
        observe_all(self.metrics.authorization_latency, [ms / 1000 for ms in latencies])
        latencies.clear()

    def _count(self, label: tuple[str, ...]) -> None:
        self._counts[label] = self._counts.get(label, 0) + 1

    def _flush_counts(self, counts: dict[tuple[str, ...], int]) -> None:
        m = self.metrics
        for label, n in counts.items():
            name = label[0]
            if name == "events":
                m.events.labels(label[1], label[2]).inc(n)
            elif name == "reconciled":
                m.reconciled.labels(label[1]).inc(n)
            elif name == "alerts":
                m.alerts.labels(label[1], label[2]).inc(n)
            elif name == "deadletters":
                m.deadletters.labels(label[1]).inc(n)
            elif name == "redeliveries":
                m.redeliveries.inc(n)

    def _send_reconciled(self, rec: ReconciledOrder, lags: list[float]) -> None:
        """Into the outbox; a matched order's settlement lag (seconds) into ``lags`` (observed per batch)."""
        self._count(("reconciled", rec["outcome"]))
        lag = rec["settlement_lag_ms"]
        if lag is not None and rec["outcome"] in ("MATCHED", "MATCHED_LATE"):
            lags.append(max(lag, 0) / 1000)
        self._send(self.topics.reconciled, rec["order_id"].encode(), self.reconciled_codec.encode(rec))  # type: ignore[arg-type]

    def _send_alert(self, alert: Alert) -> None:
        self._count(("alerts", alert["kind"], alert["severity"]))
        key = alert["order_id"] or alert["merchant_id"] or ""
        self._send(self.topics.alerts, key.encode(), self.alert_codec.encode(alert))  # type: ignore[arg-type]

    def _dead_letter(self, msg: Message, reason: str, detail: str, exc_class: str) -> None:
        self._count(("deadletters", reason))
        letter = DeadLetter.of(reason, detail, exc_class, msg.topic() or "", msg.partition() or 0, msg.offset() or 0,
                               msg.key(), msg.value())  # fmt: skip
        self._send(self.topics.deadletter, letter.key, letter.value, letter.headers())

    def _send(self, topic: str, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]] | None = None,
              partition: int = -1) -> None:  # fmt: skip
        self._outbox.append((topic, value, key, partition, headers))

    def _produce_outbox(self, producer: Producer) -> None:
        produce = producer.produce
        for topic, value, key, partition, headers in self._outbox:
            while True:
                try:  # positional arguments: a kwargs dict per record cost 0.5 us
                    if headers is None:
                        produce(topic, value, key, partition)
                    else:
                        produce(topic, value, key, partition, headers=headers)  # type: ignore[arg-type]
                    break
                except BufferError:
                    producer.poll(0.05)
        self._outbox.clear()

    def _write_changelogs(self) -> None:
        append = self._outbox.append
        for p, book in self.engine.books.items():
            dirty = book.dirty
            if not dirty:
                continue
            orders = book.orders
            changelog = self.changelog
            for order_id in dirty:
                append((changelog, encode_order(orders.get(order_id)), order_id.encode(), p, None))
            append((changelog, str(book.watermark).encode(), WATERMARK_KEY, p, None))
            dirty.clear()
        for q, index in self.cards.items():
            dirty_keys = index.dirty
            if not dirty_keys:
                continue
            for key in dirty_keys:
                append((self.card_changelog, encode_bucket(index.entries.get(key)), encode_card_key(key), q, None))
            append((self.card_changelog, encode_card_watermarks(index), WATERMARK_KEY, q, None))
            dirty_keys.clear()

    # --- gauges ----------------------------------------------------------------------------------------

    def _update_gauges(self) -> None:
        self._last_gauges = time.monotonic()
        now = _wall_ms()
        self.metrics.open_orders.set(self.engine.open_orders())
        ages = dict.fromkeys((name for name, _ in PENDING_AGE_BUCKETS), 0)
        for p, book in self.engine.books.items():
            if book.watermark > 0:
                self.metrics.watermark_lag.labels(str(p)).set(max(0, now - book.watermark) / 1000)
            for order in book.orders.values():
                approval = order.approval
                if approval is None or order.settled is not None or order.failed is not None:
                    continue
                if order.terminal_phase is TerminalPhase.VOIDED:
                    continue
                age_s = (book.watermark - approval.event_time) / 1000
                for name, bound in PENDING_AGE_BUCKETS:
                    if bound is None or age_s < bound:
                        ages[name] += 1
                        break
        for name, count in ages.items():
            self.metrics.pending_settlements.labels(name).set(count)
        consumer = self.consumer
        if consumer is None:
            return
        try:
            assignment = consumer.assignment()
            for tp in consumer.position(assignment):
                low, high = consumer.get_watermark_offsets(tp, cached=True)
                # a partition that has delivered nothing yet (an empty card-sightings partition) is behind by
                # what lies after where it was assigned at
                at = self._resume_position(tp)
                at = low if at == OFFSET_BEGINNING else at
                if at >= 0 and high >= 0:
                    self.metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(max(0, high - at))
        except KafkaException:
            pass
