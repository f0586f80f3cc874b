"""Build of the compiled engine (the rest of the packaging is in pyproject.toml).

``posrecon.engine`` is compiled with mypyc (posrecon/native.py says why and how the build is chosen at import):

* ``pip install .`` / ``pip wheel .``: the wheel carries the C extensions beside the sources, and a manifest of
  the sources' digests. ``POSRECON_PURE=1`` builds a pure-Python wheel instead. If mypyc or the C compiler
  fails, the wheel is built pure, with a warning (``POSRECON_PURE=0`` makes that an error).
* ``pip install -e .`` compiles nothing (an extension beside an edited source would shadow it);
  ``python setup.py native`` (``make native``) builds into ``.native/`` instead, where the engine finds it
  while its manifest matches the sources.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import ClassVar

from setuptools import Command, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
ENGINE = ROOT / "streams" / "posrecon" / "engine"
sys.path.insert(0, str(ROOT / "streams"))
from posrecon import native  # noqa: E402  (the one definition of what is compiled and of its manifest)


def extensions() -> list[object]:
    from mypyc.build import mypycify

    os.chdir(ROOT)  # mypy reads [tool.mypy] (strict, mypy_path = streams) from pyproject.toml here
    paths = [str(p.relative_to(ROOT)) for p in native.compiled_sources(ENGINE)]
    return list(mypycify(paths, group_name=native.GROUP, opt_level="3"))


class BuildNative(build_ext):  # type: ignore[misc]
    """build_ext, all or nothing: a shim without its shared library would fail at import, so on any failure every
    built extension is removed and the engine stays Python. On success, the manifest goes beside them."""

    def run(self) -> None:
        manifest = Path(self.get_ext_fullpath(f"{native.GROUP.rsplit('.', 1)[0]}.x")).parent / native.MANIFEST
        # a manifest only beside extensions built from these sources: mypyc failing leaves no extension to build,
        # and a manifest written then would vouch for whatever an earlier build left in .native/
        manifest.unlink(missing_ok=True)
        if not self.extensions:
            return
        try:
            super().run()
        except Exception as exc:
            for ext in self.extensions:
                Path(self.get_ext_fullpath(ext.name)).unlink(missing_ok=True)
            if os.environ.get("POSRECON_PURE") == "0":
                raise
            print(f"warning: the compiled engine was not built ({exc}); posrecon runs its engine from source")
            return
        manifest.write_text(json.dumps(native.manifest_for(ENGINE), indent=1) + "\n")


class Native(Command):  # type: ignore[misc]
    """``python setup.py native``: the development build, into .native/ (see posrecon/native.py)."""

    description = "compile the engine with mypyc into .native/ for a development checkout"
    user_options: ClassVar[list[tuple[str, str | None, str]]] = []

    def initialize_options(self) -> None:
        pass

    def finalize_options(self) -> None:
        pass

    def run(self) -> None:
        cmd = self.reinitialize_command("build_ext")
        cmd.build_lib = str(ROOT / ".native")
        cmd.build_temp = str(ROOT / "build" / "native")
        cmd.inplace = False
        self.run_command("build_ext")


def wanted() -> bool:
    if os.environ.get("POSRECON_PURE") == "1":
        return False
    return not any(arg in ("editable_wheel", "develop", "dist_info", "egg_info") for arg in sys.argv[1:])


ext_modules: list[object] = []
if wanted():
    try:
        ext_modules = extensions()
    except (SystemExit, Exception) as exc:  # mypy missing, or the sources do not type-check
        if os.environ.get("POSRECON_PURE") == "0":
            raise
        print(f"warning: mypyc could not compile the engine ({exc!r}); posrecon runs its engine from source")

setup(ext_modules=ext_modules, cmdclass={"build_ext": BuildNative, "native": Native})
