"""setup.py's development build: when mypyc cannot compile the engine, no manifest vouches for an older build."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from posrecon import native

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_a_failed_compile_leaves_no_manifest_over_an_older_build(tmp_path: Path) -> None:
    """The bug this guards: mypyc failing left no extension to build, build_ext then succeeded on nothing and wrote
    a fresh manifest beside the previous build's extensions, which then ran for sources they were not built from."""
    for name in ("setup.py", "pyproject.toml"):
        shutil.copy(REPO / name, tmp_path / name)
    shutil.copytree(REPO / "streams", tmp_path / "streams", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    engine = tmp_path / "streams" / "posrecon" / "engine"
    older = tmp_path / ".native" / "posrecon" / "engine"
    older.mkdir(parents=True)
    (older / "engine.cpython-311-x86_64-linux-gnu.so").write_bytes(b"")  # an earlier build's extension
    (older / native.MANIFEST).write_text('{"sources": {}}')
    with (engine / "expiry.py").open("a") as fh:
        fh.write("\nBROKEN: int = 'not an int'\n")  # a type error: mypyc refuses the whole group
    env = {k: v for k, v in os.environ.items() if k != "POSRECON_PURE"}
    done = subprocess.run(
        [sys.executable, "setup.py", "-q", "native"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "could not compile" in done.stdout
    assert not (older / native.MANIFEST).exists()
    build = native.activate([], engine, "auto")
    assert not build.compiled and "no compiled build" in build.reason
