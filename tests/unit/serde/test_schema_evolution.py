"""The evolution gate: every current schema resolves against every committed version, both directions."""

from __future__ import annotations

import io
import json
from typing import Any

import fastavro
import pytest

from posrecon.serde.schemas import RECORD_NAMES, history_versions, load_schema_json

SAMPLES: dict[str, dict[str, Any]] = {
    "TerminalEvent": {"event_id": "e", "order_id": "o", "merchant_id": "m", "terminal_id": "t",
                      "event_type": "AUTH_APPROVED", "amount_minor": 1, "currency": "EUR", "card_token": None,
                      "event_time": 1, "attempt": 1, "decline_code": None},
    "SettlementNotice": {"notice_id": "n", "order_id": "o", "merchant_id": "m", "status": "SETTLED", "amount_minor": 1,
                         "currency": "EUR", "settled_at": 1, "batch_id": None, "fee_minor": 0},
    "ReconciledOrder": {"order_id": "o", "merchant_id": "m", "terminal_id": None, "outcome": "MATCHED", "currency": "EUR",
                        "approved_amount_minor": 1, "settled_amount_minor": 1, "approved_at": 1, "settled_at": 2,
                        "settlement_lag_ms": 1, "notice_id": "n", "revision": 1},
    "Alert": {"alert_id": "a", "kind": "INVALID_EVENT", "severity": "WARNING", "order_id": None, "merchant_id": None,
              "terminal_id": None, "reason": "r", "event_time": 1, "detected_at": 2, "related_ids": []},
}  # fmt: skip


def _resolve(writer: dict[str, Any], reader: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    w, r = fastavro.parse_schema(writer), fastavro.parse_schema(reader)
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, w, record)
    buf.seek(0)
    out: dict[str, Any] = fastavro.schemaless_reader(buf, w, r)  # type: ignore[assignment]
    return out


@pytest.mark.parametrize("name", RECORD_NAMES)
@pytest.mark.parametrize("version", history_versions())
def test_current_schema_is_backward_and_forward_compatible(name: str, version: str) -> None:
    current, previous = load_schema_json(name), load_schema_json(name, version)
    sample = SAMPLES[name]
    assert set(_resolve(previous, current, sample)) == {f["name"] for f in current["fields"]}  # backward
    assert set(_resolve(current, previous, sample)) == {f["name"] for f in previous["fields"]}  # forward


@pytest.mark.parametrize("name", RECORD_NAMES)
def test_contract_fields_are_never_removed_or_retyped(name: str) -> None:
    current = {f["name"]: f["type"] for f in load_schema_json(name)["fields"]}
    for version in history_versions():
        for field in load_schema_json(name, version)["fields"]:
            assert field["name"] in current, f"{name}.{field['name']} removed since {version}"
            assert json.dumps(current[field["name"]], sort_keys=True) == json.dumps(field["type"], sort_keys=True)


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
