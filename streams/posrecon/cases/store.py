"""The case stage's state on Kafka: ``<app>-cases-changelog``, compacted, co-partitioned with ``pos.alerts``.

Key: the case's alert_id, value: the case's row (``CaseBook.row``, packed as the worker's changelog rows;
a tombstone once the case is evicted); key ``\\x00watermark``: the partition's watermark. The rows are written
in the same transaction as the ``pos.exceptions`` records and the input offsets, so the books read back after
a crash or a rebalance are exactly those that match the committed offsets (the worker's pattern:
app/state_store.py, app/restore.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from confluent_kafka.admin import AdminClient

from posrecon.app.internal_topics import COMPACTED, create_topics_if_missing
from posrecon.app.state_store import WATERMARK_KEY, pack_row, read_changelog, unpack_row
from posrecon.engine.cases import NO_WATERMARK, CaseBook

#: (topic, value, key, partition): an outbox row without headers
Row = tuple[str, bytes | None, bytes, int]


def changelog_topic(app_id: str) -> str:
    return f"{app_id}-cases-changelog"


def create_changelog(admin: AdminClient, app_id: str, partitions: int, replication: int = 1) -> None:
    """Create ``<app>-cases-changelog`` if missing; refuse to run when it has another partition count."""
    create_topics_if_missing(admin, {changelog_topic(app_id): dict(COMPACTED)}, partitions, replication)


def changelog_rows(book: CaseBook, topic: str, partition: int) -> list[Row]:
    """A row per case the book changed since the last call (a tombstone for an evicted one) and the watermark."""
    dirty = book.dirty
    if not dirty:
        return []
    rows: list[Row] = []
    for alert_id in sorted(dirty):  # sorted: the same inputs write the same changelog
        row = book.row(alert_id)
        rows.append((topic, None if row is None else pack_row(row), alert_id.encode(), partition))
    rows.append((topic, str(book.watermark).encode(), WATERMARK_KEY, partition))
    dirty.clear()
    return rows


def load_book(entries: Mapping[bytes, bytes], retention_ms: int) -> CaseBook:
    """A partition's book from its changelog entries (latest value per key)."""
    book = CaseBook(retention_ms)
    rows: list[list[Any]] = []
    watermark = NO_WATERMARK
    for key, value in entries.items():
        if key == WATERMARK_KEY:
            watermark = int(value)
        else:
            rows.append(unpack_row(value))
    book.load_rows(rows, watermark)
    book.dirty = set()
    return book


def restore_books(
    client_config: Mapping[str, Any], topic: str, partitions: list[int], retention_ms: int
) -> dict[int, CaseBook]:
    """The books of ``partitions`` read back from the changelog (empty books where it holds nothing)."""
    changelog = read_changelog(client_config, topic, partitions)
    return {p: load_book(entries, retention_ms) for p, entries in changelog.items()}
