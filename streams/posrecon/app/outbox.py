"""What a batch writes, gathered before its transaction begins: decisions, alerts, dead letters, card
sightings for the card partitions other workers own, and the changelog rows of every order and card key
touched. The transaction (app/transaction.py) produces it once the previous batch's commit has succeeded.

The card stage lives here too: card sightings are routed by card key (murmur2, as a keyed record would be
partitioned); those of a card partition this worker owns are applied in place, the others go through
``<app>-card-sightings`` to their owner, whose worker reads them back (:meth:`Outbox.card_sighting`).
"""

from __future__ import annotations

from confluent_kafka import Message, Producer

from posrecon.app.errors import BAD_SIGHTING_ROW, Letter, bad_sighting
from posrecon.app.state_store import (
    WATERMARK_KEY,
    encode_bucket,
    encode_card_key,
    encode_card_watermarks,
    encode_order,
    offset_key,
    pack_row,
    unpack_row,
)
from posrecon.app.telemetry import alert_label, count_decisions, observe_resolve_latencies
from posrecon.config import Settings
from posrecon.deadletter import DeadLetter
from posrecon.engine.cards import CardIndex, CardKey, CardSighting, duplicate_charge_alert
from posrecon.engine.case_actions import routing_key
from posrecon.engine.engine import ReconciliationEngine
from posrecon.engine.model import Alert, AlertKind, ReconciledOrder
from posrecon.kafka.partitioner import partition_for
from posrecon.metrics import WorkerMetrics, observe_all
from posrecon.serde.wire import codec_for

