"""Which build of the engine runs: the modules compiled with mypyc, or their Python source.

The engine (``posrecon.engine``) is plain, strictly typed Python and stays the one source of truth. ``setup.py``
compiles it with mypyc into C extensions, which run the same code about 1.4× as fast (docs/performance.md):

* a wheel (``pip install .``, the container image) carries the extensions next to the sources, where the import
  system prefers them;
* a development checkout builds them into ``.native/`` (``make native``, run by ``make install``), with a
  manifest of the digests of the sources they were built from. :func:`activate` puts that directory first on the
  engine package's ``__path__`` only while every digest still matches, so an edited source is never shadowed
  by a stale build: the engine then runs from source and says so (``reason``).

``POSRECON_ENGINE`` chooses: ``auto`` (default: compiled when a fresh build is there), ``source`` (never the
development build; a wheel's extensions cannot be unloaded), ``compiled`` (refuse to start without a fresh
compiled build: ``make test`` sets it, so the suite tests what ships).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

MANIFEST = "_native.json"
GROUP = "posrecon.engine._native"  # mypyc's shared library: posrecon/engine/_native__mypyc.<ext>
CHOICES = ("auto", "source", "compiled")


@dataclass(frozen=True)
class EngineBuild:
    compiled: bool
    reason: str

    def describe(self) -> str:
        return f"{'compiled (mypyc)' if self.compiled else 'source'}: {self.reason}"


def compiled_sources(package_dir: Path) -> list[Path]:
    """The modules mypyc compiles: every engine module but the package's ``__init__`` (this loader's caller)."""
    return sorted(p for p in package_dir.glob("*.py") if p.name != "__init__.py")


def source_digests(package_dir: Path) -> dict[str, str]:
    """sha256 of each compiled module and of ``posrecon/config.py``, whose classes the compiled code reads."""
    files = [*compiled_sources(package_dir), package_dir.parent / "config.py"]
    return {f"{p.parent.name}/{p.name}": hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def manifest_for(package_dir: Path) -> dict[str, object]:
    return {"python": sys.implementation.cache_tag, "sources": source_digests(package_dir)}


def _has_extensions(directory: Path) -> bool:
    return any(directory.glob("engine.*.so")) or any(directory.glob("engine.*.pyd"))


def activate(package_path: list[str], package_dir: Path, choice: str | None = None) -> EngineBuild:
    """Decide which build the engine package imports, editing its ``__path__`` (``package_path``) if needed."""
    choice = choice if choice is not None else os.environ.get("POSRECON_ENGINE", "auto")
    if choice not in CHOICES:
        raise ImportError(f"POSRECON_ENGINE must be one of {', '.join(CHOICES)}, got {choice!r}")
    build = _choose(package_path, package_dir, choice)
    if choice == "compiled" and not build.compiled:
        raise ImportError(f"POSRECON_ENGINE=compiled, but the engine would run from source: {build.reason}")
    return build


def _choose(package_path: list[str], package_dir: Path, choice: str) -> EngineBuild:
    if _has_extensions(package_dir):  # an installed wheel: built from the sources beside it
        fresh = _read_manifest(package_dir / MANIFEST) == manifest_for(package_dir)
        note = "" if fresh else " (their manifest does not match the sources beside them)"
        return EngineBuild(True, f"installed extensions in {package_dir}{note}")
    if choice == "source":
        return EngineBuild(False, "POSRECON_ENGINE=source")
    native = package_dir.parents[2] / ".native" / "posrecon" / "engine"
    recorded = _read_manifest(native / MANIFEST)
    if recorded is None or not _has_extensions(native):
        return EngineBuild(False, f"no compiled build in {native} (make native)")
    if recorded != manifest_for(package_dir):
        return EngineBuild(False, f"the compiled build in {native} is older than the sources (make native)")
    package_path.insert(0, str(native))
    return EngineBuild(True, f"development build in {native}")


def _read_manifest(path: Path) -> dict[str, object] | None:
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return loaded if isinstance(loaded, dict) else None
