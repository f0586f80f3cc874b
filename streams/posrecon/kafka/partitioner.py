"""Kafka's default partitioner, in pure Python.

``partition_for(key, n)`` gives the partition that the Java producer's default partitioner
(``Utils.toPositive(Utils.murmur2(key)) % n``) and librdkafka's ``partitioner=murmur2_random``
(confluent-kafka) choose for a record with a non-null key. Offline replay uses it to assign orders
to the same partitions a live producer would.

A null key is not covered: both clients pick a partition without hashing (sticky / random).
"""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Callable

__all__ = ["murmur2", "partition_for", "partition_for_python", "to_positive"]

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK32 = 0xFFFFFFFF
_SIGN_BIT = 0x80000000
_POSITIVE = 0x7FFFFFFF

# struct formats for the 4-byte little-endian blocks, cached per block count
_BLOCK_FORMATS: dict[int, struct.Struct] = {}


def _blocks(count: int) -> struct.Struct:
    fmt = _BLOCK_FORMATS.get(count)
    if fmt is None:
        fmt = _BLOCK_FORMATS[count] = struct.Struct(f"<{count}I")
    return fmt


def murmur2_unsigned(data: bytes | bytearray) -> int:
    """32-bit murmur2 of ``data`` as Kafka computes it, as an unsigned int (0 .. 2**32-1)."""
    length = len(data)
    h = (_SEED ^ length) & _MASK32
    nblocks = length >> 2
    m = _M
    mask = _MASK32
    if nblocks:
        for k in _blocks(nblocks).unpack_from(data):
            k = (k * m) & mask
            k ^= k >> 24
            k = (k * m) & mask
            h = ((h * m) & mask) ^ k
    tail = length & 3
    if tail:
        base = length - tail
        if tail == 3:
            h ^= data[base + 2] << 16
        if tail >= 2:
            h ^= data[base + 1] << 8
        h ^= data[base]
        h = (h * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    h ^= h >> 15
    return h


def murmur2(data: bytes | bytearray) -> int:
    """Kafka's ``Utils.murmur2(byte[])``: the hash as a signed 32-bit int, exactly as Java returns it."""
    h = murmur2_unsigned(data)
    return h - 0x1_0000_0000 if h & _SIGN_BIT else h


def to_positive(number: int) -> int:
    """Kafka's ``Utils.toPositive``: clears the sign bit (not ``abs``)."""
    return number & _POSITIVE


def partition_for_python(key: bytes | bytearray, partitions: int) -> int:
    """:func:`partition_for` in pure Python (2.8 us for a 40-byte key)."""
    if partitions <= 0:
        raise ValueError(f"partitions must be >= 1, got {partitions}")
    return (murmur2_unsigned(key) & _POSITIVE) % partitions


def _librdkafka_partitioner() -> Callable[..., int] | None:
    """librdkafka's own ``rd_kafka_msg_partitioner_murmur2`` (public API: ``(murmur2(key) & 0x7fffffff) %
    partition_cnt``; the topic handle and opaques are unused), found through the confluent-kafka extension
    that links it. None if the symbol is not there (then the pure-Python hash serves)."""
    try:
        from confluent_kafka import cimpl

        fn = ctypes.CDLL(cimpl.__file__).rd_kafka_msg_partitioner_murmur2
    except (ImportError, OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int32, ctypes.c_void_p, ctypes.c_void_p]
    fn.restype = ctypes.c_int32
    return fn


_NATIVE = _librdkafka_partitioner()


def partition_for(key: bytes | bytearray, partitions: int) -> int:
    """The partition Kafka's default partitioner picks for a non-null ``key`` among ``partitions``.

    Computed by librdkafka's partitioner when it can be reached (0.5 us: the live worker places every card
    sighting with it), else by :func:`partition_for_python`; ``tests/unit/kafka/test_partitioner.py`` holds
    both to the Java client's results."""
    if _NATIVE is None:
        return partition_for_python(key, partitions)
    if partitions <= 0:  # checked here too: librdkafka would divide by zero
        raise ValueError(f"partitions must be >= 1, got {partitions}")
    return _NATIVE(None, key if type(key) is bytes else bytes(key), len(key), partitions, None, None)
