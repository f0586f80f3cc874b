"""Configuration: rule parameters of the contract, plus Kafka client settings.

Sources, later wins: built-in defaults < TOML file < ``POSRECON_*`` environment variables.

* Rule keys are the contract's (``settlement_sla_ms`` …), top level of the TOML file or under ``[rules]``;
  env ``POSRECON_SETTLEMENT_SLA_MS=…``.
* Kafka client settings live under ``[kafka]`` and are passed through to librdkafka unchanged;
  env ``POSRECON_KAFKA_BOOTSTRAP_SERVERS=…`` sets ``bootstrap.servers`` (``_`` becomes ``.``).
* Topic names live under ``[topics]``; env ``POSRECON_TOPIC_RECONCILED=…``.
* The wire format lives under ``[serde]`` (:class:`SerdeSettings`): ``format``, ``registry_url`` and a
  ``[serde.registry]`` table passed through to confluent-kafka's ``SchemaRegistryClient`` (auth, TLS); env
  ``POSRECON_SERDE_FORMAT``, ``POSRECON_SERDE_REGISTRY_URL``, ``POSRECON_SERDE_REGISTRY_BASIC_AUTH_USER_INFO=…``
  (``_`` becomes ``.``).
* :func:`default_bootstrap`: where the commands find Kafka when nothing else says (the env variable, else the
  dev broker recorded by ``posrecon broker up`` in :func:`local_broker_state_file`, else ``127.0.0.1:19092``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from posrecon.engine.pan import SCANNABLE_FIELDS
from posrecon.net import LOOPBACK, port_is_open

DEFAULT_KAFKA_PORT = 19092
DEFAULT_BOOTSTRAP = f"{LOOPBACK}:{DEFAULT_KAFKA_PORT}"
ENV_BOOTSTRAP = "POSRECON_KAFKA_BOOTSTRAP_SERVERS"
ENV_CACHE_DIR = "POSRECON_CACHE_DIR"
LOCAL_BROKER_STATE_FILE_NAME = "broker-state.json"


#: the keys a ``[merchants."<merchant_id>"]`` table may set (the contract's list); the rest are global
MERCHANT_KEYS = (
    "settlement_sla_ms",
    "orphan_grace_ms",
    "order_ttl_ms",
    "duplicate_charge_window_ms",
    "amount_tolerance_minor",
    "amount_tolerance_bps",
    "max_amount_minor",
    "fee_rate_bps",
    "fee_fixed_minor",
    "fee_tolerance_minor",
)
#: pricing keys whose None means "merchant pricing not configured" (see posrecon.engine.pricing)
_OPTIONAL_KEYS = frozenset({"fee_rate_bps", "fee_fixed_minor"})

MerchantTable = Mapping[str, int | None]


# not slots: the per-merchant RuleConfig objects are precomputed once into a plain attribute (see for_merchant)
@dataclass(frozen=True)
class RuleConfig:
    """The contract's rule parameters (names and defaults are fixed by the contract).

    ``merchants`` holds the validated ``[merchants."<id>"]`` override tables; :meth:`for_merchant` gives the rules
    an order of that merchant follows."""

    settlement_sla_ms: int = 86_400_000
    orphan_grace_ms: int = 600_000
    order_ttl_ms: int = 900_000
    duplicate_charge_window_ms: int = 600_000
    amount_tolerance_minor: int = 0
    max_amount_minor: int = 10_000_000
    max_clock_skew_ms: int = 300_000
    allowed_lateness_ms: int = 0
    state_retention_ms: int = 604_800_000
    # contract v2
    amount_tolerance_bps: int = 0
    fee_rate_bps: int | None = None  # None (and fee_fixed_minor None): merchant pricing not configured
    fee_fixed_minor: int | None = None
    fee_tolerance_minor: int = 0
    batch_grace_ms: int = 3_600_000
    pan_scan_fields: tuple[str, ...] = SCANNABLE_FIELDS
    merchants: Mapping[str, MerchantTable] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        by_merchant = {
            merchant_id: dataclasses.replace(self, merchants={}, **cast(dict[str, Any], table))
            for merchant_id, table in self.merchants.items()
        }
        object.__setattr__(self, "_by_merchant", by_merchant)

    def for_merchant(self, merchant_id: str) -> RuleConfig:
        """The rules of ``merchant_id``'s orders: O(1); a merchant without a table gets ``self`` (identity)."""
        return self._by_merchant.get(merchant_id, self)  # type: ignore[attr-defined, no-any-return]

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> RuleConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown rule parameter(s): {', '.join(unknown)}")
        parsed: dict[str, Any] = {}
        for key, value in values.items():
            if key == "pan_scan_fields":
                parsed[key] = _scan_fields(value)
            elif key == "merchants":
                parsed[key] = _merchant_tables(value)
            elif value is None and key in _OPTIONAL_KEYS:
                parsed[key] = None
            else:
                parsed[key] = _non_negative(f"rule parameter {key}", value, strings_ok=True)
        return cls(**parsed)


