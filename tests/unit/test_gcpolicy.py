"""The GC policy of the engine's hosts (posrecon/gcpolicy.py): freezing is only safe because the engine makes
no reference cycles, and a window with cyclic garbage must switch the collector back to scanning."""

from __future__ import annotations

import gc
import json
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from posrecon import gcpolicy
from posrecon.config import RuleConfig
from posrecon.engine.engine import ReconciliationEngine
from posrecon.serde.codec import AvroCodec, DecodeError
from posrecon.sim.command import write_input
from posrecon.sim.generator import generate


@pytest.fixture
def collector_off() -> Iterator[None]:
    was = gc.isenabled()
    gc.disable()
    gc.collect()
    try:
        yield
    finally:
        gc.unfreeze()
        if was:
            gc.enable()


def _records(tmp_path: Path) -> list[tuple[bool, dict[str, Any]]]:
    path = tmp_path / "input.jsonl"
    write_input(generate(3_000, 5), path, progress=False)
    codecs = {"terminal": AvroCodec("TerminalEvent"), "settlement": AvroCodec("SettlementNotice")}
    out = []
    for line in path.read_text().splitlines():
        try:
            doc = json.loads(line)
            out.append((doc["source"] == "terminal", codecs[doc["source"]].conform(doc["record"])))
        except (ValueError, KeyError, TypeError, DecodeError):
            continue
    return out


def test_the_engine_makes_no_reference_cycles(tmp_path: Path, collector_off: None) -> None:
    """What the policy freezes unscanned is engine state: a simulated mix (every rule, invalid records with
    card numbers, deadlines, evictions) leaves no cyclic garbage behind."""
    records = _records(tmp_path)
    gc.collect()
    engine = ReconciliationEngine(RuleConfig())
    decisions = alerts = 0
    for terminal, rec in records:
        if terminal:
            engine.on_terminal_event(rec, 0)  # type: ignore[arg-type]
        else:
            engine.on_settlement_notice(rec, 0)  # type: ignore[arg-type]
        reconciled, raised = engine.take()
        decisions, alerts = decisions + len(reconciled), alerts + len(raised)
    engine.advance(0, 2**62, 2**62)  # every deadline fires, every order is evicted
    del reconciled, raised
    engine.take()
    assert engine.stats.invalid > 0 and engine.stats.evicted > 0 and decisions > 0 and alerts > 0
    assert gc.collect() == 0


class _Node:
    def __init__(self) -> None:
        self.me = self


def test_windows_without_cycles_are_frozen_not_collected(collector_off: None) -> None:
    collector = gcpolicy.YoungCollector()
    frozen = gc.get_freeze_count()
    kept = [[i] for i in range(1000)]  # survivors of the window (lists: tracked by the collector)
    collector.tick(gcpolicy.YOUNG_EVERY)
    assert gc.get_freeze_count() >= frozen + len(kept)
    for _ in range(gcpolicy.SAMPLE_EVERY * 2):
        collector.tick(gcpolicy.YOUNG_EVERY)
    assert not collector.scanning and collector.cycles_found == 0


def test_a_sampled_window_with_a_cycle_collects_the_frozen_ones_and_scans_from_then_on(
    collector_off: None,
) -> None:
    collector = gcpolicy.YoungCollector()
    early = _Node()
    early_ref = weakref.ref(early)
    del early
    collector.tick(gcpolicy.YOUNG_EVERY)  # window 1: frozen, cycle and all
    assert early_ref() is not None
    for _ in range(gcpolicy.SAMPLE_EVERY - 2):  # windows 2 .. SAMPLE_EVERY - 1: frozen
        collector.tick(gcpolicy.YOUNG_EVERY)
    assert not collector.scanning and early_ref() is not None
    late = _Node()
    late_ref = weakref.ref(late)
    del late
    collector.tick(gcpolicy.YOUNG_EVERY)  # the sampled window finds `late`
    assert collector.scanning
    assert early_ref() is None and late_ref() is None  # the frozen cycle is collected too
    again = _Node()
    again_ref = weakref.ref(again)
    del again
    collector.tick(gcpolicy.YOUNG_EVERY)  # any window now
    assert again_ref() is None
