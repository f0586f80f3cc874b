"""Harness for the chaos suite: the run's seed and simulated input on fresh topics with its replay oracle
(``chaos_seed``, ``chaos_input``), robust drain, open-transaction probe, the end-of-test exactly-once check and
the figures. Raw topic dumps and the card-number search are in ``leakkit.py``.

Built on ``tests/livekit.py`` (WorkerProcess, feed_file, replay_oracle, verify); nothing here changes how
the worker runs, only how the tests drive and observe it.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from confluent_kafka import Consumer, IsolationLevel, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec
from confluent_kafka.cimpl import NewTopic

from batchkit import add_batches
from livekit import Oracle, Verdict, app_of, replay_oracle, simulate, verify
from posrecon.app.batch_stage import batch_topics
from posrecon.app.internal_topics import COMPACTED, create_internal_topics, create_topics_if_missing, internal_topics
from posrecon.config import Topics
from posrecon.kafka.outputs import read_outputs
from posrecon.kafka.progress import PartitionLag, group_lag, partition_lags
from posrecon.kafka.topics import topic_configs
from posrecon.sim.command import CONFIG_FILE

T = TypeVar("T")

#: librdkafka errors that a freshly started / restarted broker returns for a while
TRANSIENT = {
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError.REQUEST_TIMED_OUT,
    KafkaError._TRANSPORT,
    KafkaError._TIMED_OUT,
    KafkaError._ALL_BROKERS_DOWN,
    KafkaError._WAIT_COORD,
}


def create_topics_kept(
    bootstrap: str, topics: Topics, partitions: int, client_config: Mapping[str, str] | None = None
) -> Topics:
    """The contract's topics (``pos.reconciled`` compacted) with time retention OFF.

    The simulated traffic starts 2026-01-01 and the Kafka record timestamp is its ingest time: on a machine
    whose clock is more than ``log.retention.hours`` (7 days) past that, the broker's retention check
    (30 s after start, then every 5 min) deletes such records from topics with default retention --
    mid-test. ``retention.ms=-1`` keeps them whatever the clock says."""
    admin = AdminClient({**(client_config or {}), "bootstrap.servers": bootstrap})
    new = [
        NewTopic(name, num_partitions=partitions, replication_factor=1, config={**config, "retention.ms": "-1"})
        for name, config in topic_configs(topics).items()
    ]
    for future in admin.create_topics(new, operation_timeout=30, request_timeout=30).values():
        try:
            future.result()
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    wait_led(admin, topic_configs(topics), partitions, f"topics {topics}")
    return topics


def wait_led(admin: AdminClient, names: Iterable[str], partitions: int, what: str, timeout_s: float = 30) -> None:
    """Until every one of the topics ``names`` has ``partitions`` partitions, each with a leader."""
    deadline = time.monotonic() + timeout_s
    while True:
        meta = retrying(admin.list_topics, timeout=10)
        ready = [meta.topics.get(n) for n in names]
        if all(
            t is not None
            and t.error is None
            and len(t.partitions) == partitions
            and all(p.leader >= 0 for p in t.partitions.values())
            for t in ready
        ):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready")
        time.sleep(0.1)


def precreate_internal_topics(
    bootstrap: str, app: str, partitions: int, client_config: Mapping[str, str] | None = None
) -> None:
    """Create the worker's internal topics for ``app`` ahead of it and wait until every partition has a leader.

    A worker that creates them itself may read a changelog partition before the broker serves it and die on
    NOT_LEADER_FOR_PARTITION (see test_startup.py); tests about other faults side-step that race this way."""
    admin = AdminClient({**(client_config or {}), "bootstrap.servers": bootstrap})
    retrying(create_internal_topics, admin, app, partitions)
    batch_sightings, batch_changelog = names_of_batches = batch_topics(app)
    retrying(create_topics_if_missing, admin, {batch_sightings: {}, batch_changelog: COMPACTED}, partitions)
    names = (*internal_topics(app), *names_of_batches)
    wait_led(admin, names, partitions, f"internal topics of {app}")
    # and the broker answers offset queries for them (what the worker's restore does first)
    consumer = Consumer({**(client_config or {}), "bootstrap.servers": bootstrap, "group.id": "chaos-precreate"})
    try:
        for name in names:
            for p in range(partitions):
                retrying(consumer.get_watermark_offsets, TopicPartition(name, p), timeout=10)
    finally:
        consumer.close()


def retrying(fn: Callable[..., T], *args: Any, within: float = 60.0, **kwargs: Any) -> T:
    """Call ``fn`` until it does not raise a transient Kafka error (coordinator loading, broker restarting)."""
    deadline = time.monotonic() + within
    while True:
        try:
            return fn(*args, **kwargs)
        except KafkaException as exc:
            err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
            if err is None or err.code() not in TRANSIENT or time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def chaos_seed() -> tuple[int, random.Random]:
    """This run's seed (``$POSRECON_CHAOS_SEED`` replays a failed run; printed so a failure can be replayed) and
    a ``Random`` seeded with it."""
    seed = int(os.environ.get("POSRECON_CHAOS_SEED") or time.time_ns() % 1_000_000)  # set but empty: random
    print(f"chaos seed {seed}")
    return seed, random.Random(seed)


class ChaosInput(NamedTuple):
    """A simulated input (not fed yet) with fresh topics for it, their app id and the replay oracle."""

    src: Path
    lines: int
    topics: Topics
    app: str
    oracle: Oracle


#: app id -> the rules file of its simulated input (set by chaos_input, read by the ``spawn`` fixture)
_RULES_FILES: dict[str, Path] = {}


def rules_file(app: str) -> Path | None:
    """The simulation's ``posrecon.toml`` (merchant pricing) that ``chaos_input`` replayed ``app``'s input with:
    its workers must run with the same rules (``spawn`` passes it as ``--config``), or live != replay."""
    return _RULES_FILES.get(app)


def chaos_input(
    bootstrap: str,
    make_topics: Callable[..., Topics],
    tmp_path: Path,
    orders: int,
    seed: int,
    partitions: int,
    batches: bool = False,
) -> ChaosInput:
    """Simulate ``orders`` orders (contract v2), create fresh topics on ``bootstrap`` and replay the input for the
    oracle with the simulation's rules (its posrecon.toml, registered for the app's workers: :func:`rules_file`).

    ``batches``: with settlement batch control records (the simulation's, or tests/batchkit.py's when the input
    has none), so pos.batch-reconciled and the batch alerts join the verifier (kill -9, broker restart: exact
    against the oracle; rebalance: each batch's last record). Off by default: the stall tests run without them."""
    if batches:
        src = tmp_path / "sim" / "input-batches.jsonl"
        add_batches(simulate(tmp_path / "sim", orders, seed=seed, partitions=partitions), src, seed)
    else:
        src = simulate(tmp_path / "sim", orders, seed=seed, partitions=partitions, extra=["--mix", "batches=0"])
    config = tmp_path / "sim" / CONFIG_FILE
    topics = make_topics(bootstrap, partitions)
    if config.exists():
        _RULES_FILES[app_of(topics)] = config
    oracle = replay_oracle(src, tmp_path / "replay", partitions, config=config if config.exists() else None)
    assert not batches or oracle.batch_reconciled, "a batch mix whose oracle decides no batch checks nothing"
    return ChaosInput(src, len(src.read_text().splitlines()), topics, app_of(topics), oracle)


# ------------------------------------------------------------------------------------------ progress


def input_lag(bootstrap: str, topics: Topics, app: str, client_config: Mapping[str, str] | None = None) -> int:
    """Input records the group has not committed yet (terminal + settlement topics only)."""
    return retrying(group_lag, bootstrap, app, [topics.terminal, topics.settlement], (), client_config)


def lag_rows(
    bootstrap: str, topics: Topics, app: str, client_config: Mapping[str, str] | None = None
) -> list[PartitionLag]:
    """The drain's view per partition (inputs, card and batch sightings), for timeouts and tail reports."""
    _, sightings, _ = internal_topics(app)
    batch_sightings, _ = batch_topics(app)
    inputs = [topics.terminal, topics.settlement, topics.batches, sightings, batch_sightings]
    return partition_lags(bootstrap, app, inputs, [sightings, batch_sightings], client_config)


def total_lag(bootstrap: str, topics: Topics, app: str, client_config: Mapping[str, str] | None = None) -> int:
    """Input and card-sighting records the group has not committed yet (the sum of :func:`lag_rows`)."""
    return sum(row.lag for row in retrying(lag_rows, bootstrap, topics, app, client_config))


def drain(
    bootstrap: str,
    topics: Topics,
    app: str,
    timeout: float = 180.0,
    client_config: Mapping[str, str] | None = None,
    alive: Callable[[], bool] | None = None,
) -> float:
    """Wait until the group has committed every input and card-sighting record (as livekit's ``_drain``, but
    tolerant of a broker that is still loading its coordinators). ``alive`` (optional) aborts early when
    the workers died. Returns seconds waited."""
    started = time.monotonic()
    lag = -1
    while True:
        lag = total_lag(bootstrap, topics, app, client_config)
        if lag == 0:
            time.sleep(1.0)  # a last batch of sightings may still land: confirm
            if total_lag(bootstrap, topics, app, client_config) == 0:
                return time.monotonic() - started
        if alive is not None and not alive():
            raise AssertionError(f"no worker alive while {lag} records are still to process")
        if time.monotonic() - started > timeout:
            behind = [str(row) for row in retrying(lag_rows, bootstrap, topics, app, client_config) if row.lag]
            raise TimeoutError(f"group {app} still {lag} records behind after {timeout} s: {behind}")
        time.sleep(0.5)


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.15) -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{what}: not reached within {timeout} s")
        time.sleep(interval)
    return time.monotonic() - started


