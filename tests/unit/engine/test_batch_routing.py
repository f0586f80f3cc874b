"""The batch stage's compiled per-notice step (engine/batch_routing.py): a notice's sightings to the ledger this
worker owns, after the ledger took every owned order partition's watermark, or back to the shell for a batch
partition owned elsewhere; the engine's sightings are consumed either way."""

from __future__ import annotations

from typing import Any

from posrecon.config import RuleConfig
from posrecon.engine.batch_routing import BatchRouting
from posrecon.engine.batches import BatchLedger
from posrecon.engine.engine import ReconciliationEngine
from posrecon.engine.murmur2 import partition_for
from serdekit import NOTICE_V1

PARTITIONS = 4
RULES = RuleConfig()


def _engine() -> ReconciliationEngine:
    return ReconciliationEngine(RULES, partitions=PARTITIONS, collect_batch_sightings=True)


def _notice(notice_id: str, batch_id: str, settled_at: int, order_id: str = "o-1") -> dict[str, Any]:
    return {**NOTICE_V1, "notice_id": notice_id, "order_id": order_id, "batch_id": batch_id, "settled_at": settled_at}


def _batch_for(q: int) -> str:
    return next(b for b in (f"bt-{i}" for i in range(1000)) if partition_for(b.encode(), PARTITIONS) == q)


def test_an_owned_batch_counts_the_notice_after_taking_every_owned_partitions_watermark() -> None:
    engine, sent = _engine(), []
    routing = BatchRouting(lambda _e, q, s: sent.append((q, s.notice_id)))
    routing.partitions = PARTITIONS
    batch_id = _batch_for(1)
    ledger = routing.ledgers[1] = BatchLedger(RULES, sources=2)
    t0 = NOTICE_V1["settled_at"]
    engine.on_settlement_notice(_notice("n-0", "bt-other", t0 + 5_000, "o-0"), 1)  # partition 1's watermark
    engine.batch_sightings.clear()  # type: ignore[union-attr]
    engine.on_settlement_notice(_notice("n-1", batch_id, t0), 0)
    routing.route(engine, 0)
    assert routing.active and sent == [] and engine.batch_sightings == []
    assert ledger.source_watermarks == {0: t0, 1: t0 + 5_000}  # both owned partitions, before the notice
    assert ledger.watermark == t0
    assert list(ledger.batches[batch_id].notices) == ["n-1"]  # settled at the watermark: counted, not held


def test_a_batch_owned_elsewhere_goes_back_to_the_shell_with_its_partition() -> None:
    engine, sent = _engine(), []
    routing = BatchRouting(lambda _e, q, s: sent.append((q, s.batch_id, s.notice_id)))
    routing.partitions = PARTITIONS
    routing.ledgers[0] = BatchLedger(RULES, sources=PARTITIONS)
    batch_id = _batch_for(3)
    engine.on_settlement_notice(_notice("n-1", batch_id, NOTICE_V1["settled_at"]), 2)
    routing.route(engine, 0)
    assert sent == [(3, batch_id, "n-1")]
    assert engine.batch_sightings == [] and not routing.ledgers[0].batches
    routing.route(engine, 0)  # nothing left: nothing sent again
    assert len(sent) == 1


def test_without_collected_sightings_nothing_is_routed() -> None:
    routing = BatchRouting(lambda _e, q, s: (_ for _ in ()).throw(AssertionError("sent")))
    routing.route(ReconciliationEngine(RULES), 0)
    assert not routing.active
