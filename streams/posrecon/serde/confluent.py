"""The Confluent Schema Registry wire format: ``0x00``, the 4-byte big-endian schema id, the Avro binary body.

:class:`ConfluentCodec` reads both formats, the first byte decides: ``0x00`` is Confluent framing, the writer
schema is looked up by id in the registry (once per id, cached) and resolved to the reader schema the codec was
built with; ``C3 01`` is single-object encoding (:class:`~posrecon.serde.codec.AvroCodec`). A record whose
writer schema is our current one (the usual case, and always for our own id) takes the compiled decoder
(serde/compiled.py) at offset 5, so it costs what single-object input costs. It writes Confluent framing
when built with the schema id this process registered for the topic (posrecon.serde.wire), else
single-object encoding: the compiled encoder is compiled with the header, so the hot encode is the same
one call either way.

Errors: an id the registry does not know (HTTP 404), a schema that is not Avro or does not resolve to the
reader's, or a body that does not decode raise :class:`~posrecon.serde.codec.DecodeError` (the record goes to
the dead letters, the reason in ``exception.message``). A registry that does not answer raises
:class:`RegistryUnavailable`: not the record's fault, so it is not dead-lettered; the worker stops (its
transaction has not begun) and a restart resumes at the committed offsets.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError
from fastavro import parse_schema
from fastavro.schema import fingerprint, to_parsing_canonical_form

from posrecon.serde.codec import AvroCodec, DecodeError
from posrecon.serde.compat import backward_problems
from posrecon.serde.schemas import load_schema_json, schema_fingerprint, strip_logical_types

CONFLUENT_MAGIC = b"\x00"
CONFLUENT_HEADER_LEN = 5
#: ids remembered as unusable (garbage that starts with 0x00 reads as a random id: bounded, not one per record)
MAX_REFUSED_IDS = 4096

Reader = Callable[[bytes], dict[str, Any]]


class RegistryUnavailable(RuntimeError):
    """The schema registry did not answer a lookup (not the record's fault: it is not dead-lettered)."""


class UnknownSchemaId(DecodeError):
    """A Confluent-framed record whose schema id the registry does not know, or cannot be read as ours."""


def confluent_header(schema_id: int) -> bytes:
    return CONFLUENT_MAGIC + schema_id.to_bytes(4, "big")


class ConfluentCodec(AvroCodec):
    """An :class:`AvroCodec` that also reads Confluent-framed records; writes them when given ``schema_id``."""

    def __init__(self, name: str, client: SchemaRegistryClient, schema_id: int | None = None) -> None:
        super().__init__(name)
        self.client = client
        self.schema_id = schema_id
        self._current_fp = schema_fingerprint(name)
        #: schema id (4 bytes, as framed) -> how to read its records
        self._readers: dict[bytes, Reader] = {}
        self._refused: dict[bytes, str] = {}
        if schema_id is not None:
            self.header = confluent_header(schema_id)
            self._readers[self.header[1:]] = self._read_current

    def decode(self, data: bytes | None) -> dict[str, Any]:
        if data is not None and data[:1] == CONFLUENT_MAGIC:
            read = self._readers.get(data[1:CONFLUENT_HEADER_LEN])
            if read is None:
                read = self._reader_for(data)
            return read(data)
        return AvroCodec.decode(self, data)

    # -- the writer schema of an id, once per id ----------------------------------------------------------------

    def _reader_for(self, data: bytes) -> Reader:
        if len(data) < CONFLUENT_HEADER_LEN:
            raise DecodeError(f"Confluent-framed {self.name} shorter than its 5-byte header")
        key = data[1:CONFLUENT_HEADER_LEN]
        refused = self._refused.get(key)
        if refused is not None:
            raise UnknownSchemaId(refused)
        try:
            read = self._resolve(int.from_bytes(key, "big"))
        except UnknownSchemaId as exc:
            if len(self._refused) >= MAX_REFUSED_IDS:
                self._refused.clear()
            self._refused[key] = str(exc)
            raise
        self._readers[key] = read
        return read

    def _resolve(self, schema_id: int) -> Reader:
        try:
            found = self.client.get_schema(schema_id)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                raise UnknownSchemaId(f"unknown schema id {schema_id} for {self.name} (not in the registry)") from None
            raise RegistryUnavailable(f"schema registry lookup of id {schema_id} failed: {exc}") from exc
        except Exception as exc:  # the HTTP client's connection errors: the registry is down, not the record
            raise RegistryUnavailable(f"schema registry lookup of id {schema_id} failed: {exc!r}") from exc
        if (found.schema_type or "AVRO") != "AVRO" or found.references:
            what = "references" if found.references else found.schema_type
            raise UnknownSchemaId(f"schema id {schema_id} is not a plain Avro schema ({what}) for {self.name}")
        try:
            writer_json = json.loads(found.schema_str or "")
            parsed = parse_schema(writer_json)
        except Exception as exc:  # not JSON, or not a schema fastavro accepts
            raise UnknownSchemaId(f"schema id {schema_id} does not parse: {type(exc).__name__}") from None
        if bytes.fromhex(fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO")) == self._current_fp:
            return self._read_current
        problems = backward_problems(load_schema_json(self.name), writer_json)
        if problems:
            raise UnknownSchemaId(f"schema id {schema_id} does not resolve to {self.name}: {'; '.join(problems[:3])}")
        return self._resolving_reader(parse_schema(strip_logical_types(writer_json)))

    # -- reading a body -----------------------------------------------------------------------------------------

    def _read_current(self, data: bytes) -> dict[str, Any]:
        """A body written with our current schema: the compiled decoder (fastavro if the schema has none)."""
        if self._decode is None:
            return self.read_body(data, CONFLUENT_HEADER_LEN, None)
        return self.read_compiled(data, CONFLUENT_HEADER_LEN)

    def _resolving_reader(self, writer: Any) -> Reader:
        return lambda data: self.read_body(data, CONFLUENT_HEADER_LEN, writer)
