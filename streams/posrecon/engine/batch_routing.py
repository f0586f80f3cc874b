"""The live batch stage's per-notice step, compiled with the engine: a notice's batch sightings to their ledger.

Right after the order stage applies a notice with a batch_id (``engine.batch_sightings``), each sighting goes to
its batch partition (murmur2 of the batch_id, as a keyed record is partitioned). A partition this worker owns
counts it at once, after the ledger took every owned order partition's watermark (:meth:`BatchRouting.sync`:
replay reads every partition's watermark before it counts a notice); any other partition's sighting goes back to
the shell (``send_remote``: app/batch_stage.py carries the watermarks there and sends it through
``<app>-batch-sightings``). On the interpreter this step was a fifth of a worker's time on a mix with settlement
batches (docs/performance.md, session 24): a Python-level loop and twelve calls into the ledger per notice.
"""

from __future__ import annotations

from collections.abc import Callable

from posrecon.engine.batch_state import BatchSighting
from posrecon.engine.batches import BatchLedger
from posrecon.engine.engine import ReconciliationEngine
from posrecon.engine.murmur2 import partition_for

#: (engine, batch partition owned elsewhere, sighting): the shell's side of a sighting that leaves this worker
SendRemote = Callable[[ReconciliationEngine, int, BatchSighting], None]


class BatchRouting:
    __slots__ = ("active", "ledgers", "partitions", "send_remote")

    def __init__(self, send_remote: SendRemote) -> None:
        self.send_remote = send_remote
        self.partitions = 0  # the batch partitions: the inputs' partition count (set by the stage's setup)
        #: batch partition -> its ledger, for the partitions this worker owns (the stage's, the same dict)
        self.ledgers: dict[int, BatchLedger] = {}
        #: a batch record has been seen: from then on the stage carries watermarks (app/batch_stage.py)
        self.active = False

    def route(self, engine: ReconciliationEngine, now: int) -> None:
        """The sightings of the notice just applied, each to its ledger or to the shell; then none are left."""
        sightings = engine.batch_sightings
        if sightings is None:
            return
        self.active = True
        ledgers, partitions = self.ledgers, self.partitions
        for s in sightings:
            q = partition_for(s.batch_id.encode(), partitions)
            ledger = ledgers.get(q)
            if ledger is not None:
                self.sync(engine, ledger, now)
                ledger.on_notice(s, now)
            else:
                self.send_remote(engine, q, s)
        sightings.clear()

    def sync(self, engine: ReconciliationEngine, ledger: BatchLedger, now: int) -> None:
        """The owned order partitions' watermarks into ``ledger`` (the minimum over every source fires)."""
        for p, book in engine.books.items():
            ledger.advance(p, book.watermark, now)
