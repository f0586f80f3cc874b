"""The compiled Avro codec (posrecon/serde/compiled.py) against fastavro, the reference.

Both directions, byte for byte, on generated records of every contract schema; on corrupted bytes the
compiled decoder may only be stricter than fastavro (never accept what fastavro rejects, never read a
different record), and it raises DecodeError, nothing else."""

from __future__ import annotations

import io
from typing import Any

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from posrecon.serde.codec import AvroCodec, DecodeError
from posrecon.serde.compiled import Unsupported, compile_decoder, compile_encoder, long_bytes, read_varint
from posrecon.serde.schemas import RECORD_NAMES

LONG = st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1)
INT = st.integers(min_value=-(1 << 31), max_value=(1 << 31) - 1)
TEXT = st.text(max_size=80)  # any Unicode scalar value, no lone surrogates (those are not Avro strings)


def values(schema: Any) -> st.SearchStrategy[Any]:
    if isinstance(schema, list):
        return st.one_of(*(values(branch) for branch in schema))
    t = schema if isinstance(schema, str) else schema["type"]
    if t == "null":
        return st.none()
    if t == "string":
        return TEXT
    if t == "long":
        # small, large, and timestamps (the common case)
        return st.one_of(LONG, st.integers(-200, 200), st.integers(1_500_000_000_000, 2_000_000_000_000))
    if t == "int":
        return st.one_of(INT, st.integers(-200, 200))
    if t == "boolean":
        return st.booleans()
    if t == "enum":
        return st.sampled_from(schema["symbols"])
    if t == "array":
        return st.lists(values(schema["items"]), max_size=5)
    if t == "record":
        return st.fixed_dictionaries({f["name"]: values(f["type"]) for f in schema["fields"]})
    raise AssertionError(f"no strategy for {t}")


CODECS = {name: AvroCodec(name) for name in RECORD_NAMES}
RECORDS = st.sampled_from(RECORD_NAMES).flatmap(lambda n: st.tuples(st.just(n), values(CODECS[n].schema)))


TERMINAL = {
    "event_id": "e",
    "order_id": "o",
    "merchant_id": "m",
    "terminal_id": "t",
    "event_type": "AUTH_APPROVED",
    "amount_minor": 100,
    "currency": "EUR",
    "card_token": None,
    "event_time": 1,
    "attempt": 1,
    "decline_code": "51",
}


def test_missing_fields_with_defaults_are_written_as_fastavro_writes_them() -> None:
    codec = CODECS["TerminalEvent"]
    partial = {k: v for k, v in TERMINAL.items() if k not in ("card_token", "attempt", "decline_code")}
    assert codec.encode(partial) == codec.encode_reference(partial)
    assert codec.decode(codec.encode(partial))["attempt"] == 1
    with pytest.raises(KeyError):
        codec.encode({k: v for k, v in TERMINAL.items() if k != "order_id"})


def test_every_contract_schema_compiles() -> None:
    for codec in CODECS.values():
        assert codec._encode is not None and codec._decode is not None, codec.name


@settings(max_examples=400)
@given(RECORDS)
def test_same_bytes_and_same_record_as_fastavro(named: tuple[str, dict[str, Any]]) -> None:
    name, record = named
    codec = CODECS[name]
    data = codec.encode(record)
    assert data == codec.encode_reference(record)
    assert codec.decode(data) == codec.decode_reference(data) == record


