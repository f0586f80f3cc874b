"""Avro schema compatibility, checked here before a schema is registered (posrecon.serde.wire).

BACKWARD (the Schema Registry's default level): a reader with the new schema reads data written with the
previous one, by the Avro spec's schema resolution rules. The registry checks its own configured level too
(``test_compatibility``); this check is ours, runs before any registry call, and names the offending field,
where the registry's answer is a bare yes or no (and the in-process ``mock://`` registry has no such check).
"""

from __future__ import annotations

from typing import Any

from fastavro.schema import expand_schema

_PROMOTIONS = {
    "int": {"long", "float", "double"},
    "long": {"float", "double"},
    "float": {"double"},
    "string": {"bytes"},
    "bytes": {"string"},
}
_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


def _normal(schema: Any) -> Any:
    """``{"type": "long", "logicalType": …}`` as ``"long"`` (logical types do not change resolution)."""
    if isinstance(schema, dict) and isinstance(schema.get("type"), str) and schema["type"] in _PRIMITIVES:
        return schema["type"]
    return schema


def _kind(schema: Any) -> str:
    if isinstance(schema, list):
        return "union"
    if isinstance(schema, str):
        return schema
    return str(schema["type"])


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def backward_problems(new: Any, previous: Any) -> list[str]:
    """Why a reader with ``new`` cannot read every record written with ``previous`` (empty: BACKWARD compatible).
    Both are Avro schemas as parsed JSON."""
    problems: list[str] = []
    _resolve(_normal(expand_schema(previous)), _normal(expand_schema(new)), _short(_name(new)), problems)
    return problems


def _name(schema: Any) -> str:
    return str(schema.get("name", "")) if isinstance(schema, dict) else str(schema)


def _resolve(writer: Any, reader: Any, path: str, problems: list[str]) -> None:
    writer, reader = _normal(writer), _normal(reader)
    wk, rk = _kind(writer), _kind(reader)
    if wk == "union":  # every branch the writer may have written must be readable
        for branch in writer:
            _resolve(branch, reader, path, problems)
        return
    if rk == "union":
        if not any(_matches(writer, _normal(branch)) for branch in reader):
            problems.append(f"{path}: the writer's {wk} matches no branch of the reader's union")
            return
        branch = next(_normal(b) for b in reader if _matches(writer, _normal(b)))
        _resolve(writer, branch, path, problems)
        return
    if not _matches(writer, reader):
        problems.append(f"{path}: type changed from {_describe(writer)} to {_describe(reader)}")
        return
    if rk == "record":
        written = {f["name"]: f for f in writer["fields"]}
        for field in reader["fields"]:
            names = [field["name"], *field.get("aliases", [])]
            source = next((written[n] for n in names if n in written), None)
            if source is None:
                if "default" not in field:
                    problems.append(f"{path}.{field['name']}: new field without a default")
                continue
            _resolve(source["type"], field["type"], f"{path}.{field['name']}", problems)
    elif rk == "enum":
        missing = [s for s in writer["symbols"] if s not in reader["symbols"]]
        if missing and "default" not in reader:
            problems.append(f"{path}: enum {_short(reader['name'])} lost symbol(s) {', '.join(missing)}")
    elif rk == "array":
        _resolve(writer["items"], reader["items"], f"{path}[]", problems)
    elif rk == "map":
        _resolve(writer["values"], reader["values"], f"{path}{{}}", problems)
    elif rk == "fixed" and writer["size"] != reader["size"]:
        problems.append(f"{path}: fixed size changed from {writer['size']} to {reader['size']}")


def _matches(writer: Any, reader: Any) -> bool:
    """The spec's "match" of two non-union schemas (named types by unqualified name, promotions allowed)."""
    wk, rk = _kind(writer), _kind(reader)
    if wk in _PRIMITIVES or rk in _PRIMITIVES:
        return wk == rk or rk in _PROMOTIONS.get(wk, set())
    if wk != rk:
        return False
    if wk in ("record", "enum", "fixed"):
        aliases = {_short(a) for a in reader.get("aliases", [])}
        return _short(writer["name"]) in {_short(reader["name"]), *aliases}
    return True


def _describe(schema: Any) -> str:
    kind = _kind(schema)
    return f"{kind} {_short(schema['name'])}" if kind in ("record", "enum", "fixed") else kind
