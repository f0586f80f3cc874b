"""Garbage-collector policy for processes that hold the engine's state.

The engine's state is millions of small long-lived objects (orders, tuples, deadline entries) without
reference cycles: reference counting frees them. CPython's cyclic collector would still traverse them
again and again as the heap grows (measured: 30-45% of the engine's time at 100k+ open orders). So the
hosts of the engine (replay, the worker) switch automatic collection off.

Even one young-generation collection per object is expensive: every object that survives its window is
traversed once, and its referents (old strings and tuples) are touched, cache misses included: ~10-20 % of
the engine's time at 1M records (docs/performance.md). What survives a window is almost always engine state,
which has no cycles (``tests/unit/test_gcpolicy.py`` proves it for a simulated mix), so it is frozen instead
(:func:`gc.freeze`, O(1): never traversed again; reference counting still frees it). One window in
``SAMPLE_EVERY`` is really collected: if that finds cyclic garbage (a library, an exception kept alive), the
windows frozen before may hold some too, so the frozen objects are collected once (a full collection) and
every window is collected from then on -- the policy before this one. Nothing cyclic is kept for longer
than ``SAMPLE_EVERY`` windows.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)

YOUNG_EVERY = 20_000  # records per window
SAMPLE_EVERY = 10  # windows per sampled (really collected) window


class YoungCollector:
    """Call ``tick(n)`` after processing n records; at the end of every window of ``YOUNG_EVERY`` records
    its survivors are frozen, or collected (one window in ``SAMPLE_EVERY``, or all once cycles were seen)."""

    __slots__ = ("_since", "_windows", "cycles_found", "scanning")

    def __init__(self) -> None:
        self._since = 0
        self._windows = 0
        self.scanning = False  # True once a sampled window had cyclic garbage
        self.cycles_found = 0  # unreachable objects found by the collections of this collector

    def tick(self, records: int = 1) -> None:
        self._since += records
        if self._since < YOUNG_EVERY:
            return
        self._since = 0
        self._windows += 1
        if not self.scanning and self._windows % SAMPLE_EVERY:
            gc.freeze()
            return
        found = gc.collect(1)
        self.cycles_found += found
        if found and not self.scanning:
            self.scanning = True
            gc.unfreeze()  # earlier windows' cycles are in there: one full collection, then scan every window
            self.cycles_found += gc.collect()
            gc.freeze()
            log.info(
                "cyclic garbage found: every window is collected from now on",
                extra={"fields": {"unreachable_objects": self.cycles_found}},
            )
        elif not self.scanning:
            gc.freeze()


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
