"""Luhn, Kafka's murmur2 (published test vectors), the scenario mix parser, the Zipf picker."""

from __future__ import annotations

import random

import pytest

from posrecon.sim.mix import DEFAULT_WEIGHTS, parse_mix
from posrecon.sim.pan import luhn_check_digit, luhn_valid, sample_pan
from posrecon.sim.partitions import murmur2, partition_of
from posrecon.sim.population import ZipfPicker


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
