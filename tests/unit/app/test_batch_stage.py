"""The live batch stage (app/batch_stage.py) without a broker: notices routed by batch_id (counted in place
when the batch partition is owned, else a row on ``<app>-batch-sightings`` after the owned partitions'
watermarks), the batch chosen in timestamp order once batches are about (and untouched before), the ledger's
outputs keyed by batch_id, its changelog rows, and ``GET /batches/{id}``."""

from __future__ import annotations

from typing import Any

from msgkit import StubMessage
from posrecon.app.batch_stage import NOTICE_ROW, WATERMARK_ROW, BatchStage, encode_batch_key
from posrecon.app.intake import Intake
from posrecon.app.merge import TaskQueue
from posrecon.app.ops_api import OpsApi
from posrecon.app.outbox import Outbox
from posrecon.app.state_store import WATERMARK_KEY, unpack_row
from posrecon.app.worker import WorkerOptions
from posrecon.config import Settings
from posrecon.engine.batches import BatchLedger, BatchSighting
from posrecon.engine.engine import ReconciliationEngine
from posrecon.kafka.partitioner import partition_for
from posrecon.metrics import WorkerMetrics

PARTITIONS = 4
T0 = 1_767_225_600_000


def Rec(topic: str, partition: int, ts: int) -> StubMessage:
    return StubMessage(topic_name=topic, partition_no=partition, ts=ts)


def _stage(owned: set[int]) -> tuple[BatchStage, Outbox, ReconciliationEngine]:
    settings = Settings()
    outbox = Outbox(settings, ("app-changelog", "app-card-sightings", "app-cards"), {}, {}, WorkerMetrics())
    stage = BatchStage(settings, "app", outbox, WorkerMetrics())
    stage.partitions = outbox.partitions = PARTITIONS
    stage.owned = set(owned)
    engine = ReconciliationEngine(settings.rules, PARTITIONS, collect_batch_sightings=True)
    for q in owned:
        ledger = stage.ledgers[q] = BatchLedger(settings.rules, sources=PARTITIONS)
        ledger.dirty = set()
    return stage, outbox, engine


def _batch_on(q: int) -> str:
    return next(b for b in (f"bat-{i}" for i in range(1000)) if partition_for(b.encode(), PARTITIONS) == q)


def _notice(engine: ReconciliationEngine, batch_id: str, i: int, partition: int, amount: int = 1000) -> None:
    record: Any = {
        "notice_id": f"n-{i}",
        "order_id": f"o-{i}",
        "merchant_id": "m1",
        "status": "SETTLED",
        "amount_minor": amount,
        "currency": "EUR",
        "settled_at": T0 + i,
        "batch_id": batch_id,
        "fee_minor": 10,
        "capture_seq": 1,
        "capture_count": 1,
    }
    assert engine.on_settlement_notice(record, partition, None, T0) is None


def _control(batch_id: str, count: int, gross: int, fee: int) -> Any:
    return {
        "batch_id": batch_id,
        "merchant_id": "m1",
        "currency": "EUR",
        "notice_count": count,
        "gross_amount_minor": gross,
        "fee_amount_minor": fee,
        "closed_at": T0 + 10,
    }


def test_a_notice_of_an_owned_batch_partition_is_counted_in_place() -> None:
    stage, outbox, engine = _stage(owned={0, 1, 2, 3})
    batch_id = _batch_on(2)
    _notice(engine, batch_id, 1, partition=0)
    stage.routing.route(engine, T0)
    assert outbox.rows == [] and engine.batch_sightings == []
    for p in range(PARTITIONS):  # notice and control record are held until every source's watermark passes them
        stage.ledgers[2].advance(p, T0 + 10)
    stage.ledgers[2].on_control(_control(batch_id, 1, 1000, 10), now=T0)
    stage.prepare(engine, T0)
    topics = [row[0] for row in outbox.rows]
    assert topics.count(outbox.topics.batch_reconciled) == 1
    [record] = [row for row in outbox.rows if row[0] == outbox.topics.batch_reconciled]
    assert record[2] == batch_id.encode()  # keyed by batch_id
    changelog = [row for row in outbox.rows if row[0] == stage.changelog]
    assert {row[2] for row in changelog} >= {encode_batch_key((batch_id, "")), encode_batch_key((batch_id, "n-1"))}
    assert all(row[3] == 2 for row in changelog if row[2] != WATERMARK_KEY)  # the batch's partition


def test_a_batch_partition_owned_elsewhere_gets_the_watermarks_then_the_notice() -> None:
    stage, outbox, engine = _stage(owned={0, 1})
    batch_id = _batch_on(3)
    _notice(engine, _batch_on(0), 0, partition=1)  # a batch owned here: counted in place
    _notice(engine, batch_id, 1, partition=0)
    stage.routing.route(engine, T0)
    rows = [(row[3], unpack_row(row[1] or b"")) for row in outbox.rows if row[0] == stage.sightings_topic]
    to_three = [row for q, row in rows if q == 3]
    assert [r[0] for r in to_three] == [WATERMARK_ROW, WATERMARK_ROW, NOTICE_ROW]  # both sources, then it
    assert BatchSighting(*to_three[-1][1:]).notice_id == "n-1"


