"""The worker's metrics and status logs: per-batch counts applied once the batch's transaction has committed,
gauges every few seconds, and the DEBUG status of every queue.

Counting is per batch, not per record: the loop adds to a plain dict (one ``labels()`` call per record cost
throughput); the increments reach Prometheus only once their transaction has committed, and are dropped with
an aborted one (the batch is processed again). Histograms are observed when the batch's outputs are made
(app/outbox.py), as v1 did for the settlement lag: an aborted batch observes its values twice.

The keys of the count dict: ``("events", source, type)``, ``("reconciled", outcome)``, ``("alerts", kind,
severity, status)``, ``("deadletters", reason)``, ``("redeliveries",)``, ``("batches", status)``,
``("batch_controls",)`` (counted as events of source ``batch``, type ``CONTROL``), and the money
sums ``("matched_settled", currency)`` / ``("matched_fee", currency)`` (incremented by the amount).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException

from posrecon.engine.decision_money import DecisionMoney
from posrecon.engine.engine import ReconciliationEngine
from posrecon.engine.model import BatchReconciliation, BatchStatus
from posrecon.metrics import PENDING_AGE_BUCKETS, WorkerMetrics, observe_all

if TYPE_CHECKING:
    from posrecon.app.intake import Intake
    from posrecon.app.transaction import PendingCommit

log = logging.getLogger("posrecon.worker")


def wall_ms() -> int:
    """Wall-clock time in ms: the clock of event timestamps, watermarks and input waits."""
    return time.time_ns() // 1_000_000


_BALANCED = BatchStatus.BALANCED._value_
#: the bounded pending-age buckets in ms (the last bucket, ``None``, takes the rest)
_PENDING_BOUNDS_MS = [bound * 1000 for _, bound in PENDING_AGE_BUCKETS if bound is not None]


def _add(counts: dict[tuple[str, ...], int], label: tuple[str, ...], n: int) -> None:
    counts[label] = counts.get(label, 0) + n


def observe_money(metrics: WorkerMetrics, money: DecisionMoney) -> None:
    """The histograms of a batch's decisions (engine/decision_money.py: settlement lag, fee variance, refund
    ratio); their lists emptied."""
    observe_all(metrics.settlement_lag, money.lags)
    observe_all(metrics.fee_variance, money.variances)
    observe_all(metrics.refund_ratio, money.ratios)
    money.lags.clear()
    money.variances.clear()
    money.ratios.clear()


def count_batch_decisions(
    records: list[BatchReconciliation], counts: dict[tuple[str, ...], int], metrics: WorkerMetrics
) -> None:
    """Batch decisions by status, and how far each INCOMPLETE / MISMATCH decision is off in gross (minor units)."""
    unbalanced: list[float] = []
    for rec in records:
        status = rec["status"]
        _add(counts, ("batches", status), 1)
        if status != _BALANCED:
            unbalanced.append(abs(rec["expected_gross_minor"] - rec["received_gross_minor"]))
    observe_all(metrics.batch_unbalanced, unbalanced)


def observe_resolve_latencies(metrics: WorkerMetrics, latencies: list[tuple[str, int]] | None) -> None:
    """Time to resolve (seconds of event time) per alert kind, from the engine's ``(kind, ms)`` pairs; emptied."""
    if not latencies:
        return
    by_kind: dict[str, list[float]] = {}
    for kind, ms in latencies:
        by_kind.setdefault(kind, []).append(max(ms, 0) / 1000)
    for kind, seconds in by_kind.items():
        observe_all(metrics.time_to_resolve.labels(kind), seconds)
    latencies.clear()


