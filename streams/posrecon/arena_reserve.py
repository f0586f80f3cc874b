"""A reserve of pre-faulted memory for the object allocator: a growing state's page faults, off the main thread.

While a worker catches up (after a restart, an outage, a rebalance), its state grows by tens of MB per second.
The kernel zeroes each new page in a page fault on the thread that first writes it, which is the main thread:
the one that holds the GIL and bounds the worker's rate. ``install`` puts an arena allocator under CPython's
small-object allocator (``engine/_arena_reserve.c``, built with the compiled engine) whose arenas come from a
reserve that a background thread maps and populates ahead of need, so those faults are taken on another core.
Arenas that CPython frees stay populated for reuse up to the reserve's size; beyond that their pages go back to
the kernel. What it is worth, measured: docs/performance.md (session 20).

``posrecon run --memory-reserve-mb N`` (``POSRECON_MEMORY_RESERVE_MB``; default 32, 0 = off) installs it before
the state is built. Linux only; without the compiled build the worker runs without it and says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

DEFAULT_MB = 32


@dataclass(frozen=True)
class ReserveStatus:
    installed: bool
    reason: str


def _module() -> ModuleType | None:
    try:
        from posrecon.engine import _arena_reserve  # type: ignore[attr-defined]
    except ImportError:
        return None
    return _arena_reserve  # type: ignore[no-any-return]


def install(megabytes: int) -> ReserveStatus:
    """Install the reserve (once per process). ``megabytes`` 0 leaves the allocator as it is."""
    if megabytes <= 0:
        return ReserveStatus(False, "off (memory reserve 0 MB)")
    module = _module()
    if module is None:
        return ReserveStatus(False, "not built (the engine runs from source: make native)")
    if not module.install(megabytes):
        already = bool(module.stats().get("installed"))
        return ReserveStatus(already, "already installed" if already else "not supported on this platform")
    return ReserveStatus(True, f"{megabytes} MB populated ahead of the object allocator")


def stats() -> dict[str, Any]:
    """The reserve's counters: arenas ``served`` from it and ``fallbacks`` to a fresh mapping, ``reused`` (freed
    and kept populated), ``released`` (pages given back), ``populated`` by the thread; {} when not built."""
    module = _module()
    return dict(module.stats()) if module is not None else {}
