"""Snapshot and restore of the engine's state: everything needed to continue exactly where it was.

A mixin of :class:`~posrecon.engine.engine.ReconciliationEngine` (``ReconciliationEngine.restore`` builds
the engine, then :meth:`Snapshots.load_snapshot` fills it). The worker persists orders one by one through
:meth:`Snapshots.load_order` (see app/state_store.py).
"""

from __future__ import annotations

from typing import Any

from posrecon.engine.batch_feed import BatchFeed
from posrecon.engine.batches import BatchLedger
from posrecon.engine.book import PartitionBook
from posrecon.engine.cards import CardIndex
from posrecon.engine.order import SCHEDULED_EXPIRED, SCHEDULED_MISSING, SCHEDULED_ORPHAN, OrderState
from posrecon.engine.timers import EVICT, EXPIRE, MISSING, ORPHAN, Timers


class Snapshots(Timers):
    cards: CardIndex
    batches: BatchLedger
    _batch_feed: BatchFeed | None

    def snapshot(self) -> dict[str, Any]:
        """Everything needed to continue exactly where this engine is (JSON-able)."""
        return {
            "version": 1,
            "partitions": {
                str(p): {"watermark": b.watermark, "orders": [o.to_row() for o in b.orders.values()]}
                for p, b in sorted(self.books.items())
            },
            "cards": {
                "watermark": self.cards.watermark,
                "sources": {str(k): v for k, v in self.cards.source_watermarks.items()},
                "rows": self.cards.to_rows(),
            },
            "batches": {
                "watermark": self.batches.watermark,
                "sources": {str(k): v for k, v in self.batches.source_watermarks.items()},
                "rows": self.batches.to_rows(),
                "unsent": self._batch_feed.to_rows() if self._batch_feed is not None else [],
            },
        }

    def load_snapshot(self, snapshot: dict[str, Any]) -> None:
        """Fill this (new) engine from :meth:`snapshot`'s output."""
        for key, part in snapshot["partitions"].items():
            book = self.book(int(key))
            book.watermark = part["watermark"]
            for row in part["orders"]:
                self.load_order(book, OrderState.from_row(row))
        cards = snapshot["cards"]
        self.cards.load_rows(cards["rows"], cards["watermark"], {int(k): v for k, v in cards["sources"].items()})
        batches = snapshot.get("batches")  # absent in snapshots written before contract v2
        if batches is not None:
            sources = {int(k): v for k, v in batches["sources"].items()}
            self.batches.load_rows(batches["rows"], batches["watermark"], sources)
            if self._batch_feed is not None:
                self._batch_feed.load_rows(batches.get("unsent", []))

    def load_order(self, book: PartitionBook, order: OrderState) -> None:
        """Install a restored order and rebuild its deadlines (already-settled ones re-check harmlessly)."""
        book.orders[order.order_id] = order
        book.deadlines.push((order.evict_at, EVICT, order.order_id))
        scheduled = order.scheduled
        if scheduled & SCHEDULED_EXPIRED and order.created_at is not None:
            self._schedule(book, order, EXPIRE, order.created_at)
        if scheduled & SCHEDULED_ORPHAN and order.settled is not None:
            # a split order's grace runs from its first part (its aggregate's settled_at is the latest part's)
            parts = order.parts
            since = order.settled.settled_at if parts is None else min(p.settled_at for p in parts)
            self._schedule(book, order, ORPHAN, since)
        if scheduled & SCHEDULED_MISSING and order.approval is not None:
            self._schedule(book, order, MISSING, order.approval.event_time)
