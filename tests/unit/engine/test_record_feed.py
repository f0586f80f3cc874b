"""The live worker's per-record loop (engine/record_feed.py): what it gives the engine, what it hands back to
the shell, what it counts, and the offsets it records. Messages are stand-ins with confluent-kafka's Message
methods; the codecs are the real ones."""

from __future__ import annotations

from typing import Any

import pytest

from msgkit import StubMessage
from posrecon.engine.batch_routing import BatchRouting
from posrecon.engine.engine import ReconciliationEngine
from posrecon.engine.model import Rejection
from posrecon.engine.murmur2 import partition_for
from posrecon.engine.record_feed import RecordFeed
from posrecon.serde.codec import AvroCodec, DecodeError
from serdekit import EVENT, NOTICE_V1

TERMINAL, SETTLEMENT, SIGHTINGS = "pos.terminal-events", "pos.settlement-notices", "app-card-sightings"
TERMINAL_CODEC, SETTLEMENT_CODEC = AvroCodec("TerminalEvent"), AvroCodec("SettlementNotice")
NOW = EVENT["event_time"] + 1_000  # the records' Kafka timestamps: within the clock-skew bound


def Msg(topic: str, value: bytes | None, offset: int, partition: int = 0, ts: int = NOW) -> StubMessage:
    return StubMessage(topic_name=topic, partition_no=partition, offset_no=offset, payload=value, ts=ts)


class Shell:
    """What the worker does with what the feed hands back, recorded."""

    def __init__(self) -> None:
        self.other: list[str] = []
        self.undecodable: list[str] = []
        self.rejected: list[Rejection] = []
        self.routed: list[tuple[int, str]] = []  # (batch partition, batch_id) of each sighting sent elsewhere
        self.counts: dict[tuple[str, ...], int] = {}
        self.samples: list[int] = []

    def feed(self) -> RecordFeed:
        return RecordFeed(
            TERMINAL,
            SETTLEMENT,
            (TERMINAL_CODEC.decoding(), SETTLEMENT_CODEC.decoding()),
            self.counts,
            self.samples,
            lambda msg, _now: self.other.append(msg.topic()),
            lambda _msg, exc: self.undecodable.append(str(exc)),
            lambda _msg, rejection: self.rejected.append(rejection),
            self.routing,
        )

    @property
    def routing(self) -> BatchRouting:
        routing = BatchRouting(lambda _engine, q, sighting: self.routed.append((q, sighting.batch_id)))
        routing.partitions = 12  # no ledger owned here: every sighting is sent elsewhere
        return routing


def _event(event_id: str, event_type: str, **fields: Any) -> bytes:
    return TERMINAL_CODEC.encode({**EVENT, "event_id": event_id, "event_type": event_type, **fields})


def _engine() -> ReconciliationEngine:
    return ReconciliationEngine(partitions=2, collect_batch_sightings=True)


def test_records_reach_the_engine_counted_and_their_offsets_recorded() -> None:
    shell, engine, offsets = Shell(), _engine(), {}
    batch = [
        Msg(TERMINAL, _event("e0", "ORDER_CREATED"), 7),
        Msg(TERMINAL, _event("e1", "AUTH_APPROVED"), 8),
        Msg(SETTLEMENT, SETTLEMENT_CODEC.encode(NOTICE_V1), 3),
    ]
    shell.feed().feed(engine, batch, NOW, offsets)  # type: ignore[arg-type]
    assert offsets == {(TERMINAL, 0): 9, (SETTLEMENT, 0): 4}
    assert engine.book(0).orders["o1"].approval is not None
    reconciled, _alerts = engine.take()
    assert [r["outcome"] for r in reconciled] == ["MATCHED"]
    assert shell.counts == {
        ("events", "terminal", "ORDER_CREATED"): 1,
        ("events", "terminal", "AUTH_APPROVED"): 1,
        ("events", "settlement", "SETTLED"): 1,
    }
    assert shell.other == shell.undecodable == shell.rejected == []


def test_each_batch_adds_its_own_counts_once() -> None:
    shell, engine = Shell(), _engine()
    feed = shell.feed()
    feed.feed(engine, [Msg(TERMINAL, _event("e0", "ORDER_CREATED"), 1)], NOW, {})  # type: ignore[arg-type]
    feed.feed(engine, [Msg(TERMINAL, _event("e1", "ORDER_CREATED", order_id="o2"), 2)], NOW, {})  # type: ignore[arg-type]
    feed.feed(engine, [], NOW, {})
    assert shell.counts == {("events", "terminal", "ORDER_CREATED"): 2}


