"""The Confluent wire format against confluent-kafka's own AvroSerializer / AvroDeserializer, on its in-process
``mock://`` registry: byte-identical framing, both formats read, unknown ids and foreign schemas refused as
DecodeErrors (dead letters), an unreachable registry not."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from posrecon.config import SerdeSettings
from posrecon.serde.codec import MAGIC, AvroCodec, DecodeError
from posrecon.serde.confluent import ConfluentCodec, RegistryUnavailable, UnknownSchemaId, confluent_header
from posrecon.serde.schemas import load_schema_json
from posrecon.serde.wire import codec_for, contract_schema, registry_client
from serdekit import EVENT, NOTICE_V1, confluent, confluent_codec

DECISION = {
    "order_id": "o1",
    "merchant_id": "m1",
    "terminal_id": "t1",
    "outcome": "MATCHED",
    "currency": "EUR",
    "approved_amount_minor": 100,
    "settled_amount_minor": 100,
    "approved_at": 1_700_000_000_000,
    "settled_at": 1_700_000_100_000,
    "settlement_lag_ms": 100_000,
    "notice_id": "n1",
    "revision": 1,
    "settled_parts": None,
    "fee_minor": None,
    "reversed_amount_minor": None,
    "net_amount_minor": None,
}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ctx(topic: str) -> SerializationContext:
    return SerializationContext(topic, MessageField.VALUE)


def epoch_ms(record: dict[str, Any]) -> dict[str, Any]:
    """What AvroDeserializer gives for timestamp-millis (datetime) as the engine's epoch milliseconds."""
    return {k: (v - EPOCH) // timedelta(milliseconds=1) if isinstance(v, datetime) else v for k, v in record.items()}


def test_our_confluent_output_is_what_avro_serializer_writes_and_avro_deserializer_reads() -> None:
    serde = confluent()
    codec = confluent_codec("ReconciledOrder", serde, "pos.reconciled")
    data = codec.encode(DECISION)
    assert data[:1] == b"\x00" and data[1:5] == codec.schema_id.to_bytes(4, "big")  # type: ignore[union-attr]
    client = registry_client(serde)
    assert client.get_latest_version("pos.reconciled-value").schema_id == codec.schema_id
    serializer = AvroSerializer(client, contract_schema("ReconciledOrder").schema_str)
    assert serializer(DECISION, ctx("pos.reconciled")) == data  # same id, same bytes
    read = AvroDeserializer(client)(data, ctx("pos.reconciled"))
    assert isinstance(read["approved_at"], datetime)  # the registered schema keeps timestamp-millis
    assert epoch_ms(read) == DECISION
    assert codec.decode(data) == DECISION
    assert codec.encode_reference(DECISION) == data  # the compiled encoder's header is the Confluent one


def test_a_confluent_reader_reads_avro_serializer_input_and_single_object_input_alike() -> None:
    serde = confluent()
    client = registry_client(serde)
    produced = AvroSerializer(client, contract_schema("TerminalEvent").schema_str)(EVENT, ctx("pos.terminal-events"))
    reader = codec_for("TerminalEvent", serde)  # a reader: registers nothing, writes single-object
    assert isinstance(reader, ConfluentCodec) and reader.schema_id is None
    assert reader.decode(produced) == EVENT
    single = AvroCodec("TerminalEvent").encode(EVENT)
    assert reader.encode(EVENT) == single and reader.decode(single) == EVENT
    with pytest.raises(DecodeError, match="trailing"):
        reader.decode(produced + b"\x00")
    with pytest.raises(DecodeError):
        reader.decode(produced[:-4])


def test_an_older_writer_version_resolves_with_the_contract_defaults() -> None:
    serde = confluent()
    client = registry_client(serde)
    v1 = json.dumps(load_schema_json("SettlementNotice", "v1"))
    produced = AvroSerializer(client, v1)(NOTICE_V1, ctx("pos.settlement-notices"))
    decoded = codec_for("SettlementNotice", serde).decode(produced)
    assert decoded == {**NOTICE_V1, "capture_seq": 1, "capture_count": 1}


def test_an_unknown_schema_id_is_a_decode_error_with_the_reason_and_is_asked_once() -> None:
    serde = confluent()
    codec = confluent_codec("TerminalEvent", serde)
    asked: list[int] = []
    lookup = codec.client.get_schema

    def counting(schema_id: int, *args: Any, **kwargs: Any) -> Any:
        asked.append(schema_id)
        return lookup(schema_id, *args, **kwargs)

    codec.client.get_schema = counting  # type: ignore[method-assign]
    data = confluent_header(4242) + AvroCodec("TerminalEvent").encode(EVENT)[10:]
    for _ in range(3):
        with pytest.raises(UnknownSchemaId, match="unknown schema id 4242 for TerminalEvent"):
            codec.decode(data)
    assert asked == [4242]
    with pytest.raises(DecodeError, match="5-byte header"):
        codec.decode(b"\x00\x01")


def test_a_schema_id_of_another_record_does_not_resolve() -> None:
    serde = confluent()
    alert = codec_for("ReconciledOrder", serde, "pos.reconciled").encode(DECISION)
    with pytest.raises(UnknownSchemaId, match="does not resolve to TerminalEvent"):
        codec_for("TerminalEvent", serde).decode(alert)


def test_a_non_avro_schema_id_is_refused() -> None:
    serde = confluent()
    client = registry_client(serde)
    schema_id = client.register_schema("x-value", Schema('{"type":"object"}', "JSON"))
    with pytest.raises(UnknownSchemaId, match="not a plain Avro schema"):
        codec_for("TerminalEvent", serde).decode(confluent_header(schema_id) + b"\x02")


def test_an_unreachable_registry_is_not_a_decode_error() -> None:
    class Down:
        def get_schema(self, schema_id: int) -> Any:
            raise ConnectionError("connection refused")

    codec = ConfluentCodec("TerminalEvent", Down())  # type: ignore[arg-type]
    with pytest.raises(RegistryUnavailable) as raised:
        codec.decode(confluent_header(7) + b"\x02")
    assert not isinstance(raised.value, DecodeError)


def test_without_a_registry_the_codec_is_the_plain_single_object_one() -> None:
    codec = codec_for("TerminalEvent", SerdeSettings())
    assert type(codec) is AvroCodec
    assert codec.encode(EVENT)[:2] == MAGIC
    with pytest.raises(DecodeError, match=r"Confluent-framed TerminalEvent \(schema id 3\).*registry_url"):
        codec.decode(confluent_header(3) + b"\x02")


def test_the_default_path_does_not_import_the_registry_modules() -> None:
    import subprocess
    import sys

    code = (
        "import sys, posrecon.app.worker, posrecon.serde.wire as w, posrecon.config as c; "
        "w.codec_for('Alert', c.SerdeSettings(), 'pos.alerts'); "
        "print('confluent_kafka.schema_registry' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_registry_client_is_shared_per_registry_in_a_process() -> None:
    serde = confluent()
    assert registry_client(serde) is registry_client(
        SerdeSettings(format="single-object", registry_url=serde.registry_url)
    )
    assert registry_client(serde) is not registry_client(confluent())
    assert isinstance(registry_client(serde), SchemaRegistryClient)


ALERT = {
    "alert_id": "a1",
    "kind": "MISSING_SETTLEMENT",
    "severity": "WARNING",
    "order_id": "o1",
    "merchant_id": "m1",
    "terminal_id": None,
    "reason": "no settlement",
    "event_time": 1_700_000_000_000,
    "detected_at": 1_700_000_000_500,
    "related_ids": ["e1"],
    "status": "OPEN",
    "resolves_alert_id": None,
    "batch_id": None,
}


@pytest.mark.parametrize(
    ("name", "record"),
    [
        ("TerminalEvent", EVENT),
        ("SettlementNotice", {**NOTICE_V1, "capture_seq": 2, "capture_count": 3}),
        ("ReconciledOrder", DECISION),
        ("Alert", ALERT),
    ],
)
def test_contract_records_round_trip_through_avro_deserializer(name: str, record: dict[str, Any]) -> None:
    serde = confluent()
    codec = codec_for(name, serde, f"topic-{name}")
    data = codec.encode(record)
    assert epoch_ms(AvroDeserializer(registry_client(serde))(data, ctx(f"topic-{name}"))) == record
    assert codec.decode(data) == record
