"""The contract's Avro schemas, parsed once.

``schemas/*.avsc`` are the current versions; ``schemas/history/vN/`` keeps every committed version so
readers resolve records written with any of them (and the evolution gate tests both directions).
Logical types are stripped for the wire codec: timestamp-millis is a plain ``long`` on the wire, and the
engine works in epoch milliseconds, so no datetime conversion happens on the hot path.
"""

from __future__ import annotations

import copy
import json
import os
import sys
from functools import cache
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

RECORD_NAMES = (
    "TerminalEvent",
    "SettlementNotice",
    "ReconciledOrder",
    "Alert",
    "SettlementBatch",
    "BatchReconciliation",
    "ExceptionAction",
    "ExceptionCase",
)
NAMESPACE = "posrecon.v1"


def schema_dir() -> Path:
    """``$POSRECON_SCHEMA_DIR``, else the source tree's ``schemas/``, else the installed data files."""
    override = os.environ.get("POSRECON_SCHEMA_DIR")
    if override:
        return Path(override)
    source_tree = Path(__file__).resolve().parents[3] / "schemas"
    if source_tree.is_dir():
        return source_tree
    return Path(sys.prefix) / "share" / "posrecon" / "schemas"


def load_schema_json(name: str, version: str | None = None) -> dict[str, Any]:
    base = schema_dir() if version is None else schema_dir() / "history" / version
    with open(base / f"{name}.avsc", encoding="utf-8") as fh:
        doc: dict[str, Any] = json.load(fh)
    return doc


def history_versions() -> list[str]:
    root = schema_dir() / "history"
    return sorted((p.name for p in root.iterdir() if p.is_dir()), key=lambda v: int(v.lstrip("v")))


def versions_of(name: str) -> list[str]:
    """The committed versions that define record ``name`` (a record added in v2 has no v1)."""
    return [v for v in history_versions() if (schema_dir() / "history" / v / f"{name}.avsc").is_file()]


def strip_logical_types(schema: Any) -> Any:
    """A copy of ``schema`` without logicalType annotations (same binary encoding)."""
    if isinstance(schema, dict):
        return {k: strip_logical_types(v) for k, v in schema.items() if k != "logicalType"}
    if isinstance(schema, list):
        return [strip_logical_types(s) for s in schema]
    return copy.copy(schema)


@cache
def wire_schema(name: str, version: str | None = None) -> Any:
    """Parsed schema used on the wire (logical types stripped)."""
    return fastavro.parse_schema(strip_logical_types(load_schema_json(name, version)))


@cache
def schema_fingerprint(name: str, version: str | None = None) -> bytes:
    """CRC-64-AVRO fingerprint of the schema's canonical form (as Avro single-object encoding uses)."""
    parsed = fastavro.parse_schema(load_schema_json(name, version))
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))
