"""The bytes of the state's changelog rows: how an order, a card key, a card bucket and a card partition's
watermarks are written (app/state_store.py has the topics, the format's story and the restore).

Compiled with the engine, beside the output feed that writes a row per touched order and card key in every
transaction (engine/output_feed.py). Rows are compact JSON by orjson; a row JSON cannot hold (an int beyond 64
bits) is written as ``\\x02`` + marshal instead, which :func:`unpack_row` reads too.
"""

from __future__ import annotations

import json
import marshal
from typing import Any, Final

import orjson

from posrecon.engine.cards import CardEntry, CardIndex, CardKey, bucket_rows
from posrecon.engine.order import OrderState

ROW_FORMAT_MARSHAL2: Final = b"\x02"
#: the key of a partition's watermark row, in the order and the card changelogs
WATERMARK_KEY: Final = b"\x00watermark"


def pack_row(row: object) -> bytes:
    """An internal row (lists, ints, strings, booleans, None; dicts with string keys) as changelog/repartition
    bytes: compact JSON (the changelog's write cost was a tenth of the live worker's time with marshal;
    docs/performance.md, session 17). A row JSON cannot hold (an int beyond 64 bits, from sums or deadlines of
    extreme input) is written in the marshal format instead, which holds any int."""
    try:
        data: bytes = orjson.dumps(row)
        return data
    except TypeError:  # orjson.JSONEncodeError
        return ROW_FORMAT_MARSHAL2 + marshal.dumps(row, 2)  # type: ignore[arg-type]  # rows are plain data


def unpack_row(value: bytes) -> Any:
    """The row :func:`pack_row` wrote, or a marshal row of sessions 10-16. Raises ValueError if malformed."""
    if value[:1] == ROW_FORMAT_MARSHAL2:
        try:
            return marshal.loads(memoryview(value)[1:])
        except (EOFError, TypeError) as exc:
            raise ValueError(f"bad row: {exc}") from exc
    return orjson.loads(value)  # orjson.JSONDecodeError is a ValueError


def encode_order(order: OrderState | None) -> bytes | None:
    return None if order is None else pack_row(order.to_row())


def _plain(text: str) -> bool:
    """True if JSON writes ``text`` as is between its quotes (printable ASCII, no quote, no backslash)."""
    return text.isascii() and text.isprintable() and '"' not in text and "\\" not in text


def encode_card_key(key: CardKey) -> bytes:
    """The card key as compact JSON: ``["token","merchant",amount,"currency"]``.

    Compaction needs these bytes stable forever, so they are exactly :func:`json.dumps`' (the property test
    checks it on generated keys). Keys of plain strings take a formatted fast path: json.dumps was 3 % of the
    worker's time for 200k card changelog rows.
    """
    token, merchant, amount, currency = key
    if type(amount) is int and _plain(token) and _plain(merchant) and _plain(currency):
        return f'["{token}","{merchant}",{amount},"{currency}"]'.encode()
    return json.dumps(list(key), separators=(",", ":")).encode("utf-8")


def encode_bucket(entries: list[CardEntry] | None) -> bytes | None:
    if not entries:
        return None
    return pack_row(bucket_rows(entries))


def encode_card_watermarks(index: CardIndex) -> bytes:
    return pack_row({"watermark": index.watermark, "sources": {str(k): v for k, v in index.source_watermarks.items()}})
