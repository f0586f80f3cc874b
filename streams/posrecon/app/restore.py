"""Rebuilding a worker's state for the partitions it is assigned (or after a failed transaction).

The committed offsets are fetched FIRST. Under read_committed librdkafka asks for stable offsets
(``require_stable``), so this waits while any transaction carrying offsets for these partitions is still
open -- e.g. a zombie that sent its offsets before it froze and commits after waking up. Only then is the
state read from the changelogs, so it is the state that matches the offsets the worker resumes from.

The offsets are fetched by a side consumer of the same group that never joins it: the same call on the main
consumer, early in an assignment, intermittently left it fetching nothing at all (3 in ~12 runs of
test_restarted_worker_resumes_without_loss_or_repeats, inside or outside the callback).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, NamedTuple

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from posrecon.app.errors import may_retry_offset_fetch
from posrecon.app.state_store import load_books, load_card_index, read_changelog
from posrecon.config import RuleConfig
from posrecon.engine.cards import CardIndex
from posrecon.engine.engine import ReconciliationEngine

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


def resume_positions(committed: list[TopicPartition]) -> list[TopicPartition]:
    """Where each partition resumes: its committed offset, or OFFSET_BEGINNING where the group has
    committed nothing yet."""
    return [
        TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_BEGINNING) for tp in committed
    ]


class Restored(NamedTuple):
    inputs: list[int]  # tasks (input partitions)
    card_partitions: list[int]
    orders: int  # open orders read back


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
    orders = load_books(engine, read_changelog(client_config, changelog, inputs))
    for p in inputs:
        engine.book(p).dirty = set()
    for q, entries in read_changelog(client_config, card_changelog, card_parts).items():
        index = cards[q] = CardIndex(rules, sources=sources)
        load_card_index(index, entries)
    return Restored(inputs, card_parts, orders)
