"""Plumbing for ``bench/run.py``: child processes, topics, group progress, logs, metrics, percentiles.

Every child process is started in its own session (Ctrl-C reaches only ``run.py``, which stops the
children itself, in order) and registered, so that :meth:`Children.stop_all` ends every one of them on any
exit path. Children are stopped by pid (SIGTERM, then SIGKILL after a grace period), never by name.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from posrecon.config import Topics

PY = sys.executable
BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent


class StepTimeout(RuntimeError):
    """A benchmark step ran out of its time budget."""


class ChildFailed(RuntimeError):
    """A child process exited while it was expected to run."""


# ------------------------------------------------------------------------------------------ processes


class Children:
    """Registry of the child processes started by the benchmark."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen[bytes], IO[bytes] | None]] = []

    def spawn(
        self,
        name: str,
        cmd: Sequence[str],
        log_path: Path | None = None,
        cwd: Path | None = None,
        stdout_pipe: bool = False,
    ) -> subprocess.Popen[bytes]:
        log = open(log_path, "wb") if log_path is not None else None  # noqa: SIM115 (closed in stop)
        proc = subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout_pipe else (log or subprocess.DEVNULL),
            stderr=log or subprocess.DEVNULL,
            cwd=cwd,
            start_new_session=True,
        )
        self.procs.append((name, proc, log))
        return proc

    def stop(self, proc: subprocess.Popen[bytes], grace_s: float = 20.0, sig: int = signal.SIGTERM) -> int | None:
        """Signal one child by pid and wait for it (SIGKILL after ``grace_s``); returns its exit code."""
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            try:
                proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(10)
        for i, (_name, p, log) in enumerate(self.procs):
            if p is proc:
                if log is not None:
                    log.close()
                del self.procs[i]
                break
        return proc.returncode

    def stop_all(self, grace_s: float = 15.0) -> None:
        for _name, proc, _log in list(self.procs):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for _name, proc, _log in list(self.procs):
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.1, deadline - time.monotonic()))
        for _name, proc, log in list(self.procs):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(10)
            if log is not None:
                log.close()
        self.procs.clear()


def now_ms() -> int:
    """The wall clock in epoch milliseconds (record timestamps, event times of live traffic)."""
    return time.time_ns() // 1_000_000


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a live process (Linux /proc), None when unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def rss_bytes(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def wait_for_log(path: Path, msg: str, deadline: float, proc: subprocess.Popen[bytes] | None = None) -> dict[str, Any]:
    """The first JSON log line of ``path`` whose ``msg`` is ``msg`` (posrecon logs JSON lines on stderr)."""
    while True:
        try:
            with open(path, encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    if f'"msg": "{msg}"' in line:
                        with contextlib.suppress(ValueError):
                            doc: dict[str, Any] = json.loads(line)
                            return doc
        except OSError:
            pass
        if proc is not None and proc.poll() is not None:
            raise ChildFailed(f"process exited (code {proc.returncode}) before logging {msg!r}:\n{tail(path)}")
        if time.monotonic() > deadline:
            raise StepTimeout(f"no {msg!r} in {path} in time:\n{tail(path)}")
        time.sleep(0.05)


def log_ts_ms(doc: Mapping[str, Any]) -> int:
    """Epoch ms of a posrecon JSON log line's ``ts`` (``YYYY-mm-ddTHH:MM:SS.mmmZ``)."""
    import calendar

    stamp = str(doc["ts"])
    base, _, ms = stamp.rstrip("Z").partition(".")
    return calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S")) * 1000 + int(ms or 0)


def scrape(port: int) -> dict[str, float]:
    """Prometheus text of ``127.0.0.1:port/metrics`` as {series: value} (empty on error)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except OSError:
        return {}
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                out[name] = float(value)
    return out


# ------------------------------------------------------------------------------------------- topics


def topic_set(prefix: str | None) -> Topics:
    """The contract's topics (``prefix=None``) or a private copy named ``<prefix>.terminal-events`` …"""
    if prefix is None:
        return Topics()
    return Topics(
        terminal=f"{prefix}.terminal-events",
        settlement=f"{prefix}.settlement-notices",
        reconciled=f"{prefix}.reconciled",
        alerts=f"{prefix}.alerts",
        deadletter=f"{prefix}.deadletter",
    )


def create_topics(bootstrap: str, specs: Mapping[str, Mapping[str, str]], partitions: int) -> None:
    """Create topics (name -> config), waiting for their leaders; existing ones are kept."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 4})
    futures = admin.create_topics(
        [NewTopic(n, partitions, 1, config=dict(c)) for n, c in specs.items()], operation_timeout=30
    )
    for name, fut in futures.items():
        try:
            fut.result()
        except Exception as exc:
            err = exc.args[0] if exc.args else None
            if not (isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS):
                raise RuntimeError(f"cannot create topic {name}: {exc}") from exc
    if not wait_for_leaders(admin, specs, partitions):
        raise StepTimeout(f"topics {sorted(specs)} not ready")


def wait_for_leaders(admin: AdminClient, names: Iterable[str], partitions: int, timeout_s: float = 30) -> bool:
    """Wait until every topic of ``names`` exists with ``partitions`` partitions, each with a leader; False
    when ``timeout_s`` passes first."""
    names = list(names)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        meta = admin.list_topics(timeout=10)
        if all(
            n in meta.topics
            and meta.topics[n].error is None
            and len(meta.topics[n].partitions) == partitions
            and all(p.leader >= 0 for p in meta.topics[n].partitions.values())
            for n in names
        ):
            return True
        time.sleep(0.1)
    return False


def create_contract_topics(
    bootstrap: str, topics: Topics, partitions: int, inputs: bool = True, outputs: bool = True
) -> None:
    """The contract's five topics (``reconciled`` compacted). Inputs get ``retention.ms=-1``: the simulated
    records carry 2026-01-01 timestamps, which the broker's 7-day time retention would otherwise delete."""
    specs: dict[str, dict[str, str]] = {}
    if inputs:
        specs[topics.terminal] = {"retention.ms": "-1"}
        specs[topics.settlement] = {"retention.ms": "-1"}
    if outputs:
        specs[topics.reconciled] = {"cleanup.policy": "compact"}
        specs[topics.alerts] = {}
        specs[topics.deadletter] = {}
    create_topics(bootstrap, specs, partitions)


def worker_cmd(bootstrap: str, app_id: str, worker_id: str, config: Path, *extra: str) -> list[str]:
    """The command line of one ``posrecon run`` worker process."""
    return [PY, "-m", "posrecon.cli", "run", "--bootstrap", bootstrap, "--config", str(config),
            "--app-id", app_id, "--worker-id", worker_id, *extra]  # fmt: skip


def write_config(path: Path, topics: Topics, rules: Path | None = None) -> Path:
    """A posrecon TOML config naming ``topics``; the rules of ``rules`` (the simulation's, e.g. merchant pricing)
    if given, else the contract's defaults."""
    lines = ["[topics]"] + [
        f'{k} = "{getattr(topics, k)}"' for k in ("terminal", "settlement", "reconciled", "alerts", "deadletter")
    ]
    head = rules.read_text().rstrip("\n") + "\n\n" if rules is not None and rules.is_file() else ""
    path.write_text(head + "\n".join(lines) + "\n")
    return path


class Offsets:
    """One long-lived client for a group's committed offsets and the topics' log ends."""

    def __init__(self, bootstrap: str, group: str, topics: Iterable[str], partitions: int) -> None:
        self.consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False, "log_level": 4}
        )
        self.tps = [TopicPartition(t, p) for t in topics for p in range(partitions)]

    def _committed(self) -> list[TopicPartition]:
        """The group's committed offsets; a timed-out fetch is asked again (three times): a coordinator busy
        for 10 s on this 2-core machine once failed a whole throughput step."""
        for attempt in range(3):
            try:
                return list(self.consumer.committed(self.tps, timeout=10))
            except KafkaException as exc:
                if attempt == 2 or exc.args[0].code() != KafkaError._TIMED_OUT:
                    raise
        raise AssertionError("unreachable")

    def committed(self) -> int:
        return sum(max(0, tp.offset) for tp in self._committed())

    def committed_by_tp(self) -> dict[tuple[str, int], int]:
        return {(tp.topic, tp.partition): tp.offset for tp in self._committed()}

    def log_end(self) -> int:
        return sum(self.consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in self.tps)

    def close(self) -> None:
        self.consumer.close()


