"""The live worker's output loop, compiled with the engine (posrecon/native.py): the records a batch writes.

Like the record feed on the way in (engine/record_feed.py), it holds no rule and does no I/O of its own. It turns
what the engine decided into the outbox's rows (``(topic, value, key, partition, headers)``, Producer.produce's
positional order): each decision and alert encoded, each card sighting placed on its card partition (murmur2 of
the card key) and applied there when this worker owns it, and a changelog row per order and card key the batch
touched. At the transaction's start it hands the rows to the producer's ``produce``. The shell (app/outbox.py)
keeps the metrics, the dead letters and the card sightings read back from ``<app>-card-sightings``.

Compiled, these loops reach the generated Avro encoders, the row formats and the card index without the
interpreter. The Python loops they replace (``Outbox.emit``, ``write_changelogs``) held a quarter of the worker's
samples; docs/performance.md, session 18, has what compiling them gained.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from posrecon.config import RuleConfig
from posrecon.engine.book import PartitionBook
from posrecon.engine.cards import CardIndex, CardSighting, duplicate_charge_alert
from posrecon.engine.case_actions import routing_key
from posrecon.engine.decision_money import DecisionMoney
from posrecon.engine.model import Alert, AlertKind, ReconciledOrder
from posrecon.engine.murmur2 import partition_for
from posrecon.engine.sighting_records import pack_sightings, sighting_row
from posrecon.engine.state_rows import (
    WATERMARK_KEY,
    encode_bucket,
    encode_card_key,
    encode_card_watermarks,
    encode_order,
)

#: (topic, value, key, partition or -1 for the partitioner, headers): Producer.produce's positional order
Row = tuple[str, bytes | None, bytes | None, int, list[tuple[str, bytes]] | None]
#: an Avro encoder and the header it writes first (serde/codec.py, ``AvroCodec.encoder``)
Encoder = tuple[Callable[[Any, bytes], bytes], bytes]

_OPEN: Final = "OPEN"
_DUPLICATE_CHARGE: Final = AlertKind.DUPLICATE_CHARGE.value


def alert_label(alert: Mapping[str, Any]) -> tuple[str, str, str, str]:
    """The count key of an alert record: kind, severity and status (a dict without ``status`` is v1's: OPEN;
    a Mapping, not an ``Alert``: compiled, the TypedDict's ``str`` would refuse such a dict's None)."""
    return ("alerts", alert["kind"], alert["severity"], alert.get("status") or _OPEN)


class OutputFeed:
    def __init__(
        self,
        rows: list[Row],
        topics: tuple[str, str, str, str, str],
        encoders: tuple[Encoder, Encoder],
        counts: dict[tuple[str, ...], int],
        rules: RuleConfig,
        cards: dict[int, CardIndex],
    ) -> None:
        self.rows = rows  # the outbox's rows (the same list)
        self.reconciled_topic, self.alerts_topic, self.changelog, self.sightings_topic, self.card_changelog = topics
        (self._encode_reconciled, self._reconciled_header), (self._encode_alert, self._alert_header) = encoders
        self.counts = counts  # the batch's metric increments (Telemetry.counts, the same dict)
        self.rules = rules
        self.cards = cards  # the card partitions this worker owns (shared with the worker, changed in place)
        self.partitions = 0  # card partitions = input partitions (set up with the Kafka clients)
        #: (alert kind, event-time ms) of each DUPLICATE_CHARGE a void resolved, for the shell's histogram
        self.resolve_latencies: list[tuple[str, int]] = []

    def _count(self, label: tuple[str, ...]) -> None:
        counts = self.counts
        counts[label] = counts.get(label, 0) + 1

    # --- decisions and alerts -------------------------------------------------------------------------------

    def reconciled(self, records: list[ReconciledOrder], money: DecisionMoney) -> None:
        """Each decision into the rows, and its money into ``money``."""
        rows, topic = self.rows, self.reconciled_topic
        encode, header = self._encode_reconciled, self._reconciled_header
        for rec in records:
            outcome = rec["outcome"]
            self._count(("reconciled", outcome))
            money.add(rec, outcome)
            rows.append((topic, encode(rec, header), rec["order_id"].encode(), -1, None))
        money.counted(self.counts)

    def alerts(self, alerts: list[Alert]) -> None:
        for alert in alerts:
            self.alert(alert)

    def alert(self, alert: Alert) -> None:
        """Keyed by where its case lives: order_id, else batch_id (batch alerts), else merchant_id."""
        self._count(alert_label(alert))
        key = routing_key(alert)
        self.rows.append((self.alerts_topic, self._encode_alert(alert, self._alert_header), key.encode(), -1, None))

    # --- the card stage -----------------------------------------------------------------------------------

    def sightings(self, sightings: list[CardSighting], now: int) -> None:
        """Each card sighting to the card stage of its card partition (murmur2 of the card key, as a keyed
        record would be partitioned). A card partition this worker owns applies it at once, in this batch's
        transaction; any other goes through ``<app>-card-sightings`` to its owner: one record per card partition
        and batch, packed (engine/sighting_records.py).

        The round trip through the topic was a sixth of the work of a worker that owns every partition (pack,
        produce, fetch, unpack, merge bookkeeping for about one record in three), and a broker write and read.
        Applied here, a card partition sees its own worker's sightings in the order they were made, and the
        other workers' ones whenever they arrive: one interleaving of the same per-source orders, which the
        card index is built for (the watermark is the minimum over sources, see engine/cards.py) and which
        the topic never fixed either. With one worker it is exactly the order the topic gave: every sighting
        of a card partition came from this worker, in this order.
        """
        cards, partitions = self.cards, self.partitions
        crossing: dict[int, list[list[Any]]] = {}
        for s in sightings:
            k = s.key
            q = partition_for(f"{k.token}|{k.merchant_id}|{k.amount_minor}|{k.currency}".encode(), partitions)
            index = cards.get(q)
            if index is None:
                rows = crossing.get(q)
                if rows is None:
                    rows = crossing[q] = []
                rows.append(sighting_row(s))
            else:
                self.apply_sighting(index, s, now)
        topic = self.sightings_topic
        for q, rows in crossing.items():
            for value in pack_sightings(rows):
                self.rows.append((topic, value, None, q, None))

    def apply_sightings(self, index: CardIndex, sightings: list[CardSighting], now: int) -> None:
        """A record of ``<app>-card-sightings`` (engine/sighting_records.py) into its card partition's index."""
        for sighting in sightings:
            self.apply_sighting(index, sighting, now)

    def apply_sighting(self, index: CardIndex, sighting: CardSighting, now: int) -> None:
        """``sighting`` into its card partition's index, a DUPLICATE_CHARGE per pair found (or the RESOLVED
        record of one, when a void closed it)."""
        for dup in index.apply(sighting):
            self.alert(duplicate_charge_alert(dup, self.rules, now))
            if dup.resolved_by is not None:  # the alert's event time was the later approval's
                self.resolve_latencies.append((_DUPLICATE_CHARGE, dup.resolved_at - dup.later_approved_at))

    # --- changelogs ---------------------------------------------------------------------------------------

    def changelogs(self, books: dict[int, PartitionBook]) -> None:
        """A changelog row per order and card key the batch touched, and each partition's watermark."""
        rows, changelog = self.rows, self.changelog
        for p, book in books.items():
            dirty = book.dirty
            if not dirty:
                continue
            for order_id, order in dirty.items():
                rows.append((changelog, encode_order(order), order_id.encode(), p, None))
            rows.append((changelog, str(book.watermark).encode(), WATERMARK_KEY, p, None))
            dirty.clear()
        card_changelog = self.card_changelog
        for q, index in self.cards.items():
            dirty_keys = index.dirty
            if not dirty_keys:
                continue
            entries = index.entries
            for card_key in dirty_keys:
                rows.append((card_changelog, encode_bucket(entries.get(card_key)), encode_card_key(card_key), q, None))
            rows.append((card_changelog, encode_card_watermarks(index), WATERMARK_KEY, q, None))
            dirty_keys.clear()

    # --- into the producer --------------------------------------------------------------------------------

    def produce(self, produce: Callable[..., object], poll: Callable[[float], object]) -> None:
        """Every row to ``produce`` (a transactional Producer's), in order; emptied. A full librdkafka queue
        (BufferError) is let to deliver (``poll``) and the same row tried again."""
        for topic, value, key, partition, headers in self.rows:
            while True:
                try:
                    if headers is None:
                        produce(topic, value, key, partition)
                    else:
                        produce(topic, value, key, partition, headers=headers)
                    break
                except BufferError:
                    poll(0.05)
        self.rows.clear()
