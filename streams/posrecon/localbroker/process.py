"""The dev broker process: one single-node KRaft Kafka broker as a detached JVM (start, stop, kill, restart, status)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from posrecon.localbroker.errors import BrokerError
from posrecon.localbroker.maven import KAFKA_VERSION, ensure_kafka_libs, require_java
from posrecon.localbroker.server_config import (
    HOST,
    listener_ports,
    new_cluster_id,
    render_log4j_properties,
    render_server_properties,
)
from posrecon.net import find_free_port, port_is_free, port_is_open

JVM_HEAP = "768m"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
PID_FILE_NAME = "broker.pid"
LOG_FILE_NAME = "broker.log"
STDOUT_FILE_NAME = "broker.out"


def _pid_alive(pid: int) -> bool:
    """True when ``pid`` runs (not a zombie) and, where /proc exists, is a Kafka broker JVM."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    proc = Path("/proc") / str(pid)
    if proc.is_dir():
        try:
            stat = (proc / "stat").read_text()
            if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                return False
            return b"kafka.Kafka" in (proc / "cmdline").read_bytes()
        except (OSError, IndexError):
            return False
    return True


def _read_tail(path: Path, lines: int = 40) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def signal_group(pid: int, sig: signal.Signals) -> None:
    """Signal the broker JVM's process group (it leads its own: ``start_new_session``), else the pid alone."""
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return
    with contextlib.suppress(ProcessLookupError):
        if pgid == pid and pgid != os.getpgrp():
            os.killpg(pgid, sig)
        else:
            os.kill(pid, sig)


