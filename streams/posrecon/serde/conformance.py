"""Strict, fast schema conformance for JSON-shaped records (replay input).

fastavro's writer silently truncates floats and accepts booleans as longs; the contract wants a record
that "does not fit the schema" to become a dead letter, so this checker is strict: exact JSON types,
enum symbols, long/int ranges, required fields present (fields with defaults are filled in).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

INT_RANGE = (-(1 << 31), (1 << 31) - 1)
LONG_RANGE = (-(1 << 63), (1 << 63) - 1)

Check = Callable[[Any], bool]
_MISSING = object()


class SchemaMismatch(ValueError):
    pass


def _check_for(avro_type: Any) -> tuple[Check, str]:
    if isinstance(avro_type, list):
        parts = [_check_for(t) for t in avro_type]
        checks = [c for c, _ in parts]
        return (lambda v: any(c(v) for c in checks)), " or ".join(d for _, d in parts)
    if isinstance(avro_type, dict):
        kind = avro_type["type"]
        if kind == "enum":
            symbols = frozenset(avro_type["symbols"])
            return (lambda v: type(v) is str and v in symbols), f"one of {sorted(symbols)}"
        if kind == "record":  # nested (ExceptionCase.history): checked; its missing defaults are the writer's
            shape = RecordShape(avro_type)
            return shape.conforms, f"a {shape.name} record"
        if kind == "array":
            item, desc = _check_for(avro_type["items"])
            return (lambda v: type(v) is list and all(item(x) for x in v)), f"array of {desc}"
        return _check_for(kind)
    if avro_type == "null":
        return (lambda v: v is None), "null"
    if avro_type == "string":
        return (lambda v: type(v) is str), "string"
    if avro_type in ("long", "int"):
        low, high = LONG_RANGE if avro_type == "long" else INT_RANGE
        return (lambda v: type(v) is int and low <= v <= high), avro_type
    if avro_type == "boolean":
        return (lambda v: type(v) is bool), "boolean"
    raise ValueError(f"unsupported Avro type in contract schema: {avro_type!r}")


def _inline_test(avro_type: Any, var: str) -> str | None:
    """A Python expression testing ``var`` against a simple Avro type, or None (use the generic check)."""
    if avro_type == "string":
        return f"type({var}) is str"
    if avro_type in ("long", "int"):
        low, high = LONG_RANGE if avro_type == "long" else INT_RANGE
        return f"(type({var}) is int and {low} <= {var} <= {high})"
    if isinstance(avro_type, dict) and avro_type.get("type") in ("long", "int") and "logicalType" in avro_type:
        return _inline_test(avro_type["type"], var)
    if isinstance(avro_type, list) and len(avro_type) == 2 and avro_type[0] == "null":
        inner = _inline_test(avro_type[1], var)
        return None if inner is None else f"({var} is None or {inner})"
    return None


class RecordShape:
    """Field checks of one record schema (the JSON schema document, not the parsed one).

    ``conform`` is generated as straight-line code per schema (the generic per-field loop is kept as
    the reference implementation, ``conform_slow``, and the tests compare the two)."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.name = schema["name"]
        self.fields: list[tuple[str, Check, str, bool, Any]] = []
        for field in schema["fields"]:
            check, desc = _check_for(field["type"])
            self.fields.append((field["name"], check, desc, "default" in field, field.get("default")))
        self.conform = self._compile(schema)  # type: ignore[method-assign,assignment]

    def _compile(self, schema: dict[str, Any]) -> Callable[[Any], dict[str, Any]]:
        fields = schema["fields"]
        env: dict[str, Any] = {"slow": self.conform_slow}
        for i, field in enumerate(fields):
            if _inline_test(field["type"], "v") is None:
                env[f"check{i}"] = self.fields[i][1]

        def test(i: int, var: str) -> str:
            return _inline_test(fields[i]["type"], var) or f"check{i}({var})"

        lines = ["def conform(record):", "    if type(record) is not dict:", "        return slow(record)"]
        # The usual record has the schema's fields in schema order and nothing else, the trailing ones with defaults
        # perhaps left out. Once every value passes its test, it is then its own output (what the general path
        # below builds field by field), with the defaults of the left-out fields appended.
        lines.append("    n = len(record)")
        present = len(fields)
        while present > 0:
            names = tuple(f["name"] for f in fields[:present])
            env[f"NAMES{present}"] = names
            env[f"TAIL{present}"] = {f["name"]: f["default"] for f in fields[present:]}
            lines.append(f"    if n == {present} and tuple(record) == NAMES{present}:")
            lines.append(f"        ({', '.join(f'v{i}' for i in range(present))},) = record.values()")
            lines.append(f"        if {' and '.join(test(i, f'v{i}') for i in range(present))}:")
            tail = f" | TAIL{present}" if present < len(fields) else ""
            lines.append(f"            return record{tail}")
            if "default" not in fields[present - 1]:
                break
            present -= 1
        lines.append("    out = {}")
        for i, field in enumerate(fields):
            name = field["name"]
            lines.append(f"    v = record.get({name!r}, MISSING)")
            if "default" in field:
                env[f"default{i}"] = field["default"]
                lines.append(f"    if v is MISSING: v = default{i}")
                lines.append(f"    elif not {test(i, 'v')}: return slow(record)")
            else:
                lines.append(f"    if v is MISSING or not {test(i, 'v')}: return slow(record)")
            lines.append(f"    out[{name!r}] = v")
        lines.append("    return out")
        env["MISSING"] = _MISSING
        exec("\n".join(lines), env)  # generated from the contract's own schema files
        fn: Callable[[Any], dict[str, Any]] = env["conform"]
        return fn

    def conform(self, record: Any) -> dict[str, Any]:  # replaced per instance by the compiled version
        return self.conform_slow(record)

    def conforms(self, record: Any) -> bool:
        try:
            self.conform_slow(record)
        except SchemaMismatch:
            return False
        return True

    def conform_slow(self, record: Any) -> dict[str, Any]:
        if type(record) is not dict:
            raise SchemaMismatch(f"{self.name} record must be a JSON object")
        out: dict[str, Any] = {}
        for name, check, desc, has_default, default in self.fields:
            if name in record:
                value = record[name]
                if not check(value):
                    raise SchemaMismatch(f"{self.name}.{name} must be {desc}, got {type(value).__name__}")
                out[name] = value
            elif has_default:
                out[name] = default
            else:
                raise SchemaMismatch(f"{self.name}.{name} is missing and has no default")
        return out
