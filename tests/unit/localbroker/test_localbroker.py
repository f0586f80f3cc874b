"""The dev broker's pieces that need no JVM: config rendering, ports, tool checks, state file, CLI wiring."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from posrecon.config import cache_dir, default_bootstrap
from posrecon.localbroker import (
    BrokerError,
    LocalBroker,
    maven,
    new_cluster_id,
    process,
    register,
    render_log4j_properties,
    render_server_properties,
    require_java,
)
from posrecon.net import find_free_port, port_is_free, port_is_open, preferred_port


def _props(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key] = value
    return out


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "cache"
    monkeypatch.setenv("POSRECON_CACHE_DIR", str(d))
    monkeypatch.delenv("POSRECON_KAFKA_BOOTSTRAP_SERVERS", raising=False)
    return d


@pytest.fixture
def listener() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_server_properties_single_node_kraft(tmp_path: Path) -> None:
    props = _props(render_server_properties(port=19092, controller_port=19093, log_dir=tmp_path / "logs"))
    assert props["process.roles"] == "broker,controller"
    assert props["node.id"] == "1"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert props["controller.listener.names"] == "CONTROLLER"
    assert props["log.dirs"] == str(tmp_path / "logs")
    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
        "default.replication.factor",
        "min.insync.replicas",
    ):
        assert props[key] == "1", key
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["auto.create.topics.enable"] == "false"
    assert int(props["broker.session.timeout.ms"]) > int(props["broker.heartbeat.interval.ms"])


def test_dev_broker_keeps_simulated_history(tmp_path: Path) -> None:
    """Simulated records carry 2026-01-01 event-time timestamps: with any time retention the broker's retention
    check deletes them from under a running test once the clock is past it (defect 9 in docs/guarantees.md)."""
    props = _props(render_server_properties(port=19092, controller_port=19093, log_dir=tmp_path / "logs"))
    assert props["log.retention.ms"] == "-1"
    assert not any(key.startswith("log.retention.") and key != "log.retention.ms" for key in props)


def test_log4j_properties_logs_warn_to_file(tmp_path: Path) -> None:
    text = render_log4j_properties(tmp_path / "broker.log")
    props = _props(text)
    assert props["log4j.rootLogger"] == "WARN, file"
    assert props["log4j.appender.file.File"] == str(tmp_path / "broker.log")
    assert "ConsoleAppender" not in text


def test_find_free_port_is_bindable_and_respects_exclude() -> None:
    port = find_free_port()
    assert 0 < port < 65536
    assert port_is_free(port)
    other = find_free_port(exclude=[port])
    assert other != port


def test_port_checks_see_a_listener(listener: int) -> None:
    assert port_is_open(listener)
    assert not port_is_free(listener)
    assert preferred_port(listener) != listener  # busy: falls back to a free one
    free = find_free_port()
    assert preferred_port(free) == free
    assert preferred_port(free, exclude=[free]) != free


def test_missing_java_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(BrokerError) as info:
        require_java()
    message = str(info.value)
    assert "java" in message and "Java 17" in message
    assert "apt-get install openjdk-17" in message


def test_java_home_is_used_when_java_not_on_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    java = tmp_path / "jdk" / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text("#!/bin/sh\n")
    java.chmod(0o755)
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "jdk"))
    assert require_java() == str(java)


def test_start_without_java_fails_before_touching_anything(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, cache: Path
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    monkeypatch.delenv("JAVA_HOME", raising=False)
    broker = LocalBroker(tmp_path / "data")
    with pytest.raises(BrokerError, match="Java 17"):
        broker.start()
    assert not (tmp_path / "data").exists()
    assert not cache.exists()


def test_missing_mvn_message(monkeypatch: pytest.MonkeyPatch, cache: Path) -> None:
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    with pytest.raises(BrokerError) as info:
        maven.ensure_kafka_libs(verbose=False)
    assert "mvn" in str(info.value) and "Maven" in str(info.value)
    assert str(cache / "kafka-3.9.1" / "libs") in str(info.value)


def test_existing_libs_skip_maven(monkeypatch: pytest.MonkeyPatch, cache: Path) -> None:
    libs = cache / "kafka-3.9.1" / "libs"
    libs.mkdir(parents=True)
    (libs / "kafka_2.13-3.9.1.jar").write_bytes(b"")
    (libs / "kafka-clients-3.9.1.jar").write_bytes(b"")
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)  # mvn would be missing
    assert maven.ensure_kafka_libs(verbose=False) == libs


def test_cache_dir_and_pom_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("POSRECON_CACHE_DIR", str(tmp_path / "c"))
    monkeypatch.setenv("POSRECON_KAFKA_POM", str(tmp_path / "pom.xml"))
    assert cache_dir() == (tmp_path / "c").resolve()
    assert maven.pom_path() == (tmp_path / "pom.xml").resolve()
    monkeypatch.delenv("POSRECON_CACHE_DIR")
    monkeypatch.delenv("POSRECON_KAFKA_POM")
    repo = Path(maven.__file__).resolve().parents[3]
    assert maven.pom_path() == repo / "deploy" / "kafka" / "pom.xml"
    assert maven.pom_path().is_file()
    assert cache_dir() == repo / ".cache"


def test_bootstrap_property(tmp_path: Path) -> None:
    with pytest.raises(BrokerError):
        _ = LocalBroker(tmp_path).bootstrap
    assert LocalBroker(tmp_path, port=12345).bootstrap == "127.0.0.1:12345"


def test_status_of_a_broker_that_never_ran(tmp_path: Path) -> None:
    broker = LocalBroker(tmp_path, port=find_free_port())
    status = broker.status()
    assert not status.running and status.pid is None
    assert "no Kafka broker running" in status.describe()
    assert broker.stop() is False
    assert broker.kill() is False


def test_stale_pid_file_is_not_running(tmp_path: Path) -> None:
    broker = LocalBroker(tmp_path, port=find_free_port())
    (tmp_path / "broker.pid").write_text("999999999\n")
    assert not broker.is_running()
    assert broker.stop() is False
    assert not (tmp_path / "broker.pid").exists()


def test_default_bootstrap_precedence(monkeypatch: pytest.MonkeyPatch, cache: Path, listener: int) -> None:
    assert default_bootstrap() == "127.0.0.1:19092"  # nothing recorded
    cache.mkdir(parents=True)
    state = {"data_dir": str(cache / "d"), "port": listener, "controller_port": listener + 1, "pid": None}
    (cache / "broker-state.json").write_text(json.dumps(state))
    assert default_bootstrap() == "127.0.0.1:19092"  # recorded but its process is not running
    state["pid"] = 999_999_999
    (cache / "broker-state.json").write_text(json.dumps(state))
    assert default_bootstrap() == "127.0.0.1:19092"  # recorded pid is gone
    state["pid"] = os.getpid()
    (cache / "broker-state.json").write_text(json.dumps(state))
    assert default_bootstrap() == f"127.0.0.1:{listener}"  # recorded and running
    state["port"] = find_free_port()
    (cache / "broker-state.json").write_text(json.dumps(state))
    assert default_bootstrap() == "127.0.0.1:19092"  # alive but its port does not answer
    state["port"] = listener
    (cache / "broker-state.json").write_text(json.dumps(state))
    monkeypatch.setenv("POSRECON_KAFKA_BOOTSTRAP_SERVERS", "kafka:9092")
    assert default_bootstrap() == "kafka:9092"  # env wins


def test_cluster_id_format() -> None:
    for _ in range(100):
        cid = new_cluster_id()
        assert len(cid) == 22 and not cid.startswith("-")


def test_cli_registers_broker_subcommands(cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="posrecon")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["broker", "up", "--port", "29092", "--data-dir", "/tmp/x"])
    assert args.port == 29092 and args.data_dir == "/tmp/x" and callable(args.func)
    assert callable(parser.parse_args(["broker", "down"]).func)
    status_args = parser.parse_args(["broker", "status"])
    assert status_args.func(status_args) == 1  # nothing recorded
    assert "posrecon broker up" in capsys.readouterr().out
    down_args = parser.parse_args(["broker", "down"])
    assert down_args.func(down_args) == 0  # nothing to stop is fine


def _fake_java(tmp_path: Path, body: str) -> str:
    script = tmp_path / "fake-java"
    script.write_text("#!/bin/sh\n" + body + "\n")
    script.chmod(0o755)
    return str(script)


@pytest.fixture
def fake_jvm(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[[str], None]:
    """Make LocalBroker.start() launch a shell script instead of the JVM (no Kafka needed)."""

    def install(body: str) -> None:
        monkeypatch.setattr(process, "require_java", lambda: _fake_java(tmp_path, body))
        monkeypatch.setattr(process, "ensure_kafka_libs", lambda **_: tmp_path / "libs")
        monkeypatch.setattr(LocalBroker, "_format_storage", lambda self, java, libs: None)

    return install


def test_start_reports_early_exit_with_log_tail(fake_jvm: Callable[[str], None], tmp_path: Path) -> None:
    fake_jvm('echo "ERROR boom: cannot start"; exit 3')
    broker = LocalBroker(tmp_path / "data")
    with pytest.raises(BrokerError) as info:
        broker.start(timeout=10)
    assert "exited during startup (exit code 3)" in str(info.value)
    assert "ERROR boom: cannot start" in str(info.value)
    assert not broker.pid_file.exists()


def test_start_timeout_kills_and_reports_log_tail(fake_jvm: Callable[[str], None], tmp_path: Path) -> None:
    fake_jvm('echo "still warming up"; exec sleep 60')
    broker = LocalBroker(tmp_path / "data")
    with pytest.raises(BrokerError) as info:
        broker.start(timeout=1.0)
    message = str(info.value)
    assert "did not become ready" in message and broker.bootstrap in message
    assert "still warming up" in message
    assert broker.pid is None and not broker.status().running
    props = _props((tmp_path / "data" / "server.properties").read_text())
    assert props["listeners"].startswith(f"PLAINTEXT://127.0.0.1:{broker.port},")


def test_start_refuses_busy_port(fake_jvm: Callable[[str], None], tmp_path: Path, listener: int) -> None:
    fake_jvm("exec sleep 60")
    with pytest.raises(BrokerError, match="already in use"):
        LocalBroker(tmp_path / "data", port=listener).start(timeout=1.0)
