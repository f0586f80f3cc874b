"""Kafka's default partitioner's hash, murmur2, in plain Python that mypyc compiles with the engine.

``partition_for(key, n)`` is the partition the Java producer's default partitioner
(``Utils.toPositive(Utils.murmur2(key)) % n``) and librdkafka's ``murmur2_random`` choose for a non-null key.
The live card stage places every card sighting with it (engine/output_feed.py); kafka/partitioner.py, the
public home (replay places every order with it), uses it when the engine is compiled, and its tests hold it to
the Java client's results and to librdkafka's partitioner.

Every product is of two 16-bit halves, so the compiled code never leaves mypyc's machine-int fast path for a big
int: docs/performance.md, session 18, has the figures against librdkafka's partitioner (through ctypes).
"""

from __future__ import annotations

from typing import Final

# Final: compiled, a constant is inlined as a machine int (a plain module global is a dict lookup and a boxed int)
_SEED: Final = 0x9747B28C
_M_LO: Final = 0xE995
_M_HI: Final = 0x5BD1
_MASK32: Final = 0xFFFFFFFF
_POSITIVE: Final = 0x7FFFFFFF


def _times_m(k: int) -> int:
    """``(k * 0x5BD1E995) & 0xFFFFFFFF`` for a 32-bit ``k``, from 16-bit halves: compiled, mypyc multiplies
    machine ints only when both factors are below 2**30 (else it takes the big-int path, 20x slower)."""
    lo = k & 0xFFFF
    return (lo * _M_LO + ((((k >> 16) * _M_LO + lo * _M_HI) & 0xFFFF) << 16)) & _MASK32


def murmur2_unsigned(data: bytes) -> int:
    """32-bit murmur2 of ``data`` as Kafka computes it, as an unsigned int (0 .. 2**32-1)."""
    length = len(data)
    h = (_SEED ^ length) & _MASK32
    end = length & ~3
    i = 0
    while i < end:
        k = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24)
        k = _times_m(k)
        k ^= k >> 24
        k = _times_m(k)
        h = _times_m(h) ^ k
        i += 4
    tail = length & 3
    if tail:
        if tail == 3:
            h ^= data[end + 2] << 16
        if tail >= 2:
            h ^= data[end + 1] << 8
        h ^= data[end]
        h = _times_m(h)
    h ^= h >> 13
    h = _times_m(h)
    h ^= h >> 15
    return h


def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner picks for a non-null ``key`` among ``partitions``."""
    if partitions <= 0:
        raise ValueError(f"partitions must be >= 1, got {partitions}")
    return (murmur2_unsigned(key) & _POSITIVE) % partitions
