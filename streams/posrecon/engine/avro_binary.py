"""Avro binary primitives (zig-zag varints) for the generated codecs in :mod:`posrecon.engine.avro_codecs`.

They live in the compiled package because the codecs call them once per field: compiled together, each call is
a C call instead of a Python one. Typed for mypyc: branches are ordered by how often the contract's values take
them (one-byte lengths and small amounts, two-byte amounts, six-byte epoch milliseconds).
"""

from __future__ import annotations

from typing import Final

LONG_MIN: Final = -(1 << 63)
LONG_MAX: Final = (1 << 63) - 1
INT_MIN: Final = -(1 << 31)
INT_MAX: Final = (1 << 31) - 1

#: the one-byte varint ``z`` (0..127, already zig-zagged) as bytes, by index
ONE_BYTE: Final = tuple(bytes((z,)) for z in range(128))
#: lengths 0..63 (strings, arrays) as their one-byte varint, by index
SHORT_LENGTH: Final = tuple(ONE_BYTE[2 * n] for n in range(64))


def long_bytes(n: int) -> bytes:
    """Zig-zag varint of an Avro ``long``; ValueError outside 64 bits."""
    z = n << 1 if n >= 0 else ((-n) << 1) - 1
    if z < 0x80:
        return ONE_BYTE[z]
    if z < 0x4000:  # amounts, lengths
        return ((z & 0x7F) | 0x80 | (z >> 7) << 8).to_bytes(2, "little")
    if z >> 64:  # = not LONG_MIN <= n <= LONG_MAX, without comparing with those two (boxed) big ints
        raise ValueError(f"{n} is out of range for an Avro long")
    # the varint's bytes (continuation bits set) built as one int and converted once: compiled, a third of the
    # time of a bytearray appended byte by byte, for every length (docs/performance.md, session 19)
    v = 0
    shift = 0
    while z > 0x7F:
        v |= ((z & 0x7F) | 0x80) << shift
        z >>= 7
        shift += 8
    return (v | z << shift).to_bytes((shift >> 3) + 1, "little")


def int_bytes(n: int) -> bytes:
    if not INT_MIN <= n <= INT_MAX:
        raise ValueError(f"{n} is out of range for an Avro int")
    return long_bytes(n)


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """The zig-zag varint at ``pos`` (any length up to 10 bytes) and the position after it."""
    b = data[pos]
    z = b & 0x7F
    shift = 7
    pos += 1
    while b & 0x80:
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")
        b = data[pos]
        z |= (b & 0x7F) << shift
        shift += 7
        pos += 1
    if z >> 64:
        raise ValueError("varint beyond 64 bits")
    return (z >> 1) ^ -(z & 1), pos
