"""Configuration: rule parameters of the contract, plus Kafka client settings.

Sources, later wins: built-in defaults < TOML file < ``POSRECON_*`` environment variables.

* Rule keys are the contract's (``settlement_sla_ms`` …), top level of the TOML file or under ``[rules]``;
  env ``POSRECON_SETTLEMENT_SLA_MS=…``.
* Kafka client settings live under ``[kafka]`` and are passed through to librdkafka unchanged;
  env ``POSRECON_KAFKA_BOOTSTRAP_SERVERS=…`` sets ``bootstrap.servers`` (``_`` becomes ``.``).
* Topic names live under ``[topics]``; env ``POSRECON_TOPIC_RECONCILED=…``.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class RuleConfig:
    """The contract's rule parameters (names and defaults are fixed by the contract)."""

    settlement_sla_ms: int = 86_400_000
    orphan_grace_ms: int = 600_000
    order_ttl_ms: int = 900_000
    duplicate_charge_window_ms: int = 600_000
    amount_tolerance_minor: int = 0
    max_amount_minor: int = 10_000_000
    max_clock_skew_ms: int = 300_000
    allowed_lateness_ms: int = 0
    state_retention_ms: int = 604_800_000

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> RuleConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown rule parameter(s): {', '.join(unknown)}")
        parsed: dict[str, int] = {}
        for key, value in values.items():
            if isinstance(value, bool) or not isinstance(value, int | str):
                raise ValueError(f"rule parameter {key} must be an integer, got {value!r}")
            number = int(value)
            if number < 0:
                raise ValueError(f"rule parameter {key} must be >= 0, got {number}")
            parsed[key] = number
        return cls(**parsed)


@dataclass(frozen=True, slots=True)
class Topics:
    terminal: str = "pos.terminal-events"
    settlement: str = "pos.settlement-notices"
    reconciled: str = "pos.reconciled"
    alerts: str = "pos.alerts"
    deadletter: str = "pos.deadletter"


@dataclass(frozen=True, slots=True)
class Settings:
    rules: RuleConfig = field(default_factory=RuleConfig)
    topics: Topics = field(default_factory=Topics)
    kafka: Mapping[str, str] = field(default_factory=dict)


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
    stray = sorted(set(doc) - _RULE_KEYS - {"rules", "topics", "kafka"})
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
    unknown_topics = sorted(set(topics) - _TOPIC_KEYS)
    if unknown_topics:
        raise ValueError(f"unknown topic key(s): {', '.join(unknown_topics)}")
    return Settings(rules=RuleConfig.from_mapping(rules), topics=Topics(**topics), kafka=kafka)
