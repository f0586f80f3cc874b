"""Kafka's default partitioner.

``partition_for(key, n)`` gives the partition that the Java producer's default partitioner
(``Utils.toPositive(Utils.murmur2(key)) % n``) and librdkafka's ``partitioner=murmur2_random``
(confluent-kafka) choose for a record with a non-null key. Offline replay uses it to assign orders
to the same partitions a live producer would, and the live card stage places card sightings with it. The hash
itself lives in engine/murmur2.py (compiled with the engine); librdkafka's own partitioner, reached through
ctypes, serves when the engine runs from source, and the tests hold the two to each other and to Java's results.

A null key is not covered: both clients pick a partition without hashing (sticky / random).
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable

from posrecon.engine import BUILD
from posrecon.engine import murmur2 as _own
from posrecon.engine.murmur2 import murmur2_unsigned

__all__ = [
    "murmur2",
    "murmur2_unsigned",
    "partition_for",
    "partition_for_librdkafka",
    "partition_for_own",
    "to_positive",
]

_SIGN_BIT = 0x80000000
_POSITIVE = 0x7FFFFFFF


def murmur2(data: bytes | bytearray) -> int:
    """Kafka's ``Utils.murmur2(byte[])``: the hash as a signed 32-bit int, exactly as Java returns it."""
    h = murmur2_unsigned(data if type(data) is bytes else bytes(data))
    return h - 0x1_0000_0000 if h & _SIGN_BIT else h


def to_positive(number: int) -> int:
    """Kafka's ``Utils.toPositive``: clears the sign bit (not ``abs``)."""
    return number & _POSITIVE


def partition_for_own(key: bytes | bytearray, partitions: int) -> int:
    """:func:`partition_for` by posrecon's own murmur2 (engine/murmur2.py): 0.22 us per call for a 40-byte key
    compiled with the engine (timeit, the call included; librdkafka's through ctypes 0.59 us), interpreted
    several microseconds."""
    return _own.partition_for(key if type(key) is bytes else bytes(key), partitions)


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


def partition_for_librdkafka(key: bytes | bytearray, partitions: int) -> int:
    """:func:`partition_for` by librdkafka's partitioner through ctypes (0.5 us); the tests hold posrecon's own
    hash to it. Raises RuntimeError if the symbol is not there."""
    if _NATIVE is None:
        raise RuntimeError("librdkafka's rd_kafka_msg_partitioner_murmur2 is not reachable")
    if partitions <= 0:  # checked here too: librdkafka would divide by zero
        raise ValueError(f"partitions must be >= 1, got {partitions}")
    return _NATIVE(None, key if type(key) is bytes else bytes(key), len(key), partitions, None, None)


#: the fastest exact one here: posrecon's own hash when compiled with the engine, else librdkafka's (the
#: interpreted hash only when neither is there)
partition_for: Callable[[bytes | bytearray, int], int] = (
    partition_for_own if BUILD.compiled or _NATIVE is None else partition_for_librdkafka
)
