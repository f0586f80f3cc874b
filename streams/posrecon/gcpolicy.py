"""Garbage-collector policy for processes that hold the engine's state.

The engine's state is millions of small long-lived objects (orders, tuples, deadline entries) without
reference cycles: reference counting frees them. CPython's cyclic collector would still traverse them
again and again as the heap grows (measured: 30-45% of the engine's time at 100k+ open orders). So the
hosts of the engine (replay, the worker) switch automatic collection off and collect only the young
generations at a steady pace, which still reclaims short-lived cycles (from libraries) promptly.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

YOUNG_EVERY = 20_000  # records between young-generation collections


class YoungCollector:
    """Call ``tick(n)`` after processing n records; collects generations 0-1 every ``YOUNG_EVERY``."""

    __slots__ = ("_since",)

    def __init__(self) -> None:
        self._since = 0

    def tick(self, records: int = 1) -> None:
        self._since += records
        if self._since >= YOUNG_EVERY:
            self._since = 0
            gc.collect(1)


@contextmanager
def long_lived_state() -> Iterator[YoungCollector]:
    """Automatic collection off (restored on exit); yields the collector to tick."""
    was_enabled = gc.isenabled()
    gc.disable()
    gc.freeze()  # what is alive now (modules, schemas) is never scanned again
    try:
        yield YoungCollector()
    finally:
        gc.unfreeze()
        if was_enabled:
            gc.enable()
