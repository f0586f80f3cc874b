"""Lines that do not decode: not JSON, or a record that does not fit the schema (DECODE_ERROR)."""

from __future__ import annotations

import json
import string

from posrecon.sim.line import Line
from posrecon.sim.scenarios.base import Emitted, Kit
from posrecon.sim.vocabulary import (
    DECODE_ERROR,
    ORDER_CREATED,
    SETTLED,
    SETTLEMENT,
    SETTLEMENT_REQUIRED,
    TERMINAL,
    TERMINAL_REQUIRED,
)

#: printable characters only: no control characters, so a garbage line never splits into two
_JUNK = string.ascii_letters + string.digits + string.punctuation + " äöüß€中文ÿ\ufffd"
_NOT_JSON_START = "#%&*<>@^~!|`"
_UNKNOWN_SYMBOL = {TERMINAL: ("event_type", "AUTH_REFUNDED"), SETTLEMENT: ("status", "PENDING")}


def garbage(kit: Kit, start: int) -> Emitted:
    """One undecodable line; no order expectation, a DECODE_ERROR dead letter."""
    em = Emitted("garbage")
    source = kit.rng.choice((TERMINAL, SETTLEMENT))
    order = kit.records.new_order()
    if source == TERMINAL:
        line = kit.records.terminal(order, ORDER_CREATED, start)
    else:
        line = kit.records.notice(order, SETTLED, start)
    assert line.record is not None
    record = dict(line.record)
    variant = kit.rng.choice(("junk", "truncated", "missing_field", "unknown_symbol"))
    em.note(variant)
    if variant == "junk":
        em.add(Line(source, line.ingest_time, raw=_junk(kit), rejection=DECODE_ERROR))
    elif variant == "truncated":
        text = line.to_json_line()
        cut = text[: kit.rng.randint(1, len(text) - 2)]
        em.add(Line(source, line.ingest_time, raw=cut, rejection=DECODE_ERROR))
    else:
        if variant == "missing_field":
            del record[kit.rng.choice(TERMINAL_REQUIRED if source == TERMINAL else SETTLEMENT_REQUIRED)]
        else:
            field, symbol = _UNKNOWN_SYMBOL[source]
            record[field] = symbol
        em.add(Line(source, line.ingest_time, record=record, rejection=DECODE_ERROR))
    return em


def _junk(kit: Kit) -> str:
    while True:
        text = kit.rng.choice(_NOT_JSON_START) + "".join(kit.rng.choices(_JUNK, k=kit.rng.randint(8, 120)))
        try:
            json.loads(text)
        except ValueError:
            return text
