"""posrecon/native.py: the compiled engine is used only while it was built from the sources beside it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from posrecon import native

EXT = "cpython-311-x86_64-linux-gnu.so"


def checkout(root: Path) -> Path:
    """A checkout's shape: streams/posrecon/{config.py, engine/}; returns the engine package directory."""
    engine = root / "streams" / "posrecon" / "engine"
    engine.mkdir(parents=True)
    (engine / "__init__.py").write_text("# the loader's caller: not compiled\n")
    (engine / "rules.py").write_text("LIMIT = 1\n")
    (engine.parent / "config.py").write_text("SLA = 2\n")
    return engine


def build(root: Path, engine: Path) -> Path:
    """What `make native` leaves: the extensions (stand-ins: the loader only looks for them) and the manifest."""
    out = root / ".native" / "posrecon" / "engine"
    out.mkdir(parents=True)
    (out / f"engine.{EXT}").write_bytes(b"")
    (out / native.MANIFEST).write_text(json.dumps(native.manifest_for(engine)))
    return out


def test_a_fresh_development_build_goes_first_on_the_package_path(tmp_path: Path) -> None:
    engine = checkout(tmp_path)
    out = build(tmp_path, engine)
    path = [str(engine)]
    got = native.activate(path, engine, "auto")
    assert got.compiled
    assert path == [str(out), str(engine)]
    assert "development build" in got.describe()


@pytest.mark.parametrize("edited", ["engine/rules.py", "config.py"])
def test_an_edited_source_is_never_shadowed_by_its_stale_build(tmp_path: Path, edited: str) -> None:
    engine = checkout(tmp_path)
    build(tmp_path, engine)
    (engine.parent / edited).write_text("CHANGED = True\n")
    path = [str(engine)]
    got = native.activate(path, engine, "auto")
    assert not got.compiled
    assert path == [str(engine)]
    assert "older than the sources" in got.reason


def test_a_new_engine_module_makes_the_build_stale(tmp_path: Path) -> None:
    engine = checkout(tmp_path)
    build(tmp_path, engine)
    (engine / "extra.py").write_text("X = 1\n")
    assert not native.activate([str(engine)], engine, "auto").compiled


def test_the_init_is_not_part_of_the_build(tmp_path: Path) -> None:
    engine = checkout(tmp_path)
    build(tmp_path, engine)
    (engine / "__init__.py").write_text("# edited\n")
    assert native.activate([str(engine)], engine, "auto").compiled
    assert [p.name for p in native.compiled_sources(engine)] == ["rules.py"]


def test_a_build_of_another_python_is_stale(tmp_path: Path) -> None:
    engine = checkout(tmp_path)
    out = build(tmp_path, engine)
    manifest = json.loads((out / native.MANIFEST).read_text())
    (out / native.MANIFEST).write_text(json.dumps({**manifest, "python": "cpython-310"}))
    assert not native.activate([str(engine)], engine, "auto").compiled


def test_no_build_runs_from_source_and_says_how_to_build(tmp_path: Path) -> None:
    engine = checkout(tmp_path)
    got = native.activate([str(engine)], engine, "auto")
    assert not got.compiled
    assert "make native" in got.reason


def test_a_manifest_without_extensions_is_no_build(tmp_path: Path) -> None:
    engine = checkout(tmp_path)
    out = build(tmp_path, engine)
    (out / f"engine.{EXT}").unlink()
    assert not native.activate([str(engine)], engine, "auto").compiled


def test_source_is_chosen_over_a_fresh_build(tmp_path: Path) -> None:
    engine = checkout(tmp_path)
    build(tmp_path, engine)
    path = [str(engine)]
    got = native.activate(path, engine, "source")
    assert not got.compiled
    assert path == [str(engine)]


def test_compiled_refuses_to_run_from_source(tmp_path: Path) -> None:
    engine = checkout(tmp_path)
    build(tmp_path, engine)
    assert native.activate([str(engine)], engine, "compiled").compiled
    (engine / "rules.py").write_text("LIMIT = 3\n")
    with pytest.raises(ImportError, match="older than the sources"):
        native.activate([str(engine)], engine, "compiled")


def test_an_unknown_choice_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = checkout(tmp_path)
    monkeypatch.setenv("POSRECON_ENGINE", "fast")
    with pytest.raises(ImportError, match="POSRECON_ENGINE must be one of"):
        native.activate([str(engine)], engine)


def test_installed_extensions_beside_the_sources_are_used_as_they_are(tmp_path: Path) -> None:
    engine = checkout(tmp_path)
    (engine / f"engine.{EXT}").write_bytes(b"")
    (engine / native.MANIFEST).write_text(json.dumps(native.manifest_for(engine)))
    path = [str(engine)]
    got = native.activate(path, engine, "source")  # a wheel's extensions cannot be unloaded
    assert got.compiled
    assert path == [str(engine)]
    assert "installed extensions" in got.reason
    (engine / "rules.py").write_text("LIMIT = 4\n")
    assert "does not match" in native.activate(path, engine, "auto").reason