def log_end(bootstrap: str, topics: Iterable[str], partitions: int) -> int:
    off = Offsets(bootstrap, f"bench-probe-{time.monotonic_ns()}", topics, partitions)
    try:
        return off.log_end()
    finally:
        off.close()


def count_records(bootstrap: str, topic: str, isolation: str = "read_committed", timeout_s: float = 120) -> int:
    """Records a consumer with ``isolation`` reads from ``topic`` (all partitions, to their ends)."""
    return topic_stats(bootstrap, topic, isolation, timeout_s)[0]


def topic_stats(
    bootstrap: str, topic: str, isolation: str = "read_committed", timeout_s: float = 120
) -> tuple[int, int]:
    """(records, distinct keys) a consumer with ``isolation`` reads from ``topic``."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-count-{time.monotonic_ns()}",
            "enable.auto.commit": False,
            "isolation.level": isolation,
            "enable.partition.eof": True,
            "log_level": 4,
        }
    )
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        tps, pending = [], set()
        for p in meta.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high > low:
                tps.append(TopicPartition(topic, p, -2))
                pending.add(p)
        if not tps:
            return 0, 0
        consumer.assign(tps)
        count = 0
        keys: set[bytes | None] = set()
        deadline = time.monotonic() + timeout_s
        while pending:
            if time.monotonic() > deadline:
                raise StepTimeout(f"counting {topic}: partitions {sorted(pending)} not at their end")
            for msg in consumer.consume(10_000, timeout=0.5):
                if msg.error() is None:
                    count += 1
                    keys.add(msg.key())
                elif msg.error().code() == KafkaError._PARTITION_EOF:
                    pending.discard(msg.partition())
        return count, len(keys)
    finally:
        consumer.close()


# ----------------------------------------------------------------------------------------- figures


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return float(ordered[rank - 1])


def summary_ms(values: Sequence[float]) -> dict[str, Any]:
    return {
        "n": len(values),
        "p50_ms": percentile(values, 50),
        "p90_ms": percentile(values, 90),
        "p99_ms": percentile(values, 99),
        "max_ms": max(values) if values else None,
    }


def free_port() -> int:
    from posrecon.net import find_free_port

    return find_free_port()


def ensure_internal_topics(bootstrap: str, app_id: str, partitions: int) -> tuple[str, str, str]:
    """Create a worker's internal topics and wait until every partition has a leader.

    The worker creates them itself, but reads the changelog right away; on a fresh app id that read can
    fail with NOT_LEADER_FOR_PARTITION before the new partitions have leaders (the worker then exits).
    """
    from posrecon.app.internal_topics import create_internal_topics, internal_topics

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 4})
    create_internal_topics(admin, app_id, partitions)
    names = internal_topics(app_id)
    if not wait_for_leaders(admin, names, partitions):
        raise StepTimeout(f"internal topics of {app_id} not ready")
    return names
