"""Harness for the chaos suite: simulated input, robust drain, open-transaction probe, raw topic dumps,
card-number search, and the end-of-test exactly-once check.

Built on ``tests/livekit.py`` (WorkerProcess, feed_file, replay_oracle, verify); nothing here changes how
the worker runs, only how the tests drive and observe it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from confluent_kafka import OFFSET_BEGINNING, Consumer, IsolationLevel, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec
from confluent_kafka.cimpl import NewTopic

from livekit import Oracle, Verdict, verify
from posrecon.app.internal_topics import create_internal_topics, internal_topics
from posrecon.config import Topics
from posrecon.engine.pan import luhn_valid
from posrecon.kafka.outputs import read_outputs
from posrecon.kafka.progress import PartitionLag, group_lag, partition_lags
from posrecon.kafka.topics import topic_configs

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


def create_topics_kept(bootstrap: str, topics: Topics, partitions: int,
                       client_config: Mapping[str, str] | None = None) -> Topics:  # fmt: skip
    """The contract's topics (``pos.reconciled`` compacted) with time retention OFF.

    The simulated traffic starts 2026-01-01 and the Kafka record timestamp is its ingest time: on a machine
    whose clock is more than ``log.retention.hours`` (7 days) past that, the broker's retention check
    (30 s after start, then every 5 min) deletes such records from topics with default retention --
    mid-test. ``retention.ms=-1`` keeps them whatever the clock says."""
    admin = AdminClient({**(client_config or {}), "bootstrap.servers": bootstrap})
    new = [NewTopic(name, num_partitions=partitions, replication_factor=1, config={**config, "retention.ms": "-1"})
           for name, config in topic_configs(topics).items()]  # fmt: skip
    for future in admin.create_topics(new, operation_timeout=30, request_timeout=30).values():
        try:
            future.result()
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    deadline = time.monotonic() + 30
    while True:
        meta = retrying(admin.list_topics, timeout=10)
        ready = [meta.topics.get(n) for n in topic_configs(topics)]
        if all(t is not None and t.error is None and len(t.partitions) == partitions
               and all(p.leader >= 0 for p in t.partitions.values()) for t in ready):  # fmt: skip
            return topics
        if time.monotonic() > deadline:
            raise TimeoutError(f"topics {topics} not ready")
        time.sleep(0.1)


def precreate_internal_topics(bootstrap: str, app: str, partitions: int,
                              client_config: Mapping[str, str] | None = None) -> None:  # fmt: skip
    """Create the worker's internal topics for ``app`` ahead of it and wait until every partition has a leader.

    A worker that creates them itself may read a changelog partition before the broker serves it and die on
    NOT_LEADER_FOR_PARTITION (see test_startup.py); tests about other faults side-step that race this way."""
    admin = AdminClient({**(client_config or {}), "bootstrap.servers": bootstrap})
    retrying(create_internal_topics, admin, app, partitions)
    names = internal_topics(app)
    deadline = time.monotonic() + 30
    while True:
        meta = retrying(admin.list_topics, timeout=10)
        ready = [meta.topics.get(n) for n in names]
        if all(t is not None and t.error is None and len(t.partitions) == partitions
               and all(p.leader >= 0 for p in t.partitions.values()) for t in ready):  # fmt: skip
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"internal topics of {app} not ready")
        time.sleep(0.1)
    # and the broker answers offset queries for them (what the worker's restore does first)
    consumer = Consumer({**(client_config or {}), "bootstrap.servers": bootstrap, "group.id": "chaos-precreate"})
    try:
        for name in names:
            for p in range(partitions):
                retrying(consumer.get_watermark_offsets, TopicPartition(name, p), timeout=10)
    finally:
        consumer.close()


def app_of(topics: Topics) -> str:
    return f"app-{topics.reconciled.rsplit('.', 1)[-1]}"


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


def simulate(out: Path, orders: int, seed: int, partitions: int = 4, extra: Iterable[str] = ()) -> Path:
    """``posrecon simulate`` into ``out``; returns ``out/input.jsonl``."""
    cmd = [sys.executable, "-m", "posrecon.cli", "simulate", "--orders", str(orders), "--out", str(out),
           "--seed", str(seed), "--partitions", str(partitions), "--quiet", *extra]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out / "input.jsonl"


# ------------------------------------------------------------------------------------------ progress


def input_lag(bootstrap: str, topics: Topics, app: str, client_config: Mapping[str, str] | None = None) -> int:
    """Input records the group has not committed yet (terminal + settlement topics only)."""
    return retrying(group_lag, bootstrap, app, [topics.terminal, topics.settlement], (), client_config)


def lag_rows(
    bootstrap: str, topics: Topics, app: str, client_config: Mapping[str, str] | None = None
) -> list[PartitionLag]:
    """The drain's view per partition (inputs and card sightings), for timeouts and tail reports."""
    _, sightings, _ = internal_topics(app)
    return partition_lags(bootstrap, app, [topics.terminal, topics.settlement, sightings], [sightings], client_config)


