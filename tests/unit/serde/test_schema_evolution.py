"""The evolution gate: every current schema resolves against every committed version, both directions.

Contract v2: v2 is BACKWARD compatible with v1 (v2 readers read v1 data; upgrade consumers first), a v1 reader
reads v2 data only without new enum symbols (and only with ``history/v2`` shipped to it), and from v2 on every
enum has ``UNKNOWN`` as its Avro default, so adding fields or symbols is FULL compatible.
"""

from __future__ import annotations

import copy
import io
import json
import shutil
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import Any, get_type_hints

import fastavro
import pytest
from fastavro.read import SchemaResolutionError

from posrecon.engine import model
from posrecon.serde import schemas
from posrecon.serde.codec import AvroCodec, DecodeError
from posrecon.serde.schemas import (
    RECORD_NAMES,
    history_versions,
    load_schema_json,
    schema_fingerprint,
    strip_logical_types,
    versions_of,
)

#: the enums v2 changed, each with an UNKNOWN default (the contract's v2 section): the one set of them
ENUMS_WITH_UNKNOWN = {
    "Outcome",
    "AlertKind",
    "AlertStatus",
    "BatchStatus",
    "CaseState",
    "ExceptionActionKind",
    "CaseEntryKind",
}

V1_RECORDS = ("TerminalEvent", "SettlementNotice", "ReconciledOrder", "Alert")
SAMPLES: dict[str, dict[str, Any]] = {
    "TerminalEvent": {
        "event_id": "e",
        "order_id": "o",
        "merchant_id": "m",
        "terminal_id": "t",
        "event_type": "AUTH_APPROVED",
        "amount_minor": 1,
        "currency": "EUR",
        "card_token": None,
        "event_time": 1,
        "attempt": 1,
        "decline_code": None,
    },
    "SettlementNotice": {
        "notice_id": "n",
        "order_id": "o",
        "merchant_id": "m",
        "status": "SETTLED",
        "amount_minor": 1,
        "currency": "EUR",
        "settled_at": 1,
        "batch_id": None,
        "fee_minor": 0,
    },
    "ReconciledOrder": {
        "order_id": "o",
        "merchant_id": "m",
        "terminal_id": None,
        "outcome": "MATCHED",
        "currency": "EUR",
        "approved_amount_minor": 1,
        "settled_amount_minor": 1,
        "approved_at": 1,
        "settled_at": 2,
        "settlement_lag_ms": 1,
        "notice_id": "n",
        "revision": 1,
    },
    "Alert": {
        "alert_id": "a",
        "kind": "INVALID_EVENT",
        "severity": "WARNING",
        "order_id": None,
        "merchant_id": None,
        "terminal_id": None,
        "reason": "r",
        "event_time": 1,
        "detected_at": 2,
        "related_ids": [],
    },
    "SettlementBatch": {
        "batch_id": "b",
        "merchant_id": None,
        "currency": "EUR",
        "notice_count": 2,
        "gross_amount_minor": 3,
        "fee_amount_minor": 0,
        "closed_at": 4,
    },
    "BatchReconciliation": {
        "batch_id": "b",
        "currency": "EUR",
        "expected_count": 2,
        "received_count": 2,
        "expected_gross_minor": 3,
        "received_gross_minor": 3,
        "expected_fee_minor": 0,
        "received_fee_minor": 0,
        "status": "BALANCED",
        "revision": 1,
    },
    "ExceptionAction": {
        "action_id": "x",
        "alert_id": "a",
        "action": "ASSIGN",
        "actor": "ann",
        "note": None,
        "assignee": "bob",
        "at": 1,
        "order_id": "o",
        "batch_id": None,
        "merchant_id": "m",
    },
    "ExceptionCase": {
        "alert_id": "a",
        "kind": "MISSING_SETTLEMENT",
        "severity": "WARNING",
        "order_id": "o",
        "batch_id": None,
        "merchant_id": "m",
        "state": "ACKNOWLEDGED",
        "assignee": "bob",
        "opened_at": 1,
        "updated_at": 2,
        "version": 2,
        "last_rejection": None,
        "history": [
            {
                "action_id": "a",
                "action": "OPEN",
                "actor": "posrecon",
                "note": "r",
                "assignee": None,
                "at": 1,
                "accepted": True,
                "reason": None,
            },
            {
                "action_id": "x",
                "action": "ASSIGN",
                "actor": "ann",
                "note": None,
                "assignee": "bob",
                "at": 2,
                "accepted": True,
                "reason": None,
            },
        ],
    },
}
#: what a v2 reader fills in for a v1 record (the contract's "Added fields" defaults)
V2_DEFAULTS: dict[str, dict[str, Any]] = {
    "TerminalEvent": {},
    "SettlementNotice": {"capture_seq": 1, "capture_count": 1},
    "ReconciledOrder": {
        "settled_parts": None,
        "fee_minor": None,
        "reversed_amount_minor": None,
        "net_amount_minor": None,
    },
    "Alert": {"status": "OPEN", "resolves_alert_id": None, "batch_id": None},
}
#: v2 records that use every added field (and a new symbol where the record has one)
V2_SAMPLES: dict[str, dict[str, Any]] = {
    "TerminalEvent": SAMPLES["TerminalEvent"],
    "SettlementNotice": {**SAMPLES["SettlementNotice"], "capture_seq": 2, "capture_count": 3},
    "ReconciledOrder": {
        **SAMPLES["ReconciledOrder"],
        "outcome": "PARTIALLY_REVERSED",
        "settled_parts": 2,
        "fee_minor": 5,
        "reversed_amount_minor": 40,
        "net_amount_minor": 55,
    },
    "Alert": {
        **SAMPLES["Alert"],
        "kind": "MISSING_SETTLEMENT",
        "severity": "INFO",
        "status": "RESOLVED",
        "resolves_alert_id": "a0",
        "batch_id": None,
    },
}
#: v1 fingerprints (CRC-64-AVRO of the canonical form): history/v1 must never change
V1_FINGERPRINTS = {
    "TerminalEvent": "72e2a45d6b95ee4e",
    "SettlementNotice": "f19f64753424a1ad",
    "ReconciledOrder": "d982a2d3e03307d4",
    "Alert": "ab6cbc888928f354",
}
NEW_SYMBOLS = {
    "Outcome": ("ReconciledOrder", "outcome", ["PARTIALLY_SETTLED", "PARTIALLY_REVERSED", "NOT_CHARGED"]),
    "AlertKind": ("Alert", "kind", ["FEE_MISMATCH", "BATCH_INCOMPLETE", "BATCH_MISMATCH"]),
}


