"""The live worker's per-record loop, compiled with the engine (posrecon/native.py).

The loop holds no rule and does no I/O: for each Kafka message of a batch (any object with confluent-kafka's
``Message`` methods) it decodes the value with its input's decoder, counts it, hands it to the engine's entry
point for that input, and records the offset to commit. What is not an input record goes back to the shell:
records of the worker's own internal topics (``other``), values that do not decode (``undecodable``), records
the engine rejects (``rejected``); after a notice with a ``batch_id``, its sightings go to the batch stage's
compiled routing (engine/batch_routing.py). The worker (app/worker.py) sets it up; ``replay`` has its own
(engine/line_feed.py).
Compiled, the loop reaches the engine's entry points without the interpreter: docs/performance.md, session 17.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from posrecon.engine.batch_routing import BatchRouting
from posrecon.engine.engine import ReconciliationEngine
from posrecon.engine.model import Rejection

Decode = Callable[[Any], Any]
#: an input's decoding: the header of its current schema, the generated decoder of the body after that header
#: (None: none), and the codec's full decode (every other framing and writer version, and the errors)
Decoding = tuple[bytes, Callable[[bytes, int], tuple[Any, int]] | None, Decode]

_REDELIVERIES: Final = ("redeliveries",)


class RecordFeed:
    def __init__(
        self,
        terminal_topic: str,
        settlement_topic: str,
        decoders: tuple[Decoding, Decoding],
        counts: dict[tuple[str, ...], int],
        latency_samples: list[int],
        other: Callable[[Any, int], None],
        undecodable: Callable[[Any, ValueError], None],
        rejected: Callable[[Any, Rejection], None],
        batches: BatchRouting,
    ) -> None:
        self.terminal_topic = terminal_topic
        self.settlement_topic = settlement_topic
        self._terminal, self._settlement = decoders
        self.counts = counts  # the batch's metric increments (Telemetry.counts, the same dict)
        self.latency_samples = latency_samples  # input timestamps, one record in 16 (Telemetry.latency_samples)
        self._other = other
        self._undecodable = undecodable
        self._rejected = rejected
        self._batches = batches
        self._sampled = 0
        #: this batch's inputs by event type / notice status, and redeliveries: into ``counts`` at the end of
        #: :meth:`feed` (a tuple key built and hashed per record cost more than the count itself)
        self._event_types: dict[str, int] = {}
        self._statuses: dict[str, int] = {}
        self._redeliveries = 0

    def feed(
        self, engine: ReconciliationEngine, batch: list[Any], now: int, offsets: dict[tuple[str, int], int]
    ) -> None:
        """Every message of ``batch`` in order; ``offsets`` gets each input partition's next offset."""
        for msg in batch:
            topic: str = msg.topic()
            partition: int = msg.partition()
            offset: int = msg.offset()
            offsets[(topic, partition)] = offset + 1
            if topic == self.terminal_topic:
                self._record(engine, msg, partition, now, True)
            elif topic == self.settlement_topic:
                self._record(engine, msg, partition, now, False)
            else:
                self._other(msg, now)
        counts = self.counts
        for source, by in (("terminal", self._event_types), ("settlement", self._statuses)):
            for kind, n in by.items():
                label = ("events", source, kind)
                counts[label] = counts.get(label, 0) + n
            by.clear()
        if self._redeliveries:
            counts[_REDELIVERIES] = counts.get(_REDELIVERIES, 0) + self._redeliveries
            self._redeliveries = 0

    def _record(self, engine: ReconciliationEngine, msg: Any, partition: int, now: int, terminal: bool) -> None:
        """An input record: decoded, counted by its type (event type, notice status), then to the engine."""
        data = msg.value()
        prefix, body, decode = self._terminal if terminal else self._settlement
        record: Any = None
        # the usual record, straight to the generated decoder; anything else, or a body that fails it, to the
        # codec's decode, which gives the same record or the DecodeError (serde/codec.py, AvroCodec.decode)
        if body is not None and data is not None and data.startswith(prefix):
            try:
                record, end = body(data, len(prefix))
                if end != len(data):
                    record = None
            except Exception:  # any: the codec's decode below tells what it was
                record = None
        if record is None:
            try:
                record = decode(data)
            except ValueError as exc:  # DecodeError
                self._undecodable(msg, exc)
                return
        ts: int = msg.timestamp()[1]
        before = engine.stats.duplicates_dropped
        if terminal:
            types, kind = self._event_types, record["event_type"]
            types[kind] = types.get(kind, 0) + 1
            rejection = engine.on_terminal_event(record, partition, ts, now)
        else:
            statuses, status = self._statuses, record["status"]
            statuses[status] = statuses.get(status, 0) + 1
            rejection = engine.on_settlement_notice(record, partition, ts, now)
            if engine.batch_sightings:  # a notice with a batch_id: to its batch's owner (app/batch_stage.py)
                self._batches.route(engine, now)
        if rejection is not None:
            self._rejected(msg, rejection)
        elif engine.stats.duplicates_dropped != before:
            self._redeliveries += 1
        self._sampled += 1
        if not self._sampled & 15:  # one latency sample in 16 records
            self.latency_samples.append(ts)