def total_lag(bootstrap: str, topics: Topics, app: str, client_config: Mapping[str, str] | None = None) -> int:
    """Input and card-sighting records the group has not committed yet (the sum of :func:`lag_rows`)."""
    return sum(row.lag for row in retrying(lag_rows, bootstrap, topics, app, client_config))


def drain(bootstrap: str, topics: Topics, app: str, timeout: float = 180.0,
          client_config: Mapping[str, str] | None = None, alive: Callable[[], bool] | None = None) -> float:  # fmt: skip
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
    return [topics.terminal, topics.settlement, topics.reconciled, topics.alerts, topics.deadletter,
            *internal_topics(app)]  # fmt: skip


class TxnProbe:
    """Which partitions of ``names`` have an open transaction: last stable offset (ListOffsets,
    read_committed) behind the high watermark (read_uncommitted)."""

    def __init__(self, bootstrap: str, names: Iterable[str], client_config: Mapping[str, str] | None = None) -> None:
        self.admin = AdminClient({**(client_config or {}), "bootstrap.servers": bootstrap})
        metadata = retrying(self.admin.list_topics, timeout=10)
        self.tps = [TopicPartition(name, p) for name in names if name in metadata.topics
                    for p in metadata.topics[name].partitions]  # fmt: skip

    def _offsets(self, level: IsolationLevel) -> dict[tuple[str, int], int]:
        futures = self.admin.list_offsets({tp: OffsetSpec.latest() for tp in self.tps}, isolation_level=level,
                                          request_timeout=15)  # fmt: skip
        return {(tp.topic, tp.partition): f.result().offset for tp, f in futures.items()}

    def open(self) -> dict[tuple[str, int], int]:
        if not self.tps:
            return {}
        stable = retrying(self._offsets, IsolationLevel.READ_COMMITTED)
        high = retrying(self._offsets, IsolationLevel.READ_UNCOMMITTED)
        return {key: high[key] - stable[key] for key in stable if stable[key] < high[key]}


def open_transactions(bootstrap: str, names: Iterable[str],
                      client_config: Mapping[str, str] | None = None) -> dict[tuple[str, int], int]:  # fmt: skip
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


def wait_no_open_transactions(bootstrap: str, names: Iterable[str], timeout: float = 60.0,
                              client_config: Mapping[str, str] | None = None) -> dict[tuple[str, int], int]:  # fmt: skip
    """{} once no partition of ``names`` has an open transaction; the last probe if ``timeout`` passes."""
    names = list(names)
    deadline = time.monotonic() + timeout
    while True:
        pending = open_transactions(bootstrap, names, client_config)
        if not pending or time.monotonic() > deadline:
            return pending
        time.sleep(0.5)


# ------------------------------------------------------------------------------------ raw topic dumps


