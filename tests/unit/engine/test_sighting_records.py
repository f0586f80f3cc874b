"""The records of ``<app>-card-sightings`` (engine/sighting_records.py): packed, bounded in size, the records of
earlier versions still read, and a malformed row refused before any is applied."""

from __future__ import annotations

from typing import Any

import pytest

from posrecon.engine.cards import CardKey, CardSighting
from posrecon.engine.sighting_records import (
    MAX_RECORD_BYTES,
    ROWS_PER_RECORD,
    pack_sightings,
    sighting_row,
    unpack_sightings,
)
from posrecon.engine.state_rows import pack_row

KEY = CardKey("tok_1", "m-1", 1250, "EUR")


def _sighting(i: int, order_id: str | None = None) -> CardSighting:
    return CardSighting(KEY, order_id or f"o-{i}", 1_000 + i, "t-1", False, False, i % 12, 900 + i, "", 0)


def test_a_record_of_a_version_before_session_23_is_one_bare_row_and_still_read() -> None:
    sighting = CardSighting(KEY, "o-1", 1_000, "t-1", True, True, 3, 900, "ev-void", 2_000)
    old = pack_row([list(KEY), *sighting[1:]])  # what OutputFeed.sightings wrote per sighting until session 23
    assert unpack_sightings(old) == [sighting]


def test_a_short_row_takes_the_defaults_of_the_fields_it_lacks() -> None:
    assert unpack_sightings(pack_row([list(KEY), "o-1", 1_000, "t-1", False])) == [
        CardSighting(KEY, "o-1", 1_000, "t-1", False)
    ]


def test_many_rows_are_split_into_records_of_at_most_rows_per_record() -> None:
    sightings = [_sighting(i) for i in range(2 * ROWS_PER_RECORD + 5)]
    records = pack_sightings([sighting_row(s) for s in sightings])
    assert [len(unpack_sightings(r)) for r in records] == [ROWS_PER_RECORD, ROWS_PER_RECORD, 5]
    assert [s for r in records for s in unpack_sightings(r)] == sightings


def test_rows_with_long_fields_are_split_below_the_record_size_limit() -> None:
    long_id = "o" * 20_000
    sightings = [_sighting(i, f"{long_id}{i}") for i in range(100)]  # ~2 MB as one record
    records = pack_sightings([sighting_row(s) for s in sightings])
    assert len(records) > 1 and all(len(r) <= MAX_RECORD_BYTES for r in records)
    assert [s for r in records for s in unpack_sightings(r)] == sightings


def test_a_single_row_above_the_limit_is_still_sent_alone() -> None:
    huge = _sighting(0, "o" * (MAX_RECORD_BYTES + 10))
    [record] = pack_sightings([sighting_row(huge)])
    assert unpack_sightings(record) == [huge]


def _row(**change: Any) -> list[Any]:
    row = sighting_row(_sighting(1))
    names = list(CardSighting._fields)
    for name, value in change.items():
        row[names.index(name)] = value
    return row


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (b"not json", ValueError),
        (pack_row({"rows": []}), ValueError),
        (pack_row({"sightings": [], "more": 1}), ValueError),
        (pack_row({"sightings": "x"}), ValueError),
        (pack_row([list(KEY), "o-1", 1_000, "t-1"]), ValueError),  # too short
        (pack_row([*_row(), 0]), ValueError),  # too long
        (pack_row(["tok_1|m-1|1250|EUR", "o-1", 1_000, "t-1", False]), ValueError),  # key not a list
        (pack_row(_row(key=["tok_1", "m-1", 1250])), ValueError),
        (pack_row(_row(key=["tok_1", "m-1", "1250", "EUR"])), TypeError),
        (pack_row(_row(key=["tok_1", "m-1", True, "EUR"])), TypeError),
        (pack_row(_row(key=[1, "m-1", 1250, "EUR"])), TypeError),
        (pack_row(_row(order_id=7)), TypeError),
        (pack_row(_row(approved_at="1000")), TypeError),
        (pack_row(_row(voided=0)), TypeError),
        (pack_row(_row(is_void=None)), TypeError),
        (pack_row(_row(source_watermark=1.5)), TypeError),
        (pack_row(_row(void_event_id=None)), TypeError),
        (pack_row({"sightings": [sighting_row(_sighting(1)), _row(void_time="x")]}), TypeError),  # one bad row
    ],
)
def test_a_malformed_record_is_refused_whole(value: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        unpack_sightings(value)
