"""The live batch stage: settlement batches' control totals against the notices they received (issue 14).

Where things live:

* the batch rules and state are the engine's :class:`~posrecon.engine.batches.BatchLedger`, one per batch
  partition this worker owns (each with its own source watermarks: its notices and watermark rows come in on
  one partition, in the order each source sent them) -- the same ledger replay feeds in place
  (engine/batch_feed.py), fed here with every owned partition's watermark before each batch record
  (:meth:`BatchRouting.sync`, engine/batch_routing.py, compiled with the engine: replay passes them on whenever
  one may fire a deadline; between two batch records that fires the same deadlines on the same counts);
* a batch's partition is ``partition_for(batch_id)`` (murmur2, as a keyed record is partitioned): its control
  records come in on that partition of ``pos.settlement-batches``, which the range assignor gives to the worker
  owning that partition of the order inputs (every topic the worker reads has the same partition count);
* notices with a batch_id leave the order stage as :class:`~posrecon.engine.batches.BatchSighting` rows
  (``engine.batch_sightings``, right after the notice is applied). A batch partition this worker owns counts
  them at once; any other gets them through ``<app>-batch-sightings`` in this batch's transaction;
* the batch watermark is the minimum over the order partitions' watermarks. The owned ones are passed on in
  place before every batch record (as replay does); the others reach it as watermark rows ``["W", source,
  watermark]`` on ``<app>-batch-sightings``: each worker sends every owned order partition's watermark that moved
  to a batch partition it does not own before each notice it sends there, and to all of them at the end of a
  transaction;
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
from posrecon.app.http_server import not_found
from posrecon.app.internal_topics import COMPACTED, create_topics_if_missing
from posrecon.app.outbox import Outbox
from posrecon.app.state_store import WATERMARK_KEY, pack_row, read_changelog, unpack_row
from posrecon.app.telemetry import count_batch_decisions
from posrecon.config import Settings, Topics
from posrecon.engine.batch_routing import BatchRouting
from posrecon.engine.batch_state import NO_WATERMARK, BatchSighting, RowKey
from posrecon.engine.batches import BatchLedger
from posrecon.engine.engine import ReconciliationEngine
from posrecon.engine.validation import check_settlement_batch
from posrecon.kafka.partitioner import partition_for
from posrecon.metrics import WorkerMetrics
from posrecon.serde.codec import DecodeError
from posrecon.serde.wire import codec_for

if TYPE_CHECKING:
    from posrecon.app.intake import Intake

log = logging.getLogger("posrecon.worker")

#: loop turns the batch stage's merge may wait for an owned task's input before taking the intake's batch (counted
#: in turns, ~50 ms each when idle, not wall clock: a frozen process must not find its wait over when it wakes)
MERGE_WAIT_TURNS = 100
NOTICE_ROW = "N"  # a BatchSighting on <app>-batch-sightings
WATERMARK_ROW = "W"  # ["W", source partition, watermark]


def batch_topics(app_id: str) -> tuple[str, str]:
    """(batch sightings repartition topic, batch-state changelog) topic names."""
    return f"{app_id}-batch-sightings", f"{app_id}-batch-changelog"


def encode_batch_key(key: RowKey) -> bytes:
    """A ledger row key as compact JSON ``["batch_id","notice_id"]`` (byte-stable for compaction: the bytes
    ``json.dumps`` gives, which every version wrote). Ids with nothing to escape (printable ASCII without quote
    or backslash: the usual ones) are put between the quotes directly, at a sixth of the cost."""
    batch_id, notice_id = key
    if _plain(batch_id) and _plain(notice_id):
        return f'["{batch_id}","{notice_id}"]'.encode()
    return json.dumps([batch_id, notice_id], separators=(",", ":")).encode()


def _plain(text: str) -> bool:
    """Does ``json.dumps`` give ``text`` between quotes unchanged?"""
    return text.isascii() and text.isprintable() and '"' not in text and "\\" not in text


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
        #: the compiled per-notice step (engine/batch_routing.py): it holds the owned ledgers and the ``active`` flag
        self.routing = BatchRouting(self._send_remote)
        #: False when the control records' topic does not exist (see setup): notices are not counted
        self.enabled = True
        self.owned: set[int] = set()  # batch partitions assigned (and restored)
        #: (batch partition elsewhere, owned order partition) -> the watermark last sent there
        self.carried: dict[tuple[int, int], int] = {}
        self.marks_written: dict[int, object] = {}  # batch partition -> its ledger's watermarks last written
        self.stuck_turns = 0  # loop turns in a row in which no record could be merged (see select)
        #: after an assignment: turns left to read the owned batch partitions' sightings that were in flight (see
        #: :meth:`select`); 0 once every owned partition of <app>-batch-sightings has been read to its end
        self.catching_up = 0
        self.control_codec = codec_for("SettlementBatch", settings.serde)
        self.record_codec = codec_for("BatchReconciliation", settings.serde, self.topics.batch_reconciled)

    @property
    def active(self) -> bool:
        """A batch record has been seen: from then on watermarks are carried (see the module doc)."""
        return self.routing.active

    @active.setter
    def active(self, value: bool) -> None:
        self.routing.active = value

    @property
    def partitions(self) -> int:
        """The batch partitions: the inputs' partition count (set up by :meth:`setup`)."""
        return self.routing.partitions

    @partitions.setter
    def partitions(self, partitions: int) -> None:
        self.routing.partitions = partitions

    @property
    def ledgers(self) -> dict[int, BatchLedger]:
        """Batch partition -> its ledger (the batches whose batch_id hashes to it), for the partitions owned."""
        return self.routing.ledgers

    @ledgers.setter
    def ledgers(self, ledgers: dict[int, BatchLedger]) -> None:
        self.routing.ledgers = ledgers

    # --- set-up and rebalance -------------------------------------------------------------------------

    def setup(self, admin: AdminClient, partitions: int, replication: int) -> list[str]:
        """Create the stage's internal topics; the topics to subscribe to. The control records' topic must
        have the inputs' partition count (co-located batch partitions); if it does not exist, the stage reads
        only notices."""
        self.partitions = partitions
        create_topics_if_missing(
            admin,
            {self.sightings_topic: {"retention.ms": str(7 * 24 * 3600 * 1000)}, self.changelog: COMPACTED},
            partitions,
            replication,
        )
        topic = admin.list_topics(timeout=10).topics.get(self.topics.batches)
        if topic is None or topic.error is not None:
            # no control record can reach this worker, so no batch can be decided: the stage is off (notices'
            # batch_ids are not counted, nothing is routed) and costs nothing (it cost a v1 mix whose notices
            # carry batch_ids a third of its throughput: docs/performance.md)
            self.enabled = False
            log.warning(
                "no control records topic: batches are not decided (create it, then restart the workers)",
                extra={"fields": {"topic": self.topics.batches}},
            )
            return [self.sightings_topic]
        if len(topic.partitions) != partitions:
            raise RuntimeError(
                f"{self.topics.batches} has {len(topic.partitions)} partitions but the input topics have "
                f"{partitions}: control records would not reach their batch's owner"
            )
        return [self.topics.batches, self.sightings_topic]

    def restore(self, client_config: Mapping[str, Any], partitions: list[TopicPartition]) -> int:
        """The ledgers of the assigned batch partitions, read back from the changelog; returns the batches."""
        self.owned = {tp.partition for tp in partitions if tp.topic == self.sightings_topic}
        self.ledgers = {}
        for q, entries in read_changelog(client_config, self.changelog, self.owned).items():
            ledger = self.ledgers[q] = BatchLedger(self.settings.rules, sources=self.partitions)
            rows = [unpack_row(value) for key, value in entries.items() if key != WATERMARK_KEY]
            marks = unpack_row(entries[WATERMARK_KEY]) if WATERMARK_KEY in entries else None
            if marks is None:
                ledger.load_rows(rows, NO_WATERMARK)
            else:
                ledger.load_rows(rows, marks["watermark"], {int(k): v for k, v in marks["sources"].items()})
            ledger.dirty = set()
        self.marks_written.clear()
        self.carried.clear()
        self.active = self.active or any(ledger.batches for ledger in self.ledgers.values())
        self.catching_up = MERGE_WAIT_TURNS * 10 if self.owned else 0
        return sum(len(ledger.batches) for ledger in self.ledgers.values())

    def revoke(self, partitions: list[int]) -> None:
        self.owned.difference_update(partitions)
        for q in partitions:
            self.ledgers.pop(q, None)

    def select(self, intake: Intake, batch: list[Any], limit: int, now: int) -> None:
        """Once batches are about, choose the batch so that the ledger sees what replay sees.

        Replay applies every record where it is in the input, and the ledger's watermark is the minimum over the
        order partitions' watermarks, read before each batch record. The intake merges each task's two inputs
        in timestamp order but lets tasks run ahead of each other, so a notice could meet another partition's
        watermark from records ingested after it. So the intake's choice goes back to the front of its queues
        and the batch is taken again by one timestamp merge over every owned task's queues and the control
        records' queues (:func:`merge_owned`); other workers' sightings go first (an independent stage, as card
        sightings). Nothing of this runs before the first batch record, unless a control-record partition may
        still hold one on the broker (:meth:`Intake.holds_back`: not read to its end yet): at the start of a
        pre-loaded backlog, the first batches chosen task by task ran one partition hours ahead of the others
        before any control record was read (a late notice counted before its batch was decided:
        tests/integration/app/test_batches_backlog.py)."""
        queues = intake.queues
        if not self.active and not any(
            (waiting := queues.get((topic, p))) is not None
            and (waiting.records or (topic == self.topics.batches and intake.holds_back(waiting, now)))
            for topic in self.inputs
            for p in self.owned
        ):
            return
        routed: list[Any] = []
        for q in sorted(self.owned):
            queue = queues.get((self.sightings_topic, q))
            while queue is not None and queue.records and len(routed) < limit // 2:
                routed.append(queue.records.popleft())
        if self.catching_up:
            caught_up = all(
                (queue := queues.get((self.sightings_topic, q))) is None or (queue.at_end and not queue.records)
                for q in self.owned
            )
            self.catching_up = 0 if caught_up else self.catching_up - 1
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
        # after an assignment, first the sightings in flight: a batch partition owned elsewhere until now may
        # hold this worker's own earlier notices, which its books (and so its watermarks) are past
        merged = (
            []
            if self.catching_up
            else merge_owned(intake, self.topics, self.owned, limit - len(routed) - len(others), now)
        )
        if merged or not chosen or self.catching_up:
            self.stuck_turns = 0
        elif self.stuck_turns >= MERGE_WAIT_TURNS:
            merged = [msg for msgs in chosen.values() for msg in msgs]  # backstop: the intake's choice after all
            for key, msgs in chosen.items():
                for _ in msgs:
                    queues[key].records.popleft()
            log.warning(
                "batch stage: a task's input stays unknown; taking the intake's batch",
                extra={"fields": {"turns": self.stuck_turns}},
            )
            self.stuck_turns = 0
        else:
            self.stuck_turns += 1
        batch[:] = [*routed, *others, *merged]

    # --- records in -----------------------------------------------------------------------------------

    def _send_remote(self, engine: ReconciliationEngine, q: int, sighting: BatchSighting) -> None:
        """A sighting for batch partition ``q``, owned elsewhere (:meth:`BatchRouting.route`): the owned
        partitions' watermarks as they are at this notice, then the notice (replay reads every partition's
        watermark before counting a notice)."""
        self._carry(engine, q)
        self.outbox.send(self.sightings_topic, sighting.batch_id.encode(), pack_row([NOTICE_ROW, *sighting]), None, q)

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
        ingest_time = msg.timestamp()[1]
        if check_settlement_batch(record, ingest_time, self.settings.rules) is not None:
            # invalid: the engine raises its INVALID_EVENT alert (and says why) as for every invalid record
            rejection = engine.on_settlement_batch(record, msg.partition() or 0, ingest_time, now)
            assert rejection is not None
            self.outbox.dead_letter(msg, rejected(rejection))
            return
        ledger = self.ledgers.get(msg.partition() or 0)
        if ledger is not None:  # (always: control records are read from owned batch partitions only)
            self.routing.sync(engine, ledger, now)
            ledger.on_control(record, now=now)

    def _routed_row(self, msg: Message, engine: ReconciliationEngine, now: int) -> None:
        ledger = self.ledgers.get(msg.partition() or 0)
        if ledger is None:
            return
        try:
            row = unpack_row(msg.value() or b"")
            if row[0] == WATERMARK_ROW:
                ledger.advance(int(row[1]), int(row[2]), now)
                return
            sighting = BatchSighting(*row[1:])
        except BAD_SIGHTING_ROW as exc:
            self.outbox.dead_letter(msg, bad_sighting(exc))
            return
        self.routing.sync(engine, ledger, now)
        ledger.advance(sighting.source_partition, sighting.source_watermark, now)
        ledger.on_notice(sighting, now)

    # --- the end of a batch ---------------------------------------------------------------------------

    def prepare(self, engine: ReconciliationEngine, now: int) -> None:
        """Into the outbox: the owned order partitions' watermarks (in place, and to the other batch
        partitions), the ledger's records and alerts, and its changelog rows."""
        if not self.active:
            return
        self._carry_watermarks(engine)
        for q, ledger in self.ledgers.items():
            self.routing.sync(engine, ledger, now)
            self._send_outputs(ledger)
            self._write_changelog(q, ledger)

    def _send_outputs(self, ledger: BatchLedger) -> None:
        records, alerts = ledger.take()
        outbox = self.outbox
        if records:
            for rec in records:
                outbox.send(self.topics.batch_reconciled, rec["batch_id"].encode(), self.record_codec.encode(rec))  # type: ignore[arg-type]
            count_batch_decisions(records, outbox.counts, self.metrics)
        for alert in alerts:
            outbox.send_alert(alert)

    def _carry_watermarks(self, engine: ReconciliationEngine) -> None:
        for q in range(self.partitions):
            if q not in self.owned:
                self._carry(engine, q)

    def _carry(self, engine: ReconciliationEngine, q: int) -> None:
        """To batch partition ``q`` (owned elsewhere): the owned order partitions' watermarks that moved since
        they were last sent there."""
        send, topic, carried = self.outbox.send, self.sightings_topic, self.carried
        for p, book in engine.books.items():
            watermark = book.watermark
            if watermark > carried.get((q, p), NO_WATERMARK):
                carried[q, p] = watermark
                send(topic, None, pack_row([WATERMARK_ROW, p, watermark]), None, q)

    def _write_changelog(self, q: int, ledger: BatchLedger) -> None:
        send, changelog = self.outbox.send, self.changelog
        dirty = ledger.dirty
        if dirty:
            for key in dirty:
                row = ledger.row(key)
                send(changelog, encode_batch_key(key), None if row is None else pack_row(row), None, q)
            dirty.clear()
        marks = (ledger.watermark, tuple(sorted(ledger.source_watermarks.items())))
        if marks != self.marks_written.get(q):
            self.marks_written[q] = marks
            value = pack_row(
                {"watermark": ledger.watermark, "sources": {str(k): v for k, v in ledger.source_watermarks.items()}}
            )
            send(changelog, WATERMARK_KEY, value, None, q)

    # --- operators ------------------------------------------------------------------------------------

    def view(self, batch_id: str) -> tuple[int, dict[str, Any]]:
        """``GET /batches/{id}``: (HTTP status, body)."""
        partition = partition_for(batch_id.encode(), self.partitions) if self.partitions else 0
        if partition not in self.owned:
            return not_found("batch partition not owned by this worker", "batch_id", batch_id, partition)
        ledger = self.ledgers.get(partition)
        view = None if ledger is None else ledger.view(batch_id)
        if view is None:
            error = "batch not in state (unknown, or evicted after retention)"
            return not_found(error, "batch_id", batch_id, partition)
        assert ledger is not None
        return 200, {**view, "partition": partition, "watermark": ledger.watermark}


