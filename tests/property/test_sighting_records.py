"""The records of ``<app>-card-sightings`` (engine/sighting_records.py): whatever sightings a batch sends to a card
partition, its owner reads back exactly those, in order, however they are split into records."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from posrecon.engine.cards import CardKey, CardSighting
from posrecon.engine.sighting_records import pack_sightings, sighting_row, unpack_sightings

TEXT = st.text(max_size=40)
INTS = st.integers(min_value=-(1 << 70), max_value=1 << 70)  # past 64 bits too: such a record is marshal's

SIGHTINGS = st.builds(
    CardSighting,
    st.builds(CardKey, TEXT, TEXT, INTS, TEXT),
    TEXT,
    INTS,
    TEXT,
    st.booleans(),
    st.booleans(),
    st.integers(min_value=0, max_value=1 << 20),
    INTS,
    TEXT,
    INTS,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(SIGHTINGS, max_size=60))
def test_the_owner_reads_back_the_sent_sightings_in_order(sightings: list[CardSighting]) -> None:
    records = pack_sightings([sighting_row(s) for s in sightings])
    assert [s for value in records for s in unpack_sightings(value)] == sightings
    assert len(records) == (1 if sightings else 0)  # up to ROWS_PER_RECORD rows of this size: one record
