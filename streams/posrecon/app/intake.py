"""The worker's input side: consumed records into per-partition queues, the next batch chosen from them in
timestamp order per task (app/merge.py), flow control, and when an input counts as caught up or idle
(:class:`Positions`: the consumer's positions against the broker's log).

A task is partition p of both input topics; a card partition is partition q of ``<app>-card-sightings``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, OFFSET_INVALID, Consumer, KafkaException, Message
from confluent_kafka import TopicPartition as TP

from posrecon.app.end_offsets import EndOffsets
from posrecon.app.errors import ConsumerAction, on_consumer_error
from posrecon.app.merge import TaskMerger, TaskQueue
from posrecon.app.telemetry import wall_ms
from posrecon.config import Topics
from posrecon.engine.cards import CardIndex
from posrecon.engine.engine import NO_WATERMARK, ReconciliationEngine
from posrecon.engine.pan import scrub_text
from posrecon.metrics import WorkerMetrics

if TYPE_CHECKING:
    from posrecon.app.worker import WorkerOptions

log = logging.getLogger("posrecon.worker")

Key = tuple[str, int]


class Positions:
    """Where each input partition is read to, against the broker's log: a backlog still to fetch, a fresh
    look at the end (caught up?), records lost to retention or truncation, where a partition resumes."""

    #: an end offset answer younger than this counts as a fresh look at the broker (see caught_up)
    END_OFFSET_FRESH_MS = 500
    #: how long before an idle wait ends the look at the broker is asked for (see ask_end)
    ASK_AHEAD_MS = 100

    def __init__(
        self,
        options: WorkerOptions,
        sightings_topic: str,
        metrics: WorkerMetrics,
        queues: dict[Key, TaskQueue],
        skip_to: Callable[[Key, int], None],
    ) -> None:
        self.options = options
        self.sightings_topic = sightings_topic
        self.metrics = metrics
        self.queues = queues  # Intake.queues
        self.skip_to = skip_to  # Transaction.skip_to: an offset to commit past records that were lost
        #: per partition, the offset it was assigned at after the restore (OFFSET_BEGINNING where the group
        #: had committed nothing): where a partition resumes that has not delivered a record since
        self.resumed_from: dict[Key, int] = {}
        self.consumer: Consumer | None = None  # set up with the Kafka clients, like end_offsets
        self.end_offsets: EndOffsets

    def ask_end(self, queue: TaskQueue) -> None:
        """A task waits for this (empty, apparently caught-up) side: ask for its end offset once the wait is
        within ``ASK_AHEAD_MS`` of its end, so that a fresh answer is there when the idle wait ends
        (:meth:`caught_up`). Asked only then, the answer took one or two more loop turns: the last records
        before a lull waited ~100-300 ms longer (make bench: the last second of traffic had p50 527 ms against
        ~150 ms before)."""
        key = (queue.topic, queue.partition)
        due = self._look_due(queue)
        known = self.end_offsets.known.get(key)
        if due is not None and wall_ms() >= due and (known is None or known[1] < due):
            self.end_offsets.want(key)

    def _look_due(self, queue: TaskQueue) -> int | None:
        """The earliest time a look at the broker counts for this wait: ``ASK_AHEAD_MS`` before it ends. An
        answer from the start of a long wait says nothing about records produced during it (a 2 s wait passed
        on a look 1.9 s old, after the producer's next burst was on the broker: tests/chaos/test_feed_race)."""
        if queue.waiting_since is None:
            return None
        return queue.waiting_since + max(0, self.options.max_task_idle_ms - self.ASK_AHEAD_MS)

    def caught_up(self, queue: TaskQueue) -> bool:
        """A fresh look at the broker: has the consumer really read everything of this partition?

        Only an end offset asked for near the end of the wait (:meth:`_look_due`) and within the last
        ``END_OFFSET_FRESH_MS`` counts; until one has arrived the answer is "not yet" and the task keeps
        waiting. The question goes to an admin client, off the loop (:class:`EndOffsets`). The window is
        not the idle wait itself: an answer takes a loop turn or two (a commit each), so with a 100 ms idle wait
        no answer was ever young enough and every wait ended in the synchronous fallback below (make bench:
        deadline -> alert 4.9 s instead of 0.6 s, latency p99 1.2 s).
        """
        consumer = self.consumer
        assert consumer is not None
        now = wall_ms()
        fresh_ms = max(self.options.max_task_idle_ms, self.END_OFFSET_FRESH_MS)
        asked_after = now - self.END_OFFSET_FRESH_MS
        due = self._look_due(queue)
        if due is not None:
            asked_after = max(asked_after, due)
        tp = TP(queue.topic, queue.partition)
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

    def refresh_backlog(self) -> None:
        """For empty input queues: are there records on the broker we have not fetched yet?"""
        consumer = self.consumer
        assert consumer is not None
        for (topic, partition), queue in self.queues.items():
            if queue.records or queue.at_end or topic == self.sightings_topic:
                continue
            tp = TP(topic, partition)
            position = consumer.position([tp])[0].offset
            high = consumer.get_watermark_offsets(tp, cached=True)[1]
            queue.backlog = position < 0 or high < 0 or position < high

    def records_lost(self, msg: Message) -> None:
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
            start, end = consumer.get_watermark_offsets(TP(topic, partition), timeout=10, cached=False)
        except KafkaException:
            start = end = -1
        truncated = wanted is not None and 0 <= end < wanted
        lost = start - wanted if wanted is not None and wanted >= 0 and start > wanted else 0
        self.metrics.input_records_lost.labels(topic).inc(lost)
        log.error(
            "input offset out of range: the log was truncated; resuming at the log end"
            if truncated
            else "input records were deleted before they were processed; resuming at the log start",
            extra={
                "fields": {
                    "topic": topic,
                    "partition": partition,
                    "next_offset": wanted,
                    "log_start": start,
                    "log_end": end,
                    "records_lost": lost,
                    "error": scrub_text(str(msg.error())),
                }
            },
        )
        resume_at = OFFSET_END if truncated else OFFSET_BEGINNING
        resume_offset = end if truncated else start
        if resume_offset >= 0:  # committed with the next transaction, even if no record of it comes
            self.skip_to((topic, partition), resume_offset)
        # the partition's fetcher has stopped (auto.offset.reset=error) and cannot be seek()ed: assign again,
        # everything else at its position, or where it was assigned after the restore if it has delivered
        # nothing yet. Not INVALID: that means "the committed offset", and a partition the group never
        # committed (a card-sightings partition nobody wrote to) then fails with "no previously committed
        # offset" -- and, assigned INVALID again here, failed forever. The pauses of flow control re-applied.
        assignment = consumer.assignment()
        positions = consumer.position(assignment)
        lost_tp = (topic, partition)
        self.resumed_from[lost_tp] = resume_at
        consumer.assign(
            [
                TP(
                    tp.topic,
                    tp.partition,
                    resume_at if (tp.topic, tp.partition) == lost_tp else self.resume_position(tp),
                )
                for tp in positions
            ]
        )
        paused = [TP(q.topic, q.partition) for q in self.queues.values() if q.paused]
        if paused:
            consumer.pause(paused)

    def resume_position(self, tp: TP) -> int:
        """Where ``tp`` goes on from: its position (an offset, or the logical one it was last assigned at),
        or where it was assigned at after the restore if its position is INVALID (nothing delivered yet)."""
        if tp.offset != OFFSET_INVALID:
            return int(tp.offset)
        return self.resumed_from.get((tp.topic, tp.partition), OFFSET_BEGINNING)

    def local_view(self, queue: TaskQueue) -> tuple[int, int, int]:
        """(position, low, high) of the queue's partition as the consumer last saw them (no broker request);
        -1 each when unknown."""
        consumer = self.consumer
        assert consumer is not None
        tp = TP(queue.topic, queue.partition)
        try:
            low, high = consumer.get_watermark_offsets(tp, cached=True)
            return consumer.position([tp])[0].offset, low, high
        except KafkaException:
            return -1, -1, -1


class Intake:
    """The input queues and the choice of each batch from them."""

    #: the most of one loop turn that counts as waiting for input (more is a stall: see TaskMerger.discount)
    STEP_CREDIT_MS = 250
    #: records asked of the consumer per consume() call (a turn makes several while the input is behind)
    CONSUME_CHUNK = 2000

    def __init__(
        self,
        options: WorkerOptions,
        topics: Topics,
        sightings_topic: str,
        metrics: WorkerMetrics,
        cards: dict[int, CardIndex],
        skip_to: Callable[[Key, int], None],
    ) -> None:
        self.options = options
        self.topics = topics
        self.sightings_topic = sightings_topic
        self.metrics = metrics
        self.cards = cards  # card partitions owned (shared with the worker): their queues are served
        self.queues: dict[Key, TaskQueue] = {}
        self.tasks: set[int] = set()
        self.last_activity: dict[int, int] = {}
        self.merger = TaskMerger(options.max_task_idle_ms)
        self.turn = 0  # rotates which task (and card partition) a batch serves first (see select)
        self.input_pauses = 0
        self.positions = Positions(options, sightings_topic, metrics, self.queues, skip_to)
        self.consumer: Consumer | None = None
        self._last_step_ms = wall_ms()

    def attach(self, consumer: Consumer | None, end_offsets: EndOffsets | None = None) -> None:
        """The Kafka clients, once set up (None once closed)."""
        self.consumer = self.positions.consumer = consumer
        if end_offsets is not None:
            self.positions.end_offsets = end_offsets

    def credit_stall(self, now: int) -> None:
        """Take a loop turn longer than ``STEP_CREDIT_MS`` (a process stall, or a slow turn) out of every wait:
        that time was not spent waiting for input."""
        gap = now - self._last_step_ms
        self._last_step_ms = now
        if gap > self.STEP_CREDIT_MS:
            stalled = gap - self.STEP_CREDIT_MS
            TaskMerger.discount(self.queues.values(), stalled)
            for p in self.last_activity:
                self.last_activity[p] += stalled

    def fetch(self, consumer: Consumer, timeout: float) -> int:
        """Take in what the consumer has, up to a batch (several consume calls when the input is behind: a commit
        costs round trips, not CPU, and fixed 2,000-record turns capped the worker at 2,000 records per commit),
        then apply flow control. Returns how many messages there were."""
        fetched = self.take_in(consumer.consume(self.CONSUME_CHUNK, timeout=timeout))
        taken = fetched
        while fetched == self.CONSUME_CHUNK and taken < self.options.batch_max_records:
            fetched = self.take_in(consumer.consume(self.CONSUME_CHUNK, timeout=0))
            taken += fetched
        self.positions.refresh_backlog()
        self.flow_control()
        return taken

    def take_in(self, messages: list[Message]) -> int:
        """Put consumed records into their task queues; handle end-of-partition and consumer errors.
        Returns how many messages (records and events) there were."""
        queues = self.queues
        for msg in messages:
            err = msg.error()
            queue = queues.get((msg.topic(), msg.partition()))  # type: ignore[arg-type]
            if err is not None:
                action = on_consumer_error(err)
                if action is ConsumerAction.END_OF_PARTITION:
                    if queue is not None:
                        queue.at_end = True
                        queue.end_offset = msg.offset() or 0
                elif action is ConsumerAction.RECORDS_LOST:
                    self.positions.records_lost(msg)
                elif action is ConsumerAction.STOP:
                    raise KafkaException(err)
                else:
                    log.warning("consumer error", extra={"fields": {"error": str(err)}})
                continue
            if queue is None:  # revoked meanwhile
                continue
            queue.records.append(msg)
            queue.at_end = False
            queue.waiting_since = None
        return len(messages)

    def other_side(self, topic: str, partition: int) -> TaskQueue | None:
        """The queue of the task's other input (None for the card-sightings topic)."""
        if topic == self.topics.terminal:
            return self.queues.get((self.topics.settlement, partition))
        if topic == self.topics.settlement:
            return self.queues.get((self.topics.terminal, partition))
        return None

    def flow_control(self) -> None:
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
        pause: list[TP] = []
        resume: list[TP] = []
        for (topic, partition), queue in self.queues.items():
            depth = len(queue.records)
            other = self.other_side(topic, partition)
            # a task waiting for its other side cannot use more of this one: stop fetching it, so that
            # librdkafka's single prefetch queue makes room for the records the task waits for
            blocked = other is not None and depth > low and not other.records and other.backlog and not other.at_end
            if not queue.paused and (depth > high or blocked):
                queue.paused = True
                pause.append(TP(topic, partition))
            elif queue.paused and depth < low:
                queue.paused = False
                resume.append(TP(topic, partition))
        if pause:
            consumer.pause(pause)
            self.input_pauses += len(pause)
            self.metrics.input_pauses.inc(len(pause))
        if resume:
            consumer.resume(resume)

    def resume_paused(self, consumer: Consumer, keys: Iterable[Key] | None = None) -> None:
        """Resume the paused partitions (of ``keys``; all when None): before a rewind or a revoke."""
        queues = self.queues
        paused = [TP(*key) for key in (queues if keys is None else keys) if (q := queues.get(key)) and q.paused]
        if paused:
            consumer.resume(paused)

    def forget(self, keys: Iterable[Key]) -> None:
        """Partitions revoked: their queues and what was known about them go."""
        keys = list(keys)
        self.positions.end_offsets.forget(keys)
        for key in keys:
            self.positions.resumed_from.pop(key, None)
            self.queues.pop(key, None)
            if key[0] != self.sightings_topic:
                self.tasks.discard(key[1])

    def select(self, now: int) -> list[Message]:
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
        self.turn += 1
        self._take_sightings(out, limit // 2)
        positions = self.positions
        for p in self._rotation(self.tasks):
            first = self.queues.get((self.topics.terminal, p))
            second = self.queues.get((self.topics.settlement, p))
            if first is None or second is None:
                continue
            before = len(out)
            self.merger.take(first, second, limit - len(out), now, out, positions.caught_up, positions.ask_end)
            if len(out) > before:
                self.last_activity[p] = now
            if len(out) >= limit:
                return out
        self._take_sightings(out, limit)
        return out

    def holds_back(self, queue: TaskQueue, now: int) -> bool:
        """Must a merge over several tasks (app/batch_stage.py) stop at this queue? When it is empty and its
        next record may be earlier than the others': records on the broker (not at its end, a backlog as far as
        the consumer's cached log end tells), or records on the task's other side that the task's own merge
        would not let pass it yet (TaskMerger.may_pass: its idle wait, a fresh look at the broker)."""
        if queue.records:
            return False
        if not queue.at_end and queue.backlog:
            return True
        other = self.other_side(queue.topic, queue.partition)
        return (
            other is not None
            and bool(other.records)
            and not self.merger.may_pass(queue, now, self.positions.caught_up, self.positions.ask_end)
        )

    def _rotation(self, partitions: Iterable[int]) -> list[int]:
        """``partitions`` in order, starting from the one this batch serves first (see :meth:`select`)."""
        ordered = sorted(partitions)
        start = self.turn % len(ordered) if ordered else 0
        return ordered[start:] + ordered[:start]

    def _take_sightings(self, out: list[Any], limit: int) -> None:
        for q in self._rotation(self.cards):
            queue = self.queues.get((self.sightings_topic, q))
            while queue is not None and queue.records and len(out) < limit:
                out.append(queue.records.popleft())

    def idle_partitions(self, engine: ReconciliationEngine, now: int) -> list[int]:
        """Tasks with nothing to read on either side for ``idle_advance_after_ms``, whose watermark may follow
        the wall clock (minus ``wall_clock_lag_ms``)."""
        idle = []
        options = self.options
        for p in self.tasks:
            first = self.queues.get((self.topics.terminal, p))
            second = self.queues.get((self.topics.settlement, p))
            if first is None or second is None or first.records or second.records:
                continue
            if first.at_end and second.at_end and now - self.last_activity.get(p, now) >= options.idle_advance_after_ms:
                lag = options.wall_clock_lag_ms or 0
                watermark = engine.book(p).watermark
                # a partition that never saw a record keeps no watermark: a backlog may still be on its way
                if (
                    NO_WATERMARK < watermark < now - lag - options.idle_advance_after_ms
                    and self.positions.caught_up(first)
                    and self.positions.caught_up(second)
                ):
                    idle.append(p)
        return sorted(idle)
