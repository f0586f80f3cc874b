"""Changelog topics that make the worker's state recoverable.

* ``<app>-order-state-changelog`` (compacted, co-partitioned with the inputs): key ``order_id``, value the
  order's state row (a tombstone once evicted); key ``\\x00watermark`` holds the partition watermark.
* ``<app>-card-state-changelog`` (compacted, co-partitioned with ``<app>-card-sightings``): key the card
  key (JSON), value the bucket of approvals; key ``\\x00watermark`` holds the card partition's watermark.
* The order changelog's partition p also holds, per input topic, the offset the worker resumes partition p of
  that topic from: key ``\\x00offset\\x00<topic>``, value the offset as ASCII digits, written in every
  transaction that commits an offset for it. The state and the offsets it matches are then read from one log,
  in one read: the group's committed offsets alone were not enough (docs/guarantees.md, defect 12: a Kafka 3.9
  broker restarted under a transaction answered an offset older than one it had committed).

Values are internal rows of plain lists, ints, strings, booleans and None (dict keys strings), written as
compact JSON by orjson: three times faster to write than the ``b"\\x02"`` + ``marshal`` (format 2) rows of
sessions 10-16, and as fast to read back, which is most of a restore (1M open orders); deterministic; and
readable by any posrecon, any language. Rows in the marshal format are still read (their tag byte ``\\x02`` is
never the first byte of JSON), and written for a row with an int JSON cannot hold. Keys stay stdlib JSON:
compaction needs them byte-stable.

Changelog records are written in the same Kafka transaction as the outputs and the input offsets, so the
state read back after a crash is exactly the state that matches the committed offsets.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from posrecon.engine.cards import CardIndex
from posrecon.engine.engine import ReconciliationEngine
from posrecon.engine.order import OrderState
from posrecon.engine.state_rows import (  # the row formats' home, compiled with the engine; re-exported here
    ROW_FORMAT_MARSHAL2,
    WATERMARK_KEY,
    encode_bucket,
    encode_card_key,
    encode_card_watermarks,
    encode_order,
    pack_row,
    unpack_row,
)

__all__ = [
    "OFFSET_KEY_PREFIX",
    "ROW_FORMAT_MARSHAL2",
    "WATERMARK_KEY",
    "decode_order",
    "encode_bucket",
    "encode_card_key",
    "encode_card_watermarks",
    "encode_order",
    "load_books",
    "load_card_index",
    "offset_key",
    "pack_row",
    "read_changelog",
    "take_offsets",
    "unpack_row",
]

OFFSET_KEY_PREFIX = b"\x00offset\x00"


def decode_order(value: bytes) -> OrderState:
    return OrderState.from_row(unpack_row(value))


def read_changelog(
    client_config: Mapping[str, Any], topic: str, partitions: Iterable[int], timeout_s: float = 120.0
) -> dict[int, dict[bytes, bytes]]:
    """Latest committed value per key of the given changelog partitions (tombstones drop the key)."""
    parts = sorted(set(partitions))
    state: dict[int, dict[bytes, bytes]] = {p: {} for p in parts}
    if not parts:
        return state
    consumer = Consumer(
        {
            **client_config,
            "group.id": f"{topic}-restore",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        pending = set()
        tps = []
        for p in parts:
            low, high = _watermarks(consumer, TopicPartition(topic, p), timeout_s)
            if high > low:
                pending.add(p)
                tps.append(TopicPartition(topic, p, OFFSET_BEGINNING))
        if not tps:
            return state
        consumer.assign(tps)
        deadline = time.monotonic() + timeout_s
        # the true log end: a read_committed consumer reports the last stable offset as its high watermark
        probe = Consumer({**client_config, "group.id": f"{topic}-probe", "isolation.level": "read_uncommitted"})
        highs = {p: _watermarks(probe, TopicPartition(topic, p), timeout_s)[1] for p in pending}
        at_stable_end: set[int] = set()
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"restoring {topic} partitions {sorted(pending)} took over {timeout_s} s")
            batch = consumer.consume(5000, timeout=0.5)
            for msg in batch:
                err = msg.error()
                partition = msg.partition()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF and partition is not None:
                        at_stable_end.add(partition)
                    elif err.code() != KafkaError._PARTITION_EOF:
                        raise RuntimeError(f"restore of {topic}: {err}")
                    continue
                key = msg.key()
                assert key is not None and partition is not None
                value = msg.value()
                bucket = state[partition]
                if value is None:
                    bucket.pop(key, None)
                else:
                    bucket[key] = value
            # read_committed stops at the last stable offset: while another producer (a zombie that lost
            # its partitions) still has a transaction open here, wait until it is committed or aborted, or
            # we would restore a state older than the input offsets that transaction commits
            for partition in sorted(at_stable_end & pending):
                tp = TopicPartition(topic, partition)
                if consumer.position([tp])[0].offset >= highs[partition]:
                    pending.discard(partition)
            if pending and not batch:  # only when nothing came: waiting for an open transaction to end
                time.sleep(0.05)
        probe.close()
    finally:
        consumer.close()
    return state


def _watermarks(consumer: Consumer, tp: TopicPartition, timeout_s: float) -> tuple[int, int]:
    """Low/high offsets, retrying transient errors (a just-created topic has no leader for a moment)."""
    deadline = time.monotonic() + timeout_s
    delay = 0.1
    while True:
        try:
            low, high = consumer.get_watermark_offsets(tp, timeout=10)
            return int(low), int(high)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            retriable = isinstance(err, KafkaError) and not err.fatal()
            if not retriable or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


def offset_key(topic: str) -> bytes:
    """The order changelog key of an input topic's resume offset (see the module doc)."""
    return OFFSET_KEY_PREFIX + topic.encode()


def take_offsets(changelog: Mapping[int, dict[bytes, bytes]], topics: Iterable[str]) -> dict[tuple[str, int], int]:
    """Remove the resume offsets of ``topics`` from order changelog entries read back; returns them per (topic,
    partition). Looked up by key: a scan of every entry cost a pass over all open orders (1M in a restore)."""
    keys = [(topic, offset_key(topic)) for topic in set(topics)]
    offsets: dict[tuple[str, int], int] = {}
    for partition, entries in changelog.items():
        for topic, key in keys:
            value = entries.pop(key, None)
            if value is not None:
                offsets[(topic, partition)] = int(value)
    return offsets


def load_books(engine: ReconciliationEngine, changelog: Mapping[int, Mapping[bytes, bytes]]) -> int:
    """Install restored orders into the engine's partition books; returns the number of orders."""
    count = 0
    for partition, entries in changelog.items():
        book = engine.book(partition)
        book.orders.clear()
        book.deadlines.clear()
        book.dirty = {}
        for key, value in entries.items():
            if key == WATERMARK_KEY:
                book.watermark = int(value)
                continue
            engine.load_order(book, decode_order(value))
            count += 1
    return count


def load_card_index(index: CardIndex, entries: Mapping[bytes, bytes]) -> None:
    rows: list[list[object]] = []
    marks: dict[str, Any] = {"watermark": index.watermark, "sources": {}}
    for key, value in entries.items():
        if key == WATERMARK_KEY:
            marks = unpack_row(value)
        else:
            rows.append([json.loads(key), unpack_row(value)])
    index.load_rows(rows, marks["watermark"], {int(k): v for k, v in marks["sources"].items()})
    index.dirty = set()
