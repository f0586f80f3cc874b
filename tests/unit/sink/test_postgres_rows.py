"""Ledger rows from ReconciledOrder records, and the tables' SQL (no database): posrecon/sink/postgres.py."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from posrecon.serde.codec import AvroCodec
from posrecon.serde.schemas import load_schema_json
from posrecon.sink.postgres import (
    DDL,
    DECISION_FIELDS,
    INSERT_REVISION,
    ROW_COLUMNS,
    UPDATE_OFFSET,
    UPSERT_CURRENT,
    latest_per_order,
    row_of,
    timestamp_of,
)

V2 = {
    "order_id": "o1",
    "merchant_id": "m1",
    "terminal_id": None,
    "outcome": "PARTIALLY_REVERSED",
    "currency": "EUR",
    "approved_amount_minor": 10_000,
    "settled_amount_minor": 10_000,
    "approved_at": 1_800_000_000_123,
    "settled_at": 1_800_000_600_999,
    "settlement_lag_ms": 600_876,
    "notice_id": "n1",
    "revision": 3,
    "settled_parts": 2,
    "fee_minor": 150,
    "reversed_amount_minor": 2_500,
    "net_amount_minor": 7_350,
}


def column(row: tuple[Any, ...], name: str) -> Any:
    return row[ROW_COLUMNS.index(name)]


def test_the_columns_are_the_contract_fields_in_schema_order() -> None:
    """A schema version that adds a field fails here until the ledger has a column for it."""
    assert list(DECISION_FIELDS) == [f["name"] for f in load_schema_json("ReconciledOrder")["fields"]]
    assert ROW_COLUMNS[-3:] == ("kafka_topic", "kafka_partition", "kafka_offset")


def test_a_v2_decision_becomes_one_row_with_amounts_fee_refunds_and_net() -> None:
    record = AvroCodec("ReconciledOrder").decode(AvroCodec("ReconciledOrder").encode(V2))
    row = row_of(record, "pos.reconciled", 4, 1234)
    assert len(row) == len(ROW_COLUMNS)
    assert column(row, "net_amount_minor") == 7_350 and column(row, "fee_minor") == 150
    assert column(row, "reversed_amount_minor") == 2_500 and column(row, "settled_parts") == 2
    assert column(row, "outcome") == "PARTIALLY_REVERSED" and column(row, "revision") == 3
    assert column(row, "terminal_id") is None
    assert row[-3:] == ("pos.reconciled", 4, 1234)


def test_timestamps_are_exact_utc_instants() -> None:
    row = row_of(V2, "t", 0, 0)
    assert column(row, "approved_at") == datetime(2027, 1, 15, 8, 0, 0, 123_000, tzinfo=UTC)
    assert column(row, "settled_at").microsecond == 999_000  # no float rounding on the way
    assert timestamp_of(None) is None
    assert timestamp_of(0) == datetime(1970, 1, 1, tzinfo=UTC)


def test_a_v1_decision_books_the_v2_fields_as_null() -> None:
    v1 = {
        k: v
        for k, v in V2.items()
        if k not in ("settled_parts", "fee_minor", "reversed_amount_minor", "net_amount_minor")
    }
    row = row_of(v1, "t", 0, 0)
    assert [column(row, c) for c in ("settled_parts", "fee_minor", "reversed_amount_minor", "net_amount_minor")] == [
        None
    ] * 4


def test_the_current_state_takes_each_orders_highest_revision_whatever_the_order() -> None:
    rows = [
        row_of({**V2, "order_id": o, "revision": r}, "t", 0, i)
        for i, (o, r) in enumerate([("a", 2), ("b", 1), ("a", 3), ("a", 1), ("b", 2)])
    ]
    latest = {column(r, "order_id"): (column(r, "revision"), column(r, "kafka_offset")) for r in latest_per_order(rows)}
    assert latest == {"a": (3, 2), "b": (2, 4)}
    assert len(latest_per_order(rows)) == 2


def test_the_sql_is_idempotent_and_guarded() -> None:
    assert all(re.match(r"CREATE (TABLE|INDEX) IF NOT EXISTS", statement) for statement in DDL)
    revisions = DDL[0]
    assert "PRIMARY KEY (order_id, revision)" in revisions
    assert "UNIQUE (kafka_topic, kafka_partition, kafka_offset)" in revisions
    assert all(f"\n  {name} " in revisions for name in ROW_COLUMNS)
    assert "PRIMARY KEY (order_id)" in DDL[1]
    assert "ON CONFLICT (order_id, revision) DO NOTHING" in INSERT_REVISION
    assert UPSERT_CURRENT.endswith("WHERE reconciled_current.revision < EXCLUDED.revision")
    assert UPDATE_OFFSET.endswith("AND next_offset = %s")  # compare-and-set
