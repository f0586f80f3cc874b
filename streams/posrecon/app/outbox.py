"""What a batch writes, gathered before its transaction begins: decisions, alerts, dead letters, card
sightings for the card partitions other workers own, and the changelog rows of every order and card key
touched. The transaction (app/transaction.py) produces it once the previous batch's commit has succeeded.

The loops that make those rows run compiled with the engine (engine/output_feed.py, :class:`OutputFeed`); this
shell keeps the metrics, the dead letters and the card sightings other workers route here.

The card stage: card sightings are routed by card key (murmur2, as a keyed record would be partitioned); those of
a card partition this worker owns are applied in place, the others go through ``<app>-card-sightings`` to their
owner, whose worker reads them back (:meth:`Outbox.card_sighting`).
"""

from __future__ import annotations

from confluent_kafka import Message, Producer

from posrecon.app.errors import BAD_SIGHTING_ROW, Letter, bad_sighting
from posrecon.app.state_store import offset_key
from posrecon.app.telemetry import observe_money, observe_resolve_latencies
from posrecon.config import Settings
from posrecon.deadletter import DeadLetter
from posrecon.engine.cards import CardIndex
from posrecon.engine.decision_money import DecisionMoney
from posrecon.engine.engine import ReconciliationEngine
from posrecon.engine.model import Alert
from posrecon.engine.output_feed import OutputFeed, Row
from posrecon.engine.sighting_records import unpack_sightings
from posrecon.metrics import WorkerMetrics, observe_all
from posrecon.serde.wire import codec_for


class Outbox:
    """The records of the batch being prepared, and how each kind is made."""

    def __init__(
        self,
        settings: Settings,
        changelogs: tuple[str, str, str],
        cards: dict[int, CardIndex],
        counts: dict[tuple[str, ...], int],
        metrics: WorkerMetrics,
    ) -> None:
        self.rules = settings.rules
        self.topics = settings.topics
        self.changelog, self.sightings_topic, self.card_changelog = changelogs
        self.cards = cards  # the card partitions this worker owns (shared with the worker, changed in place)
        self.counts = counts  # the batch's metric increments (Telemetry.counts, the same dict)
        self.metrics = metrics
        self.rows: list[Row] = []
        # [serde] format: with "confluent" these register their schemas under <topic>-value (serde/wire.py)
        self.reconciled_codec = codec_for("ReconciledOrder", settings.serde, self.topics.reconciled)
        self.alert_codec = codec_for("Alert", settings.serde, self.topics.alerts)
        topics = (self.topics.reconciled, self.topics.alerts, self.changelog, self.sightings_topic, self.card_changelog)
        encoders = (self.reconciled_codec.encoder(), self.alert_codec.encoder())
        self.feed = OutputFeed(self.rows, topics, encoders, counts, self.rules, cards)
        self.money = DecisionMoney(self.rules)  # the batch's money metrics, filled by the feed

    @property
    def partitions(self) -> int:
        """Input partitions = card partitions (set up with the Kafka clients)."""
        return self.feed.partitions

    @partitions.setter
    def partitions(self, partitions: int) -> None:
        self.feed.partitions = partitions

    def clear(self) -> None:
        self.rows.clear()

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes]] | None = None,
        partition: int = -1,
    ) -> None:
        self.rows.append((topic, value, key, partition, headers))

    def produce_into(self, producer: Producer) -> None:
        self.feed.produce(producer.produce, producer.poll)

    # --- outputs --------------------------------------------------------------------------------------

    def emit(self, engine: ReconciliationEngine, now: int) -> None:
        """The engine's decisions, alerts and card sightings of the batch into the outbox."""
        feed = self.feed
        reconciled, alerts = engine.take()
        feed.reconciled(reconciled, self.money)
        observe_money(self.metrics, self.money)
        feed.alerts(alerts)
        sightings = engine.card_sightings
        assert sightings is not None
        if sightings:
            feed.sightings(sightings, now)
            sightings.clear()
        latencies = engine.auth_latencies
        assert latencies is not None
        observe_all(self.metrics.authorization_latency, [ms / 1000 for ms in latencies])
        latencies.clear()
        observe_resolve_latencies(self.metrics, engine.resolve_latencies)
        observe_resolve_latencies(self.metrics, feed.resolve_latencies)  # the card stage's

    def send_alert(self, alert: Alert) -> None:
        self.feed.alert(alert)

    def _count(self, label: tuple[str, ...]) -> None:
        self.counts[label] = self.counts.get(label, 0) + 1

    def dead_letter(self, msg: Message, letter: Letter) -> None:
        """``msg`` to the dead letters, with why (see app/errors.py)."""
        reason, detail, exc_class = letter
        self._count(("deadletters", reason))
        dead = DeadLetter.of(
            reason,
            detail,
            exc_class,
            msg.topic() or "",
            msg.partition() or 0,
            msg.offset() or 0,
            msg.key(),
            msg.value(),
        )
        self.send(self.topics.deadletter, dead.key, dead.value, dead.headers())

    # --- the card stage ---------------------------------------------------------------------------------

    def card_sighting(self, msg: Message, partition: int, now: int) -> None:
        """A record of the card sightings other workers routed here, into its card partition's index (whole, or
        a dead letter if any of its rows is malformed)."""
        index = self.cards.get(partition)
        if index is None:
            return
        try:
            sightings = unpack_sightings(msg.value() or b"")
        except BAD_SIGHTING_ROW as exc:
            self.dead_letter(msg, bad_sighting(exc))
            return
        self.feed.apply_sightings(index, sightings, now)
        observe_resolve_latencies(self.metrics, self.feed.resolve_latencies)

    # --- changelogs -------------------------------------------------------------------------------------

    def write_offsets(self, offsets: dict[tuple[str, int], int]) -> None:
        """The offsets this transaction commits, into the order changelog beside the state they match
        (app/state_store.py: a restore resumes from them where the group's committed offset is behind)."""
        append, changelog = self.rows.append, self.changelog
        for (topic, partition), offset in offsets.items():
            append((changelog, str(offset).encode(), offset_key(topic), partition, None))

    def write_changelogs(self, engine: ReconciliationEngine) -> None:
        """A changelog row per order and card key the batch touched, and each partition's watermark."""
        self.feed.changelogs(engine.books)
