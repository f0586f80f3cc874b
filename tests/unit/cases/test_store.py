"""The case stage's changelog rows read back into an equal book (cases/store.py; no broker)."""

from __future__ import annotations

from posrecon.app.state_store import WATERMARK_KEY
from posrecon.cases.store import changelog_rows, load_book
from posrecon.engine.cases import CaseBook

DAY = 86_400_000


def test_changelog_rows_restore_the_book_and_tombstone_evicted_cases() -> None:
    book = CaseBook(retention_ms=DAY)
    book.dirty = set()
    for i in range(3):
        book.on_alert(
            {
                "alert_id": f"a{i}",
                "kind": "MISSING_SETTLEMENT",
                "severity": "WARNING",
                "order_id": f"o{i}",
                "merchant_id": "m",
                "reason": "r",
                "event_time": 1000 + i,
                "status": "OPEN",
            }
        )
    book.on_action(
        {
            "action_id": "x",
            "alert_id": "a1",
            "action": "RESOLVE",
            "actor": "alice",
            "note": None,
            "assignee": None,
            "at": 2000,
        }
    )
    log: dict[bytes, bytes | None] = {}
    for _topic, value, key, partition in changelog_rows(book, "t", 4):
        assert partition == 4
        log[key] = value
    assert not book.dirty and changelog_rows(book, "t", 4) == []  # only what changed since
    restored = load_book({k: v for k, v in log.items() if v is not None}, DAY)
    assert restored.to_rows() == book.to_rows() and restored.watermark == book.watermark
    assert restored.view("a1") == book.view("a1")

    book.advance(2000 + DAY)  # a1 (closed) past retention: evicted, a tombstone in the changelog
    rows = {key: value for _t, value, key, _p in changelog_rows(book, "t", 4)}
    assert rows[b"a1"] is None and rows[WATERMARK_KEY] == str(2000 + DAY).encode()
    log.update(rows)
    again = load_book({k: v for k, v in log.items() if v is not None}, DAY)
    assert sorted(again.cases) == ["a0", "a2"] and again.watermark == 2000 + DAY