def raw_dump(bootstrap: str, topic: str, client_config: Mapping[str, str] | None = None,
             committed_only: bool = False) -> list[Any]:  # fmt: skip
    """Every message of ``topic`` (by default read_uncommitted: aborted transactions included)."""
    consumer = Consumer({
        **(client_config or {}), "bootstrap.servers": bootstrap, "group.id": f"chaos-dump-{time.monotonic_ns()}",
        "enable.auto.commit": False, "enable.partition.eof": True,
        "isolation.level": "read_committed" if committed_only else "read_uncommitted",
    })  # fmt: skip
    try:
        meta = retrying(consumer.list_topics, topic, timeout=10).topics[topic]
        tps, pending = [], set()
        for p in sorted(meta.partitions):
            low, high = retrying(consumer.get_watermark_offsets, TopicPartition(topic, p), timeout=10)
            if high > low:
                pending.add(p)
                tps.append(TopicPartition(topic, p, OFFSET_BEGINNING))
        out: list[Any] = []
        if not tps:
            return out
        consumer.assign(tps)
        deadline = time.monotonic() + 120
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"dumping {topic}: partitions {sorted(pending)} did not reach their end")
            for msg in consumer.consume(5000, timeout=0.5):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        pending.discard(msg.partition())
                    continue
                out.append(msg)
        return out
    finally:
        consumer.close()


def message_bytes(msg: Any) -> bytes:
    parts = [msg.key() or b"", msg.value() or b""]
    for k, v in msg.headers() or []:
        parts += [k.encode(), v or b""]
    return b"\x00".join(parts)


# -------------------------------------------------------------------------------------- card numbers

_RUN = re.compile(rb"(?<!\d)\d(?:[ -]?\d){12,18}(?!\d)")


def find_pans(data: bytes) -> set[str]:
    """Every card number (13-19 digits, spaces/dashes allowed, Luhn-valid) in ``data``, as bare digits.
    Also every Luhn-valid 13-19 digit window inside a longer digit run."""
    found: set[str] = set()
    for match in _RUN.finditer(data):
        digits = re.sub(rb"[ -]", b"", match.group(0)).decode()
        if luhn_valid(digits):
            found.add(digits)
    return found


def contains_any(haystack: bytes, pans: Iterable[str]) -> set[str]:
    """Which of ``pans`` occur in ``haystack`` in full: bare, or with spaces / dashes anywhere between digits."""
    hits = set()
    squeezed = haystack.replace(b" ", b"").replace(b"-", b"")
    for pan in pans:
        if pan.encode() in squeezed:
            hits.add(pan)
            continue
        spaced = " ".join(pan[i : i + 4] for i in range(0, len(pan), 4))
        for form in (pan, spaced, spaced.replace(" ", "-")):
            if form.encode() in haystack:
                hits.add(pan)
    return hits


def luhn_pan(rng: Any, prefix: str = "4", length: int = 16) -> str:
    body = prefix + "".join(str(rng.randrange(10)) for _ in range(length - len(prefix) - 1))
    for check in "0123456789":
        if luhn_valid(body + check):
            return body + check
    raise AssertionError("unreachable")


# ----------------------------------------------------------------------------------- the final check


def oracle_plus(oracle: Oracle, extra_dead: Mapping[str, int]) -> Oracle:
    dead = Counter(oracle.deadletters)
    dead.update(dict(extra_dead))
    return Oracle(oracle.reconciled, oracle.alerts, dead)


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


def check_exactly_once(bootstrap: str, topics: Topics, app: str, oracle: Oracle, *, drain_timeout: float = 180.0,
                       client_config: Mapping[str, str] | None = None,
                       alive: Callable[[], bool] | None = None) -> Check:  # fmt: skip
    """Committed offsets at the end of input, no transaction open on any topic of the app, and the
    read_committed outputs exactly once and equal to the replay oracle (livekit.verify)."""
    waited = drain(bootstrap, topics, app, drain_timeout, client_config, alive)
    # card-sightings partitions whose committed offset is more than one marker from the end (defect 10: the
    # drain counted them as behind forever; the worker now commits past such a tail once drained)
    _, sightings, _ = internal_topics(app)
    tails = [str(row) for row in retrying(lag_rows, bootstrap, topics, app, client_config)
             if row.topic == sightings and row.high - row.committed > 1]  # fmt: skip
    if tails:
        print(f"drained; transactional tails of more than one marker: {tails}")
    pending = wait_no_open_transactions(bootstrap, all_topic_names(topics, app), 45.0, client_config)
    outputs = retrying(read_outputs, bootstrap, topics, client_config)
    return Check(verify(outputs, oracle), pending, waited, outputs)


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