def _resolve(writer: dict[str, Any], reader: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """``record`` written with ``writer`` and read with ``reader`` (logical types stripped, as on the wire)."""
    w, r = (fastavro.parse_schema(strip_logical_types(s)) for s in (writer, reader))
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, w, record)
    buf.seek(0)
    out: dict[str, Any] = fastavro.schemaless_reader(buf, w, r)  # type: ignore[assignment]
    return out


def _enums(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if node.get("type") == "enum":
            yield node
        for value in node.values():
            yield from _enums(value)
    elif isinstance(node, list):
        for value in node:
            yield from _enums(value)


def _all_enums(version: str | None = None) -> dict[str, dict[str, Any]]:
    names = RECORD_NAMES if version is None else [n for n in RECORD_NAMES if version in versions_of(n)]
    return {e["name"]: e for name in names for e in _enums(load_schema_json(name, version))}


# -- both directions against every committed version -------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "version"),
    [(name, version) for version in history_versions() for name in RECORD_NAMES if version in versions_of(name)],
)
def test_current_schema_is_backward_and_forward_compatible(name: str, version: str) -> None:
    current, previous = load_schema_json(name), load_schema_json(name, version)
    sample = SAMPLES[name]
    assert set(_resolve(previous, current, sample)) == {f["name"] for f in current["fields"]}  # backward
    assert set(_resolve(current, previous, sample)) == {f["name"] for f in previous["fields"]}  # forward


@pytest.mark.parametrize("name", V1_RECORDS)
def test_v1_data_reads_as_v2_with_the_contract_defaults(name: str) -> None:
    out = _resolve(load_schema_json(name, "v1"), load_schema_json(name, "v2"), SAMPLES[name])
    assert out == {**SAMPLES[name], **V2_DEFAULTS[name]}