#: (topic, value, key, partition or -1 for the partitioner, headers): Producer.produce's positional order
Row = tuple[str, bytes | None, bytes | None, int, list[tuple[str, bytes]] | None]


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
        self.partitions = 0  # input partitions (set up with the Kafka clients)
        self.rows: list[Row] = []
        # [serde] format: with "confluent" these register their schemas under <topic>-value (serde/wire.py)
        self.reconciled_codec = codec_for("ReconciledOrder", settings.serde, self.topics.reconciled)
        self.alert_codec = codec_for("Alert", settings.serde, self.topics.alerts)

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
        produce = producer.produce
        for topic, value, key, partition, headers in self.rows:
            while True:
                try:  # positional arguments: a kwargs dict per record cost 0.5 us
                    if headers is None:
                        produce(topic, value, key, partition)
                    else:
                        produce(topic, value, key, partition, headers=headers)  # type: ignore[arg-type]
                    break
                except BufferError:  # librdkafka's queue is full: let it deliver, then go on
                    producer.poll(0.05)
        self.rows.clear()

    # --- outputs --------------------------------------------------------------------------------------

    def emit(self, engine: ReconciliationEngine, now: int) -> None:
        """The engine's decisions, alerts and card sightings of the batch into the outbox."""
        reconciled, alerts = engine.take()
        lags: list[float] = []
        for rec in reconciled:
            self.send_reconciled(rec, lags)
        observe_all(self.metrics.settlement_lag, lags)
        count_decisions(reconciled, self.counts, self.metrics, self.rules)
        for alert in alerts:
            self.send_alert(alert)
        sightings = engine.card_sightings
        assert sightings is not None
        if sightings:
            self.route_sightings(sightings, now)
            sightings.clear()
        latencies = engine.auth_latencies
        assert latencies is not None
        observe_all(self.metrics.authorization_latency, [ms / 1000 for ms in latencies])
        latencies.clear()
        observe_resolve_latencies(self.metrics, engine.resolve_latencies)

    def _count(self, label: tuple[str, ...]) -> None:
        self.counts[label] = self.counts.get(label, 0) + 1

    def send_reconciled(self, rec: ReconciledOrder, lags: list[float]) -> None:
        """Into the outbox; a matched order's settlement lag (seconds) into ``lags`` (observed per batch)."""
        self._count(("reconciled", rec["outcome"]))
        lag = rec["settlement_lag_ms"]
        if lag is not None and rec["outcome"] in ("MATCHED", "MATCHED_LATE"):
            lags.append(max(lag, 0) / 1000)
        self.send(self.topics.reconciled, rec["order_id"].encode(), self.reconciled_codec.encode(rec))  # type: ignore[arg-type]

    def send_alert(self, alert: Alert) -> None:
        self._count(alert_label(alert))
        key = routing_key(alert)  # order_id, else batch_id (batch alerts), else merchant_id: where its case lives
        self.send(self.topics.alerts, key.encode(), self.alert_codec.encode(alert))  # type: ignore[arg-type]

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
        """A card sighting another worker routed here, into its card partition's index."""
        index = self.cards.get(partition)
        if index is None:
            return
        try:
            raw = unpack_row(msg.value() or b"")
            sighting = CardSighting(CardKey(*raw[0]), *raw[1:10])
        except BAD_SIGHTING_ROW as exc:
            self.dead_letter(msg, bad_sighting(exc))
            return
        self.apply_sighting(index, sighting, now)

    def apply_sighting(self, index: CardIndex, sighting: CardSighting, now: int) -> None:
        """The card stage: ``sighting`` into its card partition's index, a DUPLICATE_CHARGE per pair found."""
        for dup in index.apply(sighting):
            self.send_alert(duplicate_charge_alert(dup, self.rules, now))
            if dup.resolved_by is not None:  # a void closed it: the alert's event time was the later approval's
                latency = dup.resolved_at - dup.later_approved_at
                observe_resolve_latencies(self.metrics, [(AlertKind.DUPLICATE_CHARGE.value, latency)])

    def route_sightings(self, sightings: list[CardSighting], now: int) -> None:
        """Each card sighting to the card stage of its card partition (murmur2 of the card key, as a keyed
        record would be partitioned). A card partition this worker owns applies it at once, in this batch's
        transaction; any other goes through ``<app>-card-sightings`` to its owner.

        The round trip through the topic was a sixth of the work of a worker that owns every partition (pack,
        produce, fetch, unpack, merge bookkeeping for about one record in three), and a broker write and read.
        Applied here, a card partition sees its own worker's sightings in the order they were made, and the
        other workers' ones whenever they arrive: one interleaving of the same per-source orders, which the
        card index is built for (the watermark is the minimum over sources, see engine/cards.py) and which
        the topic never fixed either. With one worker it is exactly the order the topic gave: every sighting
        of a card partition came from this worker, in this order.
        """
        cards = self.cards
        partitions = self.partitions
        for s in sightings:
            k = s.key
            key = f"{k[0]}|{k[1]}|{k[2]}|{k[3]}".encode()
            q = partition_for(key, partitions)
            index = cards.get(q)
            if index is None:
                self.send(self.sightings_topic, key, pack_row([list(k), *s[1:]]), None, q)
            else:
                self.apply_sighting(index, s, now)

    # --- changelogs -------------------------------------------------------------------------------------

    def write_offsets(self, offsets: dict[tuple[str, int], int]) -> None:
        """The offsets this transaction commits, into the order changelog beside the state they match
        (app/state_store.py: a restore resumes from them where the group's committed offset is behind)."""
        append, changelog = self.rows.append, self.changelog
        for (topic, partition), offset in offsets.items():
            append((changelog, str(offset).encode(), offset_key(topic), partition, None))

    def write_changelogs(self, engine: ReconciliationEngine) -> None:
        """A changelog row per order and card key the batch touched, and each partition's watermark."""
        append = self.rows.append
        for p, book in engine.books.items():
            dirty = book.dirty
            if not dirty:
                continue
            orders = book.orders
            changelog = self.changelog
            for order_id in dirty:
                append((changelog, encode_order(orders.get(order_id)), order_id.encode(), p, None))
            append((changelog, str(book.watermark).encode(), WATERMARK_KEY, p, None))
            dirty.clear()
        for q, index in self.cards.items():
            dirty_keys = index.dirty
            if not dirty_keys:
                continue
            for key in dirty_keys:
                append((self.card_changelog, encode_bucket(index.entries.get(key)), encode_card_key(key), q, None))
            append((self.card_changelog, encode_card_watermarks(index), WATERMARK_KEY, q, None))
            dirty_keys.clear()