def test_before_any_batch_record_the_intake_batch_is_untouched() -> None:
    stage, _, _ = _stage(owned={0, 1})
    intake = _intake(stage, tasks=2)
    batch: list[Any] = [Rec(stage.topics.settlement, 1, 5), Rec(stage.topics.terminal, 0, 1)]
    stage.select(intake, batch, 100, T0)
    assert [r.ts for r in batch] == [5, 1]


def test_once_active_the_batch_is_one_timestamp_merge_with_the_control_records() -> None:
    stage, _, _ = _stage(owned={0, 1})
    stage.active = True
    intake = _intake(stage, tasks=2)
    control = Rec(stage.topics.batches, 1, 3)
    intake.queues[(stage.topics.batches, 1)].records.append(control)
    later = Rec(stage.topics.terminal, 0, 9)
    intake.queues[(stage.topics.terminal, 0)].records.append(later)
    batch: list[Any] = [
        Rec(stage.topics.settlement, 1, 2),
        Rec(stage.topics.settlement, 1, 4),
        Rec(stage.topics.terminal, 0, 1),
        Rec(stage.topics.terminal, 0, 5),
    ]
    stage.select(intake, batch, 100, T0)
    assert [r.ts for r in batch] == [1, 2, 3, 4, 5, 9]
    assert batch[2] is control


def test_an_owned_task_with_records_still_on_the_broker_holds_the_batch_back() -> None:
    stage, _, _ = _stage(owned={0, 1})
    stage.active = True
    intake = _intake(stage, tasks=2)
    intake.queues[(stage.topics.settlement, 1)].at_end = False  # empty, and records may still come
    batch: list[Any] = [Rec(stage.topics.terminal, 0, 1)]
    stage.select(intake, batch, 100, T0)
    assert batch == [] and len(intake.queues[(stage.topics.terminal, 0)].records) == 1  # back in its queue


def test_an_owned_task_waiting_for_its_other_side_holds_the_batch_back() -> None:
    """Settlement 0 is empty and was at its end; the broker's look says records came since (caught_up False):
    terminal 0's records may not go ahead of them, and nothing else may pass the task either."""
    stage, _, _ = _stage(owned={0, 1})
    stage.active = True
    intake = _intake(stage, tasks=2, caught_up=False)
    batch: list[Any] = [Rec(stage.topics.terminal, 0, 1), Rec(stage.topics.settlement, 1, 2)]
    stage.select(intake, batch, 100, T0)
    assert batch == [] and len(intake.queues[(stage.topics.terminal, 0)].records) == 1


def test_get_batches_shows_an_owned_batch_and_names_the_partition_of_others() -> None:
    stage, _, engine = _stage(owned={2})
    batch_id = _batch_on(2)
    stage.ledgers[2].on_notice(BatchSighting(batch_id, "n-1", "SETTLED", 1000, 10, "EUR", "m1", T0, 0, T0, "o-1"))
    for p in range(PARTITIONS):  # counted once the batch watermark passes its settled_at
        stage.ledgers[2].advance(p, T0)
    worker: Any = type("W", (), {"batch_stage": stage, "engine": engine})()
    api = OpsApi.__new__(OpsApi)
    api.worker = worker
    status, body = api.handle(f"/batches/{batch_id}")
    assert status == 200 and body["received_count"] == 1 and body["notices"][0]["order_id"] == "o-1"
    status, body = api.handle(f"/batches/{_batch_on(1)}")
    assert status == 404 and body["partition"] == 1


def _intake(stage: BatchStage, tasks: int, caught_up: bool = True) -> Intake:
    """An intake whose empty inputs are at their end; ``caught_up``: what the look at the broker says when a
    task's idle wait for an empty side is over (here at once: max_task_idle_ms=0)."""
    options = WorkerOptions(bootstrap="unused", app_id="app", worker_id="w", max_task_idle_ms=0)
    intake = Intake(options, stage.topics, "app-card-sightings", WorkerMetrics(), {}, lambda _key, _offset: None)
    intake.positions.caught_up = lambda _queue: caught_up  # type: ignore[method-assign]
    intake.positions.ask_end = lambda _queue: None  # type: ignore[method-assign]
    intake.tasks.update(range(tasks))
    for p in range(tasks):
        for topic in (stage.topics.terminal, stage.topics.settlement, stage.topics.batches, stage.sightings_topic):
            queue = intake.queues[(topic, p)] = TaskQueue(topic, p)
            queue.at_end = True
    return intake