def _non_negative(name: str, value: object, *, strings_ok: bool) -> int:
    """An integer >= 0; strings of digits only where they may come from the environment."""
    if isinstance(value, bool) or not isinstance(value, int | str) or (isinstance(value, str) and not strings_ok):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None
    if number < 0:
        raise ValueError(f"{name} must be >= 0, got {number}")
    return number


def _scan_fields(value: object) -> tuple[str, ...]:
    """``pan_scan_fields``: a list of field names (or, from the environment, a comma-separated string)."""
    names = [n.strip() for n in value.split(",") if n.strip()] if isinstance(value, str) else value
    if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"pan_scan_fields must be a list of field names, got {value!r}")
    bad = sorted(set(names) - set(SCANNABLE_FIELDS))
    if bad:
        raise ValueError(f"pan_scan_fields: unknown field(s) {', '.join(bad)} (known: {', '.join(SCANNABLE_FIELDS)})")
    return tuple(n for n in SCANNABLE_FIELDS if n in names)  # schema order, no repeats


def _merchant_tables(value: object) -> dict[str, MerchantTable]:
    """Validate ``[merchants."<id>"]`` tables: only MERCHANT_KEYS, TOML integers >= 0 (errors name the key)."""
    if not isinstance(value, Mapping):
        raise ValueError(f"merchants must be a table of merchant tables, got {value!r}")
    tables: dict[str, MerchantTable] = {}
    for merchant_id, table in value.items():
        where = f"merchants.{json.dumps(merchant_id)}"
        if not isinstance(table, Mapping):
            raise ValueError(f"{where} must be a table, got {table!r}")
        unknown = sorted(set(table) - set(MERCHANT_KEYS))
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(MERCHANT_KEYS)})")
        tables[merchant_id] = {
            key: None if v is None and key in _OPTIONAL_KEYS else _non_negative(f"{where}.{key}", v, strings_ok=False)
            for key, v in table.items()
        }
    return tables


@dataclass(frozen=True, slots=True)
class Topics:
    terminal: str = "pos.terminal-events"
    settlement: str = "pos.settlement-notices"
    reconciled: str = "pos.reconciled"
    alerts: str = "pos.alerts"
    deadletter: str = "pos.deadletter"
    batches: str = "pos.settlement-batches"  # settlement batches' control records (SettlementBatch), key batch_id
    batch_reconciled: str = "pos.batch-reconciled"  # BatchReconciliation, compacted, key batch_id
    exception_actions: str = "pos.exception-actions"  # operators' actions on cases (posrecon cases)
    exceptions: str = "pos.exceptions"  # exception cases, compacted, key alert_id


SERDE_FORMATS = ("single-object", "confluent")


@dataclass(frozen=True, slots=True)
class SerdeSettings:
    """How contract topics are encoded (posrecon.serde.wire). ``single-object``: Avro single-object encoding, no
    registry (the default). ``confluent``: the Confluent Schema Registry wire format (``0x00`` + schema id),
    output schemas registered under ``<topic>-value``. With ``registry_url`` set, readers accept both formats
    whatever ``format`` says (the first step of a switch: docs/operations.md)."""

    format: str = "single-object"
    registry_url: str | None = None
    #: passed through to SchemaRegistryClient (``basic.auth.user.info``, ``ssl.ca.location``, ``max.retries`` …), TOML
    #: types kept (the client wants numbers as numbers); not in repr: it holds secrets
    registry: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.format not in SERDE_FORMATS:
            raise ValueError(f"serde.format must be one of {', '.join(SERDE_FORMATS)}, got {self.format!r}")
        if self.format == "confluent" and not self.registry_url:
            raise ValueError('serde.format = "confluent" needs serde.registry_url (the schema registry)')
        if "url" in self.registry:
            raise ValueError("set the registry address as serde.registry_url, not serde.registry.url")

    @property
    def client_config(self) -> dict[str, Any]:
        """SchemaRegistryClient's configuration (``url`` and the pass-through keys)."""
        return {**self.registry, "url": self.registry_url or ""}


@dataclass(frozen=True, slots=True)
class Settings:
    rules: RuleConfig = field(default_factory=RuleConfig)
    topics: Topics = field(default_factory=Topics)
    kafka: Mapping[str, str] = field(default_factory=dict)
    serde: SerdeSettings = field(default_factory=SerdeSettings)


