"""Avro encoding of posrecon records.

Wire format on every topic: **Avro single-object encoding** (Avro spec): ``C3 01``, the 8-byte
little-endian CRC-64-AVRO fingerprint of the writer schema, then the Avro binary body. It needs no
schema registry, a consumer can tell which schema wrote a record, and readers resolve any known version
(``schemas/history``) to the schema they were built with. The Confluent Schema Registry format (``0x00`` + schema
id) is the other option per deployment: posrecon.serde.confluent and posrecon.serde.wire.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

from fastavro import schemaless_reader, schemaless_writer

from posrecon.engine import avro_codecs
from posrecon.serde.compiled import Decoder, Encoder, Unsupported, compile_decoder, compile_encoder
from posrecon.serde.conformance import RecordShape, SchemaMismatch
from posrecon.serde.schemas import load_schema_json, schema_fingerprint, versions_of, wire_schema

MAGIC = b"\xc3\x01"
HEADER_LEN = 10


class DecodeError(ValueError):
    """Bytes or JSON that do not decode into the expected record (dead letter reason DECODE_ERROR)."""


class AvroCodec:
    """Encode/decode one record type; decodes any known writer version into the current reader schema."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.schema = wire_schema(name)
        self.shape = RecordShape(load_schema_json(name))
        #: what :meth:`encode` writes before the body (ConfluentCodec: 0x00 + schema id); ``prefix``: the
        #: single-object header of the current schema, :meth:`decode`'s fast path
        fingerprint = schema_fingerprint(name)
        self.header = self.prefix = MAGIC + fingerprint[::-1]  # spec: fingerprint little-endian
        self._writers: dict[bytes, Any] = {self.header[2:]: None}
        for version in versions_of(name):
            fp = schema_fingerprint(name, version)[::-1]
            if fp not in self._writers:
                self._writers[fp] = wire_schema(name, version)
        # the hot path: straight-line code generated from the current schema (fastavro for older writers)
        self._encode: Encoder | None = None
        self._decode: Decoder | None = None
        #: whether they are the generated module's (compiled with the engine), not built here at run time
        self.generated = avro_codecs.FINGERPRINTS.get(name) == fingerprint.hex()
        if self.generated:
            self._encode = getattr(avro_codecs, f"encode_{name}")
            self._decode = getattr(avro_codecs, f"decode_{name}")
        else:  # a schema edited since `make codecs` (the tests refuse that tree) or one the generator skips
            try:
                self._encode = compile_encoder(self.schema)
                self._decode = compile_decoder(self.schema)
            except Unsupported:
                self._encode = self._decode = None

    # -- single-object encoding (Kafka topics) --

    def encode(self, record: dict[str, Any]) -> bytes:
        if self._encode is not None:
            return self._encode(record, self.header)
        return self.encode_reference(record)

    def encoder(self) -> tuple[Callable[[Any, bytes], bytes], bytes]:
        """:meth:`encode` as a function of (record, header) and the header to pass: the generated encoder
        itself, called without this method in between (engine/output_feed.py)."""
        if self._encode is not None:
            return self._encode, self.header
        return lambda record, _header: self.encode_reference(record), self.header

    def encode_reference(self, record: dict[str, Any]) -> bytes:
        """:meth:`encode` with fastavro (the reference the compiled encoder is tested against)."""
        buf = io.BytesIO()
        buf.write(self.header)
        schemaless_writer(buf, self.schema, record)
        return buf.getvalue()

    def decode(self, data: bytes | None) -> dict[str, Any]:
        if self._decode is not None and data is not None and data.startswith(self.prefix):
            return self.read_compiled(data, HEADER_LEN)
        return self.decode_reference(data)  # older writer versions, and the errors

    def decoding(self) -> tuple[bytes, Decoder | None, Callable[[bytes | None], dict[str, Any]]]:
        """What the record feed decodes with (engine/record_feed.py): :meth:`decode`'s fast path taken apart (the
        header, the generated body decoder) so the compiled loop calls the decoder directly, and :meth:`decode`
        for everything else."""
        return self.prefix, self._decode, self.decode

    def decode_reference(self, data: bytes | None) -> dict[str, Any]:
        """:meth:`decode` with fastavro only (the reference the compiled decoder is tested against)."""
        if data is None or len(data) < HEADER_LEN or data[:2] != MAGIC:
            if data is not None and len(data) >= 5 and data[0] == 0:
                schema_id = int.from_bytes(data[1:5], "big")
                raise DecodeError(
                    f"Confluent-framed {self.name} (schema id {schema_id}) but no schema registry is "
                    "configured ([serde] registry_url)"
                )
            raise DecodeError(f"not an Avro single-object encoded {self.name}")
        fp = data[2:HEADER_LEN]
        if fp not in self._writers:
            raise DecodeError(f"unknown writer schema fingerprint {fp.hex()} for {self.name}")
        return self.read_body(data, HEADER_LEN, self._writers[fp])

    # -- the body after a header (this framing's, or the Confluent one's: serde/confluent.py) --

    def read_compiled(self, data: bytes, start: int) -> dict[str, Any]:
        """The body from ``start``, written with the current schema: the compiled decoder."""
        assert self._decode is not None
        try:
            record, end = self._decode(data, start)
        except Exception as exc:  # IndexError (truncated), UnicodeDecodeError, ValueError
            raise DecodeError(f"{self.name} body does not decode: {type(exc).__name__}") from None
        if end != len(data):
            if end > len(data):
                raise DecodeError(f"{self.name} body does not decode: truncated")
            raise DecodeError(f"{len(data) - end} trailing bytes after {self.name}")
        return record

    def read_body(self, data: bytes, start: int, writer: Any) -> dict[str, Any]:
        """The body from ``start`` with fastavro: ``writer`` resolved to the current schema (None: written with it)."""
        buf = io.BytesIO(data)
        buf.seek(start)
        try:
            if writer is None:
                record: dict[str, Any] = schemaless_reader(buf, self.schema)  # type: ignore[assignment]
            else:
                record = schemaless_reader(buf, writer, self.schema)  # type: ignore[assignment]
        except Exception as exc:  # fastavro raises many types on truncated/garbage input
            raise DecodeError(f"{self.name} body does not decode: {type(exc).__name__}") from None
        if buf.tell() != len(data):
            raise DecodeError(f"{len(data) - buf.tell()} trailing bytes after {self.name}")
        return record

    # -- schema conformance of JSON-shaped records (replay) --

    def conform(self, record: Any) -> dict[str, Any]:
        """Check a JSON record strictly against the schema, then round-trip it through Avro binary."""
        try:
            checked = self.shape.conform(record)
        except SchemaMismatch as exc:
            raise DecodeError(str(exc)) from None
        buf = io.BytesIO()
        try:
            schemaless_writer(buf, self.schema, checked)
        except UnicodeEncodeError:  # a lone surrogate from a JSON "\ud800" escape: not a Unicode string
            raise DecodeError(f"{self.name} has a string that is not valid Unicode (lone surrogate)") from None
        buf.seek(0)
        out: dict[str, Any] = schemaless_reader(buf, self.schema)  # type: ignore[assignment]
        return out

    def check(self, record: Any) -> dict[str, Any]:
        """The strict schema check alone: the record as :meth:`conform` returns it, without the Avro round trip.

        For a record that passes the check, the round trip is the identity (exact types, ranges and enum
        symbols are checked; fields come out in schema order, defaults filled in) unless a string cannot be
        encoded as UTF-8 (a lone surrogate from a JSON ``\\ud800`` escape), where the writer raises. So callers
        may use this instead of :meth:`conform` only for records that cannot hold such a string, e.g. parsed
        from pure-ASCII JSON text without ``\\u`` escapes (see ``posrecon replay``)."""
        try:
            return self.shape.conform(record)
        except SchemaMismatch as exc:
            raise DecodeError(str(exc)) from None