def test_what_is_not_an_input_record_goes_back_to_the_shell() -> None:
    shell, engine, offsets = Shell(), _engine(), {}
    batch = [
        Msg(SIGHTINGS, b"row", 1),
        Msg(TERMINAL, b"garbage", 2),
        Msg(TERMINAL, _event("e1", "AUTH_APPROVED", amount_minor=-5), 3),
    ]
    shell.feed().feed(engine, batch, NOW, offsets)  # type: ignore[arg-type]
    assert shell.other == [SIGHTINGS]
    assert len(shell.undecodable) == 1 and "not an Avro single-object" in shell.undecodable[0]
    assert [r.reason.value for r in shell.rejected] == ["INVALID_AMOUNT"]
    assert offsets == {(SIGHTINGS, 0): 2, (TERMINAL, 0): 4}  # every record's offset, whatever became of it
    assert ("events", "terminal", "AUTH_APPROVED") in shell.counts  # counted as received, then rejected


def test_a_redelivery_is_counted_and_a_notice_with_a_batch_id_is_routed() -> None:
    shell, engine = Shell(), _engine()
    approved = _event("e1", "AUTH_APPROVED")
    notice = SETTLEMENT_CODEC.encode({**NOTICE_V1, "batch_id": "bt-1"})
    batch = [Msg(TERMINAL, approved, 1), Msg(TERMINAL, approved, 2), Msg(SETTLEMENT, notice, 1)]
    shell.feed().feed(engine, batch, NOW, {})  # type: ignore[arg-type]
    assert shell.counts[("redeliveries",)] == 1
    assert shell.routed == [(partition_for(b"bt-1", 12), "bt-1")]
    assert engine.batch_sightings == []


def test_one_latency_sample_in_16_records() -> None:
    shell, engine = Shell(), _engine()
    batch = [Msg(TERMINAL, _event(f"e{i}", "ORDER_CREATED", order_id=f"o{i}"), i, ts=NOW + i) for i in range(40)]
    shell.feed().feed(engine, batch, NOW, {})  # type: ignore[arg-type]
    assert shell.samples == [NOW + 15, NOW + 31]


def test_a_decoder_error_that_is_not_about_the_bytes_is_not_swallowed() -> None:
    shell = Shell()

    def broken(_value: Any) -> Any:
        raise KeyError("bug")

    decoding = (b"", None, broken)
    feed = RecordFeed(TERMINAL, SETTLEMENT, (decoding, decoding), {}, [], print, print, print, shell.routing)  # type: ignore[arg-type]
    with pytest.raises(KeyError):
        feed.feed(_engine(), [Msg(TERMINAL, b"x", 1)], NOW, {})  # type: ignore[list-item]
    assert isinstance(DecodeError("x"), ValueError)  # what the feed catches: the codec's verdict
    assert shell.undecodable == []


def test_the_usual_record_goes_straight_to_the_generated_decoder_and_the_rest_to_the_codec() -> None:
    prefix, body, decode = TERMINAL_CODEC.decoding()
    assert body is not None
    calls = {"body": 0, "decode": 0}

    def counted_body(data: bytes, start: int) -> tuple[Any, int]:
        calls["body"] += 1
        return body(data, start)

    def counted_decode(data: bytes | None) -> Any:
        calls["decode"] += 1
        return decode(data)

    shell, engine = Shell(), _engine()
    feed = shell.feed()
    feed._terminal = (prefix, counted_body, counted_decode)  # type: ignore[misc]
    good = _event("e0", "ORDER_CREATED")
    batch = [
        Msg(TERMINAL, good, 0),  # the fast path alone
        Msg(TERMINAL, good + b"\x00", 1),  # decodes, but a byte is left: the codec says so
        Msg(TERMINAL, good[:-3], 2),  # truncated
        Msg(TERMINAL, b"\x00\x00\x00\x00\x01" + good[10:], 3),  # another framing: the codec's decode only
    ]
    feed.feed(engine, batch, NOW, {})  # type: ignore[arg-type]
    assert calls == {"body": 3, "decode": 3}
    assert "o1" in engine.book(0).orders
    assert shell.undecodable[0] == "1 trailing bytes after TerminalEvent"
    assert shell.undecodable[1].startswith("TerminalEvent body does not decode")
    assert shell.undecodable[2].startswith("Confluent-framed TerminalEvent")
