"""Where a card number could leak, for the poison test: raw dumps of a topic (every byte a consumer can read,
aborted transactions too) and the card-number search over them."""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from typing import Any

from chaoskit import retrying
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from posrecon.engine.pan import luhn_valid

# ------------------------------------------------------------------------------------ raw topic dumps


def raw_dump(
    bootstrap: str, topic: str, client_config: Mapping[str, str] | None = None, committed_only: bool = False
) -> list[Any]:
    """Every message of ``topic`` (by default read_uncommitted: aborted transactions included)."""
    consumer = Consumer(
        {
            **(client_config or {}),
            "bootstrap.servers": bootstrap,
            "group.id": f"chaos-dump-{time.monotonic_ns()}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed" if committed_only else "read_uncommitted",
        }
    )
    try:
        meta = retrying(consumer.list_topics, topic, timeout=10).topics[topic]
        tps, pending = [], set()
        for p in sorted(meta.partitions):
            low, high = retrying(consumer.get_watermark_offsets, TopicPartition(topic, p), timeout=10)
            if high > low:
                pending.add(p)
                tps.append(TopicPartition(topic, p, OFFSET_BEGINNING))
        out: list[Any] = []
        if not tps:
            return out
        consumer.assign(tps)
        deadline = time.monotonic() + 120
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"dumping {topic}: partitions {sorted(pending)} did not reach their end")
            for msg in consumer.consume(5000, timeout=0.5):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        pending.discard(msg.partition())
                    continue
                out.append(msg)
        return out
    finally:
        consumer.close()


def message_bytes(msg: Any) -> bytes:
    parts = [msg.key() or b"", msg.value() or b""]
    for k, v in msg.headers() or []:
        parts += [k.encode(), v or b""]
    return b"\x00".join(parts)


# -------------------------------------------------------------------------------------- card numbers

_RUN = re.compile(rb"(?<!\d)\d(?:[ -]?\d){12,18}(?!\d)")


def find_pans(data: bytes) -> set[str]:
    """Every card number (13-19 digits, spaces/dashes allowed, Luhn-valid) in ``data``, as bare digits.
    Also every Luhn-valid 13-19 digit window inside a longer digit run."""
    found: set[str] = set()
    for match in _RUN.finditer(data):
        digits = re.sub(rb"[ -]", b"", match.group(0)).decode()
        if luhn_valid(digits):
            found.add(digits)
    return found


def contains_any(haystack: bytes, pans: Iterable[str]) -> set[str]:
    """Which of ``pans`` occur in ``haystack`` in full: bare, or with spaces / dashes anywhere between digits."""
    hits = set()
    squeezed = haystack.replace(b" ", b"").replace(b"-", b"")
    for pan in pans:
        if pan.encode() in squeezed:
            hits.add(pan)
            continue
        spaced = " ".join(pan[i : i + 4] for i in range(0, len(pan), 4))
        for form in (pan, spaced, spaced.replace(" ", "-")):
            if form.encode() in haystack:
                hits.add(pan)
    return hits


def luhn_pan(rng: Any, prefix: str = "4", length: int = 16) -> str:
    body = prefix + "".join(str(rng.randrange(10)) for _ in range(length - len(prefix) - 1))
    for check in "0123456789":
        if luhn_valid(body + check):
            return body + check
    raise AssertionError("unreachable")
