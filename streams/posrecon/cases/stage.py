"""The case stage: ``pos.alerts`` + ``pos.exception-actions`` in, ``pos.exceptions`` out, exactly once.

Its own process (``posrecon cases``), so the reconciliation worker's hot loop is untouched: a thin shell around
:class:`~posrecon.engine.cases.CaseBook`, one book per partition. The two inputs are co-partitioned (same
partition count; an action is produced to the partition of the alert that opened its case), and the stage's
consumer group ``<app>-cases`` uses range assignment, so partition p of both lands on the same stage.

Each turn is one Kafka transaction (app/transaction.py, the worker's driver): the ``pos.exceptions`` records
(key alert_id), the changed rows of ``<app>-cases-changelog`` (cases/store.py) and the consumed offsets
(``send_offsets_to_transaction`` with the group metadata: a fenced zombie cannot commit). A failed transaction
is aborted and the books are rebuilt from the changelog at the committed offsets, as the worker does.

A record the stage cannot use (undecodable, an empty id, a field the rules cannot read) goes to
``pos.deadletter`` with the reason; the stage never stops on input. The ops API (cases/api.py) reads the books
under :attr:`CaseStage.lock` from its own threads.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition
from prometheus_client import Gauge

from posrecon.app.errors import Letter, undecodable
from posrecon.app.internal_topics import internal_topics
from posrecon.app.outbox import Outbox
from posrecon.app.restore import committed_offsets, resume_positions
from posrecon.app.telemetry import Telemetry
from posrecon.app.transaction import Transaction
from posrecon.cases.store import changelog_rows, changelog_topic, create_changelog, restore_books
from posrecon.config import Settings
from posrecon.engine.cases import CASE_STATES, CaseBook
from posrecon.engine.model import InvalidReason
from posrecon.kafka import clients
from posrecon.kafka.topics import CoPartitioningError, _partition_counts
from posrecon.metrics import WorkerMetrics
from posrecon.serde.codec import DecodeError
from posrecon.serde.wire import codec_for

log = logging.getLogger("posrecon.cases")

#: what a record the codec accepted but the rules cannot apply raises (a missing or mistyped field)
UNUSABLE = (KeyError, TypeError, ValueError)
#: the ids a record must have to be applied (else a dead letter EMPTY_ID)
ALERT_IDS = ("alert_id",)
ACTION_IDS = ("alert_id", "action_id")


@dataclass(frozen=True)
class CaseOptions:
    bootstrap: str
    app_id: str = "posrecon"
    stage_id: str = "0"
    batch_max_records: int = 2_000
    internal_replication: int = 1
    transaction_timeout_ms: int = 10_000
    transaction_stall_s: float = 15.0
    client_config: Mapping[str, str] = field(default_factory=dict)

    @property
    def group_id(self) -> str:
        """The stage's consumer group: its own, beside the worker's ``<app>``."""
        return f"{self.app_id}-cases"


class CaseStage:
    def __init__(self, settings: Settings, options: CaseOptions, metrics: WorkerMetrics | None = None) -> None:
        self.settings = settings
        self.options = options
        self.topics = settings.topics
        self.metrics = metrics or WorkerMetrics()
        self.changelog = changelog_topic(options.app_id)
        self.client_config = clients.shared_config(settings.kafka, options.client_config, options.bootstrap)
        self.alert_codec = codec_for("Alert", settings.serde)
        self.action_codec = codec_for("ExceptionAction", settings.serde)
        self.case_codec = codec_for("ExceptionCase", settings.serde, self.topics.exceptions)
        self.partitions = 0
        #: the books of the assigned partitions; the ops API's threads read them under :attr:`lock`
        self.books: dict[int, CaseBook] = {}
        self.lock = threading.RLock()
        self.telemetry = Telemetry(self.metrics)
        self.outbox = Outbox(settings, internal_topics(options.app_id), {}, self.telemetry.counts, self.metrics)
        new_producer = partial(
            clients.transactional_producer,
            self.client_config,
            f"{options.group_id}-{options.stage_id}",
            options.transaction_timeout_ms,
        )
        self.transaction = Transaction(new_producer, self.outbox, self.telemetry, options.transaction_stall_s)
        self.consumer: Consumer | None = None
        self._offset_reader: Consumer | None = None
        self.stopping = False
        self.ready = False  # partitions assigned and books restored (GET /readyz)
        self.last_turn = time.monotonic()  # the loop's heartbeat (GET /healthz)
        self.processed = 0
        #: where each partition was assigned from (a partition that has delivered nothing has no position yet)
        self.resumed_from: dict[tuple[str, int], int] = {}
        #: cases held, by state (the queue's size on a dashboard; closed ones stay until their retention)
        self.cases_held = Gauge(
            "posrecon_cases_held",
            "Exception cases held by the case stage, by state",
            ["state"],
            registry=self.metrics.registry,
        )

    # --- lifecycle ---------------------------------------------------------------------------------------------

    def setup(self) -> None:
        config, options, topics = self.client_config, self.options, self.topics
        admin = clients.admin(config)
        counts = _partition_counts(admin, [topics.alerts, topics.exception_actions], 10)
        alerts, actions = counts[topics.alerts], counts[topics.exception_actions]
        if alerts is None or actions is None or alerts != actions:
            raise CoPartitioningError(
                f"{topics.alerts} ({alerts} partitions) and {topics.exception_actions} ({actions}) must both exist "
                "with the same partition count (`posrecon topics create`): an action goes to its case's partition"
            )
        self.partitions = alerts
        create_changelog(admin, options.app_id, alerts, options.internal_replication)
        self.transaction.open()
        self._offset_reader = clients.offset_reader(config, options.group_id)
        self.consumer = clients.group_consumer(config, options.group_id, None)
        self.consumer.subscribe(
            [topics.alerts, topics.exception_actions],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_revoke,
        )
        log.info("case stage started", extra={"fields": {"group": options.group_id, "partitions": alerts}})

    def run(self, max_seconds: float | None = None) -> None:
        self.setup()
        self.metrics.up.set(1)
        started = time.monotonic()
        try:
            while not self.stopping and (max_seconds is None or time.monotonic() - started < max_seconds):
                self.step()
        finally:
            self.metrics.up.set(0)
            self.close()

    def close(self) -> None:
        if self.consumer is not None:
            self.consumer.close()
            self.consumer = None
        if self._offset_reader is not None:
            self._offset_reader.close()
            self._offset_reader = None
        self.transaction.close()

    # --- rebalance ---------------------------------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        consumer.assign(self._restore(partitions))

    def _restore(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        """Books of ``partitions`` from the changelog, at the committed offsets (read first: app/restore.py)."""
        self.ready = False
        assert self._offset_reader is not None
        committed = committed_offsets(self._offset_reader, partitions)
        numbers = sorted({tp.partition for tp in partitions})
        books = restore_books(self.client_config, self.changelog, numbers, self.settings.rules.state_retention_ms)
        with self.lock:
            self.books.update(books)
        self.transaction.sent_to.update(((tp.topic, tp.partition), tp.offset) for tp in committed)
        self.ready = True
        cases = sum(len(b) for b in books.values())
        log.info("case partitions assigned", extra={"fields": {"partitions": numbers, "cases_restored": cases}})
        resume = resume_positions(committed)
        self.resumed_from.update(((tp.topic, tp.partition), tp.offset) for tp in resume)
        return resume

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.transaction.finish()
        self.ready = False
        self.transaction.forget((tp.topic, tp.partition) for tp in partitions)
        with self.lock:
            for tp in partitions:
                self.books.pop(tp.partition, None)
        log.info("case partitions revoked", extra={"fields": {"count": len(partitions)}})

    # --- one turn: one transaction -----------------------------------------------------------------------------

    def step(self) -> int:
        consumer = self.consumer
        assert consumer is not None
        self.last_turn = time.monotonic()
        batch = [msg for msg in consumer.consume(self.options.batch_max_records, timeout=0.2) if self._usable(msg)]
        if not batch:
            return 0
        offsets: dict[tuple[str, int], int] = {}
        with self.lock:
            for msg in batch:
                self._process(msg)
                offsets[(msg.topic() or "", msg.partition() or 0)] = (msg.offset() or 0) + 1
            self._emit()
        txn = self.transaction
        if not (txn.start(consumer, offsets, len(batch)) and txn.finish()):
            self._rebuild()
            return 0
        self.processed += len(batch)
        with self.lock:
            held = Counter(case.state._value_ for book in self.books.values() for case in book.cases.values())
        for state in CASE_STATES:
            self.cases_held.labels(state).set(held[state])
        return len(batch)

    def _usable(self, msg: Message) -> bool:
        err = msg.error()
        if err is None:
            return True
        if err.code() == KafkaError._AUTO_OFFSET_RESET:
            self._records_lost(msg.topic() or "", msg.partition() or 0)
        elif err.code() != KafkaError._PARTITION_EOF:
            if err.fatal():
                raise KafkaException(err)
            log.warning("consumer error", extra={"fields": {"error": err.str()}})
        return False

    def _records_lost(self, topic: str, partition: int) -> None:
        """The position to read is no longer on the broker (retention deleted records this stage never read):
        their alerts open no case, their actions are not applied. Said loudly and counted, then on from the
        oldest record left. The partition's fetcher has stopped (auto.offset.reset=error) and cannot be seek()ed:
        everything is assigned again, the others where they are (or where the restore put them)."""
        consumer = self.consumer
        assert consumer is not None
        log.error(
            "input records were deleted before the case stage read them; resuming at the log start",
            extra={"fields": {"topic": topic, "partition": partition}},
        )
        self.metrics.input_records_lost.labels(topic).inc()
        self.resumed_from[(topic, partition)] = OFFSET_BEGINNING
        consumer.assign(
            [
                TopicPartition(
                    tp.topic,
                    tp.partition,
                    OFFSET_BEGINNING
                    if (tp.topic, tp.partition) == (topic, partition)
                    else tp.offset
                    if tp.offset >= 0
                    else self.resumed_from[(tp.topic, tp.partition)],
                )
                for tp in consumer.position(consumer.assignment())
            ]
        )

    def _process(self, msg: Message) -> None:
        book = self.books.get(msg.partition() or 0)
        if book is None:  # a record of a partition revoked meanwhile: its offset is not ours to commit
            return
        alert = msg.topic() == self.topics.alerts
        try:
            record: Any = (self.alert_codec if alert else self.action_codec).decode(msg.value())
        except DecodeError as exc:
            self.outbox.dead_letter(msg, undecodable(exc))
            return
        empty = [name for name in (ALERT_IDS if alert else ACTION_IDS) if not record[name].strip()]
        if empty:
            self.outbox.dead_letter(msg, Letter(InvalidReason.EMPTY_ID.value, f"{empty[0]} is empty", "InvalidRecord"))
            return
        try:
            if alert:
                book.on_alert(record)
                book.advance(record["event_time"])  # event time only: actions carry the operators' wall clock
            else:
                book.on_action(record)
        except UNUSABLE as exc:
            letter = Letter(InvalidReason.DECODE_ERROR.value, f"cannot apply to a case: {exc!r}", type(exc).__name__)
            self.outbox.dead_letter(msg, letter)

    def _emit(self) -> None:
        """The books' new case records to ``pos.exceptions`` (key alert_id) and their changelog rows."""
        send, topic = self.outbox.send, self.topics.exceptions
        for partition, book in self.books.items():
            for record in book.take():
                send(topic, record["alert_id"].encode(), self.case_codec.encode(record))  # type: ignore[arg-type]
            for name, value, key, p in changelog_rows(book, self.changelog, partition):
                send(name, key, value, None, p)

    def _rebuild(self) -> None:
        """After a failed (aborted) transaction: books from the changelog, inputs rewound to the committed offsets."""
        log.warning("case transaction failed: rebuilding from the changelog at the committed offsets")
        consumer = self.consumer
        assert consumer is not None
        with self.lock:
            self.books.clear()
        for tp in self._restore(consumer.assignment()):
            consumer.seek(tp)

    # --- what the ops API reads (under the lock) ---------------------------------------------------------------

    def find(self, alert_id: str) -> tuple[int, CaseBook] | None:
        """The partition and book holding the case ``alert_id``, if this stage holds it."""
        for partition, book in self.books.items():
            if alert_id in book.cases:
                return partition, book
        return None

    def union(self) -> CaseBook:
        """One read-only book of every case this stage holds, for queue and aging views across partitions."""
        merged = CaseBook(self.settings.rules.state_retention_ms)
        for book in self.books.values():
            merged.cases.update(book.cases)
        return merged
