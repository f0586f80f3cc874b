from __future__ import annotations

from typing import Any

import pytest

from posrecon.serde.codec import MAGIC, AvroCodec, DecodeError
from scenario import note
from serdekit import EVENT, NOTICE_V1


def test_single_object_encoding_round_trip() -> None:
    codec = AvroCodec("TerminalEvent")
    data = codec.encode(EVENT)
    assert data[:2] == MAGIC and len(data) > 10
    assert codec.decode(data) == EVENT


@pytest.mark.parametrize("garbage", [b"", b"\x00\x01", b"hello world this is not avro", None])
def test_garbage_does_not_decode(garbage: bytes | None) -> None:
    with pytest.raises(DecodeError):
        AvroCodec("TerminalEvent").decode(garbage)


def test_truncated_and_trailing_bytes_do_not_decode() -> None:
    codec = AvroCodec("TerminalEvent")
    data = codec.encode(EVENT)
    with pytest.raises(DecodeError):
        codec.decode(data[:-3])
    with pytest.raises(DecodeError):
        codec.decode(data + b"\x00\x00")


def test_other_record_type_is_rejected_by_fingerprint() -> None:
    notice = AvroCodec("SettlementNotice").encode(note("o", "SETTLED", 1)["record"])
    with pytest.raises(DecodeError, match="fingerprint"):
        AvroCodec("TerminalEvent").decode(notice)


@pytest.mark.parametrize(
    "change",
    [
        {"amount_minor": 1.5},
        {"amount_minor": True},
        {"amount_minor": "100"},
        {"event_type": "REFUND"},
        {"order_id": None},
        {"card_token": 1234},
        {"amount_minor": 2**63},
    ],
)
def test_conform_is_strict(change: dict) -> None:
    with pytest.raises(DecodeError):
        AvroCodec("TerminalEvent").conform({**EVENT, **change})


def test_conform_fills_defaults_and_ignores_unknown_fields() -> None:
    record = {k: v for k, v in EVENT.items() if k not in ("attempt", "card_token", "decline_code")}
    out = AvroCodec("TerminalEvent").conform({**record, "future_field": 1})
    assert out["attempt"] == 1 and out["card_token"] is None and "future_field" not in out


def field_values(symbols: list[str], text_size: int) -> Any:
    """A JSON value a field may be sent: of any type (the wrong ones too), enum ``symbols`` among the strings."""
    from hypothesis import strategies as st

    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**64), 2**64),
        st.floats(allow_nan=False),
        st.text(max_size=text_size),
        st.sampled_from(symbols),
        st.lists(st.text(max_size=2), max_size=2),
    )


@pytest.mark.parametrize("name", ["TerminalEvent", "SettlementNotice", "ReconciledOrder", "Alert"])
def test_compiled_conformance_agrees_with_the_reference(name: str) -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from posrecon.serde.conformance import RecordShape, SchemaMismatch
    from posrecon.serde.schemas import load_schema_json

    shape = RecordShape(load_schema_json(name))
    fields = [f["name"] for f in load_schema_json(name)["fields"]]
    values = field_values(["EUR", "SETTLED", "AUTH_APPROVED", "INFO", "MATCHED"], text_size=4)

    # every field in schema order and nothing else: the compiled path's shortcut (the record is its own output)
    complete = st.fixed_dictionaries({f: values for f in fields})

    @settings(max_examples=600, deadline=None)
    @given(st.one_of(st.dictionaries(st.sampled_from([*fields, "extra"]), values), complete))
    def check(record: dict) -> None:
        try:
            expected = shape.conform_slow(record)
        except SchemaMismatch as exc:
            with pytest.raises(SchemaMismatch):
                shape.conform(record)
            assert str(exc)
            return
        assert shape.conform(record) == expected

    check()


@pytest.mark.parametrize("name", ["TerminalEvent", "SettlementNotice"])
def test_check_is_conform_without_the_round_trip(name: str) -> None:
    """``check`` (replay's path: orjson refuses lone surrogates) returns what ``conform`` returns and rejects what
    it rejects; ``conform`` only differs where a string cannot be UTF-8 encoded (a lone surrogate)."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from posrecon.serde.schemas import load_schema_json

    codec = AvroCodec(name)
    fields = [f["name"] for f in load_schema_json(name)["fields"]]
    values = field_values(["EUR", "SETTLED", "FAILED", "AUTH_APPROVED", "VOIDED"], text_size=6)
    base = EVENT if name == "TerminalEvent" else NOTICE_V1

    @settings(max_examples=300, deadline=None)
    @given(st.dictionaries(st.sampled_from([*fields, "extra"]), values), st.booleans())
    def check(change: dict, over_base: bool) -> None:
        record = {**base, **change} if over_base else change
        if any(type(v) is str and not v.isascii() for v in record.values()):
            try:
                codec.conform(record)
            except UnicodeEncodeError:
                return  # a lone surrogate: the round trip raises (replay never takes check() for these)
            except DecodeError:
                pass
        try:
            expected = codec.conform(record)
        except DecodeError:
            with pytest.raises(DecodeError):
                codec.check(record)
            return
        out = codec.check(record)
        assert out == expected and list(out) == list(expected)
        assert all(type(out[k]) is type(expected[k]) for k in out)

    check()


def test_an_output_dict_without_the_v2_fields_is_encoded_with_their_defaults() -> None:
    """The hot path's choice: a missing defaulted field is written as its default (as fastavro writes it), not an
    error. So the engine must emit every key itself: replay writes its dicts as JSON, live decodes the defaults."""
    v1_alert = {
        "alert_id": "a",
        "kind": "MISSING_SETTLEMENT",
        "severity": "WARNING",
        "order_id": "o",
        "merchant_id": "m",
        "terminal_id": None,
        "reason": "r",
        "event_time": 1,
        "detected_at": 2,
        "related_ids": ["n"],
    }
    codec = AvroCodec("Alert")
    out = codec.decode(codec.encode(v1_alert))
    assert out == {**v1_alert, "status": "OPEN", "resolves_alert_id": None, "batch_id": None}
    assert codec.encode(v1_alert) == codec.encode_reference(v1_alert)
    with pytest.raises(KeyError):  # a field without a default is required
        codec.encode({k: v for k, v in v1_alert.items() if k != "reason"})


def test_a_complete_record_is_its_own_output_only_when_every_field_passes() -> None:
    """The compiled conformance's shortcut (every field, schema order, nothing else): each field is still tested."""
    from posrecon.serde.schemas import load_schema_json

    codec = AvroCodec("TerminalEvent")
    names = [f["name"] for f in load_schema_json("TerminalEvent")["fields"]]
    complete = {name: EVENT.get(name) for name in names}
    complete.update({"attempt": 1, "card_token": "tok"})
    assert codec.check(complete) is complete  # no copy: the record already is what the schema asks
    for name in names:
        with pytest.raises(DecodeError, match=name):
            codec.check({**complete, name: 1.5})  # same keys, same order, one value of no Avro type here
    reordered = dict(reversed(complete.items()))
    out = codec.check(reordered)
    assert out == complete and list(out) == names and out is not reordered
