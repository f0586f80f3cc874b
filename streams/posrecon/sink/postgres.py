"""The PostgreSQL ledger: tables, row mapping, and the one transaction per batch that books rows and offsets.

Tables (created on first use, ``CREATE … IF NOT EXISTS`` under an advisory lock, so concurrent first starts
are safe; put them in another schema with ``options=-csearch_path=ledger`` in the DSN):

* ``reconciled_revisions``: one row per (order_id, revision), the decision as the contract names its fields
  (amounts, fee, refunds, net), plus where in Kafka it came from (topic, partition, offset: unique).
* ``reconciled_current``: one row per order, its highest revision (an upsert that only a newer revision wins).
* ``sink_offsets``: (topic, partition) → next_offset, the next Kafka offset to read. It is the sink's only
  progress record: it moves in the same transaction as the rows it covers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

#: the ReconciledOrder fields, in schema order, each with its column type (the table's column names are the
#: contract's field names; timestamp-millis become timestamptz)
DECISION_COLUMNS: tuple[tuple[str, str], ...] = (
    ("order_id", "text NOT NULL"),
    ("merchant_id", "text NOT NULL"),
    ("terminal_id", "text"),
    ("outcome", "text NOT NULL"),
    ("currency", "text NOT NULL"),
    ("approved_amount_minor", "bigint"),
    ("settled_amount_minor", "bigint"),
    ("approved_at", "timestamptz"),
    ("settled_at", "timestamptz"),
    ("settlement_lag_ms", "bigint"),
    ("notice_id", "text"),
    ("revision", "integer NOT NULL"),
    ("settled_parts", "integer"),
    ("fee_minor", "bigint"),
    ("reversed_amount_minor", "bigint"),
    ("net_amount_minor", "bigint"),
)
DECISION_FIELDS = tuple(name for name, _ in DECISION_COLUMNS)
TIMESTAMP_FIELDS = frozenset({"approved_at", "settled_at"})
SOURCE_COLUMNS = ("kafka_topic", "kafka_partition", "kafka_offset")
ROW_COLUMNS = DECISION_FIELDS + SOURCE_COLUMNS

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DDL_LOCK = 0x706F737265636F6E  # "posrecon": one advisory lock id for schema creation

Row = tuple[Any, ...]


def _columns(extra: str) -> str:
    source = ("kafka_topic text NOT NULL", "kafka_partition integer NOT NULL", "kafka_offset bigint NOT NULL")
    return ",\n  ".join([*(f"{name} {kind}" for name, kind in DECISION_COLUMNS), *source, extra])


DDL: tuple[str, ...] = (
    f"""CREATE TABLE IF NOT EXISTS reconciled_revisions (
  {_columns("booked_at timestamptz NOT NULL DEFAULT now()")},
  PRIMARY KEY (order_id, revision),
  UNIQUE (kafka_topic, kafka_partition, kafka_offset)
)""",
    f"""CREATE TABLE IF NOT EXISTS reconciled_current (
  {_columns("updated_at timestamptz NOT NULL DEFAULT now()")},
  PRIMARY KEY (order_id)
)""",
    "CREATE INDEX IF NOT EXISTS reconciled_current_merchant ON reconciled_current (merchant_id, outcome)",
    """CREATE TABLE IF NOT EXISTS sink_offsets (
  topic text NOT NULL,
  partition integer NOT NULL,
  next_offset bigint NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (topic, partition)
)""",
)

_COLS = ", ".join(ROW_COLUMNS)
_PARAMS = ", ".join(["%s"] * len(ROW_COLUMNS))
# a (order_id, revision) already booked is the topic repeating a decision (e.g. a worker reset and reprocessed):
# the first booking stands. The same Kafka offset twice would violate the UNIQUE constraint instead: loud.
INSERT_REVISION = (
    f"INSERT INTO reconciled_revisions ({_COLS}) VALUES ({_PARAMS}) ON CONFLICT (order_id, revision) DO NOTHING"
)
_UPDATES = ", ".join(f"{c} = EXCLUDED.{c}" for c in ROW_COLUMNS if c != "order_id")
UPSERT_CURRENT = (
    f"INSERT INTO reconciled_current ({_COLS}) VALUES ({_PARAMS}) ON CONFLICT (order_id) DO UPDATE "
    f"SET {_UPDATES}, updated_at = now() WHERE reconciled_current.revision < EXCLUDED.revision"
)
# Offsets move only from the value this sink read (compare-and-set): a second sink (a zombie after a rebalance,
# a copy started by mistake) that booked the partition meanwhile makes the statement touch no row, and the
# whole batch rolls back instead of booking twice or moving the offset backwards.
INSERT_OFFSET = (
    "INSERT INTO sink_offsets (topic, partition, next_offset) VALUES (%s, %s, %s) "
    "ON CONFLICT (topic, partition) DO NOTHING"
)
UPDATE_OFFSET = (
    "UPDATE sink_offsets SET next_offset = %s, updated_at = now() "
    "WHERE topic = %s AND partition = %s AND next_offset = %s"
)


class OffsetConflict(RuntimeError):
    """``sink_offsets`` of a partition is not what this sink last read: someone else booked it meanwhile."""

    def __init__(self, topic: str, partition: int, expected: int | None) -> None:
        super().__init__(f"{topic}[{partition}]: next_offset is no longer {expected} (another sink booked it)")
        self.partition = partition


@dataclass(frozen=True, slots=True)
class OffsetMove:
    """A partition's ``next_offset``: from ``expected`` (None: no row yet) to ``new``."""

    expected: int | None
    new: int