@pytest.mark.parametrize("name", V1_RECORDS)
def test_v2_data_round_trips_through_v2(name: str) -> None:
    v2 = load_schema_json(name, "v2")
    assert _resolve(v2, v2, V2_SAMPLES[name]) == V2_SAMPLES[name]
    assert _resolve(v2, load_schema_json(name), V2_SAMPLES[name]) == V2_SAMPLES[name]  # current reader


@pytest.mark.parametrize("name", V1_RECORDS)
def test_v2_data_without_new_symbols_reads_as_v1(name: str) -> None:
    record = {**SAMPLES[name], **{k: v for k, v in V2_SAMPLES[name].items() if k in V2_DEFAULTS[name]}}
    if name == "Alert":
        record["status"] = "RESOLVED"  # a new field's value, not a new symbol of a v1 enum: v1 drops it
    v1 = load_schema_json(name, "v1")
    assert _resolve(load_schema_json(name, "v2"), v1, record) == SAMPLES[name]


@pytest.mark.parametrize(("enum", "symbol"), [(e, s) for e, (_, _, syms) in NEW_SYMBOLS.items() for s in syms])
def test_a_v1_reader_refuses_v2_data_with_a_new_symbol(enum: str, symbol: str) -> None:
    """v1 enums have no default: "upgrade consumers first" (docs/operations.md)."""
    name, field, _ = NEW_SYMBOLS[enum]
    record = {**V2_SAMPLES[name], field: symbol}
    with pytest.raises(SchemaResolutionError, match=symbol):
        _resolve(load_schema_json(name, "v2"), load_schema_json(name, "v1"), record)


def test_from_v2_on_a_new_symbol_reads_as_unknown() -> None:
    """FULL from v2 on: a later version's symbol (and field) reach a v2 reader as UNKNOWN (and are dropped)."""
    seen = set()
    for name in RECORD_NAMES:
        later = copy.deepcopy(load_schema_json(name))
        later["fields"].append({"name": "channel", "type": ["null", "string"], "default": None})
        sample = {**V2_SAMPLES.get(name, SAMPLES[name]), "channel": "moto"}
        for enum in _enums(later):
            if "UNKNOWN" in enum["symbols"]:
                enum["symbols"].append("LATER_SYMBOL")
                seen.add(enum["name"])
                sample = {**sample, **{f["name"]: "LATER_SYMBOL" for f in later["fields"] if f["type"] is enum}}
        out = _resolve(later, load_schema_json(name), sample)
        assert "channel" not in out
        assert all(out[k] == "UNKNOWN" for k, v in sample.items() if v == "LATER_SYMBOL"), (name, out)
    assert seen == ENUMS_WITH_UNKNOWN


# -- the rules the versions keep ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", RECORD_NAMES)
def test_contract_fields_are_never_removed_or_retyped(name: str) -> None:
    current = {f["name"]: f["type"] for f in load_schema_json(name)["fields"]}

    def without_enum_changes(t: Any) -> Any:  # enums may gain symbols (and UNKNOWN as default); nothing else
        if isinstance(t, dict) and t.get("type") == "enum":
            return {"type": "enum", "name": t["name"]}
        return t

    for version in versions_of(name):
        for field in load_schema_json(name, version)["fields"]:
            assert field["name"] in current, f"{name}.{field['name']} removed since {version}"
            old, new = without_enum_changes(field["type"]), without_enum_changes(current[field["name"]])
            assert json.dumps(new, sort_keys=True) == json.dumps(old, sort_keys=True)
    added = {f["name"] for f in load_schema_json(name)["fields"]} - {
        f["name"] for v in versions_of(name)[:1] for f in load_schema_json(name, v)["fields"]
    }
    assert all("default" in f for f in load_schema_json(name)["fields"] if f["name"] in added), added


def test_enum_symbols_are_only_added() -> None:
    for version in history_versions():
        current = _all_enums()
        for enum_name, enum in _all_enums(version).items():
            assert set(enum["symbols"]) <= set(current[enum_name]["symbols"]), (version, enum_name)


