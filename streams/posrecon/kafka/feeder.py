"""Produce contract JSONL (the replay input format) to the input topics, in file order.

Kafka record timestamp = the line's ``ingest_time`` (so the worker sees the same ingest time replay does),
key = ``order_id`` (``batch_id`` for the control records of ``"source": "batch"`` lines; partitioned with
murmur2, like the Java client). A record that does not fit its
schema, or a line that is not JSON, is produced as its raw bytes, so the worker dead-letters it exactly
as replay does. A line without ``ingest_time`` gets the previous line's (arrival order is file order,
and the worker merges its two input partitions by timestamp).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka import Producer

from posrecon.config import SerdeSettings, Topics
from posrecon.serde.codec import DecodeError
from posrecon.serde.wire import codec_for


class Feeder:
    def __init__(
        self,
        bootstrap: str,
        topics: Topics,
        client_config: Mapping[str, str] | None = None,
        serde: SerdeSettings | None = None,
    ) -> None:
        self.topics = topics
        self.producer = Producer(
            {
                **(client_config or {}),
                "bootstrap.servers": bootstrap,
                "partitioner": "murmur2_random",
                "enable.idempotence": True,
                "linger.ms": 20,
                "queue.buffering.max.messages": 1_000_000,
            }
        )
        # serde: as the deployment's (with "confluent", registered under <topic>-value as any producer would)
        serde = serde or SerdeSettings()
        self.codecs = {
            "terminal": codec_for("TerminalEvent", serde, topics.terminal),
            "settlement": codec_for("SettlementNotice", serde, topics.settlement),
            "batch": codec_for("SettlementBatch", serde, topics.batches),
        }
        self.sent = 0
        self.errors: list[str] = []
        self.last_ts: int | None = None

    def encode_line(self, line: str) -> tuple[str, bytes | None, bytes, int | None]:
        """(topic, key, value, timestamp) for one JSONL line."""
        try:
            doc: Any = json.loads(line)
        except ValueError:
            return self.topics.terminal, None, line.encode("utf-8", "replace"), None
        if type(doc) is not dict or doc.get("source") not in self.codecs:
            return self.topics.terminal, None, line.encode("utf-8", "replace"), None
        source = doc["source"]
        topic = {"terminal": self.topics.terminal, "settlement": self.topics.settlement}.get(
            source, self.topics.batches
        )
        ts = doc.get("ingest_time") if type(doc.get("ingest_time")) is int else None
        record = doc.get("record")
        key = record.get("batch_id" if source == "batch" else "order_id") if type(record) is dict else None
        key_bytes = key.encode() if type(key) is str and key else None
        try:
            value = self.codecs[source].encode(self.codecs[source].conform(record))
        except DecodeError:
            value = json.dumps(record).encode()
        return topic, key_bytes, value, ts

    def send(self, topic: str, key: bytes | None, value: bytes, ts: int | None) -> None:
        kwargs: dict[str, Any] = {"key": key, "value": value, "on_delivery": self._delivered}
        ts = ts if ts is not None else self.last_ts
        if ts is not None:
            kwargs["timestamp"] = ts
            self.last_ts = ts
        while True:
            try:
                self.producer.produce(topic, **kwargs)
                break
            except BufferError:
                self.producer.poll(0.05)
        self.producer.poll(0)

    def _delivered(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self.errors.append(str(err))
        else:
            self.sent += 1

    def feed(self, lines: Iterable[str], rate: float | None = None, progress: Any = None) -> int:
        """Produce every line (at most ``rate`` lines/s when given); returns lines produced."""
        started = time.monotonic()
        count = 0
        for line in lines:
            text = line.strip()
            if not text:
                continue
            self.send(*self.encode_line(text))
            count += 1
            if progress is not None and count % 1000 == 0:
                progress.update(1000)
            if rate and count % 100 == 0:
                ahead = count / rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
        if progress is not None:
            progress.update(count % 1000)
        self.flush()
        return count

    def flush(self) -> None:
        remaining = self.producer.flush(60)
        if remaining:
            raise RuntimeError(f"{remaining} records not delivered within 60 s")
        if self.errors:
            raise RuntimeError(f"{len(self.errors)} records failed delivery, first: {self.errors[0]}")
