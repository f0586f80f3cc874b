"""Avro binary encoders and decoders generated from one record schema (the hot path's codec).

fastavro's Cython ``schemaless_reader`` / ``schemaless_writer`` interpret the parsed schema on every call
(a type dispatch per field, a branch search per union): 4.4 us to read a ``TerminalEvent`` and 9.6 us to
write a ``ReconciledOrder`` here. This module generates straight-line code per schema instead, the way Avro's
Java ``SpecificRecord`` codecs are generated ahead of time: :func:`render_module` writes it, typed, into
``posrecon/engine/avro_codecs.py`` (``make codecs``), which mypyc compiles with the engine (0.9 us and 1.8 us;
2.7 us and 4.2 us interpreted); :func:`compile_decoder` / :func:`compile_encoder` build the same code at run
time for a schema that file was not generated from. They handle the types the contract's schemas use (records
of ``string``, ``long``, ``int``, ``boolean``, ``enum``, ``["null", T]`` unions and arrays of those) and raise
:class:`Unsupported` for anything else, so the caller falls back to fastavro. fastavro stays the reference:
``tests/property/test_compiled_codec.py`` checks both directions byte for byte on generated records and on
corrupted bytes.

The decoders are stricter than fastavro where the Avro spec allows no other reading (a negative length, a
varint longer than 64 bits, a union branch or enum index out of range, bytes after the record): those raise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from posrecon.engine.avro_binary import INT_MAX, INT_MIN, SHORT_LENGTH, int_bytes, long_bytes, read_varint

#: ``encode(record, prefix) -> prefix + Avro binary body``
Encoder = Callable[[dict[str, Any], bytes], bytes]
Decoder = Callable[[bytes, int], tuple[dict[str, Any], int]]


class Unsupported(ValueError):
    """The schema uses a type the compiler does not handle (use fastavro)."""


def _named(schema: Any) -> Any:
    return schema if isinstance(schema, dict) else {"type": schema}


class _Source:
    """Lines of generated code with fresh local names. ``typed``: for the module mypyc compiles, where a
    bound method in a local is an untyped call (``parts.append`` is a C call there), and constants are named
    per function (``prefix``) since they share one module."""

    def __init__(self, typed: bool = False, prefix: str = "") -> None:
        self.lines: list[str] = []
        self.constants: dict[str, Any] = {}
        self._n = 0
        self.typed = typed
        self.put = "parts.append" if typed else "a"
        self.prefix = prefix

    def name(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}{self._n}"

    def constant(self, value: Any) -> str:
        name = self.name(f"{self.prefix}K")
        self.constants[name] = value
        return name

    def emit(self, indent: int, line: str) -> None:
        self.lines.append("    " * indent + line)


# -- decoders -----------------------------------------------------------------------------------------


def _read_long(src: _Source, ind: int, target: str) -> None:
    src.emit(ind, "b = d[p]")
    src.emit(ind, "if b < 128:")
    src.emit(ind + 1, f"{target} = (b >> 1) ^ -(b & 1)")
    src.emit(ind + 1, "p += 1")
    src.emit(ind, "else:")
    src.emit(ind + 1, f"{target}, p = read_varint(d, p)")


def _read_long_inline(src: _Source, ind: int, target: str) -> None:
    """A long value (timestamps: 6 bytes) read without a call: read_varint's call and tuple cost 0.2 us."""
    src.emit(ind, "b = d[p]")
    src.emit(ind, "p += 1")
    src.emit(ind, "z = b & 127")
    src.emit(ind, "if b > 127:")
    src.emit(ind + 1, "s = 7")
    src.emit(ind + 1, "while True:")
    src.emit(ind + 2, "b = d[p]")
    src.emit(ind + 2, "p += 1")
    src.emit(ind + 2, "z |= (b & 127) << s")
    src.emit(ind + 2, "if b < 128:")
    src.emit(ind + 3, "break")
    src.emit(ind + 2, "s += 7")
    src.emit(ind + 2, "if s > 63:")
    src.emit(ind + 3, "raise ValueError('varint longer than 10 bytes')")
    src.emit(ind + 1, "if z >> 64:")
    src.emit(ind + 2, "raise ValueError('varint beyond 64 bits')")
    src.emit(ind, f"{target} = (z >> 1) ^ -(z & 1)")


