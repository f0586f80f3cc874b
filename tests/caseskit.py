"""Shared by the case stage's integration tests and the console's browser E2E: a `posrecon cases` process, alerts
produced as the worker produces them, the case records read back from `pos.exceptions` (read_committed), and a
small HTTP client for the case API."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, Producer

from livekit import topic_env
from posrecon.config import Topics
from posrecon.engine.case_actions import ExceptionCase
from posrecon.engine.model import Alert
from posrecon.net import find_free_port
from posrecon.serde.codec import AvroCodec

VIEWER, OPERATOR = "viewer-token-c4a1", "operator-token-9b7e"
#: the hour every alert's event time is counted from (ages are wall clock - event time: old alerts, old cases)
HOUR = 3_600_000


def tokens_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens"
    path.write_text(f"viewer vera {VIEWER}\noperator alice {OPERATOR}\n")
    return path


def alert(
    alert_id: str,
    kind: str = "MISSING_SETTLEMENT",
    severity: str = "WARNING",
    order_id: str | None = "o-1",
    merchant_id: str | None = "m-1",
    age_ms: int = HOUR,
    status: str = "OPEN",
    resolves: str | None = None,
    batch_id: str | None = None,
) -> Alert:
    at = time.time_ns() // 1_000_000 - age_ms
    return {
        "alert_id": alert_id,
        "kind": kind,
        "severity": severity,
        "order_id": order_id,
        "merchant_id": merchant_id,
        "terminal_id": "t-1",
        "reason": f"{kind} on {order_id or batch_id}",
        "event_time": at,
        "detected_at": at,
        "related_ids": [],
        "status": status,
        "resolves_alert_id": resolves,
        "batch_id": batch_id,
    }


def produce_alerts(bootstrap: str, topics: Topics, alerts: list[Alert]) -> None:
    """As the worker's outbox does: key order_id, else merchant_id, murmur2 partitioner."""
    codec = AvroCodec("Alert")
    producer = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random"})
    for a in alerts:
        key = (a["order_id"] or a["merchant_id"] or "").encode()
        producer.produce(topics.alerts, codec.encode(a), key)  # type: ignore[arg-type]
    assert producer.flush(30) == 0


def produce_raw(bootstrap: str, topic: str, value: bytes, key: bytes = b"k", partition: int = 0) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(topic, value, key, partition)
    assert producer.flush(30) == 0


class ExceptionsReader:
    """A read_committed consumer of ``pos.exceptions`` from the beginning: every case record, in order."""

    def __init__(self, bootstrap: str, topics: Topics) -> None:
        self.codec = AvroCodec("ExceptionCase")
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"reader-{time.monotonic_ns()}",
                "isolation.level": "read_committed",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        self.consumer.subscribe([topics.exceptions])
        self.records: list[tuple[bytes | None, ExceptionCase]] = []

    def wait_for(self, found: Callable[[ExceptionCase], bool], timeout_s: float = 60) -> ExceptionCase:
        seen = 0
        deadline = time.monotonic() + timeout_s
        while True:
            for _, record in self.records[seen:]:
                if found(record):
                    return record
            seen = len(self.records)
            if time.monotonic() > deadline:
                break
            for msg in self.consumer.consume(100, timeout=0.5):
                err = msg.error()
                if err is not None:
                    assert err.code() == KafkaError._PARTITION_EOF, err
                    continue
                self.records.append((msg.key(), self.codec.decode(msg.value())))  # type: ignore[arg-type]
        raise AssertionError(f"no such case record on the topic within {timeout_s} s; got {len(self.records)}")

    def close(self) -> None:
        self.consumer.close()


class CasesProcess:
    """A `posrecon cases` (or `posrecon console`) OS process; stopped by its own pid."""

    def __init__(
        self,
        bootstrap: str,
        topics: Topics,
        app_id: str,
        log_dir: Path,
        tokens: Path,
        extra: list[str] | None = None,
        command: str = "cases",
    ) -> None:
        self.port = find_free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"{command}-{self.port}.log"
        cmd = [
            sys.executable,
            "-m",
            "posrecon.cli",
            command,
            "--bootstrap",
            bootstrap,
            "--app-id",
            app_id,
            "--stage-id",
            "s1",
            "--ops-port",
            str(self.port),
            "--tokens-file",
            str(tokens),
            *(extra or []),
        ]
        self._log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            cmd, stdout=self._log, stderr=subprocess.STDOUT, env={**os.environ, **topic_env(topics)}
        )

    def wait_ready(self, timeout_s: float = 90) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log()[-3000:]
            try:
                if call(f"{self.base}/readyz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"cases process never ready: {self.log()[-3000:]}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            return self.proc.wait(10)
        finally:
            self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def call(url: str, method: str = "GET", token: str | None = None, body: Any = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    request = urllib.request.Request(url, method=method, headers=headers, data=data)
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw.startswith(b"{") else raw
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, json.loads(raw) if raw.startswith(b"{") else raw


def wait_until(check: Callable[[], Any], timeout_s: float = 60, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"{what} not met within {timeout_s} s")