def group_members(
    bootstrap: str, group: str, client_config: Mapping[str, str] | None = None
) -> tuple[str, dict[str, int]]:
    """(state, {member_id: number of assigned partitions}) of a consumer group."""
    admin = AdminClient({**(client_config or {}), "bootstrap.servers": bootstrap})
    desc = retrying(lambda: admin.describe_consumer_groups([group], request_timeout=10)[group].result())
    members = {m.member_id: len(m.assignment.topic_partitions) for m in desc.members}
    return str(getattr(desc.state, "name", desc.state)), members


@contextmanager
def frozen(workers: Iterable[Any]) -> Iterator[None]:
    """SIGSTOP the running workers for the duration (e.g. while a chunk of input is produced), then SIGCONT.

    Feeding a time-compressed replay file while a worker reads it lets one topic's partition run ahead of the
    other by a producer batch, i.e. hours of event time, and deadlines fire early (see test_feed_race.py).
    Producing each chunk while the workers are frozen puts the whole chunk on the broker before they look.
    The freeze is itself a whole-process stall, though: with big chunks (thousands of records per partition)
    it triggers the merge defect of test_burst_after_stall.py, so keep chunks small (about a thousand
    records) where only exactly-once is under test. A freeze of a second is far below the 10 s session
    timeout."""
    stopped = [w for w in workers if w.alive()]
    for w in stopped:
        os.kill(w.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for w in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(w.pid, signal.SIGCONT)


# ------------------------------------------------------------------------------------ transactions


def all_topic_names(topics: Topics, app: str) -> list[str]:
    return [
        topics.terminal,
        topics.settlement,
        topics.reconciled,
        topics.alerts,
        topics.deadletter,
        topics.batch_reconciled,
        *internal_topics(app),
        *batch_topics(app),
    ]


class TxnProbe:
    """Which partitions of ``names`` have an open transaction: last stable offset (ListOffsets,
    read_committed) behind the high watermark (read_uncommitted)."""

    def __init__(self, bootstrap: str, names: Iterable[str], client_config: Mapping[str, str] | None = None) -> None:
        self.admin = AdminClient({**(client_config or {}), "bootstrap.servers": bootstrap})
        metadata = retrying(self.admin.list_topics, timeout=10)
        self.tps = [
            TopicPartition(name, p)
            for name in names
            if name in metadata.topics
            for p in metadata.topics[name].partitions
        ]

    def _offsets(self, level: IsolationLevel) -> dict[tuple[str, int], int]:
        futures = self.admin.list_offsets(
            {tp: OffsetSpec.latest() for tp in self.tps}, isolation_level=level, request_timeout=15
        )
        return {(tp.topic, tp.partition): f.result().offset for tp, f in futures.items()}

    def open(self) -> dict[tuple[str, int], int]:
        if not self.tps:
            return {}
        stable = retrying(self._offsets, IsolationLevel.READ_COMMITTED)
        high = retrying(self._offsets, IsolationLevel.READ_UNCOMMITTED)
        return {key: high[key] - stable[key] for key in stable if stable[key] < high[key]}


def open_transactions(
    bootstrap: str, names: Iterable[str], client_config: Mapping[str, str] | None = None
) -> dict[tuple[str, int], int]:
    """Partitions of ``names`` with an open transaction, mapped to how many offsets are not yet stable."""
    return TxnProbe(bootstrap, names, client_config).open()


def kill_inside_transaction(worker: Any, probe: TxnProbe, within: float = 3.0) -> bool:
    """SIGKILL ``worker`` as soon as one of its transactions is seen open (or after ``within`` s anyway).
    True when a transaction was open right before the kill."""
    deadline = time.monotonic() + within
    seen = False
    while time.monotonic() < deadline and worker.alive():
        if probe.open():
            seen = True
            break
    worker.kill()
    return seen


def wait_no_open_transactions(
    bootstrap: str, names: Iterable[str], timeout: float = 60.0, client_config: Mapping[str, str] | None = None
) -> dict[tuple[str, int], int]:
    """{} once no partition of ``names`` has an open transaction; the last probe if ``timeout`` passes."""
    names = list(names)
    deadline = time.monotonic() + timeout
    while True:
        pending = open_transactions(bootstrap, names, client_config)
        if not pending or time.monotonic() > deadline:
            return pending
        time.sleep(0.5)


# ----------------------------------------------------------------------------------- the final check


def oracle_plus(oracle: Oracle, extra_dead: Mapping[str, int]) -> Oracle:
    dead = Counter(oracle.deadletters)
    dead.update(dict(extra_dead))
    return Oracle(oracle.reconciled, oracle.alerts, dead, oracle.batch_reconciled)


@dataclass
class Check:
    verdict: Verdict
    open_transactions: dict[tuple[str, int], int]
    drain_s: float
    outputs: Any = None

    @property
    def ok(self) -> bool:
        return self.verdict.ok and not self.open_transactions

    def explain(self) -> str:
        return f"problems={self.verdict.problems} open_transactions={self.open_transactions}"


def check_exactly_once(
    bootstrap: str,
    topics: Topics,
    app: str,
    oracle: Oracle,
    *,
    drain_timeout: float = 180.0,
    client_config: Mapping[str, str] | None = None,
    alive: Callable[[], bool] | None = None,
    batches_exact: bool = True,
) -> Check:
    """Committed offsets at the end of input, no transaction open on any topic of the app, and the
    read_committed outputs exactly once and equal to the replay oracle (livekit.verify)."""
    waited = drain(bootstrap, topics, app, drain_timeout, client_config, alive)
    # card-sightings partitions whose committed offset is more than one marker from the end (defect 10: the
    # drain counted them as behind forever; the worker now commits past such a tail once drained)
    _, sightings, _ = internal_topics(app)
    tails = [
        str(row)
        for row in retrying(lag_rows, bootstrap, topics, app, client_config)
        if row.topic == sightings and row.high - row.committed > 1
    ]
    if tails:
        print(f"drained; transactional tails of more than one marker: {tails}")
    pending = wait_no_open_transactions(bootstrap, all_topic_names(topics, app), 45.0, client_config)
    outputs = retrying(read_outputs, bootstrap, topics, client_config)
    return Check(verify(outputs, oracle, batches_exact), pending, waited, outputs)


# ------------------------------------------------------------------------------------------ figures


@dataclass
class Figures:
    events: int = 0
    kills: int = 0
    kills_with_open_transaction: int = 0
    rebalances: int = 0
    broker_restarts: int = 0
    duplicates: int = 0
    lost: int = 0
    unexpected: int = 0
    recovery_seconds: float | None = None
    restore_seconds: float | None = None
    open_orders_restored: int | None = None
    wall_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return "chaos figures: " + json.dumps(asdict(self), sort_keys=True)

    def count(self, check: Check) -> None:
        """Take the end-of-test check's duplicates, losses and unexpected outputs."""
        self.duplicates, self.lost, self.unexpected = (
            check.verdict.duplicates,
            check.verdict.missing,
            check.verdict.unexpected,
        )


def stop_cleanly(workers: Mapping[str, Any]) -> None:
    """Stop every worker (SIGTERM) and require exit code 0, showing the log tail of one that did not."""
    for wid, worker in workers.items():
        assert worker.stop() == 0, f"{wid}:\n{worker.log()[-3000:]}"


def assigned_lines(log: str) -> list[dict[str, Any]]:
    """The worker's ``partitions assigned`` log records (JSON lines)."""
    rows = []
    for line in log.splitlines():
        if '"partitions assigned"' in line:
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue
    return rows
