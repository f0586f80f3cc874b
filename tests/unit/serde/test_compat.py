"""The BACKWARD check run before a schema is registered: the committed versions pass, each kind of break is
named."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from posrecon.serde.compat import backward_problems
from posrecon.serde.schemas import RECORD_NAMES, load_schema_json, versions_of


def _changed(name: str, field: str, **change: Any) -> dict[str, Any]:
    schema = copy.deepcopy(load_schema_json(name))
    for f in schema["fields"]:
        if f["name"] == field:
            f.update(change)
    return schema


@pytest.mark.parametrize("name", RECORD_NAMES)
def test_the_current_schemas_read_every_committed_version(name: str) -> None:
    for version in versions_of(name):
        assert backward_problems(load_schema_json(name), load_schema_json(name, version)) == [], version


def test_a_v1_reader_cannot_read_v2_enums_without_a_default() -> None:
    """As the evolution gate says: v1 enums have no default, so v2's new symbols break a v1 reader."""
    problems = backward_problems(load_schema_json("Alert", "v1"), load_schema_json("Alert"))
    assert problems == [
        "Alert.kind: enum AlertKind lost symbol(s) FEE_MISMATCH, BATCH_INCOMPLETE, BATCH_MISMATCH, UNKNOWN"
    ]


def test_each_kind_of_break_is_named() -> None:
    event = load_schema_json("TerminalEvent")
    added = copy.deepcopy(event)
    added["fields"].append({"name": "channel", "type": "string"})
    assert backward_problems(added, event) == ["TerminalEvent.channel: new field without a default"]
    added["fields"][-1]["default"] = "pos"
    assert backward_problems(added, event) == []
    retyped = _changed("TerminalEvent", "amount_minor", type="int")
    assert backward_problems(retyped, event) == ["TerminalEvent.amount_minor: type changed from long to int"]
    widened = _changed("TerminalEvent", "attempt", type="long")  # int -> long is a promotion
    assert backward_problems(widened, event) == []
    narrowed = _changed("TerminalEvent", "card_token", type="string", default="")  # null no longer readable
    assert backward_problems(narrowed, event) == ["TerminalEvent.card_token: type changed from null to string"]
    renamed = copy.deepcopy(event)
    renamed["name"] = "PosEvent"
    assert backward_problems(renamed, event) == ["PosEvent: type changed from record TerminalEvent to record PosEvent"]
    renamed["aliases"] = ["TerminalEvent"]
    assert backward_problems(renamed, event) == []
