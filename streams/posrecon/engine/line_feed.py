"""``posrecon replay``'s per-line loop, compiled with the engine (posrecon/native.py).

The loop holds no rule and does no I/O: it parses a line with the ``loads`` it is given (orjson), checks the
record with its source's strict schema check, hands it to the engine's entry point for that source, and calls
``drain`` when the engine has outputs. A line it cannot take that way (blank, not JSON, no known source, a
record that does not fit) goes to ``slow``, replay's strict decoder, which dead-letters it saying what is wrong.
Compiled, the loop reaches the engine's entry points and output lists without the interpreter (docs/performance.md,
"Session 16": the interpreter's own frames were ~10 % of replay's samples; compiling the loop gave +7 to +22 %).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from posrecon.engine.engine import ReconciliationEngine
from posrecon.engine.model import Rejection

Check = Callable[[Any], Any]


class LineFeed:
    def __init__(
        self,
        engine: ReconciliationEngine,
        loads: Callable[[str], Any],
        checks: dict[str, Check],
        partition_of: Callable[[str], int] | None,
        slow: Callable[[int, str], None],
        rejected: Callable[[int, str, str, Rejection], None],
        drain: Callable[[], None],
    ) -> None:
        self.engine = engine
        self._loads = loads
        self._check_terminal = checks["terminal"]
        self._check_settlement = checks["settlement"]
        self._check_batch = checks["batch"]
        self._partition_of = partition_of  # None: one partition
        self._slow = slow
        self._rejected = rejected
        self._drain = drain
        self.lines = 0
        self.records = 0  # records applied

    def feed(self, number: int, line: str) -> None:
        self.lines += 1
        doc: Any
        try:
            doc = self._loads(line)  # JSON whitespace around the value (the newline) is allowed
        except ValueError:  # orjson.JSONDecodeError
            doc = None
        if type(doc) is not dict or "record" not in doc:
            self._slow(number, line)
            return
        ingest: Any = doc.get("ingest_time")
        if ingest is not None and type(ingest) is not int:
            self._slow(number, line)
            return
        source: Any = doc.get("source")
        if source == "terminal":
            check = self._check_terminal
        elif source == "settlement":
            check = self._check_settlement
        elif source == "batch":
            check = self._check_batch
        else:
            self._slow(number, line)
            return
        try:
            fields: Any = check(doc["record"])
        except ValueError:  # DecodeError: the slow path says why
            self._slow(number, line)
            return
        self.apply(number, line, source, fields, ingest)

    def apply(self, number: int, line: str, source: str, fields: Any, ingest: int | None) -> None:
        """A checked record of ``source`` to the engine (and its rejection, its outputs to the shell)."""
        self.records += 1
        partition = 0
        if self._partition_of is not None:  # by order_id, or batch_id for a batch control record
            partition = self._partition_of(fields["batch_id"] if source == "batch" else fields["order_id"])
        engine = self.engine
        rejection: Rejection | None
        if source == "terminal":
            rejection = engine.on_terminal_event(fields, partition, ingest, ingest)
        elif source == "settlement":
            rejection = engine.on_settlement_notice(fields, partition, ingest, ingest)
        else:
            rejection = engine.on_settlement_batch(fields, partition, ingest, ingest)
        if rejection is not None:
            self._rejected(number, line, source, rejection)
        if engine.reconciled or engine.alerts or engine.batches.records or engine.batches.alerts:
            self._drain()