def _read_value(src: _Source, ind: int, schema: Any, target: str) -> None:
    s = _named(schema)
    t = s["type"]
    if isinstance(schema, list):
        _read_union(src, ind, schema, target)
    elif t in ("long", "int"):
        _read_long_inline(src, ind, target)
        if t == "int":
            src.emit(ind, f"if not {INT_MIN} <= {target} <= {INT_MAX}:")
            src.emit(ind + 1, "raise ValueError('int out of range')")
    elif t == "string":
        n = src.name("n")
        _read_long(src, ind, n)
        src.emit(ind, f"e = p + {n}")
        src.emit(ind, f"if {n} < 0:")
        src.emit(ind + 1, "raise ValueError('negative string length')")
        # a length beyond the end: the slice is short, p passes the end, and the next read raises
        # IndexError or the caller finds end > len(data)
        src.emit(ind, f"{target} = d[p:e].decode()")
        src.emit(ind, "p = e")
    elif t == "boolean":
        src.emit(ind, "b = d[p]")
        src.emit(ind, "if b > 1:")
        src.emit(ind + 1, "raise ValueError('boolean byte is not 0 or 1')")
        src.emit(ind, f"{target} = b == 1")
        src.emit(ind, "p += 1")
    elif t == "enum":
        symbols = src.constant(tuple(s["symbols"]))
        i = src.name("i")
        _read_long(src, ind, i)
        src.emit(ind, f"if not 0 <= {i} < {len(s['symbols'])}:")
        src.emit(ind + 1, "raise ValueError('enum index out of range')")
        src.emit(ind, f"{target} = {symbols}[{i}]")
    elif t == "record":  # nested (ExceptionCase.history)
        names = []
        for field in s["fields"]:
            local = src.name("f")
            names.append((field["name"], local))
            _read_value(src, ind, field["type"], local)
        src.emit(ind, f"{target} = {{" + ", ".join(f"{n!r}: {v}" for n, v in names) + "}")
    elif t == "array":
        count = src.name("c")
        item = src.name("v")
        src.emit(ind, f"{target} = []")
        _read_long(src, ind, count)
        src.emit(ind, f"while {count}:")
        src.emit(ind + 1, f"if {count} < 0:")  # a block with its size in bytes
        src.emit(ind + 2, f"{count} = -{count}")
        src.emit(ind + 2, "_, p = read_varint(d, p)")
        src.emit(ind + 1, f"for _ in range({count}):")
        _read_value(src, ind + 2, s["items"], item)
        src.emit(ind + 2, f"{target}.append({item})")
        _read_long(src, ind + 1, count)
    else:
        raise Unsupported(f"type {t!r}")


def _nullable(branches: list[Any]) -> tuple[int, Any]:
    """(index of the null branch, the other branch) of a ``["null", T]`` union, in either order."""
    if len(branches) != 2 or "null" not in branches:
        raise Unsupported("only [null, T] unions")
    null_index = branches.index("null")
    return null_index, branches[1 - null_index]


def _record_fields(schema: Any) -> list[dict[str, Any]]:
    if not isinstance(schema, dict) or schema.get("type") != "record":
        raise Unsupported("top level must be a record")
    fields: list[dict[str, Any]] = schema["fields"]
    return fields


def _read_union(src: _Source, ind: int, branches: list[Any], target: str) -> None:
    null_index, other = _nullable(branches)
    branch = src.name("u")
    _read_long(src, ind, branch)
    src.emit(ind, f"if {branch} == {null_index}:")
    src.emit(ind + 1, f"{target} = None")
    src.emit(ind, f"elif {branch} == {1 - null_index}:")
    _read_value(src, ind + 1, other, target)
    src.emit(ind, "else:")
    src.emit(ind + 1, "raise ValueError('union branch out of range')")


def compile_decoder(schema: Any) -> Decoder:
    """``decode(data, pos) -> (record, end)`` for a parsed record schema (logical types stripped).
    ``end > len(data)`` means the data was truncated inside the last string."""
    return _build("decode", "d, p", _decoder_source(schema, _Source()))  # type: ignore[no-any-return]


def _decoder_source(schema: Any, src: _Source) -> _Source:
    fields = _record_fields(schema)
    names = []
    for field in fields:
        target = src.name("f")
        names.append((field["name"], target))
        _read_value(src, 1, field["type"], target)
    src.emit(1, "return {" + ", ".join(f"{name!r}: {target}" for name, target in names) + "}, p")
    return src


# -- encoders -----------------------------------------------------------------------------------------


def _write_value(src: _Source, ind: int, schema: Any, value: str) -> None:
    s = _named(schema)
    t = s["type"]
    if isinstance(schema, list):
        _write_union(src, ind, schema, value)
    elif t == "long":
        src.emit(ind, f"{src.put}(long_bytes({value}))")
    elif t == "int":
        src.emit(ind, f"{src.put}(int_bytes({value}))")
    elif t == "string":
        raw = src.name("s")
        n = src.name("n")
        src.emit(ind, f"{raw} = {value}.encode()")
        src.emit(ind, f"{n} = len({raw})")  # the length's varint without a call when it is one byte
        src.emit(ind, f"{src.put}(SHORT[{n}] if {n} < 64 else long_bytes({n}))")
        src.emit(ind, f"{src.put}({raw})")
    elif t == "boolean":
        src.emit(ind, f"{src.put}(b'\\x01' if {value} else b'\\x00')")
    elif t == "enum":
        table = src.constant({sym: long_bytes(i) for i, sym in enumerate(s["symbols"])})
        src.emit(ind, f"{src.put}({table}[{value}])")
    elif t == "record":  # nested: a missing field with a default is written as the default (as fastavro)
        rec = src.name("r")
        src.emit(ind, f"{rec} = {value}")
        for field in s["fields"]:
            get = (
                f"{rec}.get({field['name']!r}, {src.constant(field['default'])})"
                if "default" in field
                else f"{rec}[{field['name']!r}]"
            )
            _write_value(src, ind, field["type"], get)
    elif t == "array":
        seq = src.name("q")
        item = src.name("v")
        src.emit(ind, f"{seq} = {value}")
        src.emit(ind, f"if {seq}:")
        src.emit(ind + 1, f"{src.put}(long_bytes(len({seq})))")
        src.emit(ind + 1, f"for {item} in {seq}:")
        _write_value(src, ind + 2, s["items"], item)
        src.emit(ind, f"{src.put}(b'\\x00')")
    else:
        raise Unsupported(f"type {t!r}")


