"""The records of ``<app>-card-sightings``: the card sightings one worker sends to the card partition another
worker owns, packed.

A batch's sightings for one card partition travel as one record, ``{"sightings": [row, ...]}`` (compact JSON,
or ``\\x02`` + marshal for a row JSON cannot hold: engine/state_rows.py), each row a :class:`CardSighting` with
its card key as a list: ``[[token, merchant, amount, currency], order_id, approved_at, terminal_id, voided,
is_void, source_partition, source_watermark, void_event_id, void_time]``. Until session 23 each sighting was a
record of its own (that bare row, keyed by the card key): a record read, parsed and applied by interpreted code
cost two workers about a tenth of their main thread (docs/performance.md, session 23). Those records are still
read, so a deployment can be upgraded while sightings are in flight.

Compiled with the engine. A record is applied whole or not at all: :func:`unpack_sightings` checks every row's
shape and types before the first is applied, so a malformed record is one dead letter, not a half-applied one
(and not a TypeError inside the compiled card index).
"""

from __future__ import annotations

from typing import Any, Final

from posrecon.engine.cards import CardKey, CardSighting
from posrecon.engine.state_rows import pack_row, unpack_row

#: rows per record at most; a record of that many rows of plausible sizes is ~150 KB, far below the broker's
#: 1 MB message limit (a larger one is split: :func:`pack_sightings`)
ROWS_PER_RECORD: Final = 1000
#: a packed record above this many bytes is split in two (only rows with very long fields get there)
MAX_RECORD_BYTES: Final = 512 * 1024
#: the types of a row's fields after the card key (CardSighting's order); a shorter row takes CardSighting's defaults
_FIELD_TYPES: Final = (str, int, str, bool, bool, int, int, str, int)
_FIELDS: Final = 1 + len(_FIELD_TYPES)  # the row's length: the card key and the fields after it


def sighting_row(sighting: CardSighting) -> list[Any]:
    row: list[Any] = [list(sighting.key)]
    row.extend(sighting[1:])
    return row


def pack_sightings(rows: list[list[Any]]) -> list[bytes]:
    """``rows`` (:func:`sighting_row`) as records of at most :data:`ROWS_PER_RECORD` rows and (unless one row
    alone is larger) :data:`MAX_RECORD_BYTES` bytes each, in order."""
    out: list[bytes] = []
    for start in range(0, len(rows), ROWS_PER_RECORD):
        _pack_into(rows[start : start + ROWS_PER_RECORD], out)
    return out


def _pack_into(rows: list[list[Any]], out: list[bytes]) -> None:
    value = pack_row({"sightings": rows})
    if len(value) <= MAX_RECORD_BYTES or len(rows) == 1:
        out.append(value)
        return
    half = len(rows) // 2
    _pack_into(rows[:half], out)
    _pack_into(rows[half:], out)


def unpack_sightings(value: bytes) -> list[CardSighting]:
    """The sightings of a ``<app>-card-sightings`` record: a packed one, or a single row as written before
    session 23. Raises ValueError (or TypeError) if any row is malformed."""
    raw = unpack_row(value)
    if isinstance(raw, dict):
        rows = raw.get("sightings")
        if not isinstance(rows, list) or len(raw) != 1:
            raise ValueError('a packed card-sightings record is {"sightings": [row, ...]}')
        return [_sighting(row) for row in rows]
    return [_sighting(raw)]


def _sighting(row: Any) -> CardSighting:
    if not isinstance(row, list) or not 5 <= len(row) <= _FIELDS:
        raise ValueError(f"a card sighting row is a list of 5 to {_FIELDS} values")
    key = row[0]
    if not isinstance(key, list) or len(key) != 4:
        raise ValueError("a card sighting's key is [token, merchant, amount, currency]")
    token, merchant, amount, currency = key[0], key[1], key[2], key[3]
    if not (isinstance(token, str) and isinstance(merchant, str) and isinstance(currency, str)):
        raise TypeError("a card key's token, merchant and currency are strings")
    if not isinstance(amount, int) or isinstance(amount, bool):
        raise TypeError("a card key's amount is an integer")
    fields = row[1:]
    for value, kind in zip(fields, _FIELD_TYPES, strict=False):  # a short row: its missing fields are defaults
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise TypeError(f"a card sighting's fields are {', '.join(t.__name__ for t in _FIELD_TYPES)}")
    return CardSighting(CardKey(token, merchant, amount, currency), *fields)
