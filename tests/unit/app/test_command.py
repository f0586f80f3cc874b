"""``posrecon run``'s options that the environment sets (app/command.py)."""

from __future__ import annotations

import argparse

import pytest

from posrecon.arena_reserve import DEFAULT_MB
from posrecon.cli import build_parser


def _run_args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["run", *argv])


def test_memory_reserve_defaults_on_and_the_environment_or_flag_sets_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POSRECON_MEMORY_RESERVE_MB", raising=False)
    assert _run_args().memory_reserve_mb == DEFAULT_MB > 0
    monkeypatch.setenv("POSRECON_MEMORY_RESERVE_MB", "0")  # off
    assert _run_args().memory_reserve_mb == 0
    monkeypatch.setenv("POSRECON_MEMORY_RESERVE_MB", "64")
    assert _run_args().memory_reserve_mb == 64
    assert _run_args("--memory-reserve-mb", "8").memory_reserve_mb == 8
