from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from posrecon.config import RuleConfig, load_settings
from posrecon.engine.pan import SCANNABLE_FIELDS


def test_defaults_are_the_contract_defaults() -> None:
    r = RuleConfig()
    assert (r.settlement_sla_ms, r.orphan_grace_ms, r.order_ttl_ms, r.duplicate_charge_window_ms) == (
        86_400_000,
        600_000,
        900_000,
        600_000,
    )
    assert (r.amount_tolerance_minor, r.max_amount_minor, r.max_clock_skew_ms, r.allowed_lateness_ms) == (
        0,
        10_000_000,
        300_000,
        0,
    )
    assert r.state_retention_ms == 604_800_000


def test_toml_then_environment_overrides(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        'settlement_sla_ms = 1000\n[rules]\norphan_grace_ms = 5\n[kafka]\n"security.protocol" = "SSL"\n'
        '[topics]\nalerts = "my.alerts"\n'
    )
    s = load_settings(
        cfg,
        env={
            "POSRECON_ORPHAN_GRACE_MS": "7",
            "POSRECON_KAFKA_BOOTSTRAP_SERVERS": "h:1",
            "POSRECON_TOPIC_RECONCILED": "x.rec",
        },
    )
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


# --- contract v2 keys ---------------------------------------------------------------------------------------------


def test_v2_defaults() -> None:
    r = RuleConfig()
    assert (r.amount_tolerance_bps, r.fee_rate_bps, r.fee_fixed_minor, r.fee_tolerance_minor) == (0, None, None, 0)
    assert r.batch_grace_ms == 3_600_000 and r.pan_scan_fields == SCANNABLE_FIELDS and r.merchants == {}
    assert {"event_id", "notice_id", "order_id", "merchant_id", "terminal_id", "decline_code", "batch_id"} <= set(
        r.pan_scan_fields
    )
    assert "card_token" not in r.pan_scan_fields  # v1's PAN_IN_CARD_TOKEN rule covers it


MERCHANT_TOML = """
settlement_sla_ms = 1000
fee_rate_bps = 150
pan_scan_fields = ["order_id", "batch_id"]

[merchants."m-1"]
fee_rate_bps = 200
fee_fixed_minor = 30
amount_tolerance_bps = 50

[merchants.m-2]
settlement_sla_ms = 5
"""


def test_merchant_tables_override_the_defaults(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(MERCHANT_TOML)
    rules = load_settings(cfg, env={"POSRECON_FEE_TOLERANCE_MINOR": "2", "POSRECON_BATCH_GRACE_MS": "60000"}).rules
    m1, m2 = rules.for_merchant("m-1"), rules.for_merchant("m-2")
    assert (m1.fee_rate_bps, m1.fee_fixed_minor, m1.amount_tolerance_bps, m1.settlement_sla_ms) == (200, 30, 50, 1000)
    assert (m2.fee_rate_bps, m2.settlement_sla_ms, m2.fee_tolerance_minor) == (150, 5, 2)  # the rest inherited
    assert rules.for_merchant("m-3") is rules and rules.batch_grace_ms == 60_000
    assert rules.pan_scan_fields == ("order_id", "batch_id") and m1.pan_scan_fields == ("order_id", "batch_id")
    assert m1.for_merchant("m-1") is m1 and m1.merchants == {}
    assert rules.for_merchant("m-1") is m1  # precomputed once, not built per call
    # a truth file stores the rules as JSON: they come back equal (and hashable)
    assert RuleConfig.from_mapping(json.loads(json.dumps(dataclasses.asdict(rules)))) == rules
    assert hash(rules) == hash(RuleConfig.from_mapping(dataclasses.asdict(rules)))


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('[merchants."m-1"]\nfee_rate_bps = "x"\n', "merchants.\"m-1\".fee_rate_bps must be an integer, got 'x'"),
        ('[merchants."m-1"]\nfee_rate_bps = "150"\n', 'merchants."m-1".fee_rate_bps must be an integer'),
        ('[merchants."m-1"]\norder_ttl_ms = true\n', 'merchants."m-1".order_ttl_ms must be an integer, got True'),
        ('[merchants."m-1"]\nmax_clock_skew_ms = 5\n', 'merchants."m-1": unknown key.s. max_clock_skew_ms'),
        ('[merchants."m-1"]\nfee_fixed_minor = -1\n', 'merchants."m-1".fee_fixed_minor must be >= 0, got -1'),
        ('merchants = { "m-1" = 5 }\n', 'merchants."m-1" must be a table, got 5'),
        ("fee_rate_bps = 1.5\n", "rule parameter fee_rate_bps must be an integer, got 1.5"),
        ('pan_scan_fields = ["order_id", "ordr_id"]\n', "pan_scan_fields: unknown field.s. ordr_id"),
        ('pan_scan_fields = "order_id"\n[x]\n', "unknown configuration key.s. in .*: x"),
    ],
)
def test_bad_v2_config_is_a_startup_error_naming_the_key(tmp_path: Path, table: str, message: str) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(table)
    with pytest.raises(ValueError, match=message):
        load_settings(cfg, env={})


def test_v2_environment_overrides() -> None:
    env = {
        "POSRECON_AMOUNT_TOLERANCE_BPS": "25",
        "POSRECON_FEE_RATE_BPS": "150",
        "POSRECON_FEE_FIXED_MINOR": "0",
        "POSRECON_PAN_SCAN_FIELDS": "terminal_id, order_id",
    }
    rules = load_settings(None, env=env).rules
    assert (rules.amount_tolerance_bps, rules.fee_rate_bps, rules.fee_fixed_minor) == (25, 150, 0)
    assert rules.pan_scan_fields == ("order_id", "terminal_id")  # schema order
    with pytest.raises(ValueError, match="rule parameter fee_rate_bps must be an integer, got 'x'"):
        load_settings(None, env={"POSRECON_FEE_RATE_BPS": "x"})
    with pytest.raises(ValueError, match=r"pan_scan_fields: unknown field\(s\) card"):
        load_settings(None, env={"POSRECON_PAN_SCAN_FIELDS": "card"})


def test_a_v1_config_file_loads_as_before(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("settlement_sla_ms = 1000\namount_tolerance_minor = 3\n[rules]\norphan_grace_ms = 5\n")
    rules = load_settings(cfg, env={}).rules
    assert rules == RuleConfig(settlement_sla_ms=1000, amount_tolerance_minor=3, orphan_grace_ms=5)
    assert rules.for_merchant("any") is rules