def timestamp_of(millis: int | None) -> datetime | None:
    """timestamp-millis → an aware UTC datetime (exact: no float on the way)."""
    return None if millis is None else _EPOCH + timedelta(milliseconds=millis)


def row_of(record: Mapping[str, Any], topic: str, partition: int, offset: int) -> Row:
    """The ``reconciled_revisions`` row of one decoded ReconciledOrder (v1 records lack the v2 fields: NULL)."""
    values = [
        timestamp_of(record.get(name)) if name in TIMESTAMP_FIELDS else record.get(name) for name in DECISION_FIELDS
    ]
    return (*values, topic, partition, offset)


_ORDER = ROW_COLUMNS.index("order_id")
_REVISION = ROW_COLUMNS.index("revision")


def latest_per_order(rows: Iterable[Row]) -> list[Row]:
    """The row with the highest revision of each order in ``rows`` (one upsert per order and batch: a statement
    may not touch the same row twice, and the older revisions would lose anyway)."""
    best: dict[str, Row] = {}
    for row in rows:
        seen = best.get(row[_ORDER])
        if seen is None or row[_REVISION] > seen[_REVISION]:
            best[row[_ORDER]] = row
    return list(best.values())


class LedgerStore:
    """One connection to the ledger database (not thread-safe: the sink's loop owns it). Autocommit, so the
    only transactions are the explicit ``transaction()`` blocks: a read never leaves one open."""

    def __init__(self, dsn: str) -> None:
        self.conn = psycopg.connect(dsn, autocommit=True, application_name="posrecon-sink")

    def close(self) -> None:
        self.conn.close()

    def describe(self) -> dict[str, Any]:
        """Where the ledger is, for the logs (never the password)."""
        info = self.conn.info
        return {"host": info.host, "port": info.port, "dbname": info.dbname, "user": info.user}

    def ensure_schema(self) -> None:
        with self.conn.transaction(), self.conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_DDL_LOCK,))
            for statement in DDL:
                cur.execute(statement)

    def offsets(self, topic: str, partitions: Sequence[int]) -> dict[int, int]:
        """The stored next_offset of each of ``partitions`` that has one."""
        with self.conn.transaction(), self.conn.cursor() as cur:
            cur.execute(
                "SELECT partition, next_offset FROM sink_offsets WHERE topic = %s AND partition = ANY(%s)",
                (topic, list(partitions)),
            )
            return {int(p): int(n) for p, n in cur.fetchall()}

    def book(self, topic: str, rows: Sequence[Row], moves: Mapping[int, OffsetMove]) -> int:
        """Book ``rows`` and move the offsets in one transaction; the number of rows newly booked (the rest were
        already there: the topic repeated an (order_id, revision)). Raises :class:`OffsetConflict` (nothing
        booked) when a partition's offset is not the expected one."""
        with self.conn.transaction(), self.conn.cursor() as cur:
            for partition in sorted(moves):  # one lock order for every sink: no deadlock between two of them
                move = moves[partition]
                if move.expected is None:
                    cur.execute(INSERT_OFFSET, (topic, partition, move.new))
                else:
                    cur.execute(UPDATE_OFFSET, (move.new, topic, partition, move.expected))
                if cur.rowcount != 1:
                    raise OffsetConflict(topic, partition, move.expected)
            if not rows:
                return 0
            cur.executemany(INSERT_REVISION, rows)
            inserted = cur.rowcount
            cur.executemany(UPSERT_CURRENT, latest_per_order(rows))
            return inserted
