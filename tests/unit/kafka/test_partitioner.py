"""Kafka default-partitioner parity: murmur2 exactly as the Java client's ``Utils.murmur2``.

Vector sources:
* ``KAFKA_UTILS_TEST``: apache/kafka ``clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java``
  (``testMurmur2``).
* ``LIBRDKAFKA_UNITTEST``: confluentinc/librdkafka ``src/rdmurmur2.c`` (``unittest_murmur2``,
  documented there as Java client results; listed as unsigned 32-bit).
* ``AKKA_MURMUR2_SPEC``: akka ``akka-cluster-sharding-typed/.../Murmur2Spec.scala`` (values from Kafka's
  murmur2).
* ``JAVA_PARTITIONS`` / ``ORDER_KEYS_SHA256``: computed with ``Utils.toPositive(Utils.murmur2(key)) % n``
  from kafka-clients-3.9.1.jar (the jar the local broker uses).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable

import pytest

from posrecon.kafka import partitioner
from posrecon.kafka.partitioner import (
    murmur2,
    murmur2_unsigned,
    partition_for,
    partition_for_librdkafka,
    partition_for_own,
    to_positive,
)

# librdkafka's partitioner through ctypes and posrecon's own hash (compiled under `make test`), held to the same
# results; partition_for is one of them
BOTH = pytest.mark.parametrize("place", [partition_for_librdkafka, partition_for_own], ids=["librdkafka", "own"])

KAFKA_UTILS_TEST: list[tuple[bytes, int]] = [
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (bytes([ord("a"), ord("b"), ord("c")]), 479470107),
]

_UNALIGNED = b"PreAmbleWillBeRemoved,ThePrePartThatIs"
LIBRDKAFKA_UNITTEST: list[tuple[bytes, int]] = [
    (b"kafka", 0xD067CF64),
    (b"giberish123456789", 0x8F552B0C),
    (b"1234", 0x9FC97B14),
    (b"234", 0xE7C009CA),
    (b"34", 0x873930DA),
    (b"4", 0x5A4B5CA1),
    (_UNALIGNED, 0x78424F1C),
    (_UNALIGNED[1:], 0x4A62B377),
    (_UNALIGNED[2:], 0xE0E4E09E),
    (_UNALIGNED[3:], 0x62B8B43F),
    (b"", 0x106E08D9),
]

AKKA_MURMUR2_SPEC: list[tuple[bytes, int]] = [
    (b"1", -1993445489),
    (b"12", 126087238),
    (b"123", -267702483),
    (b"1234", -1614185708),
    (b"12345", -1188365604),
]

PARTITION_COUNTS = (1, 2, 3, 7, 12, 64, 100)
JAVA_PARTITIONS: dict[str, tuple[int, ...]] = {
    "21": (0, 0, 0, 3, 0, 44, 40),
    "foobar": (0, 0, 0, 0, 6, 62, 66),
    "abc": (0, 1, 0, 4, 3, 27, 7),
    "kafka": (0, 0, 1, 3, 4, 36, 80),
    "order-1": (0, 0, 1, 4, 10, 54, 26),
    "ORD-000042": (0, 1, 2, 0, 11, 19, 27),
    "订单-42": (0, 0, 0, 2, 0, 8, 8),
    "1": (0, 1, 0, 2, 3, 15, 59),
    "12": (0, 0, 1, 4, 10, 6, 38),
    "123": (0, 1, 2, 3, 5, 45, 65),
    "1234": (0, 0, 0, 0, 0, 20, 40),
    "12345": (0, 0, 2, 3, 8, 28, 44),
}

#: partitions (12) of "ORD-000000" .. "ORD-009999": the first 24, and sha256 of all 10 000 as bytes
ORDER_KEYS_FIRST = [1, 7, 2, 11, 0, 3, 11, 0, 2, 9, 8, 7, 5, 8, 11, 6, 7, 3, 10, 8, 1, 10, 3, 4]
ORDER_KEYS_SHA256 = "7f3bfdc9d47d3e256d50de60a090fb3294a9e8293c3016c7f5d189fa2219857a"


@pytest.mark.parametrize(("key", "expected"), KAFKA_UTILS_TEST + AKKA_MURMUR2_SPEC)
def test_murmur2_matches_java_utils_test_vectors(key: bytes, expected: int) -> None:
    assert murmur2(key) == expected


@pytest.mark.parametrize(("key", "expected_unsigned"), LIBRDKAFKA_UNITTEST)
def test_murmur2_matches_librdkafka_unittest_vectors(key: bytes, expected_unsigned: int) -> None:
    assert murmur2_unsigned(key) == expected_unsigned
    signed = expected_unsigned - (1 << 32) if expected_unsigned >= 1 << 31 else expected_unsigned
    assert murmur2(key) == signed


def test_partition_for_is_the_fastest_exact_one_here() -> None:
    assert partitioner._NATIVE is not None  # confluent-kafka's wheel links librdkafka, which exports it
    compiled = partitioner.BUILD.compiled  # make test runs compiled: the engine's own hash, natively
    assert partition_for is (partition_for_own if compiled else partition_for_librdkafka)


def test_the_own_hash_agrees_with_librdkafka_on_random_keys() -> None:
    rnd = random.Random(77)
    for _ in range(5000):
        key = rnd.randbytes(rnd.randrange(0, 70))
        n = rnd.randrange(1, 500)
        assert partition_for_own(key, n) == partition_for_librdkafka(key, n)


@BOTH
@pytest.mark.parametrize("key", sorted(JAVA_PARTITIONS))
def test_partition_for_matches_java_default_partitioner(key: str, place: Callable[[bytes, int], int]) -> None:
    got = tuple(place(key.encode("utf-8"), n) for n in PARTITION_COUNTS)
    assert got == JAVA_PARTITIONS[key]


@BOTH
def test_partition_assignment_of_order_ids_is_stable(place: Callable[[bytes, int], int]) -> None:
    parts = [place(f"ORD-{i:06d}".encode(), 12) for i in range(10_000)]
    assert parts[:24] == ORDER_KEYS_FIRST
    assert hashlib.sha256(bytes(parts)).hexdigest() == ORDER_KEYS_SHA256


@BOTH
def test_signed_result_and_to_positive_semantics(place: Callable[[bytes, int], int]) -> None:
    rnd = random.Random(1234)
    for _ in range(2000):
        key = rnd.randbytes(rnd.randrange(0, 40))
        h = murmur2(key)
        assert -(2**31) <= h < 2**31
        assert murmur2_unsigned(key) == h & 0xFFFFFFFF
        assert to_positive(h) == h & 0x7FFFFFFF  # Java's toPositive clears the sign bit, it is not abs()
        n = rnd.randrange(1, 200)
        assert 0 <= place(key, n) < n
        assert place(key, n) == to_positive(h) % n
    assert to_positive(-1) == 0x7FFFFFFF
    assert to_positive(-(2**31)) == 0


@BOTH
def test_accepts_bytes_like_and_is_deterministic(place: Callable[[bytes, int], int]) -> None:
    key = b"ORD-2024-000001"
    assert murmur2(key) == murmur2(bytearray(key))
    assert place(key, 12) == place(bytearray(key), 12) == place(key, 12)


@BOTH
@pytest.mark.parametrize("partitions", [0, -1])
def test_rejects_non_positive_partition_count(partitions: int, place: Callable[[bytes, int], int]) -> None:
    with pytest.raises(ValueError):
        place(b"k", partitions)