_RULE_KEYS = {f.name for f in dataclasses.fields(RuleConfig)}
_TOPIC_KEYS = {f.name for f in dataclasses.fields(Topics)}


def load_rules(path: str | Path | None, env: Mapping[str, str] | None = None) -> RuleConfig:
    """Rule parameters from an optional TOML file, then ``POSRECON_<KEY>`` environment overrides."""
    return load_settings(path, env).rules


def load_settings(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    doc: dict[str, Any] = {}
    if path is not None:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
    rules: dict[str, Any] = {k: v for k, v in doc.items() if k in _RULE_KEYS}
    rules.update(doc.get("rules", {}))
    topics: dict[str, Any] = dict(doc.get("topics", {}))
    kafka: dict[str, str] = {k: str(v) for k, v in doc.get("kafka", {}).items()}
    serde = _serde_table(doc.get("serde", {}))
    stray = sorted(set(doc) - _RULE_KEYS - {"rules", "topics", "kafka", "serde"})
    if stray:
        raise ValueError(f"unknown configuration key(s) in {path}: {', '.join(stray)}")
    for name, value in env.items():
        if not name.startswith("POSRECON_"):
            continue
        key = name[len("POSRECON_") :].lower()
        if key in _RULE_KEYS:
            rules[key] = value
        elif key.startswith("kafka_"):
            kafka[key[len("kafka_") :].replace("_", ".")] = value
        elif key.startswith("topic_") and key[len("topic_") :] in _TOPIC_KEYS:
            topics[key[len("topic_") :]] = value
        elif key in ("serde_format", "serde_registry_url"):
            serde[key[len("serde_") :]] = value
        elif key.startswith("serde_registry_"):
            serde["registry"][key[len("serde_registry_") :].replace("_", ".")] = (
                int(value) if value.isdigit() else value
            )
    unknown_topics = sorted(set(topics) - _TOPIC_KEYS)
    if unknown_topics:
        raise ValueError(f"unknown topic key(s): {', '.join(unknown_topics)}")
    return Settings(
        rules=RuleConfig.from_mapping(rules), topics=Topics(**topics), kafka=kafka, serde=SerdeSettings(**serde)
    )


def _serde_table(table: object) -> dict[str, Any]:
    """The ``[serde]`` table's keys (``registry``: a copy, the environment adds to it)."""
    if not isinstance(table, Mapping):
        raise ValueError(f"serde must be a table, got {table!r}")
    unknown = sorted(set(table) - {"format", "registry_url", "registry"})
    if unknown:
        raise ValueError(f"unknown serde key(s): {', '.join(unknown)} (allowed: format, registry_url, registry)")
    registry = table.get("registry", {})
    if not isinstance(registry, Mapping):
        raise ValueError(f"serde.registry must be a table of SchemaRegistryClient settings, got {registry!r}")
    return {**table, "registry": dict(registry)}


# ------------------------------------------------------------------------------ where Kafka is by default


def repo_root() -> Path | None:
    """The source checkout holding this package (the dir with ``deploy/kafka/pom.xml``), if any."""
    for start in (Path(__file__).resolve().parent, Path.cwd().resolve()):
        for candidate in (start, *start.parents):
            if (candidate / "deploy" / "kafka" / "pom.xml").is_file():
                return candidate
    return None


def cache_dir() -> Path:
    """``$POSRECON_CACHE_DIR``, else ``<repo>/.cache`` (gitignored), else ``./.cache``."""
    env = os.environ.get(ENV_CACHE_DIR)
    if env:
        return Path(env).expanduser().resolve()
    root = repo_root()
    return (root if root is not None else Path.cwd().resolve()) / ".cache"


def local_broker_state_file() -> Path:
    """Where ``posrecon broker up`` records the dev broker it started (written by ``posrecon.localbroker``)."""
    return cache_dir() / LOCAL_BROKER_STATE_FILE_NAME


def _recorded_local_bootstrap() -> str | None:
    """The recorded dev broker's address if its process is alive and its port answers (read only: the
    product never imports the dev broker launcher)."""
    try:
        state = json.loads(local_broker_state_file().read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(state, dict):
        return None
    pid, port = state.get("pid"), state.get("port")
    if not isinstance(pid, int) or not isinstance(port, int):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, owned by another user
    return f"{LOOPBACK}:{port}" if port_is_open(port) else None


def default_bootstrap() -> str:
    """Bootstrap servers for the commands.

    ``$POSRECON_KAFKA_BOOTSTRAP_SERVERS``, else the broker started by ``posrecon broker up`` (if it
    runs), else ``127.0.0.1:19092``.
    """
    env = os.environ.get(ENV_BOOTSTRAP)
    if env:
        return env
    return _recorded_local_bootstrap() or DEFAULT_BOOTSTRAP
