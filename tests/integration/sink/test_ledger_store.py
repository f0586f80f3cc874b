"""The ledger tables on a real PostgreSQL (no broker): schema creation, the booking transaction, the
compare-and-set on offsets, the current-state upsert (posrecon/sink/postgres.py)."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from posrecon.sink.postgres import DDL, ROW_COLUMNS, LedgerStore, OffsetConflict, OffsetMove, row_of

TOPIC = "pos.reconciled"


def decision(order_id: str, revision: int, **fields: Any) -> dict[str, Any]:
    base = {
        "order_id": order_id,
        "merchant_id": "m1",
        "terminal_id": "t1",
        "outcome": "MATCHED",
        "currency": "EUR",
        "approved_amount_minor": 1000,
        "settled_amount_minor": 1000,
        "approved_at": 1_800_000_000_000,
        "settled_at": 1_800_000_060_000,
        "settlement_lag_ms": 60_000,
        "notice_id": f"n-{order_id}",
        "revision": revision,
        "settled_parts": 1,
        "fee_minor": 25,
        "reversed_amount_minor": 0,
        "net_amount_minor": 975,
    }
    return {**base, **fields}


@pytest.fixture
def store(pg_dsn: str) -> Any:
    ledger = LedgerStore(pg_dsn)
    ledger.ensure_schema()
    yield ledger
    ledger.close()


def rows_in(dsn: str, table: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(f"SELECT {', '.join(ROW_COLUMNS)} FROM {table} ORDER BY order_id, revision").fetchall()


def test_schema_is_created_once_and_again_without_harm(pg_dsn: str) -> None:
    first = LedgerStore(pg_dsn)
    first.ensure_schema()
    first.book(TOPIC, [row_of(decision("o1", 1), TOPIC, 0, 0)], {0: OffsetMove(None, 1)})
    first.ensure_schema()  # a restart: tables kept, rows kept
    first.close()
    with psycopg.connect(pg_dsn) as conn:
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        assert tables == {"reconciled_revisions", "reconciled_current", "sink_offsets"}
        assert conn.execute("SELECT count(*) FROM reconciled_revisions").fetchone() == (1,)
    assert all("IF NOT EXISTS" in statement for statement in DDL)


def test_a_batch_books_rows_current_state_and_offsets_together(store: LedgerStore, pg_dsn: str) -> None:
    rows = [
        row_of(decision("o1", 1, outcome="PARTIALLY_SETTLED", net_amount_minor=None), TOPIC, 0, 0),
        row_of(decision("o2", 1), TOPIC, 1, 0),
        row_of(
            decision("o1", 2, reversed_amount_minor=300, net_amount_minor=675, outcome="PARTIALLY_REVERSED"),
            TOPIC,
            0,
            1,
        ),
    ]
    assert store.book(TOPIC, rows, {0: OffsetMove(None, 3), 1: OffsetMove(None, 1)}) == 3
    assert rows_in(pg_dsn, "reconciled_revisions") == sorted(
        rows, key=lambda r: (r[0], r[ROW_COLUMNS.index("revision")])
    )
    current = rows_in(pg_dsn, "reconciled_current")
    assert [(r[0], r[ROW_COLUMNS.index("revision")], r[ROW_COLUMNS.index("net_amount_minor")]) for r in current] == [
        ("o1", 2, 675),
        ("o2", 1, 975),
    ]
    assert store.offsets(TOPIC, [0, 1, 2]) == {0: 3, 1: 1}


def test_an_older_revision_never_replaces_the_current_one(store: LedgerStore, pg_dsn: str) -> None:
    store.book(TOPIC, [row_of(decision("o1", 3, outcome="REVERSED"), TOPIC, 0, 5)], {0: OffsetMove(None, 6)})
    store.book(TOPIC, [row_of(decision("o1", 2), TOPIC, 0, 6)], {0: OffsetMove(6, 7)})
    (current,) = rows_in(pg_dsn, "reconciled_current")
    assert current[ROW_COLUMNS.index("revision")] == 3 and current[ROW_COLUMNS.index("outcome")] == "REVERSED"
    assert len(rows_in(pg_dsn, "reconciled_revisions")) == 2


def test_a_stale_offset_rolls_the_whole_batch_back(store: LedgerStore, pg_dsn: str) -> None:
    """Two sinks on one partition: the one whose view of next_offset is stale books nothing."""
    store.book(TOPIC, [row_of(decision("o1", 1), TOPIC, 0, 0)], {0: OffsetMove(None, 1)})
    with pytest.raises(OffsetConflict):  # it still thinks there is no row
        store.book(TOPIC, [row_of(decision("o9", 1), TOPIC, 0, 0)], {0: OffsetMove(None, 1)})
    with pytest.raises(OffsetConflict):  # it thinks the partition is further than it is
        store.book(TOPIC, [row_of(decision("o2", 1), TOPIC, 0, 7)], {0: OffsetMove(5, 8)})
    assert [r[0] for r in rows_in(pg_dsn, "reconciled_revisions")] == ["o1"]
    assert [r[0] for r in rows_in(pg_dsn, "reconciled_current")] == ["o1"]
    assert store.offsets(TOPIC, [0]) == {0: 1}


def test_a_repeated_decision_keeps_the_first_booking(store: LedgerStore, pg_dsn: str) -> None:
    store.book(TOPIC, [row_of(decision("o1", 1), TOPIC, 0, 0)], {0: OffsetMove(None, 1)})
    again = row_of(decision("o1", 1, outcome="AMOUNT_MISMATCH"), TOPIC, 0, 1)
    assert store.book(TOPIC, [again], {0: OffsetMove(1, 2)}) == 0
    (kept,) = rows_in(pg_dsn, "reconciled_revisions")
    assert kept[ROW_COLUMNS.index("outcome")] == "MATCHED"


def test_the_same_kafka_offset_twice_is_refused(store: LedgerStore, pg_dsn: str) -> None:
    store.book(TOPIC, [row_of(decision("o1", 1), TOPIC, 0, 0)], {0: OffsetMove(None, 1)})
    with pytest.raises(psycopg.errors.UniqueViolation):
        store.book(TOPIC, [row_of(decision("o2", 1), TOPIC, 0, 0)], {0: OffsetMove(1, 2)})
    assert store.offsets(TOPIC, [0]) == {0: 1}


def test_the_tables_go_to_the_schema_the_dsn_names(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA ledger")
    in_ledger = LedgerStore(f"{pg_dsn}?options=-csearch_path%3Dledger")
    in_ledger.ensure_schema()
    in_ledger.book(TOPIC, [row_of(decision("o1", 1), TOPIC, 0, 0)], {0: OffsetMove(None, 1)})
    in_ledger.close()
    with psycopg.connect(pg_dsn) as conn:
        tables = conn.execute("SELECT schemaname, tablename FROM pg_tables WHERE tablename LIKE 'reconciled%'")
        assert sorted(tables) == [("ledger", "reconciled_current"), ("ledger", "reconciled_revisions")]
        assert conn.execute("SELECT count(*) FROM ledger.reconciled_revisions").fetchone() == (1,)
