"""The tree's house rules, checked: rooms of a readable size, the dev broker out of the product, production's
dependencies only what production runs, and the profile's stage names pointing at code that exists."""

from __future__ import annotations

import ast
import importlib.util
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "streams" / "posrecon"
MAX_MODULE_LINES = 450
MAX_CLASS_LINES = 300
PRODUCTION = ("app", "kafka", "engine", "serde")  # what a deployed worker runs


GENERATED = (PACKAGE / "engine" / "avro_codecs.py",)  # written by `make codecs`, read by no one


def _modules() -> list[Path]:
    """The hand-written modules (a generated one is checked against its generator instead)."""
    return sorted(p for p in PACKAGE.rglob("*.py") if p not in GENERATED)


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines())


def _classes() -> list[tuple[int, str]]:
    """(lines, "file:Class") of every class under the package, nested ones included."""
    found = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                assert node.end_lineno is not None
                found.append((node.end_lineno - node.lineno + 1, f"{_rel(path)}:{node.name}"))
    return found


def test_no_module_over_450_lines() -> None:
    sizes = sorted(((_lines(p), _rel(p)) for p in _modules()), reverse=True)
    print(f"largest module: {sizes[0][1]} ({sizes[0][0]} lines)")
    too_big = [f"{name} ({n})" for n, name in sizes if n > MAX_MODULE_LINES]
    assert not too_big, f"modules over {MAX_MODULE_LINES} lines: {too_big}"


def test_no_class_over_300_lines() -> None:
    sizes = sorted(_classes(), reverse=True)
    print(f"largest class: {sizes[0][1]} ({sizes[0][0]} lines)")
    too_big = [f"{name} ({n})" for n, name in sizes if n > MAX_CLASS_LINES]
    assert not too_big, f"classes over {MAX_CLASS_LINES} lines: {too_big}"


def test_the_dev_broker_is_not_in_the_kafka_adapter() -> None:
    assert not (PACKAGE / "kafka" / "broker.py").exists(), "the dev broker lives in posrecon/localbroker/"


def _imported(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_production_packages_do_not_import_the_dev_broker() -> None:
    offenders = []
    for package in PRODUCTION:
        for path in sorted((PACKAGE / package).rglob("*.py")):
            imports = _imported(ast.parse(path.read_text()))
            if any(name == "posrecon.localbroker" or name.startswith("posrecon.localbroker.") for name in imports):
                offenders.append(_rel(path))
    assert not offenders, f"production code importing posrecon.localbroker: {offenders}"


def test_faust_is_not_a_runtime_dependency() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = [re.split(r"[<>=!~;\[ ]", dep, maxsplit=1)[0].lower() for dep in project["dependencies"]]
    assert runtime, "no runtime dependencies read: the check would pass vacuously"
    assert "faust-streaming" not in runtime and "faust" not in runtime


def test_the_profile_stages_name_methods_that_exist() -> None:
    """bench/profile_summary.py charges a sample to a stage by ``Class.method`` in the frame's name: a renamed
    method silently moves its time to "other" (it did when the worker was split into its rooms)."""
    spec = importlib.util.spec_from_file_location("profile_summary", ROOT / "bench" / "profile_summary.py")
    assert spec is not None and spec.loader is not None
    summary = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(summary)
    methods: set[str] = set()
    classes: set[str] = set()
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                classes.add(node.name)
                methods.update(
                    f"{node.name}.{item.name}"
                    for item in node.body
                    if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
                )
    missing = []
    for _label, pattern in summary.STAGES:
        if re.fullmatch(r"[A-Z]\w*\.", pattern):  # "Class.": any method of the class
            if pattern[:-1] not in classes:
                missing.append(pattern)
        elif re.fullmatch(r"[A-Z]\w*\.\w+", pattern) and pattern not in methods:
            missing.append(pattern)
    assert not missing, f"profile stages naming code that does not exist: {missing}"
