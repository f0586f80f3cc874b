"""The engine's own batch stage when it runs in place (replay, tests): its notices into the :class:`BatchLedger`.

Live, the worker routes :class:`BatchSighting` rows to the batch partition's owner (``collect_batch_sightings``).
In place, every notice with a batch_id would go through ``BatchLedger.on_notice`` as it is applied; but most
batches never get a control record (nothing to decide: the ledger emits nothing without one), and counting their
notices was a sixth of the engine's time. So a batch the ledger does not know yet keeps its sightings here, in
arrival order, until its control record comes: then they go to the ledger first, in that order, exactly as if
they had been counted as they came (the ledger's outputs depend only on the order of its inputs and on the
watermarks they carry). The sightings of a batch are dropped once the ledger would have evicted the batch (its
last notice's watermark + state_retention_ms), so this stays bounded as the ledger does.

The engine asks :attr:`BatchFeed.due` on every watermark move: the earliest time at which the ledger may have a
deadline to fire or this feed sightings to drop.
"""

from __future__ import annotations

import heapq
from typing import Any, Final

from posrecon.engine.batch_state import NO_WATERMARK, BatchSighting
from posrecon.engine.batches import BatchLedger
from posrecon.engine.model import SettlementBatch
from posrecon.engine.order import new_tuple

NEVER: Final = 1 << 62
#: a waiting sighting is stored flat, without its batch_id (the key): a tuple per notice cost ~70 B more, and on
#: the simulation's traffic (every notice has a batch_id, most batches never get a control record) that is most
#: of what an open order holds beyond v1's state
WIDTH: Final = len(BatchSighting._fields) - 1
_MARK: Final = BatchSighting._fields.index("source_watermark") - 1  # the offset of source_watermark in a flat row


class BatchFeed:
    __slots__ = ("due", "expiry", "ledger", "retention", "unsent")

    def __init__(self, ledger: BatchLedger, retention_ms: int) -> None:
        self.ledger = ledger
        self.retention = retention_ms
        #: the sightings of the batches the ledger has not seen yet, in arrival order, flat (WIDTH values each)
        self.unsent: dict[str, list[Any]] = {}
        self.expiry: list[tuple[int, str]] = []  # (when the batch's sightings may be dropped, batch_id)
        #: lower bound of the next ledger deadline or expiry (the engine's cheap check on a watermark move)
        self.due = NEVER

    def notice(self, batch_id: str, fields: tuple[Any, ...], now: int | None) -> None:
        """One sighting: ``fields`` are a BatchSighting's after batch_id (notice_id … order_id)."""
        ledger = self.ledger
        if batch_id in ledger.batches:
            ledger.on_notice(new_tuple(BatchSighting, (batch_id, *fields)), now)
            self._refresh()
            return
        unsent = self.unsent.get(batch_id)
        if unsent is None:
            self.unsent[batch_id] = list(fields)
            drop_at = fields[_MARK] + self.retention
            heapq.heappush(self.expiry, (drop_at, batch_id))
            if drop_at < self.due:
                self.due = drop_at
        else:
            unsent += fields

    def control(self, record: SettlementBatch, now: int | None) -> None:
        """A (valid) control record: its batch's waiting sightings first, then the record."""
        batch_id = record["batch_id"]
        ledger = self.ledger
        for sighting in _sightings(batch_id, self.unsent.pop(batch_id, [])):
            ledger.on_notice(sighting, now)
        ledger.on_control(record, now=now)
        self._refresh()

    def fire(self, now: int | None) -> None:
        """After the ledger took every partition's watermark: drop what it would have evicted by now."""
        watermark = self.ledger.watermark
        expiry, unsent = self.expiry, self.unsent
        while expiry and expiry[0][0] < watermark:
            _, batch_id = heapq.heappop(expiry)
            flat = unsent.get(batch_id)
            if flat is None:
                continue
            drop_at = max(flat[_MARK::WIDTH]) + self.retention
            if drop_at < watermark:
                del unsent[batch_id]
            else:
                heapq.heappush(expiry, (drop_at, batch_id))
        self._refresh()

    def _refresh(self) -> None:
        expiry = self.expiry
        self.due = min(self.ledger.next_due(NEVER), expiry[0][0] if expiry else NEVER)

    # --- snapshot --------------------------------------------------------------------------------------------

    def to_rows(self) -> list[list[Any]]:
        return [[batch_id, [list(s) for s in _sightings(batch_id, flat)]] for batch_id, flat in self.unsent.items()]

    def load_rows(self, rows: list[list[Any]]) -> None:
        self.unsent = {str(b): [v for s in sightings for v in BatchSighting(*s)[1:]] for b, sightings in rows}
        self.expiry = [(max(v[_MARK::WIDTH]) + self.retention, b) for b, v in self.unsent.items() if v]
        heapq.heapify(self.expiry)
        self._refresh()


def _sightings(batch_id: str, flat: list[Any]) -> list[BatchSighting]:
    return [new_tuple(BatchSighting, (batch_id, *flat[i : i + WIDTH])) for i in range(0, len(flat), WIDTH)]


__all__ = ["NEVER", "NO_WATERMARK", "BatchFeed"]
