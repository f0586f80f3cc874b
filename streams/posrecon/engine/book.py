"""The engine's bookkeeping: the orders of one input partition (its book) and the engine's counters."""

from __future__ import annotations

from typing import Final

from posrecon.engine.deadlines import DeadlineIndex
from posrecon.engine.order import OrderState

NO_WATERMARK: Final = -(1 << 62)


class PartitionBook:
    """The orders of one input partition, its watermark and its deadline index."""

    __slots__ = ("deadlines", "dirty", "orders", "partition", "watermark")

    def __init__(self, partition: int = 0) -> None:
        self.partition = partition
        self.orders: dict[str, OrderState] = {}
        #: order ids changed (or evicted) since the shell last persisted this book; None: not tracked
        self.dirty: set[str] | None = None
        self.deadlines = DeadlineIndex()
        self.watermark = NO_WATERMARK


class EngineStats:
    __slots__ = ("duplicates_dropped", "evicted", "invalid", "records")

    def __init__(self) -> None:
        self.records = 0
        self.duplicates_dropped = 0
        self.invalid = 0
        self.evicted = 0
