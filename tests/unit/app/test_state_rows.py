"""Changelog rows: the binary row format, reading rows of earlier versions, and malformed rows."""

from __future__ import annotations

import json
import marshal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from posrecon.app.state_store import decode_order, encode_card_key, encode_order, pack_row, unpack_row
from posrecon.engine.engine import ReconciliationEngine


def _approved_order() -> object:
    engine = ReconciliationEngine()
    engine.book(0).dirty = {}
    base = {
        "order_id": "o-1",
        "merchant_id": "m-1",
        "terminal_id": "t-1",
        "amount_minor": 4242,
        "currency": "EUR",
        "card_token": "tok_abc",
        "attempt": 1,
        "decline_code": None,
    }
    engine.on_terminal_event({**base, "event_id": "e1", "event_type": "ORDER_CREATED", "event_time": 1000}, 0, 1000, 1)  # type: ignore[typeddict-item]
    engine.on_terminal_event({**base, "event_id": "e2", "event_type": "AUTH_APPROVED", "event_time": 2000}, 0, 2000, 2)  # type: ignore[typeddict-item]
    return engine.book(0).orders["o-1"]


def test_an_order_survives_the_round_trip_and_the_bytes_are_deterministic() -> None:
    order = _approved_order()
    value = encode_order(order)  # type: ignore[arg-type]
    assert value is not None and value[:1] == b"["  # a JSON row
    assert decode_order(value).to_row() == order.to_row()  # type: ignore[attr-defined]
    assert encode_order(decode_order(value)) == value


def test_rows_written_by_earlier_versions_are_still_read() -> None:
    order = _approved_order()
    legacy = json.dumps(order.to_row(), separators=(",", ":")).encode()  # type: ignore[attr-defined]
    assert decode_order(legacy).to_row() == order.to_row()  # type: ignore[attr-defined]
    assert unpack_row(b'{"watermark": 5, "sources": {}}') == {"watermark": 5, "sources": {}}
    marshalled = b"\x02" + marshal.dumps(order.to_row(), 2)  # type: ignore[attr-defined]  # sessions 10-16
    assert decode_order(marshalled).to_row() == order.to_row()  # type: ignore[attr-defined]


@pytest.mark.parametrize("value", [b"\x02", b"\x02garbage", b"\x02[\x05\x00\x00\x00", b"not json"])
def test_malformed_rows_raise_value_error(value: bytes) -> None:
    with pytest.raises(ValueError):
        unpack_row(value)


def test_rows_keep_nested_lists_none_and_big_ints() -> None:
    row = ["x", None, True, [1, [2, "y"]], 1 << 62, -(1 << 62), {"sources": {"3": 7}}]
    assert unpack_row(pack_row(row)) == row
    assert pack_row(row)[:1] == b"["


@pytest.mark.parametrize("big", [1 << 64, -(1 << 63) - 1, 1 << 70])
def test_a_row_with_an_int_json_cannot_hold_is_written_in_the_marshal_format(big: int) -> None:
    row = ["o", [big, None], "é"]
    value = pack_row(row)
    assert value[:1] == b"\x02"
    assert unpack_row(value) == row


@settings(max_examples=400, deadline=None)
@given(
    st.text(max_size=12) | st.sampled_from(["tok_abc", 'q"uote', "back\\slash", "del\x7f", "tab\t", "é", " "]),
    st.text(max_size=8),
    st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1),
    st.text(max_size=4) | st.sampled_from(["EUR", "USD"]),
)
def test_card_keys_are_the_bytes_json_always_wrote(token: str, merchant: str, amount: int, currency: str) -> None:
    # compacted changelog keys: a key written differently after an upgrade would never be overwritten
    key = (token, merchant, amount, currency)
    assert encode_card_key(key) == json.dumps(list(key), separators=(",", ":")).encode()
    assert json.loads(encode_card_key(key)) == list(key)


def test_the_offsets_a_transaction_commits_go_to_the_order_changelog_and_come_back_apart_from_the_orders() -> None:
    """Defect 12: the offsets the state was written with are read back with it (app/state_store.py), and never
    taken for an order."""
    from posrecon.app.outbox import Outbox
    from posrecon.app.state_store import WATERMARK_KEY, load_books, take_offsets
    from posrecon.config import Settings
    from posrecon.metrics import WorkerMetrics

    outbox = Outbox(Settings(), ("app-changelog", "app-card-sightings", "app-cards"), {}, {}, WorkerMetrics())
    outbox.write_offsets(
        {("pos.terminal-events", 1): 769, ("app-card-sightings", 1): 12, ("pos.terminal-events", 3): 5}
    )
    assert {(topic, partition) for topic, _, _, partition, _ in outbox.rows} == {
        ("app-changelog", 1),
        ("app-changelog", 3),
    }
    read_back: dict[int, dict[bytes, bytes]] = {1: {WATERMARK_KEY: b"7"}, 3: {}}
    for _, value, key, partition, _ in outbox.rows:
        assert key is not None and value is not None
        read_back[partition][key] = value
    assert take_offsets(read_back, ["pos.terminal-events", "app-card-sightings", "pos.settlement-notices"]) == {
        ("pos.terminal-events", 1): 769,
        ("app-card-sightings", 1): 12,
        ("pos.terminal-events", 3): 5,
    }
    engine = ReconciliationEngine(Settings().rules, 4)
    assert load_books(engine, read_back) == 0  # the offsets rows are gone: no order was decoded from them
    assert engine.book(1).watermark == 7
