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


class RecordShape:
    """Field checks of one record schema (the JSON schema document, not the parsed one)."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.name = schema["name"]
        self.fields: list[tuple[str, Check, str, bool, Any]] = []
        for field in schema["fields"]:
            check, desc = _check_for(field["type"])
            self.fields.append((field["name"], check, desc, "default" in field, field.get("default")))

    def conform(self, record: Any) -> dict[str, Any]:
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