def format_storage(
    java: str,
    libs: Path,
    data_dir: Path,
    log4j_properties: Path,
    server_properties: Path,
    extra: Sequence[str] = (),
    secret: str | None = None,
) -> None:
    """``kafka-storage format`` of a new KRaft log dir with a fresh cluster id (``extra``: more StorageTool
    arguments, e.g. ``--add-scram``; ``secret``: a password among them, masked in the error)."""
    cmd = [
        java,
        "-Xmx256m",
        f"-Dlog4j.configuration=file:{log4j_properties}",
        "-cp",
        f"{libs}/*",
        "kafka.tools.StorageTool",
        "format",
        "--ignore-formatted",
        "-t",
        new_cluster_id(),
        "-c",
        str(server_properties),
        *extra,
    ]
    proc = subprocess.run(cmd, cwd=data_dir, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        output = (proc.stdout + proc.stderr).strip()
        if secret:
            output = output.replace(secret, "***")
        raise BrokerError(
            f"formatting Kafka storage in {data_dir} failed (exit code {proc.returncode}):\n{output[-4000:]}"
        )


@dataclass(frozen=True, slots=True)
class BrokerStatus:
    running: bool
    pid: int | None
    port: int | None
    controller_port: int | None
    bootstrap: str | None
    data_dir: str
    log_file: str

    def describe(self) -> str:
        if self.running:
            return (
                f"Kafka {KAFKA_VERSION} broker running: pid {self.pid}, bootstrap {self.bootstrap}, "
                f"controller port {self.controller_port}, data {self.data_dir}, log {self.log_file}"
            )
        return f"no Kafka broker running (data dir {self.data_dir})"


class LocalBroker:
    """One single-node KRaft Kafka broker running as a detached JVM in its own process group.

    ``data_dir`` holds everything: ``server.properties``, ``log4j.properties``, the Kafka log dir
    (``kraft-logs``), ``broker.log`` (WARN and up), ``broker.out`` (JVM stdout/stderr) and ``broker.pid``.
    Ports left as ``None`` are picked (free loopback ports) by :meth:`start` and then kept, so
    :meth:`restart` comes back on the same address with the same data.
    """

    def __init__(self, data_dir: str | Path, port: int | None = None, controller_port: int | None = None) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.port = port
        self.controller_port = controller_port
        self.heap = JVM_HEAP
        self.start_timeout = START_TIMEOUT_S
        self.stop_timeout = STOP_TIMEOUT_S
        self._proc: subprocess.Popen[bytes] | None = None

    # ---- paths
    @property
    def log_dir(self) -> Path:
        return self.data_dir / "kraft-logs"

    @property
    def server_properties(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def log4j_properties(self) -> Path:
        return self.data_dir / "log4j.properties"

    @property
    def log_file(self) -> Path:
        return self.data_dir / LOG_FILE_NAME

    @property
    def stdout_file(self) -> Path:
        return self.data_dir / STDOUT_FILE_NAME

    @property
    def pid_file(self) -> Path:
        return self.data_dir / PID_FILE_NAME

    @property
    def bootstrap(self) -> str:
        """``127.0.0.1:PORT`` (the port must be known: given, or picked by :meth:`start`)."""
        if self.port is None:
            raise BrokerError("the broker's port is not known yet: call start() first")
        return f"{HOST}:{self.port}"

    def __repr__(self) -> str:
        return f"LocalBroker(data_dir={str(self.data_dir)!r}, port={self.port}, controller_port={self.controller_port})"

    # ---- process bookkeeping
    @property
    def pid(self) -> int | None:
        """Pid of the broker JVM if one was started here or is recorded in the pid file."""
        if self._proc is not None:
            return self._proc.pid
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def _alive(self) -> bool:
        if self._proc is not None:
            return self._proc.poll() is None
        pid = self.pid
        return pid is not None and _pid_alive(pid)

    def is_running(self) -> bool:
        """The broker process is alive and its port accepts connections."""
        return self._alive() and self.port is not None and port_is_open(self.port)

    def status(self) -> BrokerStatus:
        running = self.is_running()
        return BrokerStatus(
            running=running,
            pid=self.pid if self._alive() else None,
            port=self.port,
            controller_port=self.controller_port,
            bootstrap=f"{HOST}:{self.port}" if self.port is not None else None,
            data_dir=str(self.data_dir),
            log_file=str(self.log_file),
        )

    def log_tail(self, lines: int = 40) -> str:
        parts = []
        for path in (self.log_file, self.stdout_file):
            tail = _read_tail(path, lines)
            if tail:
                parts.append(f"--- {path} (last lines) ---\n{tail}")
        return "\n".join(parts) if parts else f"(no broker output in {self.data_dir})"

    # ---- lifecycle
    def start(self, *, timeout: float | None = None) -> LocalBroker:
        """Start the broker (formatting storage on first use) and wait until clients can use it.

        A no-op when this data dir's broker is already running. Raises :class:`BrokerError` (with the
        tail of the broker log) when it does not come up within ``timeout`` seconds (default 60).
        """
        if self.port is None or self.controller_port is None:
            self._adopt_running_ports()
        if self.is_running():
            return self
        if self._alive():
            raise BrokerError(
                f"a broker JVM for {self.data_dir} (pid {self.pid}) is alive but not serving on "
                f"{HOST}:{self.port}: it may still be starting or be hung; stop it first (stop() or "
                "`posrecon broker down`)"
            )
        java = require_java()
        libs = ensure_kafka_libs()
        self._pick_ports()
        assert self.port is not None and self.controller_port is not None
        for name, value in (("port", self.port), ("controller port", self.controller_port)):
            if not port_is_free(value):
                raise BrokerError(f"{name} {HOST}:{value} is already in use; choose another or stop what uses it")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.server_properties.write_text(
            render_server_properties(port=self.port, controller_port=self.controller_port, log_dir=self.log_dir)
        )
        self.log4j_properties.write_text(render_log4j_properties(self.log_file))
        self._format_storage(java, libs)

        cmd = [
            java,
            f"-Xmx{self.heap}",
            f"-Xms{self.heap}",  # as kafka-server-start.sh: no heap growth (and its GCs) while warming up
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{self.log4j_properties}",
            f"-Dkafka.logs.dir={self.data_dir}",
            "-cp",
            f"{libs}/*",
            "kafka.Kafka",
            str(self.server_properties),
        ]
        with open(self.stdout_file, "ab") as out:
            self._proc = subprocess.Popen(
                cmd,
                cwd=self.data_dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own session + process group: detached from our terminal/signals
                close_fds=True,
            )
        self.pid_file.write_text(f"{self._proc.pid}\n")
        self._wait_ready(self.start_timeout if timeout is None else timeout)
        return self

    def stop(self, timeout: float | None = None) -> bool:
        """SIGTERM the broker's process group, wait (default 20 s), then SIGKILL. True if one was running."""
        was_running = self._signal_and_wait(signal.SIGTERM, self.stop_timeout if timeout is None else timeout)
        self._forget()
        return was_running

    def kill(self) -> bool:
        """SIGKILL the broker's process group at once (crash simulation). True if one was running."""
        was_running = self._signal_and_wait(signal.SIGKILL, 10.0)
        self._forget()
        return was_running

    def restart(self, *, timeout: float | None = None) -> LocalBroker:
        """Stop (if running) and start again on the same ports with the same data."""
        self.stop()
        return self.start(timeout=timeout)

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- internals
    def _adopt_running_ports(self) -> None:
        """If this data dir's broker already runs, take its ports from its ``server.properties``."""
        if not self._alive():
            return
        try:
            ports = listener_ports(self.server_properties.read_text())
        except OSError:
            return
        if self.port is None:
            self.port = ports.get("PLAINTEXT")
        if self.controller_port is None:
            self.controller_port = ports.get("CONTROLLER")

    def _pick_ports(self) -> None:
        if self.port is None:
            self.port = find_free_port(exclude=[p for p in (self.controller_port,) if p is not None])
        if self.controller_port is None:
            self.controller_port = find_free_port(exclude=[self.port])
        if self.port == self.controller_port:
            raise BrokerError(f"port and controller port must differ (both {self.port})")

    def _format_storage(self, java: str, libs: Path) -> None:
        if not (self.log_dir / "meta.properties").is_file():  # already formatted: keep the data (restart)
            format_storage(java, libs, self.data_dir, self.log4j_properties, self.server_properties)

    def _wait_ready(self, timeout: float) -> None:
        from confluent_kafka.admin import AdminClient

        assert self._proc is not None and self.port is not None
        deadline = time.monotonic() + timeout
        admin: AdminClient | None = None
        last_error = "port not open yet"
        while time.monotonic() < deadline:
            code = self._proc.poll()
            if code is not None:
                self._forget()
                raise BrokerError(f"the Kafka broker exited during startup (exit code {code}).\n{self.log_tail()}")
            if port_is_open(self.port):
                if admin is None:
                    admin = AdminClient({"bootstrap.servers": self.bootstrap, "socket.timeout.ms": 5000})
                try:
                    metadata = admin.list_topics(timeout=max(0.5, min(5.0, deadline - time.monotonic())))
                    if metadata.brokers:
                        return
                    last_error = "no brokers in metadata yet"
                except Exception as exc:  # KafkaException while the broker finishes starting
                    last_error = str(exc)
            time.sleep(0.2)
        self._signal_and_wait(signal.SIGKILL, 10.0)
        self._forget()
        raise BrokerError(
            f"the Kafka broker did not become ready on {self.bootstrap} within {timeout:.0f} s "
            f"(last check: {last_error}); it was killed.\n{self.log_tail()}"
        )

    def _signal_and_wait(self, sig: signal.Signals, timeout: float) -> bool:
        pid = self.pid
        if pid is None or not self._alive():
            if self._proc is not None:
                self._proc.poll()  # reap
            return False
        signal_group(pid, sig)
        if self._wait_dead(pid, timeout):
            return True
        if sig != signal.SIGKILL:
            signal_group(pid, signal.SIGKILL)
            if self._wait_dead(pid, 10.0):
                return True
        raise BrokerError(f"Kafka broker pid {pid} did not exit after {sig.name} and SIGKILL")

    def _wait_dead(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            if self._proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._proc.wait(timeout=0.1)
                if self._proc.poll() is not None:
                    return True
            elif not _pid_alive(pid):
                return True
            else:
                time.sleep(0.1)
            if time.monotonic() >= deadline:
                return False

    def _forget(self) -> None:
        self._proc = None
        with contextlib.suppress(OSError):
            self.pid_file.unlink()
