from __future__ import annotations

from pathlib import Path

import pytest

from posrecon.config import RuleConfig, load_settings


def test_defaults_are_the_contract_defaults() -> None:
    r = RuleConfig()
    assert (r.settlement_sla_ms, r.orphan_grace_ms, r.order_ttl_ms, r.duplicate_charge_window_ms) == (
        86_400_000, 600_000, 900_000, 600_000)  # fmt: skip
    assert (r.amount_tolerance_minor, r.max_amount_minor, r.max_clock_skew_ms, r.allowed_lateness_ms) == (
        0,
        10_000_000,
        300_000,
        0,
    )
    assert r.state_retention_ms == 604_800_000


def test_toml_then_environment_overrides(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('settlement_sla_ms = 1000\n[rules]\norphan_grace_ms = 5\n[kafka]\n"security.protocol" = "SSL"\n'
                   '[topics]\nalerts = "my.alerts"\n')  # fmt: skip
    s = load_settings(cfg, env={"POSRECON_ORPHAN_GRACE_MS": "7", "POSRECON_KAFKA_BOOTSTRAP_SERVERS": "h:1",
                                "POSRECON_TOPIC_RECONCILED": "x.rec"})  # fmt: skip
    assert s.rules.settlement_sla_ms == 1000 and s.rules.orphan_grace_ms == 7
    assert s.kafka == {"security.protocol": "SSL", "bootstrap.servers": "h:1"}
    assert s.topics.alerts == "my.alerts" and s.topics.reconciled == "x.rec"


def test_unknown_keys_are_errors(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("setlement_sla_ms = 1\n")
    with pytest.raises(ValueError, match="setlement_sla_ms"):
        load_settings(cfg, env={})
    with pytest.raises(ValueError):
        RuleConfig.from_mapping({"order_ttl_ms": -1})
