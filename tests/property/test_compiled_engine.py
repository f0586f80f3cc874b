"""The compiled engine (mypyc, posrecon/native.py) decides exactly what its Python source decides.

`posrecon replay` of the same simulations runs in two processes, one per build (POSRECON_ENGINE), and every
output file must be byte-identical: decisions, alerts (OPEN and RESOLVED), dead letters and batches. Under
`make test` (POSRECON_ENGINE=compiled) a missing compiled build fails this test instead of skipping it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from posrecon.sim.command import write_config, write_input
from posrecon.sim.generator import generate

OUTPUTS = ("reconciled.jsonl", "alerts.jsonl", "deadletter.jsonl", "batch-reconciled.jsonl")


def _build_in(env: dict[str, str]) -> str:
    probe = "import posrecon.engine as e, posrecon.engine.engine as m; print(e.BUILD.compiled, m.__file__)"
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def _replay(tmp: Path, name: str, engine: str, partitions: int, until: int) -> Path:
    env = {**os.environ, "POSRECON_ENGINE": engine}
    out = tmp / name
    cmd = [sys.executable, "-m", "posrecon.cli", "replay", str(tmp / "input.jsonl"), "--config", str(tmp / "c.toml")]
    cmd += ["--out", str(out), "--partitions", str(partitions), "--until", str(until)]
    subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    return out


@pytest.mark.parametrize(("orders", "seed", "partitions", "contract"), [(6_000, 5, 1, "v2"), (3_000, 6, 4, "v1")])
def test_compiled_and_source_replays_are_byte_identical(
    tmp_path: Path, orders: int, seed: int, partitions: int, contract: str
) -> None:
    compiled = _build_in({**os.environ, "POSRECON_ENGINE": "auto"})
    if not compiled.startswith("True"):
        if os.environ.get("POSRECON_ENGINE") == "compiled":
            pytest.fail(f"POSRECON_ENGINE=compiled but no compiled engine is importable: {compiled}")
        pytest.skip("no compiled engine built here (make native)")
    assert _build_in({**os.environ, "POSRECON_ENGINE": "source"}).startswith("False")
    simulation = generate(orders, seed, fault_rate=0.6, partitions=partitions, contract=contract)
    write_input(simulation, tmp_path / "input.jsonl", progress=False)
    write_config(tmp_path / "c.toml", simulation.truth.rules)
    until = simulation.truth.until_ms
    a = _replay(tmp_path, "compiled", "compiled", partitions, until)
    b = _replay(tmp_path, "source", "source", partitions, until)
    for name in OUTPUTS:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / "reconciled.jsonl").stat().st_size > 0 and (a / "alerts.jsonl").stat().st_size > 0
