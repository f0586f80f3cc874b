"""Dead letters: what could not be processed, with why and where it came from (Kafka Connect style).

Headers on ``pos.deadletter``: ``reason``, ``source.topic``, ``source.partition``, ``source.offset``,
``exception.class``, ``exception.message``. Payload: the original bytes with every card number masked.
"""

from __future__ import annotations

from dataclasses import dataclass

from posrecon.engine.pan import scrub_bytes, scrub_text


@dataclass(frozen=True, slots=True)
class DeadLetter:
    reason: str
    detail: str
    exception_class: str
    source_topic: str
    source_partition: int
    source_offset: int
    key: bytes | None
    value: bytes | None

    @classmethod
    def of(
        cls,
        reason: str,
        detail: str,
        exception_class: str,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
    ) -> DeadLetter:
        """Build a dead letter with card numbers masked in the payload, key and detail."""
        return cls(
            reason=reason,
            detail=scrub_text(detail),
            exception_class=exception_class,
            source_topic=topic,
            source_partition=partition,
            source_offset=offset,
            key=scrub_bytes(key) if key is not None else None,
            value=scrub_bytes(value) if value is not None else None,
        )

    def headers(self) -> list[tuple[str, bytes]]:
        return [
            ("reason", self.reason.encode()),
            ("source.topic", self.source_topic.encode()),
            ("source.partition", str(self.source_partition).encode()),
            ("source.offset", str(self.source_offset).encode()),
            ("exception.class", self.exception_class.encode()),
            ("exception.message", self.detail.encode()),
        ]
