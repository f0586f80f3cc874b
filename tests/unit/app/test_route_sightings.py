"""The card stage's routing (OutputFeed.sightings, through the Outbox): a card sighting is applied in place when this worker owns its card partition
(no record on ``<app>-card-sightings``), else produced to that partition -- the one a keyed record would
have gone to (murmur2 of the card key) -- packed with the batch's other sightings for it, and applied by its owner."""

from __future__ import annotations

from confluent_kafka import Message

from posrecon.app.outbox import Outbox
from posrecon.config import Settings
from posrecon.engine.cards import CardIndex, CardKey, CardSighting
from posrecon.engine.sighting_records import pack_sightings, sighting_row, unpack_sightings
from posrecon.kafka.partitioner import partition_for
from posrecon.metrics import WorkerMetrics
from posrecon.serde.codec import AvroCodec

SIGHTINGS = "app-card-sightings"
PARTITIONS = 4


def _worker(owned: set[int]) -> Outbox:
    settings = Settings()
    cards = {q: CardIndex(settings.rules, sources=PARTITIONS) for q in owned}
    worker = Outbox(settings, ("app-changelog", SIGHTINGS, "app-cards"), cards, {}, WorkerMetrics())
    worker.partitions = PARTITIONS
    return worker


def _sighting(order_id: str, token: str, at: int, source: int) -> CardSighting:
    return CardSighting(CardKey(token, "m-1", 1250, "EUR"), order_id, at, "t-1", False, False, source, at)


def _partition(token: str) -> int:
    return partition_for(f"{token}|m-1|1250|EUR".encode(), PARTITIONS)


def _token_on(q: int) -> str:
    return next(t for t in (f"tok_{i}" for i in range(1000)) if _partition(t) == q)


def test_an_owned_card_partition_applies_sightings_in_place_and_raises_the_duplicate_charge() -> None:
    token = _token_on(2)
    worker = _worker(owned={2})
    worker.feed.sightings([_sighting("o-1", token, 1000, 0), _sighting("o-2", token, 2000, 1)], now=5000)  # type: ignore[attr-defined]
    assert [row[0] for row in worker.rows] == [worker.topics.alerts]  # the alert, no sighting record
    alert = AvroCodec("Alert").decode(worker.rows[0][1])
    assert (alert["kind"], alert["order_id"], worker.rows[0][2]) == ("DUPLICATE_CHARGE", "o-2", b"o-2")
    assert len(worker.cards[2]) == 2  # both approvals indexed (and marked for the card changelog when tracked)


def test_a_card_partition_owned_elsewhere_gets_the_batch_s_sightings_in_one_record_on_its_partition() -> None:
    on_3, on_1 = _token_on(3), _token_on(1)
    worker = _worker(owned={0, 2})
    sightings = [_sighting("o-1", on_3, 1000, 0), _sighting("o-2", on_1, 1500, 0), _sighting("o-3", on_3, 2000, 2)]
    worker.feed.sightings(sightings, now=5000)  # type: ignore[attr-defined]
    assert [(topic, key, partition, headers) for topic, _, key, partition, headers in worker.rows] == [
        (SIGHTINGS, None, 3, None),
        (SIGHTINGS, None, 1, None),
    ]
    assert unpack_sightings(worker.rows[0][1]) == [sightings[0], sightings[2]]  # in the order they were made
    assert unpack_sightings(worker.rows[1][1]) == [sightings[1]]
    assert all(len(index) == 0 for index in worker.cards.values())


def test_the_owner_of_the_card_partition_applies_the_record_and_raises_the_duplicate_charge() -> None:
    token = _token_on(3)
    sender, owner = _worker(owned={0}), _worker(owned={3})
    sender.feed.sightings([_sighting("o-1", token, 1000, 0), _sighting("o-2", token, 2000, 0)], now=5000)  # type: ignore[attr-defined]
    [(topic, value, _, partition, _)] = sender.rows
    owner.card_sighting(Message(topic=topic, partition=partition, value=value), partition, now=5000)
    assert len(owner.cards[3]) == 2
    [(alerts_topic, alert_value, alert_key, _, _)] = owner.rows
    alert = AvroCodec("Alert").decode(alert_value)
    assert (alerts_topic, alert["kind"], alert["order_id"], alert_key) == (
        owner.topics.alerts,
        "DUPLICATE_CHARGE",
        "o-2",
        b"o-2",
    )


def test_a_malformed_record_is_a_dead_letter_and_none_of_its_rows_is_applied() -> None:
    token = _token_on(3)
    owner = _worker(owned={3})
    good = sighting_row(_sighting("o-1", token, 1000, 0))
    bad = sighting_row(_sighting("o-2", token, 2000, 0))
    bad[2] = "2000"  # approved_at as a string
    value = pack_sightings([good, bad])[0]
    owner.card_sighting(Message(topic=SIGHTINGS, partition=3, value=value, offset=7), 3, now=5000)
    assert len(owner.cards[3]) == 0
    assert [row[0] for row in owner.rows] == [owner.topics.deadletter]
    assert owner.counts == {("deadletters", "DECODE_ERROR"): 1}
