"""The live batch stage: settlement batches' control totals against the notices they received (issue 14).

Where things live:

* the batch rules and state are the engine's :class:`~posrecon.engine.batches.BatchLedger` (``engine.batches``),
  one per worker, holding the batches of every batch partition this worker owns -- the same ledger replay
  feeds in place, fed here in the same way (the engine's ``sync_batches`` before each batch record);
* a batch's partition is ``partition_for(batch_id)`` (murmur2, as a keyed record is partitioned): its control
  records come in on that partition of ``pos.settlement-batches``, which the range assignor gives to the worker
  owning that partition of the order inputs (every topic the worker reads has the same partition count);
* notices with a batch_id leave the order stage as :class:`~posrecon.engine.batches.BatchSighting` rows
  (``engine.batch_sightings``, right after the notice is applied). A batch partition this worker owns counts
  them at once; any other gets them through ``<app>-batch-sightings`` in this batch's transaction;
* the batch watermark is the minimum over the order partitions' watermarks. The owned ones are passed on in
  place before every batch record (as replay does); the others reach it as watermark rows ``["W", source,
  watermark]`` on ``<app>-batch-sightings``: each worker sends, at the end of a transaction, every owned order
  partition's watermark that moved to every batch partition it does not own;
* the ledger's rows go to the compacted ``<app>-batch-changelog`` (key ``[batch_id, notice_id]``, the header's
  notice_id ""; key ``\\x00watermark``: the ledger's watermark and source watermarks), restored on assignment.

Outputs (BatchReconciliation to ``pos.batch-reconciled``, batch alerts to ``pos.alerts``, both keyed by
batch_id), sightings, watermark rows and changelog rows all go into the outbox: one transaction with the
offsets that caused them.

Cost without batches: nothing is produced and no ledger work is done until this worker has seen a batch
record (a notice with a batch_id, a control record, a row from another worker): the only per-record work
is the worker's truthiness check of ``engine.batch_sightings`` after a notice. A worker that never sees a
batch record never sends its watermarks, so a batch partition elsewhere waits for it: in a real batch mix
every order partition carries batch notices.
"""

from __future__ import annotations

import heapq
import json
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from confluent_kafka import Message, TopicPartition
from confluent_kafka.admin import AdminClient

from posrecon.app.errors import BAD_SIGHTING_ROW, bad_sighting, rejected, undecodable
from posrecon.app.internal_topics import COMPACTED, create_topics_if_missing
from posrecon.app.outbox import Outbox
from posrecon.app.state_store import WATERMARK_KEY, pack_row, read_changelog, unpack_row
from posrecon.app.telemetry import alert_label, count_batch_decisions
from posrecon.config import Settings
from posrecon.engine.batches import NO_WATERMARK, BatchLedger, BatchSighting, RowKey
from posrecon.engine.engine import ReconciliationEngine
from posrecon.kafka.partitioner import partition_for
from posrecon.metrics import WorkerMetrics
from posrecon.serde.codec import AvroCodec, DecodeError

if TYPE_CHECKING:
    from posrecon.app.intake import Intake

log = logging.getLogger("posrecon.worker")

#: how long (wall clock) the batch stage's merge may wait for an owned task's input before taking the intake's batch
MERGE_WAIT_MS = 5_000
NOTICE_ROW = "N"  # a BatchSighting on <app>-batch-sightings
WATERMARK_ROW = "W"  # ["W", source partition, watermark]


def batch_topics(app_id: str) -> tuple[str, str]:
    """(batch sightings repartition topic, batch-state changelog) topic names."""
    return f"{app_id}-batch-sightings", f"{app_id}-batch-changelog"


def encode_batch_key(key: RowKey) -> bytes:
    """A ledger row key as compact JSON ``["batch_id","notice_id"]`` (byte-stable for compaction)."""
    return json.dumps(list(key), separators=(",", ":")).encode()