def merge_owned(intake: Intake, topics: Topics, owned: set[int], limit: int, now: int) -> list[Any]:
    """Up to ``limit`` records of the owned tasks' queues and the control records' queues, in timestamp
    order (each queue's own order kept); stops where one of them is empty and its next record may be earlier
    than the others': records on the broker, or (a task's side) records on the task's other side that the
    task's own merge would not let pass it (:meth:`Intake.holds_back`). Passing every empty side that had
    once reached its end, a task's settlements went ahead of the approvals the producer was still sending
    (tests/chaos/test_feed_race); passing an empty control-record queue with records still on the broker, a
    pre-loaded backlog's control record came after notices that replay counts after it (the batch decided
    against one notice more or less: tests/integration/app/test_batches_backlog.py)."""
    queues = intake.queues
    tasks = [
        queue
        for p in sorted(intake.tasks)
        for topic in (topics.terminal, topics.settlement)
        if (queue := queues.get((topic, p))) is not None
    ]
    controls = [queue for q in sorted(owned) if (queue := queues.get((topics.batches, q))) is not None]
    sources = [*tasks, *controls]
    if any(intake.holds_back(queue, now) for queue in sources):
        return []
    heap = [(queue.records[0].timestamp()[1], i) for i, queue in enumerate(sources) if queue.records]
    heapq.heapify(heap)
    out: list[Any] = []
    while heap and len(out) < limit:
        _, i = heapq.heappop(heap)
        queue = sources[i]
        out.append(queue.records.popleft())
        if queue.records:
            heapq.heappush(heap, (queue.records[0].timestamp()[1], i))
        elif intake.holds_back(queue, now):
            break
    return out
