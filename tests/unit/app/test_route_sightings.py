"""The card stage's routing (OutputFeed.sightings, through the Outbox): a card sighting is applied in place when this worker owns its card partition
(no record on ``<app>-card-sightings``), else produced to that partition -- the one a keyed record would
have gone to (murmur2 of the card key)."""

from __future__ import annotations

from posrecon.app.outbox import Outbox
from posrecon.app.state_store import unpack_row
from posrecon.config import Settings
from posrecon.engine.cards import CardIndex, CardKey, CardSighting
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


def test_a_card_partition_owned_elsewhere_gets_the_sighting_on_its_partition() -> None:
    token = _token_on(3)
    worker = _worker(owned={0, 1, 2})
    sighting = _sighting("o-1", token, 1000, 0)
    worker.feed.sightings([sighting], now=5000)  # type: ignore[attr-defined]
    [(topic, value, key, partition, headers)] = worker.rows
    assert (topic, key, partition, headers) == (SIGHTINGS, f"{token}|m-1|1250|EUR".encode(), 3, None)
    raw = unpack_row(value)
    assert CardSighting(tuple(raw[0]), *raw[1:8]) == sighting  # what Outbox.card_sighting reads back
    assert all(len(index) == 0 for index in worker.cards.values())