def test_every_enum_v2_touches_has_unknown_as_its_default() -> None:
    """The contract's reading: an enum v2 touches is one whose symbols v2 adds or that v2 creates (Outcome,
    AlertKind, AlertStatus, BatchStatus). SettlementStatus, TerminalEventType and Severity keep v1's symbols
    (UNKNOWN in an input enum would be a symbol the engine has to accept)."""
    v1 = _all_enums("v1")
    touched = {n for n, e in _all_enums().items() if n not in v1 or e["symbols"] != v1[n]["symbols"]}
    assert touched == ENUMS_WITH_UNKNOWN
    for name, enum in _all_enums().items():
        if name in touched:
            assert enum["symbols"][-1] == "UNKNOWN" and enum.get("default") == "UNKNOWN", name
        else:
            assert "UNKNOWN" not in enum["symbols"] and "default" not in enum, name


def test_history_v1_is_unchanged_and_the_current_schemas_are_the_newest_version() -> None:
    assert {n: schema_fingerprint(n, "v1").hex() for n in V1_RECORDS} == V1_FINGERPRINTS
    newest = history_versions()[-1]
    for name in RECORD_NAMES:
        assert load_schema_json(name) == load_schema_json(name, newest), f"{name} changed without a history copy"


def test_gate_rejects_an_incompatible_change() -> None:
    """The gate can fail: a new required field without default breaks backward resolution."""
    previous = load_schema_json("TerminalEvent")
    broken = json.loads(json.dumps(previous))
    broken["fields"].append({"name": "channel", "type": "string"})
    with pytest.raises(Exception, match="channel"):
        _resolve(previous, broken, SAMPLES["TerminalEvent"])


def test_namespace_is_posrecon_v1() -> None:
    for name in RECORD_NAMES:
        assert load_schema_json(name)["namespace"] == "posrecon.v1"


# -- the engine's vocabulary is the schemas' -----------------------------------------------------------------


@pytest.mark.parametrize("name", RECORD_NAMES)
def test_model_records_have_the_schema_fields_in_order(name: str) -> None:
    assert list(get_type_hints(getattr(model, name))) == [f["name"] for f in load_schema_json(name)["fields"]]


@pytest.mark.parametrize(
    "enum_name",
    [
        "TerminalEventType",
        "SettlementStatus",
        "Outcome",
        "AlertKind",
        "Severity",
        "AlertStatus",
        "BatchStatus",
        "CaseState",
        "ExceptionActionKind",
        "CaseEntryKind",
    ],
)
def test_model_enums_are_the_schema_symbols_but_unknown(enum_name: str) -> None:
    enum: type[Enum] = getattr(model, enum_name)
    symbols = _all_enums()[enum_name]["symbols"]
    assert [m.value for m in enum] == [s for s in symbols if s != "UNKNOWN"]


# -- the codec: a v1 deployment reading v2 records -----------------------------------------------------------


REPO_SCHEMAS = schemas.schema_dir()
V2_WRITER = AvroCodec("ReconciledOrder")  # built from the repo's schemas before any fixture switches them


@pytest.fixture
def v1_deployment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A schema dir as a v1 deployment has it: v1 at the top, ``history/v1`` (tests add ``history/v2``)."""
    root = tmp_path / "schemas"
    shutil.copytree(REPO_SCHEMAS / "history" / "v1", root)
    shutil.copytree(REPO_SCHEMAS / "history" / "v1", root / "history" / "v1")
    monkeypatch.setenv("POSRECON_SCHEMA_DIR", str(root))
    schemas.wire_schema.cache_clear()
    schemas.schema_fingerprint.cache_clear()
    yield root
    schemas.wire_schema.cache_clear()
    schemas.schema_fingerprint.cache_clear()


def test_a_v1_reader_needs_history_v2_and_refuses_new_symbols(v1_deployment: Path) -> None:
    record = {**V2_SAMPLES["ReconciledOrder"], "outcome": "MATCHED"}
    plain, novel = V2_WRITER.encode(record), V2_WRITER.encode({**record, "outcome": "NOT_CHARGED"})

    with pytest.raises(DecodeError, match="unknown writer schema fingerprint"):
        AvroCodec("ReconciledOrder").decode(plain)  # a stock v1 reader: no v2 schema to resolve with
    shutil.copytree(REPO_SCHEMAS / "history" / "v2", v1_deployment / "history" / "v2")
    v1_reader = AvroCodec("ReconciledOrder")
    assert v1_reader.decode(plain) == SAMPLES["ReconciledOrder"]
    with pytest.raises(DecodeError):
        v1_reader.decode(novel)
