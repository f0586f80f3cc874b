"""A `posrecon run` worker that turns into a zombie at the one point KIP-447 cannot fence.

It is the real :class:`posrecon.app.worker.Worker`; only its transactional producer is wrapped: right after
``send_offsets_to_transaction`` of its N-th transaction with records in it returned (the group coordinator accepted the
offsets under the current group generation) and before ``commit_transaction``, the process SIGSTOPs
itself -- a GC pause, a VM stall, a laptop lid. Its consumer stops heartbeating, the group moves its
partitions to another worker. After SIGCONT it finishes that one transaction and exits. Its
``transaction.timeout.ms`` is 60 s so that the broker does not abort the frozen transaction before the
takeover (with a shorter timeout the late commit is still possible -- the broker looks for expired
transactions only every 10 s -- but not deterministic).

usage: python zombie_worker.py BOOTSTRAP APP_ID WORKER_ID FREEZE_AT BATCH [CONFIG]   (topics from POSRECON_TOPIC_*)

CONFIG: the rules file its input was replayed with (chaoskit.rules_file, as ``--config`` of ``posrecon run``):
without it the zombie's batches follow the default rules and differ from the oracle.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import sys
from typing import Any

from posrecon.app.command import StopSignals
from posrecon.app.worker import Worker, WorkerOptions
from posrecon.config import load_settings
from posrecon.logs import setup_logging

log = logging.getLogger("posrecon.zombie")


class FreezingProducer:
    """Counts only transactions that produced records: the worker also commits offsets-only transactions
    (a drained partition's position moved past a commit marker), and freezing in one of those left no
    transaction open on any output topic for the test to see (CI: 'the zombie's transaction should be open
    while it is frozen')."""

    def __init__(self, real: Any, freeze_at: int) -> None:
        self.real = real
        self.freeze_at = freeze_at
        self.sent = 0
        self.produced = 0
        self.frozen = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def begin_transaction(self, *args: Any) -> None:
        self.real.begin_transaction(*args)
        self.produced = 0

    def produce(self, *args: Any, **kwargs: Any) -> None:
        self.real.produce(*args, **kwargs)
        self.produced += 1

    def send_offsets_to_transaction(self, *args: Any, **kwargs: Any) -> None:
        self.real.send_offsets_to_transaction(*args, **kwargs)
        if self.produced:
            self.sent += 1
        if self.produced and self.sent == self.freeze_at:
            # the batch's records on the broker, in the still open transaction (the worker produces its outbox
            # right before the commit thread sends the offsets: without this they could still be queued here)
            self.real.flush(10)
            offsets = {f"{tp.topic}[{tp.partition}]": tp.offset for tp in args[0]}
            log.warning(
                "zombie: offsets sent to the transaction, freezing before commit",
                extra={"fields": {"offsets": offsets, "records": self.produced}},
            )
            for handler in logging.getLogger().handlers:
                handler.flush()
            self.frozen = True
            os.kill(os.getpid(), signal.SIGSTOP)
            log.warning("zombie: woke up, committing")

    def commit_transaction(self, *args: Any) -> None:
        self.real.commit_transaction(*args)
        if self.frozen:
            log.warning("zombie: transaction committed after waking up; exiting")
            for handler in logging.getLogger().handlers:
                handler.flush()
            os._exit(0)


class ZombieWorker(Worker):
    freeze_at = 3

    def setup(self) -> None:
        super().setup()
        self.producer = FreezingProducer(self.producer, self.freeze_at)  # type: ignore[assignment]


def main(argv: list[str]) -> int:
    bootstrap, app_id, worker_id, freeze_at, batch, *config = argv
    setup_logging("INFO")
    ZombieWorker.freeze_at = int(freeze_at)
    # a transaction timeout well above the takeover time (session timeout + rebalance + restore), so the
    # broker does not abort the frozen transaction first: the late commit is what this zombie is for
    # (and no stall guard that would replace -- and so fence -- its own producer on waking up)
    known = {f.name for f in dataclasses.fields(WorkerOptions)}
    extra = {"transaction_stall_s": 120.0} if "transaction_stall_s" in known else {}
    options = WorkerOptions(
        bootstrap=bootstrap,
        app_id=app_id,
        worker_id=worker_id,
        batch_max_records=int(batch),
        wall_clock_lag_ms=None,
        transaction_timeout_ms=60_000,
        **extra,
    )
    worker = ZombieWorker(load_settings(config[0] if config else None), options)
    StopSignals().attach(worker)
    worker.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
