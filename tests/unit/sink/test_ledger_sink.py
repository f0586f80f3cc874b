"""The sink's batch step with a scripted consumer and store (no broker, no database): posrecon/sink/ledger_sink.py."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest
from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

from msgkit import StubMessage
from posrecon.serde.codec import AvroCodec
from posrecon.sink.ledger_sink import LedgerSink, SinkError, SinkOptions
from posrecon.sink.postgres import ROW_COLUMNS, OffsetConflict, OffsetMove, Row

TOPIC = "pos.reconciled"
CODEC = AvroCodec("ReconciledOrder")


def value(order_id: str, revision: int = 1) -> bytes:
    return CODEC.encode(
        {
            "order_id": order_id,
            "merchant_id": "m",
            "terminal_id": None,
            "outcome": "MATCHED",
            "currency": "EUR",
            "approved_amount_minor": 100,
            "settled_amount_minor": 100,
            "approved_at": 1,
            "settled_at": 2,
            "settlement_lag_ms": 1,
            "notice_id": None,
            "revision": revision,
            "settled_parts": 1,
            "fee_minor": 1,
            "reversed_amount_minor": 0,
            "net_amount_minor": 99,
        }
    )


def Msg(partition: int, offset: int, data: bytes | None = b"", error: int | None = None) -> StubMessage:
    return StubMessage(
        partition_no=partition, offset_no=offset, payload=data, err=None if error is None else KafkaError(error)
    )


class FakeConsumer:
    def __init__(self, batches: list[list[Msg]], positions: dict[int, int], highs: dict[int, int]) -> None:
        self.batches, self.positions, self.highs = batches, positions, highs
        self.seeks: list[tuple[int, int]] = []
        self.commits: list[list[tuple[int, int]]] = []

    def consume(self, num: int, timeout: float) -> list[Msg]:
        return self.batches.pop(0) if self.batches else []

    def position(self, tps: Sequence[TopicPartition]) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition, self.positions.get(tp.partition, -1001)) for tp in tps]

    def get_watermark_offsets(self, tp: TopicPartition, cached: bool = False) -> tuple[int, int]:
        return (0, self.highs[tp.partition]) if tp.partition in self.highs else (-1001, -1001)

    def seek(self, tp: TopicPartition) -> None:
        self.seeks.append((tp.partition, tp.offset))

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> None:
        self.commits.append([(tp.partition, tp.offset) for tp in offsets])


class FakeStore:
    def __init__(self, stored: dict[int, int], conflict: bool = False) -> None:
        self.stored, self.conflict = stored, conflict
        self.booked: list[tuple[list[Row], dict[int, OffsetMove]]] = []

    def book(self, topic: str, rows: Sequence[Row], moves: Mapping[int, OffsetMove]) -> int:
        if self.conflict:
            raise OffsetConflict(topic, min(moves), moves[min(moves)].expected)
        self.booked.append((list(rows), dict(moves)))
        return len(rows)

    def offsets(self, topic: str, partitions: Sequence[int]) -> dict[int, int]:
        return {p: n for p, n in self.stored.items() if p in partitions}


def sink(assigned: dict[int, int | None]) -> LedgerSink:
    s = LedgerSink(SinkOptions(dsn="postgresql://unused", bootstrap="unused:1", topic=TOPIC))
    s._next = dict(assigned)
    return s


def test_a_batch_is_booked_with_offsets_at_the_consumers_position() -> None:
    s = sink({0: None, 1: 10, 2: 7})
    batch = [Msg(0, 0, value("a")), Msg(0, 1, None), Msg(1, 10, value("b")), Msg(0, 2, value("a", 2))]
    # partition 0: a commit marker after offset 2; partition 2: only markers moved (an aborted transaction)
    consumer = FakeConsumer([batch], positions={0: 4, 1: 11, 2: 9}, highs={0: 4, 1: 11, 2: 9})
    store = FakeStore({})
    assert s._step(consumer, store) == 3  # type: ignore[arg-type]
    ((rows, moves),) = store.booked
    assert [(r[0], r[ROW_COLUMNS.index("kafka_offset")]) for r in rows] == [("a", 0), ("b", 10), ("a", 2)]
    assert moves == {0: OffsetMove(None, 4), 1: OffsetMove(10, 11), 2: OffsetMove(7, 9)}
    assert s._next == {0: 4, 1: 11, 2: 9} and s.totals.tombstones == 1 and s.totals.booked == 3
    assert consumer.commits == [[(0, 4), (1, 11), (2, 9)]]
    assert s.lag(consumer) == 0  # type: ignore[arg-type]


def test_nothing_moved_means_no_transaction() -> None:
    s = sink({0: 5})
    store = FakeStore({})
    assert s._step(FakeConsumer([[]], positions={0: 5}, highs={0: 5}), store) == 0  # type: ignore[arg-type]
    assert store.booked == []


def test_an_undecodable_record_stops_the_sink_before_booking_its_batch() -> None:
    s = sink({3: 40})
    store = FakeStore({})
    consumer = FakeConsumer([[Msg(3, 40, value("a")), Msg(3, 41, b"\x00garbage")]], {3: 42}, {3: 42})
    with pytest.raises(SinkError, match=r"pos\.reconciled\[3\] offset 41 does not decode"):
        s._step(consumer, store)  # type: ignore[arg-type]
    assert store.booked == [] and s._next == {3: 40}


def test_an_offset_conflict_books_nothing_and_seeks_to_the_database() -> None:
    s = sink({0: 5, 1: None})
    consumer = FakeConsumer([[Msg(0, 5, value("a"))]], positions={0: 6}, highs={0: 9, 1: 3})
    store = FakeStore({0: 8}, conflict=True)  # another sink booked partition 0 up to 8
    assert s._step(consumer, store) == 0  # type: ignore[arg-type]
    assert s.totals.conflicts == 1 and s.totals.booked == 0
    assert sorted(consumer.seeks) == [(0, 8), (1, OFFSET_BEGINNING)]
    assert s._next == {0: 8, 1: None}


def test_records_of_a_revoked_partition_are_left_to_its_new_owner() -> None:
    s = sink({0: 0})
    consumer = FakeConsumer([[Msg(5, 0, value("x")), Msg(0, 0, value("a"))]], positions={0: 1}, highs={0: 1})
    store = FakeStore({})
    assert s._step(consumer, store) == 1  # type: ignore[arg-type]
    assert [r[0] for r in store.booked[0][0]] == ["a"]


def test_at_end_needs_every_partition_booked_up_to_its_reported_end() -> None:
    s = sink({0: 4, 1: None})
    assert not s.at_end()
    consumer = FakeConsumer([[Msg(0, 4, error=KafkaError._PARTITION_EOF)]], positions={}, highs={0: 4})
    s._step(consumer, FakeStore({}))  # type: ignore[arg-type]
    assert not s.at_end()  # partition 1 has not reported its end
    s._eof[1] = 0
    assert s.at_end()
    s._eof[0] = 6  # records arrived after the end was seen
    assert not s.at_end()
    assert not sink({}).at_end()  # nothing assigned yet


def test_lag_counts_from_the_booked_offset_to_the_cached_high_watermark() -> None:
    s = sink({0: 4, 1: None, 2: 3})
    assert s.lag(FakeConsumer([], positions={}, highs={0: 10, 1: 5})) == 6 + 5  # type: ignore[arg-type]
    assert s.lag(FakeConsumer([], positions={}, highs={})) is None  # type: ignore[arg-type]


def test_an_offset_out_of_range_is_an_error_not_a_silent_skip() -> None:
    s = sink({0: 4})
    consumer = FakeConsumer([[Msg(0, 4, error=KafkaError._AUTO_OFFSET_RESET)]], positions={}, highs={})
    with pytest.raises(SinkError, match="out of the log's range"):
        s._step(consumer, FakeStore({}))  # type: ignore[arg-type]