@settings(max_examples=1500)
@given(RECORDS, st.data())
def test_corrupted_bytes_never_read_differently(named: tuple[str, dict[str, Any]], data: st.DataObject) -> None:
    name, record = named
    codec = CODECS[name]
    raw = bytearray(codec.encode_reference(record))
    body = range(10, len(raw))  # the header is checked before either decoder runs
    for _ in range(data.draw(st.integers(1, 3))):
        action = data.draw(st.sampled_from(["flip", "truncate", "insert", "delete"]))
        if action == "truncate":
            del raw[data.draw(st.integers(10, len(raw))) :]
        elif action == "insert":
            raw.insert(data.draw(st.integers(10, len(raw))), data.draw(st.integers(0, 255)))
        elif len(raw) > 10:
            at = data.draw(st.sampled_from(body[: len(raw) - 10]))
            if action == "flip":
                raw[at] = data.draw(st.integers(0, 255))
            else:
                del raw[at]
    mangled = bytes(raw)
    try:
        ours = codec.decode(mangled)
    except DecodeError:
        return  # stricter or equally strict: allowed
    reference = codec.decode_reference(mangled)  # must accept what the compiled decoder accepted...
    assert ours == reference  # ...and read the same record


def test_stricter_than_the_reference_where_the_spec_allows_no_reading() -> None:
    codec = CODECS["SettlementNotice"]
    record = {
        "notice_id": "n",
        "order_id": "o",
        "merchant_id": "m",
        "status": "SETTLED",
        "amount_minor": 1,
        "currency": "EUR",
        "settled_at": 1,
        "batch_id": None,
        "fee_minor": 0,
        "capture_seq": 1,
        "capture_count": 1,
    }
    good = codec.encode(record)
    assert codec.decode(good) == record
    with pytest.raises(DecodeError, match="trailing"):
        codec.decode(good + b"\x00")
    with pytest.raises(DecodeError):
        codec.decode(good[:-1])
    with pytest.raises(DecodeError, match="truncated"):  # the last string cut short
        CODECS["TerminalEvent"].decode(CODECS["TerminalEvent"].encode(TERMINAL)[:-3] + b"\x0a")
    at = good.index(b"\x02m") + 2  # status: the byte after merchant_id "m"
    for index in (b"\x06", b"\x01"):  # 3 of 3 symbols; -1 (a Python index would read the last symbol)
        with pytest.raises(DecodeError):
            codec.decode(good[:at] + index + good[at + 1 :])
    terminal = CODECS["TerminalEvent"].encode(TERMINAL)
    amount = long_bytes(TERMINAL["amount_minor"])
    for overlong in (b"\xff" * 10 + b"\x01", b"\xff" * 9 + b"\x7f"):  # 11 bytes; 70 bits
        with pytest.raises(DecodeError):
            CODECS["TerminalEvent"].decode(terminal.replace(amount, overlong, 1))
    negative_length = b"\x01" + good[11:]  # the first string's length -1
    with pytest.raises(DecodeError):
        codec.decode(good[:10] + negative_length)


def _fastavro_long(n: int) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, "long", n)  # type: ignore[arg-type]
    return buf.getvalue()


# every varint length boundary (long_bytes has one- and two-byte shortcuts), both signs
BOUNDARIES = sorted(
    n for k in range(63) for d in (-1, 0, 1) for n in ((1 << k) + d, -(1 << k) - d) if -(1 << 63) <= n < 1 << 63
)


@given(LONG | st.sampled_from(BOUNDARIES))
def test_varints_round_trip(n: int) -> None:
    encoded = long_bytes(n)
    assert encoded == _fastavro_long(n)
    assert read_varint(encoded + b"\xff", 0) == (n, len(encoded))


def test_varints_at_every_length_boundary_are_fastavros() -> None:
    assert [long_bytes(n) for n in BOUNDARIES] == [_fastavro_long(n) for n in BOUNDARIES]


def test_varint_limits() -> None:
    with pytest.raises(ValueError):
        long_bytes(1 << 63)
    with pytest.raises(ValueError):
        read_varint(b"\xff" * 10 + b"\x01", 0)  # 11 bytes
    with pytest.raises(ValueError):
        read_varint(b"\xff" * 9 + b"\x7f", 0)  # 70 bits


def test_unsupported_types_fall_back() -> None:
    schema = {"type": "record", "name": "X", "fields": [{"name": "x", "type": "double"}]}
    with pytest.raises(Unsupported):
        compile_encoder(schema)
    with pytest.raises(Unsupported):
        compile_decoder(schema)