def _write_union(src: _Source, ind: int, branches: list[Any], value: str) -> None:
    null_index, other = _nullable(branches)
    v = src.name("o")
    src.emit(ind, f"{v} = {value}")
    src.emit(ind, f"if {v} is None:")
    src.emit(ind + 1, f"{src.put}({long_bytes(null_index)!r})")
    src.emit(ind, "else:")
    src.emit(ind + 1, f"{src.put}({long_bytes(1 - null_index)!r})")
    _write_value(src, ind + 1, other, v)


def compile_encoder(schema: Any) -> Encoder:
    """``encode(record, prefix) -> prefix + Avro binary body`` for a parsed record schema (logical types
    stripped). A missing field without a default raises KeyError."""
    return _build("encode", "r, prefix", _encoder_source(schema, _Source()))  # type: ignore[no-any-return]


def _encoder_source(schema: Any, src: _Source) -> _Source:
    fields = _record_fields(schema)
    if src.typed:
        src.emit(1, "parts: list[bytes] = [prefix]")
    else:
        src.emit(1, "parts = [prefix]")
        src.emit(1, "a = parts.append")
    for field in fields:
        if "default" in field:  # as fastavro: a missing field with a default is written as the default
            value = f"r.get({field['name']!r}, {src.constant(field['default'])})"
        else:
            value = f"r[{field['name']!r}]"
        _write_value(src, 1, field["type"], value)
    src.emit(1, "return b''.join(parts)")
    return src


def _build(name: str, params: str, src: _Source) -> Any:
    text = f"def {name}({params}):\n" + "\n".join(src.lines) + "\n"
    namespace: dict[str, Any] = {
        "read_varint": read_varint,
        "long_bytes": long_bytes,
        "int_bytes": int_bytes,
        "SHORT": SHORT_LENGTH,
    }
    namespace.update(src.constants)
    exec(compile(text, f"<posrecon.serde.compiled {name}>", "exec"), namespace)
    fn = namespace[name]
    fn.source = text
    return fn


# -- the module mypyc compiles ------------------------------------------------------------------------


def render_module(schemas: dict[str, Any], fingerprints: dict[str, str]) -> str:
    """The source of :mod:`posrecon.engine.avro_codecs`: ``decode_<Name>`` and ``encode_<Name>`` of each record
    schema (``schemas``: name -> parsed schema, logical types stripped), the same code :func:`compile_decoder`
    and :func:`compile_encoder` build at run time, typed so mypyc compiles it with the engine. ``fingerprints``
    (name -> hex CRC-64-AVRO of the schema) go in the module: a codec uses these functions only for the schema
    they were generated from."""
    head = [
        '"""The Avro binary codecs of the current contract schemas, generated by posrecon.serde.compiled.',
        "",
        "Do not edit: ``make codecs`` writes this file from ``schemas/*.avsc``, and tests/unit/serde check that it",
        "is current. It sits in the engine package because that is what mypyc compiles (posrecon/native.py).",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        "from typing import Any, Final",
        "",
        "from posrecon.engine.avro_binary import SHORT_LENGTH as SHORT",
        "from posrecon.engine.avro_binary import int_bytes, long_bytes, read_varint",
        "",
        "FINGERPRINTS: Final = {" + ", ".join(f"{n!r}: {fingerprints[n]!r}" for n in schemas) + "}",
    ]
    body: list[str] = []
    for name, schema in schemas.items():
        try:
            dec = _decoder_source(schema, _Source(typed=True, prefix=f"{name}_D"))
            enc = _encoder_source(schema, _Source(typed=True, prefix=f"{name}_E"))
        except Unsupported:
            continue
        for src in (dec, enc):
            body += [f"{k}: Final = {v!r}" for k, v in src.constants.items()]
        body += ["", "", f"def decode_{name}(d: bytes, p: int) -> tuple[dict[str, Any], int]:", *dec.lines]
        body += ["", "", f"def encode_{name}(r: dict[str, Any], prefix: bytes) -> bytes:", *enc.lines, "", ""]
    return "\n".join([*head, "", *body]).rstrip("\n") + "\n"


def current_module() -> str:
    """:func:`render_module` of every current contract schema: what ``avro_codecs.py`` must hold."""
    from posrecon.serde.schemas import RECORD_NAMES, schema_fingerprint, wire_schema

    return render_module(
        {name: wire_schema(name) for name in RECORD_NAMES}, {n: schema_fingerprint(n).hex() for n in RECORD_NAMES}
    )


if __name__ == "__main__":  # make codecs
    import sys

    sys.stdout.write(current_module())
