"""Which deadline fires make an order dirty (a new changelog row in the live worker): the ones that change it.

A no-op fire (an EXPIRE deadline of an order approved in time, a MISSING deadline of a settled order) changes
nothing, so it writes no row: a restore re-schedules every deadline and re-checks it (engine/snapshot.py). They
were a quarter of the order changelog's rows (docs/performance.md, session 18)."""

from __future__ import annotations

from typing import Any

from posrecon.app.state_store import decode_order, encode_order
from posrecon.engine.engine import ReconciliationEngine
from posrecon.engine.order import OrderState
from serdekit import EVENT

TTL, SLA, RETENTION = (
    900_000,
    86_400_000,
    604_800_000,
)  # the default rules' order_ttl_ms, settlement_sla_ms, state_retention_ms


def _event(engine: ReconciliationEngine, order_id: str, event_id: str, event_type: str, at: int) -> None:
    record: Any = {**EVENT, "order_id": order_id, "event_id": event_id, "event_type": event_type, "event_time": at}
    assert engine.on_terminal_event(record, 0, at, at) is None


def _engine() -> tuple[ReconciliationEngine, dict[str, OrderState | None]]:
    engine = ReconciliationEngine()
    dirty: dict[str, OrderState | None] = {}
    engine.book(0).dirty = dirty
    return engine, dirty


def test_a_no_op_fire_leaves_the_order_clean_and_a_firing_one_marks_it() -> None:
    engine, dirty = _engine()
    _event(engine, "o-1", "e1", "ORDER_CREATED", 1_000)
    _event(engine, "o-1", "e2", "AUTH_APPROVED", 2_000)  # in time: its EXPIRE deadline will be a no-op
    _event(engine, "o-2", "e3", "ORDER_CREATED", 3_000)  # never authorised: its EXPIRE fires
    row = encode_order(engine.book(0).orders["o-1"])
    dirty.clear()
    engine.advance(0, 1_000 + TTL + 5_000, 0)
    assert dirty == {"o-2": engine.book(0).orders["o-2"]}  # the state to write, without a lookup
    assert encode_order(engine.book(0).orders["o-1"]) == row  # nothing changed, nothing to write
    _alerts = engine.take()[1]
    assert [a["kind"] for a in _alerts] == ["EXPIRED_ORDER"] and _alerts[0]["order_id"] == "o-2"
    dirty.clear()
    engine.advance(0, 2_000 + SLA + 1, 0)  # o-1 approved, never settled: MISSING fires and changes it
    assert "o-1" in dirty


def test_a_restore_from_rows_written_before_a_no_op_fire_decides_the_same() -> None:
    """The row of o-1 was last written before its no-op EXPIRE; restored from it, the engine re-checks that
    deadline (again a no-op) and then raises what the live one raises."""
    live, _ = _engine()
    _event(live, "o-1", "e1", "ORDER_CREATED", 1_000)
    _event(live, "o-1", "e2", "AUTH_APPROVED", 2_000)
    row = encode_order(live.book(0).orders["o-1"])
    assert row is not None
    live.advance(0, 1_000 + TTL + 5_000, 0)  # the no-op EXPIRE: no row written
    restored, _ = _engine()
    restored.book(0).watermark = live.book(0).watermark
    restored.load_order(restored.book(0), decode_order(row))
    for engine in (live, restored):
        engine.take()
        engine.advance(0, 2_000 + SLA + 1, 0)
    assert [a["kind"] for a in live.take()[1]] == [a["kind"] for a in restored.take()[1]] == ["MISSING_SETTLEMENT"]


def test_an_evicted_order_is_written_as_a_tombstone_and_a_new_one_under_its_id_as_itself() -> None:
    engine, dirty = _engine()
    _event(engine, "o-1", "e1", "ORDER_CREATED", 1_000)
    dirty.clear()
    engine.advance(0, 1_000 + TTL + RETENTION + 10_000, 0)  # EXPIRE fires, then the retention is over: evicted
    assert "o-1" not in engine.book(0).orders
    assert dirty == {"o-1": None}
    later = 1_000 + TTL + RETENTION + 20_000
    _event(engine, "o-1", "e9", "ORDER_CREATED", later)  # the same id again: a new order
    assert dirty == {"o-1": engine.book(0).orders["o-1"]}
    assert dirty["o-1"] is not None and dirty["o-1"].seen_events == ("e9",)
