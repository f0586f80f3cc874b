"""While the previous transaction commits, the loop reconciles what has come in since into the next batch.

The real :class:`~posrecon.app.worker.Worker` on a real broker, in this process; only its transactional producer is
wrapped, so that each commit takes a while longer (as on a loaded broker), and it records the input offsets each
transaction commits. With a backlog on the broker, a transaction must then take in more than one batch
(``--batch``): the loop used to prepare one batch and wait for the commit, and a worker behind caught up at only
one batch per commit. The outputs must still equal replay.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, TypeVar

import pytest
from confluent_kafka import KafkaError, KafkaException

from livekit import app_of, feed_file, read_all, replay_oracle, simulate, topic_env, verify
from livekit import drain as _drain
from posrecon.app.worker import BATCHES_PER_COMMIT, Worker, WorkerOptions
from posrecon.config import Topics, load_settings

pytestmark = pytest.mark.broker
PARTITIONS = 4
BATCH = 300
W = TypeVar("W", bound=Worker)


class SlowCommitProducer:
    """The worker's producer with a slower commit; remembers the input offsets each transaction committed."""

    def __init__(self, real: Any, inputs: set[str]) -> None:
        self.real = real
        self.inputs = inputs
        self.committed: dict[tuple[str, int], int] = {}
        self.taken_in: list[int] = []  # input records each transaction committed the offsets of
        self.fail_commit = False  # the commit in flight fails (as when the group's generation moved on)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def send_offsets_to_transaction(self, offsets: list[Any], *args: Any) -> None:
        self.real.send_offsets_to_transaction(offsets, *args)
        taken = 0
        for tp in offsets:
            key = (tp.topic, tp.partition)
            if tp.topic in self.inputs:
                taken += tp.offset - max(self.committed.get(key, 0), 0)
                self.committed[key] = tp.offset
        self.taken_in.append(taken)

    def commit_transaction(self, *args: Any) -> None:
        time.sleep(0.25)
        if self.fail_commit:
            self.fail_commit = False
            raise KafkaException(KafkaError(KafkaError._STATE, "generation moved on", txn_requires_abort=True))
        self.real.commit_transaction(*args)


class SlowCommitWorker(Worker):
    def setup(self) -> None:
        super().setup()
        self.slow = SlowCommitProducer(self.producer, {self.topics.terminal, self.topics.settlement})
        self.producer = self.slow  # type: ignore[assignment]


def backlog_worker(
    worker_class: type[W], bootstrap: str, fresh_topics: Any, tmp_path: Path, seed: int
) -> tuple[W, Topics, str, Path]:
    """A ``worker_class`` worker (``BATCH``-record batches) over fresh topics holding a backlog of 2,500 simulated
    orders: the worker, the topics, its app id and the simulation's input file (for the replay oracle)."""
    topics = fresh_topics(PARTITIONS)
    src = simulate(tmp_path / "sim", 2500, seed=seed, partitions=PARTITIONS)
    feed_file(bootstrap, topics, src)
    app = app_of(topics)
    options = WorkerOptions(
        bootstrap=bootstrap, app_id=app, worker_id="w0", batch_max_records=BATCH, wall_clock_lag_ms=None
    )
    return worker_class(load_settings(None, env=topic_env(topics)), options), topics, app, src


def run_until_drained(worker: Worker, bootstrap: str, topics: Any, app: str) -> None:
    """``worker.run()`` on a thread of this process until its group has read all input; its error, if any, raised
    here."""
    failed: list[BaseException] = []

    def run() -> None:
        try:
            worker.run()
        except BaseException as exc:  # handed to the test thread
            failed.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        _drain(bootstrap, topics, app, timeout=180)
    finally:
        worker.stopping = True
        thread.join(60)
    assert not failed, failed


def test_a_transaction_takes_in_more_than_a_batch_while_the_previous_one_commits(
    bootstrap: str, fresh_topics: Any, tmp_path: Path
) -> None:
    worker, topics, app, src = backlog_worker(SlowCommitWorker, bootstrap, fresh_topics, tmp_path, seed=57)
    run_until_drained(worker, bootstrap, topics, app)
    taken = worker.slow.taken_in
    # one batch per transaction would be at most BATCH records plus the batch stage's share (half a batch)
    assert max(taken) > 2 * BATCH, taken
    assert max(taken) <= BATCH * BATCHES_PER_COMMIT * 2, taken
    verdict = verify(read_all(bootstrap, topics), replay_oracle(src, tmp_path / "replay", PARTITIONS))
    assert verdict.ok, verdict.problems


class RebalancingConsumer:
    """The worker's consumer; the first time it is called while the worker holds two prepared batches (a turn
    taking batches in during a slow commit), and again at the start of a later turn, it first runs an eager
    rebalance that gives the same partitions back, as librdkafka does inside that consume call: revoke (the worker
    drops its state), then assign (it restores from the changelogs and rewinds to the committed offsets)."""

    def __init__(self, real: Any, worker: SlowCommitWorker, fail_commit: bool) -> None:
        self.real = real
        self.worker = worker
        self.fail_commit = fail_commit  # the commit in flight fails: the revoke callback then aborts it
        self.rebalanced = False
        self.again = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def consume(self, *args: Any, **kwargs: Any) -> Any:
        worker = self.worker
        # after two batches of the turn at least: records the rewind then reads again only in part
        if not self.rebalanced and len(worker.outbox.rows) > 2 * BATCH and worker.transaction.commit_running():
            self.rebalanced = True
            worker.slow.fail_commit = self.fail_commit
            self._rebalance()
        elif self.rebalanced and not self.again and not worker.outbox.rows:
            # the next turn: one more rebalance resumes from what the transactions since have committed (offsets
            # committed ahead of the outputs made would now skip records)
            self.again = True
            self._rebalance()
        return self.real.consume(*args, **kwargs)

    def _rebalance(self) -> None:
        assignment = self.real.assignment()
        self.worker._on_revoke(self.real, assignment)
        self.worker._on_assign(self.real, assignment)


class RebalancedWorker(SlowCommitWorker):
    fail_commit = False

    def setup(self) -> None:
        super().setup()
        self.rebalancing = RebalancingConsumer(self.consumer, self, self.fail_commit)
        self.consumer = self.rebalancing  # type: ignore[assignment]


@pytest.mark.parametrize("commit", ["commits", "fails"])
def test_a_rebalance_while_a_turn_holds_a_prepared_batch_drops_that_batch(
    bootstrap: str, fresh_topics: Any, tmp_path: Path, commit: str
) -> None:
    """The revoke comes inside a consume call of a turn whose prepared batch has not been produced yet: that batch
    must go with its partitions (``Transaction.drop_prepared``). Committed later, it carried the revoked
    partitions' offsets, and the records read again after the assignment twice (two workers in ``make bench``
    diverged from the truth). When the commit in flight fails in the revoke callback (the group's generation
    moved on), its abort clears the outbox first: the turn must still drop the offsets it held (3 outputs lost in
    ``test_rebalance.py``, seed 547137, when it did not)."""
    worker, topics, app, src = backlog_worker(RebalancedWorker, bootstrap, fresh_topics, tmp_path, seed=58)
    worker.fail_commit = commit == "fails"
    run_until_drained(worker, bootstrap, topics, app)
    assert worker.rebalancing.rebalanced
    verdict = verify(read_all(bootstrap, topics), replay_oracle(src, tmp_path / "replay", PARTITIONS))
    assert verdict.ok, verdict.problems
    assert worker.transaction.dropped_batches >= 1
