"""A stand-in for confluent-kafka's ``Message`` in unit tests: the methods posrecon calls on a consumed record."""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka import KafkaError


@dataclass
class StubMessage:
    topic_name: str = ""
    partition_no: int = 0
    offset_no: int = 0
    payload: bytes | None = b""
    ts: int = 0  # the record's CreateTime / LogAppendTime (timestamp type 1)
    err: KafkaError | None = None

    def topic(self) -> str:
        return self.topic_name

    def partition(self) -> int:
        return self.partition_no

    def offset(self) -> int:
        return self.offset_no

    def value(self) -> bytes | None:
        return self.payload

    def timestamp(self) -> tuple[int, int]:
        return (1, self.ts)

    def error(self) -> KafkaError | None:
        return self.err
