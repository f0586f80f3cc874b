"""The ledger sink's loop: ``pos.reconciled`` (read_committed) → PostgreSQL, exactly once.

Why exactly once: the database, not Kafka, holds the sink's progress. On assignment each partition is sought
to the ``next_offset`` stored in ``sink_offsets`` (the beginning when there is none). Each poll batch is booked
in one database transaction that inserts its rows, upserts the current state, and moves ``next_offset`` to
the consumer's position. A crash (kill -9) before the commit loses the transaction and the restart reads the
batch again from the old offset; after the commit, the restart starts after it. So the tables always hold
exactly the records before ``next_offset``: none twice, none skipped. ``read_committed`` means records of
aborted producer transactions are never given to the sink, and the consumer's position steps over them and
over the commit markers, so a caught-up sink stores the log end (lag 0). Kafka commits of the group are sent
after the database commit only so that the usual lag tools see the sink; nothing reads them back.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition

from posrecon.config import SerdeSettings
from posrecon.kafka.clients import group_consumer, shared_config
from posrecon.serde.codec import DecodeError
from posrecon.serde.wire import codec_for
from posrecon.sink.postgres import LedgerStore, OffsetConflict, OffsetMove, Row, row_of

log = logging.getLogger("posrecon.sink")


class SinkError(RuntimeError):
    """The sink cannot go on without booking something wrong (an undecodable record, records gone from Kafka
    before they were booked, a fatal client error): it stops and names where."""


@dataclass(frozen=True, slots=True)
class SinkOptions:
    dsn: str
    bootstrap: str
    topic: str = "pos.reconciled"
    group: str = "posrecon-ledger-sink"
    batch_size: int = 2000  # records per poll, so per database transaction
    poll_timeout: float = 0.5
    exit_at_end: bool = False  # stop once every assigned partition is booked up to its end
    max_seconds: float | None = None
    progress_interval: float = 10.0  # seconds between JSON progress log lines (0: none)
    progress_bar: bool | None = None  # a tqdm bar on stderr; None: when stderr is a terminal
    kafka_commit: bool = True  # informational group commits (the database is what counts)


@dataclass(slots=True)
class SinkTotals:
    booked: int = 0  # rows newly in reconciled_revisions
    repeated: int = 0  # records whose (order_id, revision) was already booked (the topic repeated it)
    tombstones: int = 0  # null values (compaction deletes): nothing to book, the offset still moves
    transactions: int = 0
    conflicts: int = 0  # batches rolled back because another sink had moved an offset


class LedgerSink:
    """Consume ``options.topic`` in group ``options.group`` and book it through a :class:`LedgerStore`."""

    def __init__(
        self,
        options: SinkOptions,
        kafka_settings: Mapping[str, str] | None = None,
        serde: SerdeSettings | None = None,
    ) -> None:
        self.options = options
        self.kafka_settings = dict(kafka_settings or {})
        # either wire format, whatever the deployment writes (the magic byte decides); no topic: reads only
        self.codec = codec_for("ReconciledOrder", serde or SerdeSettings())
        self.totals = SinkTotals()
        self.stopping = False
        self._next: dict[int, int | None] = {}  # assigned partition → next_offset as stored (None: no row)
        self._eof: dict[int, int] = {}  # partition → offset where the consumer last reported its end
        self._store: LedgerStore | None = None
        self._consumer: Consumer | None = None

    # -------------------------------------------------------------------------------------------- the loop

    def run(self) -> SinkTotals:
        store = self._store = LedgerStore(self.options.dsn)
        try:
            store.ensure_schema()
            log.info("ledger schema ready", extra={"fields": {**store.describe(), "topic": self.options.topic}})
            config = shared_config(self.kafka_settings, {}, self.options.bootstrap)
            consumer = self._consumer = group_consumer(config, self.options.group, None)
            try:
                consumer.subscribe(
                    [self.options.topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_revoke
                )
                self._loop(consumer, store)
                final = self._fields()  # before close: it revokes the partitions, and the lag with them
            finally:
                consumer.close()  # leaves the group at once: the partitions move without a session timeout
        finally:
            store.close()
        log.info("sink stopped", extra={"fields": final})
        return self.totals

    def _loop(self, consumer: Consumer, store: LedgerStore) -> None:
        from tqdm import tqdm

        show = sys.stderr.isatty() if self.options.progress_bar is None else self.options.progress_bar
        started = last_report = time.monotonic()
        reported = 0  # booked at the last progress line
        deadline = None if self.options.max_seconds is None else started + self.options.max_seconds
        with tqdm(unit="rec", desc="sink", disable=not show, file=sys.stderr) as bar:
            while not self.stopping:
                booked = self._step(consumer, store)
                bar.update(booked)
                now = time.monotonic()
                if show:
                    bar.set_postfix(lag=self.lag(consumer), refresh=False)
                if self.options.progress_interval > 0 and now - last_report >= self.options.progress_interval:
                    rate = (self.totals.booked - reported) / max(now - last_report, 1e-9)
                    last_report, reported = now, self.totals.booked
                    log.info("sink progress", extra={"fields": {**self._fields(), "rate_per_s": round(rate)}})
                if self.options.exit_at_end and self.at_end():
                    log.info("booked up to the end of every assigned partition", extra={"fields": self._fields()})
                    return
                if deadline is not None and now >= deadline:
                    return

    def _step(self, consumer: Consumer, store: LedgerStore) -> int:
        """One poll batch, booked in one transaction; the rows newly booked."""
        rows: list[Row] = []
        last: dict[int, int] = {}
        for message in consumer.consume(self.options.batch_size, self.options.poll_timeout):
            partition = message.partition()
            assert partition is not None
            if message.error() is not None:
                self._on_error(message)
                continue
            if partition not in self._next:  # fetched before a revocation: the new owner books it
                continue
            offset = message.offset()
            assert offset is not None
            self._eof.pop(partition, None)
            last[partition] = offset + 1
            value = message.value()
            if value is None:
                self.totals.tombstones += 1
                continue
            try:
                record = self.codec.decode(value)
            except DecodeError as exc:
                where = f"{self.options.topic}[{partition}] offset {offset}"
                raise SinkError(
                    f"{where} does not decode: {exc}; nothing from it on is booked (docs/operations.md, Ledger sink)"
                ) from None
            rows.append(row_of(record, self.options.topic, partition, offset))
        moves = self._moves(consumer, last)
        if not moves:
            return 0
        try:
            booked = store.book(self.options.topic, rows, moves)
        except OffsetConflict as exc:
            self.totals.conflicts += 1
            log.warning(
                "offsets moved by another sink: batch rolled back, reading again from the database",
                extra={"fields": {"error": str(exc)}},
            )
            self._resync(consumer, store)
            return 0
        for partition, move in moves.items():
            self._next[partition] = move.new
        self.totals.booked += booked
        self.totals.repeated += len(rows) - booked
        self.totals.transactions += 1
        if self.options.kafka_commit:
            self._commit_to_kafka(consumer, moves)
        return booked

    def _moves(self, consumer: Consumer, last: Mapping[int, int]) -> dict[int, OffsetMove]:
        """Where each assigned partition's next_offset goes: the consumer's position once the batch is consumed
        (past commit markers and aborted records too), at least one past the last record."""
        assigned = [TopicPartition(self.options.topic, p) for p in self._next]
        positions = {tp.partition: tp.offset for tp in consumer.position(assigned)} if assigned else {}
        moves: dict[int, OffsetMove] = {}
        for partition, stored in self._next.items():
            new = max(last.get(partition, -1), positions.get(partition, -1))
            if new >= 0 and (stored is None or new > stored):
                moves[partition] = OffsetMove(stored, new)
        return moves

    def _on_error(self, message: Message) -> None:
        error = message.error()
        assert error is not None
        if error.code() == KafkaError._PARTITION_EOF:
            partition, offset = message.partition(), message.offset()
            assert partition is not None and offset is not None
            self._eof[partition] = offset
            return
        if error.code() == KafkaError._AUTO_OFFSET_RESET:
            raise SinkError(
                f"{self.options.topic}[{message.partition()}]: the stored next_offset is out of the "
                f"log's range (records deleted before they were booked): {error.str()}"
            )
        if error.fatal():
            raise SinkError(f"fatal Kafka client error: {error.str()}")
        log.warning("kafka consumer error", extra={"fields": {"error": error.str()}})

    def _commit_to_kafka(self, consumer: Consumer, moves: Mapping[int, OffsetMove]) -> None:
        offsets = [TopicPartition(self.options.topic, p, move.new) for p, move in moves.items()]
        try:
            consumer.commit(offsets=offsets, asynchronous=True)
        except KafkaException as exc:  # informational only: the database holds the real offsets
            log.debug("group commit failed", extra={"fields": {"error": str(exc)}})

    # ------------------------------------------------------------------------------------------ assignment

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        assert self._store is not None
        stored = self._store.offsets(self.options.topic, [tp.partition for tp in partitions])
        for tp in partitions:
            tp.offset = stored.get(tp.partition, OFFSET_BEGINNING)
            self._next[tp.partition] = stored.get(tp.partition)
            self._eof.pop(tp.partition, None)
        consumer.assign(partitions)
        log.info(
            "partitions assigned, sought to the offsets stored in the ledger",
            extra={
                "fields": {
                    "topic": self.options.topic,
                    "offsets": {p: self._next[p] for p in sorted(stored)},
                    "from_beginning": sorted(tp.partition for tp in partitions if tp.partition not in stored),
                }
            },
        )

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self._next.pop(tp.partition, None)
            self._eof.pop(tp.partition, None)
        log.info("partitions revoked", extra={"fields": {"partitions": sorted(tp.partition for tp in partitions)}})

    def _resync(self, consumer: Consumer, store: LedgerStore) -> None:
        """After an offset conflict: take every assigned partition's offset from the database again."""
        stored = store.offsets(self.options.topic, list(self._next))
        for partition in list(self._next):
            self._next[partition] = stored.get(partition)
            self._eof.pop(partition, None)
            consumer.seek(TopicPartition(self.options.topic, partition, stored.get(partition, OFFSET_BEGINNING)))

    # -------------------------------------------------------------------------------------------- progress

    def lag(self, consumer: Consumer | None = None) -> int | None:
        """Records (and markers) between the booked next_offset and the log end, over the assigned partitions,
        from the watermarks the consumer last fetched (no broker round trip); None before the first fetch."""
        consumer = consumer or self._consumer
        if consumer is None or not self._next:
            return None
        total, known = 0, False
        for partition, stored in self._next.items():
            low, high = consumer.get_watermark_offsets(TopicPartition(self.options.topic, partition), cached=True)
            if high < 0:
                continue
            known = True
            total += max(0, high - (stored if stored is not None else max(low, 0)))
        return total if known else None

    def at_end(self) -> bool:
        """Every assigned partition reported its end and is booked up to it."""
        if not self._next:
            return False
        return all(p in self._eof and (n if n is not None else 0) >= self._eof[p] for p, n in self._next.items())

    def _fields(self) -> dict[str, Any]:
        t = self.totals
        return {
            "topic": self.options.topic,
            "group": self.options.group,
            "booked": t.booked,
            "repeated": t.repeated,
            "tombstones": t.tombstones,
            "transactions": t.transactions,
            "conflicts": t.conflicts,
            "partitions": sorted(self._next),
            "lag": self.lag(),
        }
