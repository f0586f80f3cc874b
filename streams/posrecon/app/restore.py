"""Rebuilding a worker's state for the partitions it is assigned (or after a failed transaction).

The committed offsets are fetched FIRST. Under read_committed librdkafka asks for stable offsets
(``require_stable``), so this waits while any transaction carrying offsets for these partitions is still
open -- e.g. a zombie that sent its offsets before it froze and commits after waking up. Only then is the
state read from the changelogs, so it is the state that matches the offsets the worker resumes from.

The order changelog also carries the offsets each transaction committed (app/state_store.py), and a partition
resumes from the further of the two: a Kafka 3.9 broker restarted with a commit in flight once answered an
offset older than one it had committed, and the worker applied a batch a second time (defect 12).

The offsets are fetched by a side consumer of the same group that never joins it: the same call on the main
consumer, early in an assignment, intermittently left it fetching nothing at all (3 in ~12 runs of
test_restarted_worker_resumes_without_loss_or_repeats, inside or outside the callback).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from posrecon.app.errors import may_retry_offset_fetch
from posrecon.app.state_store import load_books, load_card_index, read_changelog, take_offsets
from posrecon.config import RuleConfig
from posrecon.engine.cards import CardIndex
from posrecon.engine.engine import ReconciliationEngine

log = logging.getLogger("posrecon.worker")

#: how long the committed offsets are asked for while the group coordinator is unavailable
COMMITTED_DEADLINE_S = 120


def committed_offsets(reader: Consumer, partitions: list[TopicPartition]) -> list[TopicPartition]:
    """The group's committed offsets, retrying while the coordinator is unavailable. A partition answered
    with an error (its offset then reads as "none committed") counts as a failed fetch: resuming it from the
    beginning would redo what the state already holds."""
    deadline = time.monotonic() + COMMITTED_DEADLINE_S
    while True:
        try:
            committed = list(reader.committed(partitions, timeout=15))
            failed = next((tp.error for tp in committed if tp.error is not None), None)
            if failed is None:
                return committed
            raise KafkaException(failed)
        except KafkaException as exc:
            if not may_retry_offset_fetch(exc, past_deadline=time.monotonic() > deadline):
                raise
            time.sleep(1)


def resume_positions(
    committed: list[TopicPartition],
    state_offsets: Mapping[tuple[str, int], int] | None = None,
    recommit: Callable[[tuple[str, int], int], None] | None = None,
) -> list[TopicPartition]:
    """Where each partition resumes: the further of the group's committed offset and the offset the restored
    state was written with (the order changelog's, see app/state_store.py), or OFFSET_BEGINNING where neither
    is known.

    A committed offset behind the state's means the broker lost a commit (docs/guarantees.md, defect 12):
    resuming there would apply again what the state already holds. That is logged, and the state's offset
    goes to ``recommit`` (Transaction.skip_to: the next transaction commits it again, so that the group's
    lag is right too)."""
    state_offsets = state_offsets or {}
    resume: list[TopicPartition] = []
    behind: dict[str, list[int]] = {}
    for tp in committed:
        key = (tp.topic, tp.partition)
        offset = tp.offset
        state_offset = state_offsets.get(key)
        if state_offset is not None and state_offset > offset:
            behind[f"{tp.topic}[{tp.partition}]"] = [offset, state_offset]
            offset = state_offset
            if recommit is not None:
                recommit(key, offset)
        resume.append(TopicPartition(tp.topic, tp.partition, offset if offset >= 0 else OFFSET_BEGINNING))
    if behind:
        log.warning(
            "the group's committed offsets are behind the restored state's: resuming from the state's",
            extra={"fields": {"behind": behind}},
        )
    return resume


class Restored(NamedTuple):
    inputs: list[int]  # tasks (input partitions)
    card_partitions: list[int]
    orders: int  # open orders read back
    offsets: dict[tuple[str, int], int]  # the offsets the state was written with, per input (topic, partition)


def restore_state(
    client_config: Mapping[str, Any],
    changelogs: tuple[str, str, str],
    rules: RuleConfig,
    sources: int,
    engine: ReconciliationEngine,
    cards: dict[int, CardIndex],
    partitions: list[TopicPartition],
) -> Restored:
    """Read the order books of the assigned input partitions and the card indexes of the assigned card
    partitions back from their changelogs (``changelogs``: orders, card sightings topic, cards)."""
    changelog, sightings_topic, card_changelog = changelogs
    inputs = sorted({tp.partition for tp in partitions if tp.topic != sightings_topic})
    card_parts = sorted({tp.partition for tp in partitions if tp.topic == sightings_topic})
    books = read_changelog(client_config, changelog, inputs)
    offsets = take_offsets(books, (tp.topic for tp in partitions))
    orders = load_books(engine, books)
    for p in inputs:
        engine.book(p).dirty = {}
    for q, entries in read_changelog(client_config, card_changelog, card_parts).items():
        index = cards[q] = CardIndex(rules, sources=sources)
        load_card_index(index, entries)
    return Restored(inputs, card_parts, orders, offsets)