class Telemetry:
    #: a transaction commit slower than this is logged as a warning (every one at DEBUG)
    SLOW_COMMIT_S = 1.0
    #: seconds between two gauge updates (and status logs)
    GAUGES_EVERY_S = 5

    def __init__(self, metrics: WorkerMetrics) -> None:
        self.metrics = metrics
        #: metric increments of the current batch, applied once per label set after the commit
        self.counts: dict[tuple[str, ...], int] = {}
        #: event timestamps of the current batch's sampled records (processing latency, after the commit)
        self.latency_samples: list[int] = []
        self.processed = 0  # input records committed
        self._last_gauges = 0.0

    def take_batch(self) -> tuple[dict[tuple[str, ...], int], list[int]]:
        """The current batch's counts and latency samples, handed over (the containers stay, emptied)."""
        counts, samples = dict(self.counts), list(self.latency_samples)
        self.counts.clear()
        self.latency_samples.clear()
        return counts, samples

    def committed(self, pending: PendingCommit) -> None:
        m = self.metrics
        m.transactions.labels("committed").inc()
        m.batch_records.observe(pending.records)
        seconds = pending.seconds
        m.commit_seconds.observe(seconds)
        fields = {"fields": {"commit_s": round(seconds, 3), "records": pending.records}}
        if seconds > self.SLOW_COMMIT_S:
            log.warning("slow transaction commit", extra=fields)
        elif log.isEnabledFor(logging.DEBUG):
            log.debug("transaction committed", extra=fields)
        self.flush_counts(pending.counts)
        self.processed += pending.records
        done = wall_ms()
        observe_all(m.processing_latency, [max(0, done - ts) / 1000 for ts in pending.latency_samples])

    def aborted(self) -> None:
        self.metrics.transactions.labels("aborted").inc()

    def flush_counts(self, counts: dict[tuple[str, ...], int]) -> None:
        m = self.metrics
        for label, n in counts.items():
            name = label[0]
            if name == "events":
                m.events.labels(label[1], label[2]).inc(n)
            elif name == "reconciled":
                m.reconciled.labels(label[1]).inc(n)
            elif name == "alerts":
                m.alerts.labels(label[1], label[2], label[3]).inc(n)
            elif name == "deadletters":
                m.deadletters.labels(label[1]).inc(n)
            elif name == "redeliveries":
                m.redeliveries.inc(n)
            elif name == "batches":
                m.batches.labels(label[1]).inc(n)
            elif name == "batch_controls":  # settlement batch control records (app/batch_stage.py)
                m.events.labels("batch", "CONTROL").inc(n)
            elif name == "matched_settled":
                m.matched_settled.labels(label[1]).inc(n)
            elif name == "matched_fee":
                m.matched_fees.labels(label[1]).inc(n)

    # --- every few seconds ------------------------------------------------------------------------------

    def report(self, engine: ReconciliationEngine, consumer: Consumer | None, intake: Intake, now: int) -> None:
        """Gauges, waiting tasks and (at DEBUG) the queues' status, at most every ``GAUGES_EVERY_S``."""
        if time.monotonic() - self._last_gauges <= self.GAUGES_EVERY_S:
            return
        self.update_gauges(engine, consumer, intake)
        self.report_waiting(intake, now)
        if log.isEnabledFor(logging.DEBUG):
            self.log_status(consumer, intake, now)

    def update_gauges(self, engine: ReconciliationEngine, consumer: Consumer | None, intake: Intake) -> None:
        self._last_gauges = time.monotonic()
        m = self.metrics
        now = wall_ms()
        m.open_orders.set(engine.open_orders())
        counts = [0] * len(PENDING_AGE_BUCKETS)
        for p, book in engine.books.items():
            if book.watermark > 0:
                m.watermark_lag.labels(str(p)).set(max(0, now - book.watermark) / 1000)
            book.count_awaiting_settlement(_PENDING_BOUNDS_MS, counts)
        for (name, _), count in zip(PENDING_AGE_BUCKETS, counts, strict=True):
            m.pending_settlements.labels(name).set(count)
        if consumer is None:
            return
        try:
            assignment = consumer.assignment()
            for tp in consumer.position(assignment):
                low, high = consumer.get_watermark_offsets(tp, cached=True)
                # a partition that has delivered nothing yet (an empty card-sightings partition) is behind by
                # what lies after where it was assigned at
                at = intake.positions.resume_position(tp)
                at = low if at == OFFSET_BEGINNING else at
                if at >= 0 and high >= 0:
                    m.consumer_lag.labels(tp.topic, str(tp.partition)).set(max(0, high - at))
        except KafkaException:
            pass

    @staticmethod
    def report_waiting(intake: Intake, now: int) -> None:
        """Log the tasks that have waited more than 5 s for one of their inputs (an on-call clue: a stuck
        producer, an input transaction left open, or a partition that fell far behind the other)."""
        for queue in intake.queues.values():
            other = intake.other_side(queue.topic, queue.partition)
            if other is None or not other.records or queue.records:
                continue  # not an input, or the task is not blocked on this side
            if queue.waiting_since is None or now - queue.waiting_since < 5_000:
                continue
            position, _, high = intake.positions.local_view(queue)
            fields = {
                "topic": queue.topic,
                "partition": queue.partition,
                "waited_ms": now - queue.waiting_since,
                "at_end": queue.at_end,
                "end_offset": queue.end_offset,
                "backlog": queue.backlog,
                "paused": queue.paused,
                "position": position,
                "cached_high": high,
            }
            log.info("task waiting for input", extra={"fields": fields})

    def log_status(self, consumer: Consumer | None, intake: Intake, now: int) -> None:
        """Every queue's state, every 5 s at DEBUG (``--log-level DEBUG``): for diagnosing a task that is stuck."""
        assert consumer is not None
        queues = []
        for queue in intake.queues.values():
            position, low, high = intake.positions.local_view(queue)
            queues.append(
                [
                    queue.topic.rsplit(".", 1)[0],
                    queue.partition,
                    len(queue.records),
                    queue.at_end,
                    queue.end_offset,
                    queue.backlog,
                    queue.paused,
                    position,
                    low,
                    high,
                    None if queue.waiting_since is None else now - queue.waiting_since,
                ]
            )
        fields = {"assignment": len(consumer.assignment()), "processed": self.processed, "queues": queues}
        log.debug("worker status", extra={"fields": fields})
