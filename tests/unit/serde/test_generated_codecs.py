"""The generated codec module (posrecon/engine/avro_codecs.py, `make codecs`): current with the schemas, used by
every codec, and compiled with the engine when the engine is (tests/property/test_compiled_codec.py then checks
those compiled functions against fastavro, byte for byte)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

import posrecon.engine
from posrecon.engine import avro_codecs
from posrecon.serde.codec import AvroCodec
from posrecon.serde.compiled import current_module, render_module
from posrecon.serde.schemas import RECORD_NAMES, schema_fingerprint, wire_schema

SOURCE = Path(posrecon.engine.__file__).parent / "avro_codecs.py"


def test_the_committed_module_is_what_the_generator_writes_for_the_current_schemas() -> None:
    assert SOURCE.read_text() == current_module(), "a schema changed: run `make codecs` (then `make native`)"


def test_every_contract_schema_has_its_generated_functions_and_every_codec_uses_them() -> None:
    for name in RECORD_NAMES:
        assert avro_codecs.FINGERPRINTS[name] == schema_fingerprint(name).hex()
        codec = AvroCodec(name)
        assert codec.generated, name
        assert codec._decode is getattr(avro_codecs, f"decode_{name}")
        assert codec._encode is getattr(avro_codecs, f"encode_{name}")


def test_compiled_with_the_engine() -> None:
    if not posrecon.engine.BUILD.compiled:
        pytest.skip("the engine runs from source here (POSRECON_ENGINE=compiled: make test)")
    assert not avro_codecs.__file__.endswith(".py"), avro_codecs.__file__


def test_a_schema_the_module_was_not_generated_from_gets_no_generated_functions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(avro_codecs.FINGERPRINTS, "Alert", "0000000000000000")
    codec = AvroCodec("Alert")
    assert not codec.generated
    assert codec._encode is not None and codec._encode is not avro_codecs.encode_Alert  # built at run time
    record = {
        "alert_id": "a",
        "kind": "MISSING_SETTLEMENT",
        "severity": "WARNING",
        "reason": "no settlement",
        "event_time": 1,
        "detected_at": 1_700_000_000_000,
        "related_ids": ["n1", "n2"],
    }
    data = codec.encode(record)
    assert data == codec.encode_reference(record)
    assert codec.decode(data) == codec.decode_reference(data)


def test_the_renderer_skips_a_schema_it_cannot_compile() -> None:
    schema = copy.deepcopy(wire_schema("Alert"))
    schema["fields"].append({"name": "blob", "type": "bytes"})
    text = render_module({"Odd": schema, "Alert": wire_schema("Alert")}, {"Odd": "00", "Alert": "11"})
    assert "def decode_Alert(" in text and "def decode_Odd(" not in text
