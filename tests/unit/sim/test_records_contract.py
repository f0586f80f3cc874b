"""Every generated record breaks exactly the contract rule its rejection names, and valid ones break none."""

from __future__ import annotations

import re
from typing import Any

import pycountry
import pytest

from posrecon.config import RuleConfig
from posrecon.sim.generator import Simulation, generate
from posrecon.sim.line import Line
from posrecon.sim.pan import luhn_valid
from posrecon.sim.vocabulary import (
    BATCH,
    CLOCK_SKEW,
    DECODE_ERROR,
    EMPTY_ID,
    INVALID_AMOUNT,
    INVALID_CURRENCY,
    PAN_IN_CARD_TOKEN,
    PAN_IN_FIELD,
    SETTLEMENT_REQUIRED,
    TERMINAL,
    TERMINAL_EVENT_TYPES,
    TERMINAL_REQUIRED,
)

CURRENCIES = {c.alpha_3 for c in pycountry.currencies}
STATUSES = {"SETTLED", "FAILED", "REVERSED"}
SCANNED = {
    "terminal": ("event_id", "order_id", "merchant_id", "terminal_id", "decline_code"),
    "settlement": ("notice_id", "order_id", "merchant_id", "batch_id"),
    "batch": ("batch_id", "merchant_id"),
}
# the contract v2 prefix list, spelled out as prefix strings (the generator's check works on numeric ranges)
NETWORK_PREFIXES = tuple(
    ["4", "34", "37", "62", "6011", "65", "36", "38"]
    + [str(p) for p in (*range(51, 56), *range(2221, 2721), *range(644, 650), *range(3528, 3590), *range(300, 306))]
)


def holds_card_number(value: str) -> bool:
    """A maximal run of digits (single spaces/dashes between digits) of 13-19 digits, Luhn, network prefix."""
    for run in re.findall(r"[0-9](?:[ -]?[0-9])*", value):
        digits = run.replace(" ", "").replace("-", "")
        if 13 <= len(digits) <= 19 and luhn_valid(digits) and digits.startswith(NETWORK_PREFIXES):
            return True
    return False


def violations(line: Line, rules: RuleConfig) -> set[str]:
    """The contract's checks, written out independently of the generator."""
    if line.raw is not None:
        return {DECODE_ERROR}
    record: dict[str, Any] = line.record or {}
    if line.source == BATCH:
        return batch_violations(line, record, rules)
    terminal = line.source == TERMINAL
    required = TERMINAL_REQUIRED if terminal else SETTLEMENT_REQUIRED
    symbol = record.get("event_type") if terminal else record.get("status")
    if any(name not in record for name in required) or symbol not in (TERMINAL_EVENT_TYPES if terminal else STATUSES):
        return {DECODE_ERROR}
    found = set()
    if not terminal and not 1 <= record.get("capture_seq", 1) <= record.get("capture_count", 1):
        found.add("INVALID_CAPTURE")
    if record["event_id" if terminal else "notice_id"] == "":
        found.add(EMPTY_ID)
    if not 0 < record["amount_minor"] <= rules.max_amount_minor:
        found.add(INVALID_AMOUNT)
    if record["currency"] not in CURRENCIES:
        found.add(INVALID_CURRENCY)
    token = record.get("card_token")
    if isinstance(token, str) and token.isdigit() and 13 <= len(token) <= 19 and luhn_valid(token):
        found.add(PAN_IN_CARD_TOKEN)
    if any(isinstance(record.get(name), str) and holds_card_number(record[name]) for name in SCANNED[line.source]):
        found.add(PAN_IN_FIELD)
    if terminal and abs(record["event_time"] - line.ingest_time) > rules.max_clock_skew_ms:
        found.add(CLOCK_SKEW)
    if not terminal and record["settled_at"] - line.ingest_time > rules.max_clock_skew_ms:
        found.add(CLOCK_SKEW)
    return found


BATCH_REQUIRED = ("batch_id", "currency", "notice_count", "gross_amount_minor", "closed_at")


def batch_violations(line: Line, record: dict[str, Any], rules: RuleConfig) -> set[str]:
    """A SettlementBatch control record: as the ledger's check_settlement_batch reads the contract."""
    if any(name not in record for name in BATCH_REQUIRED):
        return {DECODE_ERROR}
    found = set()
    if record["batch_id"] == "" or record.get("merchant_id") == "":
        found.add(EMPTY_ID)
    count, gross, fee = record["notice_count"], record["gross_amount_minor"], record.get("fee_amount_minor", 0)
    if count < 0 or fee < 0 or abs(gross) > count * rules.max_amount_minor:
        found.add(INVALID_AMOUNT)
    if record["currency"] not in CURRENCIES:
        found.add(INVALID_CURRENCY)
    if any(isinstance(record.get(name), str) and holds_card_number(record[name]) for name in SCANNED[BATCH]):
        found.add(PAN_IN_FIELD)
    if record["closed_at"] - line.ingest_time > rules.max_clock_skew_ms:
        found.add(CLOCK_SKEW)
    return found


@pytest.fixture(scope="module")
def simulation() -> Simulation:
    return generate(4_000, seed=11, fault_rate=0.6)


def test_each_line_breaks_exactly_its_rule(simulation: Simulation) -> None:
    rules = simulation.truth.rules
    for line in simulation.lines:
        expected = set() if line.rejection is None else {line.rejection}
        assert violations(line, rules) == expected, line


def test_garbage_text_is_not_json_and_stays_on_one_line(simulation: Simulation) -> None:
    import json

    raws = [line.raw for line in simulation.lines if line.raw is not None]
    assert raws
    for raw in raws:
        assert raw.strip() and len(raw.splitlines()) == 1
        with pytest.raises(ValueError):
            json.loads(raw)


def test_json_lines_use_the_replay_envelope(simulation: Simulation) -> None:
    import json

    for line in simulation.lines[:500]:
        if line.raw is None:
            doc = json.loads(line.to_json_line())
            assert doc == {"source": line.source, "ingest_time": line.ingest_time, "record": line.record}


def test_a_stricter_config_is_honoured() -> None:
    rules = RuleConfig(
        settlement_sla_ms=4 * 3_600_000,
        amount_tolerance_minor=7,
        max_amount_minor=50_000,
        max_clock_skew_ms=180_000,
        allowed_lateness_ms=30_000,
    )
    simulation = generate(1_500, seed=5, rules=rules, fault_rate=0.6)
    for line in simulation.lines:
        expected = set() if line.rejection is None else {line.rejection}
        assert violations(line, rules) == expected, line
    for line in simulation.lines:
        if line.valid and line.record is not None and line.source != BATCH:
            assert line.record["amount_minor"] <= 50_000


def test_rules_the_simulator_cannot_model_are_refused() -> None:
    with pytest.raises(ValueError, match="orphan_grace_ms"):
        generate(10, seed=1, rules=RuleConfig(orphan_grace_ms=0))
    with pytest.raises(ValueError, match="amount_tolerance_bps"):
        generate(10, seed=1, rules=RuleConfig(merchants={"m": {"amount_tolerance_bps": 5_000}}))
