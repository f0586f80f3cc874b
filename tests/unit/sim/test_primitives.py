"""Luhn, Kafka's murmur2 (published test vectors), the scenario mix parser, the Zipf picker."""

from __future__ import annotations

import random

import pytest

from posrecon.config import RuleConfig
from posrecon.sim.mix import DEFAULT_WEIGHTS, parse_mix
from posrecon.sim.pan import card_number_runs, has_network_prefix, luhn_check_digit, luhn_valid, mask_runs, sample_pan
from posrecon.sim.partitions import murmur2, partition_of
from posrecon.sim.population import ZipfPicker
from posrecon.sim.terms import MerchantTerms


def test_luhn() -> None:
    assert luhn_valid("4111111111111111")
    assert not luhn_valid("4111111111111112")
    assert luhn_check_digit("7992739871") == "3"
    rng = random.Random(1)
    for _ in range(200):
        pan = sample_pan(rng)
        assert len(pan) == 16 and luhn_valid(pan)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("21", -973932308),
        ("foobar", -790332482),
        ("a-little-bit-long-string", -985981536),
        ("a-little-bit-longer-string", -1486304829),
        ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        ("abc", 479470107),
    ],
)
def test_murmur2_matches_kafka(text: str, expected: int) -> None:
    assert murmur2(text.encode()) == expected


def test_partition_of() -> None:
    assert partition_of("anything", 1) == 0
    assert {partition_of(f"ord-1-{n}", 6) for n in range(200)} == set(range(6))


def test_parse_mix() -> None:
    weights = parse_mix("late=3, garbage=0")
    assert weights["late"] == 3.0 and weights["garbage"] == 0.0
    assert weights["missing"] == DEFAULT_WEIGHTS["missing"]
    with pytest.raises(ValueError):
        parse_mix("nonsense=1")
    with pytest.raises(ValueError):
        parse_mix("late")


def test_zipf_picker_prefers_the_head() -> None:
    rng = random.Random(4)
    picker = ZipfPicker(list(range(100)), exponent=1.0)
    picks = [picker.pick(rng) for _ in range(5_000)]
    assert picks.count(0) > picks.count(50) * 10


@pytest.mark.parametrize(
    ("value", "card"),
    [
        ("4111111111111111", True),
        ("4111 1111 1111 1111", True),
        ("ord-x4111-1111-1111-1111", True),
        ("4111  1111 1111 1111", False),  # two spaces end a run
        ("74111111111111111", False),  # the run as a whole (17 digits) fails Luhn
        ("9-4111111111111111", False),  # a dash between digits joins the runs
        ("4111111111111112", False),  # Luhn
        ("9111111111111116", False),  # Luhn-valid, no network prefix
        ("411111111113", False),  # 12 digits
        ("41111111111111111111", False),  # 20 digits
    ],
)
def test_card_number_runs_follow_the_contract(value: str, card: bool) -> None:
    assert bool(card_number_runs(value)) is card


@pytest.mark.parametrize(
    ("prefix", "network"),
    [
        ("2221", True),
        ("2720", True),
        ("2721", False),
        ("2220", False),
        ("644", True),
        ("643", False),
        ("3528", True),
        ("3590", False),
        ("305", True),
        ("306", False),
        ("36", True),
        ("38", True),
        ("39", False),
        ("6011", True),
        ("6012", False),
        ("62", True),
        ("65", True),
        ("50", False),
        ("56", False),
    ],
)
def test_network_prefixes(prefix: str, network: bool) -> None:
    assert has_network_prefix(prefix + "0" * 12) is network


def test_masking_keeps_the_last_four_digits_and_the_separators() -> None:
    assert mask_runs("ord-7x4111-1111-1111-1111") == "ord-7x****-****-****-1111"
    assert mask_runs("4111111111111112") == "4111111111111112"  # not a card number: left as is
    assert mask_runs("ord-7-12") == "ord-7-12"


def test_fee_rounds_half_to_even_and_tolerance_takes_the_larger() -> None:
    rules = RuleConfig(
        amount_tolerance_minor=5,
        merchants={"m": {"fee_rate_bps": 100, "fee_fixed_minor": 10, "amount_tolerance_bps": 25}},
    )
    terms = MerchantTerms(rules)
    assert (terms.fee("m", 250), terms.fee("m", 350), terms.fee("m", 251)) == (12, 14, 13)
    assert terms.fee("other", 250) is None and not terms.priced("other")
    assert (terms.tolerance("m", 12_345), terms.tolerance("m", 1_000), terms.tolerance("other", 12_345)) == (30, 5, 5)
    assert MerchantTerms(rules, v2=False).fee("m", 250) is None
