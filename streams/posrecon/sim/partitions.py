"""Which partition an order lands on: Kafka's default partitioner (murmur2 of the key), written here
independently of ``posrecon.kafka`` so the simulator stays an independent oracle.

``toPositive(murmur2(order_id UTF-8)) % partitions``, as the Java client and librdkafka's
``murmur2_random`` compute it.
"""

from __future__ import annotations

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's ``Utils.murmur2``, as a signed 32-bit int."""
    length = len(data)
    h = _SEED ^ length
    for offset in range(0, length - length % 4, 4):
        k = int.from_bytes(data[offset : offset + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    rest = length % 4
    base = length - rest
    if rest == 3:
        h ^= data[base + 2] << 16
    if rest >= 2:
        h ^= data[base + 1] << 8
    if rest >= 1:
        h ^= data[base]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_of(order_id: str, partitions: int) -> int:
    if partitions <= 1:
        return 0
    return (murmur2(order_id.encode("utf-8")) & 0x7FFFFFFF) % partitions
