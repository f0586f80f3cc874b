"""The wire format of the contract topics, chosen per deployment (``[serde]``, posrecon.config.SerdeSettings).

:func:`codec_for` is what every producer and consumer of a contract topic builds its codec with:

* no registry configured (the default): the plain :class:`~posrecon.serde.codec.AvroCodec`, single-object
  encoding, exactly as before (no registry, no extra call on the hot path);
* a registry configured: a :class:`~posrecon.serde.confluent.ConfluentCodec`, which reads both formats (the
  first byte decides). With ``format = "confluent"`` and the topic the codec writes to, it writes Confluent
  framing with the id of the schema registered under ``<topic>-value`` (TopicNameStrategy, the serializers'
  default, so any Confluent consumer finds it); else it writes single-object encoding.

Registering (:func:`register`) happens when the codec is built, i.e. at start-up: an id already registered for
this exact schema is reused (restarts, several workers); a new version is first checked BACKWARD against the
subject's latest version (posrecon.serde.compat, naming the field) and by the registry itself
(``test_compatibility``, its configured level), then registered. Any refusal raises
:class:`SchemaRegistrationError` naming the subject and the reason; ``posrecon run`` exits with it (code 2).

Only contract topics are framed this way. The internal topics (changelogs, sightings repartitions) are not Avro
at all (app/state_store.py rows): only posrecon reads them, a registry would add a lookup to every restore
and nothing for any other consumer.

One registry client per registry (URL and settings) per process (:func:`registry_client`): its caches are
shared, and an in-process ``mock://`` registry (confluent-kafka's ``MockSchemaRegistryClient``, which keeps
its schemas per client object) is the same registry for every codec and test client of the process.
confluent-kafka's registry modules (the ``registry`` extra) are imported only when a registry is configured:
the default path neither needs them nor pays their import time (~0.2 s).
"""

from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING

from posrecon.config import SerdeSettings
from posrecon.serde.codec import AvroCodec
from posrecon.serde.compat import backward_problems
from posrecon.serde.schemas import load_schema_json

if TYPE_CHECKING:
    from confluent_kafka.schema_registry import RegisteredSchema, Schema, SchemaRegistryClient

_clients: dict[tuple[str, tuple[tuple[str, str], ...]], SchemaRegistryClient] = {}
_clients_lock = threading.Lock()


class SchemaRegistrationError(RuntimeError):
    """The registry refused (or could not be asked about) one of our output schemas."""

    def __init__(self, subject: str, reason: str) -> None:
        super().__init__(f"schema registry: cannot register {subject}: {reason}")
        self.subject = subject
        self.reason = reason


def registry_client(serde: SerdeSettings) -> SchemaRegistryClient:
    """The process's client of the configured registry (``serde.registry_url`` must be set)."""
    if not serde.registry_url:
        raise ValueError("no schema registry configured ([serde] registry_url)")
    try:
        from confluent_kafka.schema_registry import SchemaRegistryClient
    except ImportError as exc:  # the optional extra is missing
        raise RuntimeError(f"[serde] registry_url needs posrecon's 'registry' extra ({exc})") from None
    key = (serde.registry_url, tuple(sorted(serde.registry.items())))
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = SchemaRegistryClient.new_client(serde.client_config)
        return client


def subject_for(topic: str) -> str:
    """TopicNameStrategy's value subject."""
    return f"{topic}-value"


def contract_schema(name: str) -> Schema:
    """The schema registered for record ``name``: the contract's ``schemas/<name>.avsc`` (logical types kept, so
    Confluent consumers see timestamps as timestamps), as compact JSON (the same text every time)."""
    from confluent_kafka.schema_registry import Schema

    return Schema(json.dumps(load_schema_json(name), separators=(",", ":")), "AVRO")


def codec_for(name: str, serde: SerdeSettings, topic: str | None = None) -> AvroCodec:
    """The codec of record ``name``; ``topic``: the contract topic this process writes ``name`` to (None: it
    only reads). May raise :class:`SchemaRegistrationError` (only with ``format = "confluent"`` and a topic)."""
    if not serde.registry_url:
        return AvroCodec(name)
    from posrecon.serde.confluent import ConfluentCodec

    client = registry_client(serde)
    schema_id = None
    if topic is not None and serde.format == "confluent":
        schema_id = register(client, subject_for(topic), name)
    return ConfluentCodec(name, client, schema_id)


def register(client: SchemaRegistryClient, subject: str, name: str) -> int:
    """The id of record ``name``'s current schema under ``subject``, registered if new (see the module doc)."""
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    schema = contract_schema(name)
    try:
        try:
            return int(client.lookup_schema(subject, schema).schema_id)  # type: ignore[arg-type]
        except SchemaRegistryError as exc:
            if exc.http_status_code != 404:
                raise
        latest = _latest(client, subject)
        if latest is not None:
            _check_backward(client, subject, schema, latest)
        return int(client.register_schema(subject, schema))
    except SchemaRegistrationError:
        raise
    except SchemaRegistryError as exc:
        raise SchemaRegistrationError(subject, f"the registry refused it: {exc}") from None
    except Exception as exc:  # the HTTP client's errors: the registry is unreachable or misconfigured
        raise SchemaRegistrationError(subject, f"the registry did not answer: {exc!r}") from None


def _latest(client: SchemaRegistryClient, subject: str) -> RegisteredSchema | None:
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    try:
        return client.get_latest_version(subject)
    except SchemaRegistryError as exc:
        if exc.http_status_code == 404:
            return None
        raise


def _check_backward(client: SchemaRegistryClient, subject: str, schema: Schema, latest: RegisteredSchema) -> None:
    previous = latest.schema
    where = f"version {latest.version} (schema id {latest.schema_id})"
    if previous is None or (previous.schema_type or "AVRO") != "AVRO":
        raise SchemaRegistrationError(subject, f"its latest {where} is not an Avro schema")
    try:
        previous_json = json.loads(previous.schema_str or "")
    except ValueError:
        raise SchemaRegistrationError(subject, f"its latest {where} is not JSON") from None
    problems = backward_problems(json.loads(schema.schema_str or ""), previous_json)
    if problems:
        raise SchemaRegistrationError(
            subject, f"not BACKWARD compatible with its latest {where}: {'; '.join(problems)}"
        )
    if not _is_mock(client) and not client.test_compatibility(subject, schema):
        raise SchemaRegistrationError(
            subject, f"the registry finds it incompatible with {where} under the subject's compatibility level"
        )


def _is_mock(client: SchemaRegistryClient) -> bool:
    """confluent-kafka's in-process registry answers no compatibility question (our own check stands alone)."""
    from confluent_kafka.schema_registry._sync.mock_schema_registry_client import MockSchemaRegistryClient

    return isinstance(client, MockSchemaRegistryClient)