class BatchStage:
    """The batch partitions this worker owns, and how batch records reach them."""

    def __init__(self, settings: Settings, app_id: str, outbox: Outbox, metrics: WorkerMetrics) -> None:
        self.settings = settings
        self.topics = settings.topics
        self.sightings_topic, self.changelog = batch_topics(app_id)
        #: the topics this stage reads (the worker hands their records to :meth:`on_record`)
        self.inputs = frozenset((self.topics.batches, self.sightings_topic))
        self.outbox = outbox
        self.metrics = metrics
        self.partitions = 0
        self.owned: set[int] = set()  # batch partitions assigned (and restored)
        #: a batch record has been seen: from then on watermarks are carried (see the module doc)
        self.active = False
        self.carried: dict[int, int] = {}  # owned order partition -> the watermark last sent to the others
        self.marks_written: object = None  # the ledger's watermarks as last written to the changelog
        self.stuck_since: int | None = None  # since when no record could be merged (see select)
        self.control_codec = AvroCodec("SettlementBatch")
        self.record_codec = AvroCodec("BatchReconciliation")
        self.alert_codec = AvroCodec("Alert")

    # --- set-up and rebalance -------------------------------------------------------------------------

    def setup(self, admin: AdminClient, partitions: int, replication: int) -> list[str]:
        """Create the stage's internal topics; the topics to subscribe to. The control records' topic must
        have the inputs' partition count (co-located batch partitions); if it does not exist, the stage reads
        only notices."""
        self.partitions = partitions
        create_topics_if_missing(
            admin, {self.sightings_topic: {"retention.ms": str(7 * 24 * 3600 * 1000)}, self.changelog: COMPACTED},
            partitions, replication,
        )  # fmt: skip
        topic = admin.list_topics(timeout=10).topics.get(self.topics.batches)
        if topic is None or topic.error is not None:
            log.warning("no control records topic: batches are not decided",
                        extra={"fields": {"topic": self.topics.batches}})  # fmt: skip
            return [self.sightings_topic]
        if len(topic.partitions) != partitions:
            raise RuntimeError(
                f"{self.topics.batches} has {len(topic.partitions)} partitions but the input topics have "
                f"{partitions}: control records would not reach their batch's owner"
            )
        return [self.topics.batches, self.sightings_topic]

    def restore(self, client_config: Mapping[str, Any], engine: ReconciliationEngine,
                partitions: list[TopicPartition]) -> int:  # fmt: skip
        """The ledger of the assigned batch partitions, read back from the changelog; returns the batches."""
        self.owned = {tp.partition for tp in partitions if tp.topic == self.sightings_topic}
        ledger = engine.batches = BatchLedger(self.settings.rules, sources=self.partitions)
        rows: list[list[Any]] = []
        watermarks: list[int] = []
        sources: dict[int, int] | None = None
        for entries in read_changelog(client_config, self.changelog, self.owned).values():
            for key, value in entries.items():
                if key != WATERMARK_KEY:
                    rows.append(unpack_row(value))
                    continue
                marks = unpack_row(value)
                watermarks.append(marks["watermark"])
                # each partition's row is the view of the worker that wrote it last: a source counts at the
                # lowest watermark any of them knew (a higher one may belong to rows still to be read)
                theirs = {int(k): v for k, v in marks["sources"].items()}
                sources = (
                    theirs if sources is None else {k: min(v, theirs[k]) for k, v in sources.items() if k in theirs}
                )
        ledger.load_rows(rows, min(watermarks, default=NO_WATERMARK), sources)
        ledger.dirty = set()
        self.marks_written = None
        self.carried.clear()
        self.active = self.active or bool(ledger.batches)
        return len(ledger.batches)

    def revoke(self, partitions: list[int]) -> None:
        self.owned.difference_update(partitions)

    def select(self, intake: Intake, batch: list[Any], limit: int, now: int) -> None:
        """Once batches are about, choose the batch so that the ledger sees what replay sees.

        Replay applies every record where it is in the input, and the ledger's watermark is the minimum over the
        order partitions' watermarks, read before each batch record. The intake merges each task's two inputs
        in timestamp order but lets tasks run ahead of each other, so a notice could meet another partition's
        watermark from records ingested after it. So the intake's choice goes back to the front of its queues
        and the batch is taken again by one timestamp merge over every owned task's queues and the control
        records' queues (:meth:`_merge`); other workers' sightings go first (an independent stage, as card
        sightings). Nothing of this runs before the first batch record."""
        queues = intake.queues
        if not self.active and not any(
            (waiting := queues.get((topic, p))) is not None and waiting.records
            for topic in self.inputs
            for p in self.owned
        ):
            return
        routed: list[Any] = []
        for q in sorted(self.owned):
            queue = queues.get((self.sightings_topic, q))
            while queue is not None and queue.records and len(routed) < limit // 2:
                routed.append(queue.records.popleft())
        task_topics = (self.topics.terminal, self.topics.settlement)
        others: list[Any] = []
        chosen: dict[tuple[str, int], list[Any]] = {}
        for msg in batch:
            if msg.topic() in task_topics:
                chosen.setdefault((msg.topic(), msg.partition()), []).append(msg)
            else:
                others.append(msg)
        for key, msgs in chosen.items():
            queues[key].records.extendleft(reversed(msgs))
        merged = self._merge(intake, limit - len(routed) - len(others))
        if merged or not chosen:
            self.stuck_since = None
        elif now - (self.stuck_since or now) >= MERGE_WAIT_MS:
            merged = [msg for msgs in chosen.values() for msg in msgs]  # backstop: the intake's choice after all
            for key, msgs in chosen.items():
                for _ in msgs:
                    queues[key].records.popleft()
            log.warning("batch stage: a task's input stays unknown; taking the intake's batch",
                        extra={"fields": {"waited_ms": now - (self.stuck_since or now)}})  # fmt: skip
        elif self.stuck_since is None:
            self.stuck_since = now
        batch[:] = [*routed, *others, *merged]

    def _merge(self, intake: Intake, limit: int) -> list[Any]:
        """Up to ``limit`` records of the owned tasks' queues and the control records' queues, in timestamp
        order (each queue's own order kept); stops where an owned task's queue is empty and not known to be
        at the log end (its next record may be earlier than the others')."""
        queues, topics = intake.queues, self.topics
        tasks = [queue for p in sorted(intake.tasks) for topic in (topics.terminal, topics.settlement)
                 if (queue := queues.get((topic, p))) is not None]  # fmt: skip
        if any(not queue.records and not queue.at_end for queue in tasks):
            return []
        controls = [queue for q in sorted(self.owned) if (queue := queues.get((topics.batches, q))) is not None]
        sources = [*tasks, *controls]
        heap = [(queue.records[0].timestamp()[1], i) for i, queue in enumerate(sources) if queue.records]
        heapq.heapify(heap)
        out: list[Any] = []
        while heap and len(out) < limit:
            _, i = heapq.heappop(heap)
            queue = sources[i]
            out.append(queue.records.popleft())
            if queue.records:
                heapq.heappush(heap, (queue.records[0].timestamp()[1], i))
            elif i < len(tasks) and not queue.at_end:
                break
        return out

    # --- records in -----------------------------------------------------------------------------------

    def route(self, engine: ReconciliationEngine, now: int) -> None:
        """The order stage's sightings (right after their notice): counted here if this worker owns the
        batch partition, else sent to it through ``<app>-batch-sightings``."""
        sightings = engine.batch_sightings
        assert sightings is not None
        self.active = True
        owned, partitions, send, topic = self.owned, self.partitions, self.outbox.send, self.sightings_topic
        for s in sightings:
            key = s.batch_id.encode()
            q = partition_for(key, partitions)
            if q in owned:
                engine.sync_batches(now)
                engine.batches.on_notice(s, now)
            else:
                send(topic, key, pack_row([NOTICE_ROW, *s]), None, q)
        sightings.clear()

    def on_record(self, msg: Message, engine: ReconciliationEngine, now: int) -> None:
        """A record of one of :attr:`inputs`: a control record, or a row another worker routed here."""
        self.active = True
        if msg.topic() == self.sightings_topic:
            self._routed_row(msg, engine, now)
            return
        try:
            record: Any = self.control_codec.decode(msg.value())
        except DecodeError as exc:
            self.outbox.dead_letter(msg, undecodable(exc))
            return
        self.outbox.counts[("batch_controls",)] = self.outbox.counts.get(("batch_controls",), 0) + 1
        rejection = engine.on_settlement_batch(record, msg.partition() or 0, msg.timestamp()[1], now)
        if rejection is not None:
            self.outbox.dead_letter(msg, rejected(rejection))

    def _routed_row(self, msg: Message, engine: ReconciliationEngine, now: int) -> None:
        try:
            row = unpack_row(msg.value() or b"")
            if row[0] == WATERMARK_ROW:
                engine.batches.advance(int(row[1]), int(row[2]), now)
                return
            sighting = BatchSighting(*row[1:])
        except BAD_SIGHTING_ROW as exc:
            self.outbox.dead_letter(msg, bad_sighting(exc))
            return
        engine.sync_batches(now)
        engine.batches.advance(sighting.source_partition, sighting.source_watermark, now)
        engine.batches.on_notice(sighting, now)

    # --- the end of a batch ---------------------------------------------------------------------------

    def prepare(self, engine: ReconciliationEngine, now: int) -> None:
        """Into the outbox: the owned order partitions' watermarks (in place, and to the other batch
        partitions), the ledger's records and alerts, and its changelog rows."""
        if not self.active:
            return
        engine.sync_batches(now)
        self._carry_watermarks(engine)
        ledger = engine.batches
        records, alerts = ledger.take()
        outbox = self.outbox
        if records:
            for rec in records:
                outbox.send(self.topics.batch_reconciled, rec["batch_id"].encode(), self.record_codec.encode(rec))  # type: ignore[arg-type]
            count_batch_decisions(records, outbox.counts, self.metrics)
        for alert in alerts:
            outbox.counts[alert_label(alert)] = outbox.counts.get(alert_label(alert), 0) + 1
            key = (alert["batch_id"] or alert["merchant_id"] or "").encode()
            outbox.send(self.topics.alerts, key, self.alert_codec.encode(alert))  # type: ignore[arg-type]
        self._write_changelog(ledger)

    def _carry_watermarks(self, engine: ReconciliationEngine) -> None:
        remote = [q for q in range(self.partitions) if q not in self.owned]
        send, topic, carried = self.outbox.send, self.sightings_topic, self.carried
        for p, book in engine.books.items():
            watermark = book.watermark
            if watermark > carried.get(p, NO_WATERMARK):
                carried[p] = watermark
                row = pack_row([WATERMARK_ROW, p, watermark])
                for q in remote:
                    send(topic, None, row, None, q)

    def _write_changelog(self, ledger: BatchLedger) -> None:
        send, changelog, partitions = self.outbox.send, self.changelog, self.partitions
        dirty = ledger.dirty
        if dirty:
            for key in dirty:
                row = ledger.row(key)
                send(changelog, encode_batch_key(key), None if row is None else pack_row(row), None,
                     partition_for(key[0].encode(), partitions))  # fmt: skip
            dirty.clear()
        marks = (ledger.watermark, tuple(sorted(ledger.source_watermarks.items())))
        if marks != self.marks_written and self.owned:
            self.marks_written = marks
            value = pack_row({"watermark": ledger.watermark,
                              "sources": {str(k): v for k, v in ledger.source_watermarks.items()}})  # fmt: skip
            for q in sorted(self.owned):
                send(changelog, WATERMARK_KEY, value, None, q)

    # --- operators ------------------------------------------------------------------------------------

    def view(self, engine: ReconciliationEngine, batch_id: str) -> tuple[int, dict[str, Any]]:
        """``GET /batches/{id}``: (HTTP status, body)."""
        partition = partition_for(batch_id.encode(), self.partitions) if self.partitions else 0
        if partition not in self.owned:
            return 404, {"error": "batch partition not owned by this worker", "batch_id": batch_id,
                         "partition": partition}  # fmt: skip
        view = engine.batches.view(batch_id)
        if view is None:
            return 404, {"error": "batch not in state (unknown, or evicted after retention)", "batch_id": batch_id,
                         "partition": partition}  # fmt: skip
        return 200, {**view, "partition": partition, "watermark": engine.batches.watermark}
