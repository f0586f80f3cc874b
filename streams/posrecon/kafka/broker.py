"""A local single-node Apache Kafka broker (KRaft, combined broker + controller) for development and tests.

The broker jars come from Maven Central through the project's ``deploy/kafka/pom.xml``
(``mvn dependency:copy-dependencies``) into ``<cache>/kafka-<version>/libs``, once. The cache dir is
``$POSRECON_CACHE_DIR`` or ``<repo>/.cache``; ``$POSRECON_KAFKA_POM`` points at another pom.

Python API: :class:`LocalBroker` (``start``/``stop``/``kill``/``restart``/``status``), used by the test
fixtures and the chaos suite. CLI: ``posrecon broker up|down|status``; the CLI remembers the running
broker in ``<cache>/broker-state.json`` so that ``down``, ``status`` and :func:`default_bootstrap`
(used by the other commands) find it.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_BOOTSTRAP",
    "DEFAULT_PORT",
    "KAFKA_VERSION",
    "BrokerError",
    "BrokerStatus",
    "LocalBroker",
    "cache_dir",
    "default_bootstrap",
    "ensure_kafka_libs",
    "find_free_port",
    "port_is_free",
    "port_is_open",
    "register",
    "render_log4j_properties",
    "render_server_properties",
    "require_java",
]

KAFKA_VERSION = "3.9.1"
DEFAULT_PORT = 19092
DEFAULT_BOOTSTRAP = f"127.0.0.1:{DEFAULT_PORT}"
HOST = "127.0.0.1"
NODE_ID = 1
JVM_HEAP = "768m"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
STATE_FILE_NAME = "broker-state.json"
PID_FILE_NAME = "broker.pid"
LOG_FILE_NAME = "broker.log"
STDOUT_FILE_NAME = "broker.out"

ENV_CACHE_DIR = "POSRECON_CACHE_DIR"
ENV_POM = "POSRECON_KAFKA_POM"
ENV_BOOTSTRAP = "POSRECON_KAFKA_BOOTSTRAP_SERVERS"

_JAVA_HINT = (
    f"Apache Kafka {KAFKA_VERSION} needs a Java 17 (or newer) runtime: install one "
    "(Debian/Ubuntu: `sudo apt-get install openjdk-17-jre-headless`; macOS: `brew install openjdk@17`) "
    "or put $JAVA_HOME/bin on PATH."
)
_MVN_HINT = (
    "the Kafka jars are fetched from Maven Central with Maven: install it "
    "(Debian/Ubuntu: `sudo apt-get install maven`; macOS: `brew install maven`), "
    f"or put an existing Kafka {KAFKA_VERSION} libs/ directory at {{libs}}."
)


class BrokerError(RuntimeError):
    """The local broker could not be set up, started or stopped; the message says why and what to do."""


# --------------------------------------------------------------------------------------------- paths


def _repo_root() -> Path | None:
    """The source checkout holding this package (the dir with ``deploy/kafka/pom.xml``), if any."""
    for start in (Path(__file__).resolve().parent, Path.cwd().resolve()):
        for candidate in (start, *start.parents):
            if (candidate / "deploy" / "kafka" / "pom.xml").is_file():
                return candidate
    return None


def cache_dir() -> Path:
    """``$POSRECON_CACHE_DIR``, else ``<repo>/.cache`` (gitignored), else ``./.cache``."""
    env = os.environ.get(ENV_CACHE_DIR)
    if env:
        return Path(env).expanduser().resolve()
    root = _repo_root()
    return (root if root is not None else Path.cwd().resolve()) / ".cache"


def pom_path() -> Path:
    """The Maven pom listing the broker's jars: ``$POSRECON_KAFKA_POM`` or ``<repo>/deploy/kafka/pom.xml``."""
    env = os.environ.get(ENV_POM)
    if env:
        return Path(env).expanduser().resolve()
    root = _repo_root()
    if root is None:
        raise BrokerError(
            f"cannot find deploy/kafka/pom.xml (not running from a posrecon checkout); set {ENV_POM}=/path/to/pom.xml"
        )
    return root / "deploy" / "kafka" / "pom.xml"


def kafka_home() -> Path:
    return cache_dir() / f"kafka-{KAFKA_VERSION}"


def state_file() -> Path:
    return cache_dir() / STATE_FILE_NAME


# ---------------------------------------------------------------------------------------- tool checks


def require_java() -> str:
    """Path of the ``java`` executable, or :class:`BrokerError` telling the user to install Java 17."""
    java = shutil.which("java")
    if java is None:
        java_home = os.environ.get("JAVA_HOME")
        candidate = Path(java_home) / "bin" / "java" if java_home else None
        if candidate is not None and os.access(candidate, os.X_OK):
            return str(candidate)
        raise BrokerError(f"`java` was not found on PATH. {_JAVA_HINT}")
    return java


def require_mvn(libs: Path) -> str:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError("`mvn` (Apache Maven) was not found on PATH; " + _MVN_HINT.format(libs=libs))
    return mvn


def _libs_complete(libs: Path) -> bool:
    return (libs / f"kafka_2.13-{KAFKA_VERSION}.jar").is_file() and (
        libs / f"kafka-clients-{KAFKA_VERSION}.jar"
    ).is_file()


def ensure_kafka_libs(*, verbose: bool = True) -> Path:
    """The broker's ``libs`` dir, downloading it with Maven the first time.

    The download goes to a temporary sibling dir that is renamed into place when complete, so an
    interrupted download is retried next time instead of leaving a half-filled ``libs``.
    """
    libs = kafka_home() / "libs"
    if _libs_complete(libs):
        return libs
    if libs.exists():
        raise BrokerError(f"{libs} exists but does not hold the Kafka {KAFKA_VERSION} jars; remove it and retry")
    mvn = require_mvn(libs)
    pom = pom_path()
    if not pom.is_file():
        raise BrokerError(f"Maven pom {pom} does not exist (set {ENV_POM} to override)")
    tmp = libs.with_name(f"libs.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        mvn, "-q", "-B", "-Dstyle.color=never", "-f", str(pom),
        "dependency:copy-dependencies", f"-DoutputDirectory={tmp}",
    ]  # fmt: skip
    if verbose:
        print(
            f"fetching Apache Kafka {KAFKA_VERSION} jars with Maven into {libs} (one time) ...",
            file=sys.stderr,
        )
    started = time.monotonic()
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not _libs_complete(tmp):
        shutil.rmtree(tmp, ignore_errors=True)
        output = (proc.stdout + proc.stderr).strip()[-4000:]
        raise BrokerError(
            f"Maven could not fetch the Kafka jars (exit code {proc.returncode}): {' '.join(cmd)}\n{output}\n"
            "Check network access to Maven Central (or your ~/.m2/settings.xml mirror)."
        )
    try:
        tmp.rename(libs)
    except OSError:  # somebody else finished first
        shutil.rmtree(tmp, ignore_errors=True)
        if not _libs_complete(libs):
            raise
    if verbose:
        print(f"fetched in {time.monotonic() - started:.1f} s", file=sys.stderr)
    return libs


# ---------------------------------------------------------------------------------------------- ports


def port_is_free(port: int, host: str = HOST) -> bool:
    """True when nothing listens on ``host:port`` and it can be bound."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR as the JVM's server socket uses it: TIME_WAIT leftovers do not make a port busy
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return not port_is_open(port, host)


def port_is_open(port: int, host: str = HOST, timeout: float = 0.5) -> bool:
    """True when ``host:port`` accepts a TCP connection."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def find_free_port(host: str = HOST, exclude: Sequence[int] = ()) -> int:
    """A currently free TCP port on ``host`` chosen by the OS (never one of ``exclude``)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if port not in exclude:
            return port
    raise BrokerError("could not find a free TCP port")  # pragma: no cover


def preferred_port(preferred: int, host: str = HOST, exclude: Sequence[int] = ()) -> int:
    """``preferred`` if it is free, else any free port."""
    if preferred not in exclude and port_is_free(preferred, host):
        return preferred
    return find_free_port(host, exclude)


# ---------------------------------------------------------------------------------------- config files


def render_server_properties(
    *, port: int, controller_port: int, log_dir: Path | str, node_id: int = NODE_ID, host: str = HOST
) -> str:
    """``server.properties`` of a single-node KRaft broker+controller on loopback, replication factor 1."""
    props: dict[str, str | int] = {
        "process.roles": "broker,controller",
        "node.id": node_id,
        "controller.quorum.voters": f"{node_id}@{host}:{controller_port}",
        "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{host}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(log_dir),
        "num.partitions": 1,
        "default.replication.factor": 1,
        "min.insync.replicas": 1,
        "offsets.topic.replication.factor": 1,
        "transaction.state.log.replication.factor": 1,
        "transaction.state.log.min.isr": 1,
        "group.initial.rebalance.delay.ms": 0,
        "auto.create.topics.enable": "false",
        "delete.topic.enable": "true",
        # No time retention on this development/test broker. Its topics hold simulated traffic whose record
        # timestamps are the simulated event times (2026-01-01 onwards by default): with Kafka's default
        # 7 days, the retention check (30 s after start, then every 5 min) deleted input that had not been
        # read yet, once the clock was a week past the simulated epoch -- the consumer's offset was then out
        # of range, it reset to the new log start (= log end) and the records were gone (defect 9).
        "log.retention.ms": -1,
        "num.recovery.threads.per.data.dir": 2,
        # After a kill -9 the restarted broker cannot register until the controller expires its previous
        # incarnation's session (default 9 s, ~15 s with retry backoff); heartbeats never leave the JVM's
        # loopback here, so a short session costs nothing and makes crash-restart take ~6 s instead.
        "broker.heartbeat.interval.ms": 500,
        "broker.session.timeout.ms": 3000,
    }
    lines = ["# generated by posrecon.kafka.broker: single-node KRaft broker for development and tests"]
    lines += [f"{key}={value}" for key, value in props.items()]
    return "\n".join(lines) + "\n"


def render_log4j_properties(log_file: Path | str, level: str = "WARN") -> str:
    """log4j 1.x (reload4j) config: everything at ``level`` into ``log_file``; startup line kept at INFO."""
    return "\n".join(
        [
            f"log4j.rootLogger={level}, file",
            "log4j.appender.file=org.apache.log4j.RollingFileAppender",
            f"log4j.appender.file.File={log_file}",
            "log4j.appender.file.MaxFileSize=20MB",
            "log4j.appender.file.MaxBackupIndex=2",
            "log4j.appender.file.layout=org.apache.log4j.PatternLayout",
            "log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n",
            # one INFO line "Kafka Server started" / shutdown lines, handy when reading the log
            "log4j.logger.kafka.server.KafkaRaftServer=INFO",
            "",
        ]
    )


def _new_cluster_id() -> str:
    """A Kafka ``Uuid`` string (URL-safe base64 of 16 random bytes; never starting with ``-``)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode("ascii")
        if not text.startswith("-"):
            return text


# -------------------------------------------------------------------------------------------- process


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
            text = self.server_properties.read_text()
        except OSError:
            return
        for line in text.splitlines():
            if line.startswith("listeners="):
                for listener in line.partition("=")[2].split(","):
                    name, _, address = listener.partition("://")
                    port = address.rpartition(":")[2]
                    if port.isdigit() and name == "PLAINTEXT" and self.port is None:
                        self.port = int(port)
                    elif port.isdigit() and name == "CONTROLLER" and self.controller_port is None:
                        self.controller_port = int(port)

    def _pick_ports(self) -> None:
        if self.port is None:
            self.port = find_free_port(exclude=[p for p in (self.controller_port,) if p is not None])
        if self.controller_port is None:
            self.controller_port = find_free_port(exclude=[self.port])
        if self.port == self.controller_port:
            raise BrokerError(f"port and controller port must differ (both {self.port})")

    def _format_storage(self, java: str, libs: Path) -> None:
        if (self.log_dir / "meta.properties").is_file():
            return  # already formatted: keep the data (restart)
        cmd = [
            java,
            "-Xmx256m",
            f"-Dlog4j.configuration=file:{self.log4j_properties}",
            "-cp",
            f"{libs}/*",
            "kafka.tools.StorageTool",
            "format",
            "--ignore-formatted",
            "-t",
            _new_cluster_id(),
            "-c",
            str(self.server_properties),
        ]
        proc = subprocess.run(
            cmd, cwd=self.data_dir, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            raise BrokerError(
                f"formatting Kafka storage in {self.log_dir} failed (exit code {proc.returncode}):\n"
                f"{(proc.stdout + proc.stderr).strip()[-4000:]}"
            )

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
        self._send(pid, sig)
        if self._wait_dead(pid, timeout):
            return True
        if sig != signal.SIGKILL:
            self._send(pid, signal.SIGKILL)
            if self._wait_dead(pid, 10.0):
                return True
        raise BrokerError(f"Kafka broker pid {pid} did not exit after {sig.name} and SIGKILL")

    @staticmethod
    def _send(pid: int, sig: signal.Signals) -> None:
        try:
            pgid = os.getpgid(pid)
        except ProcessLookupError:
            return
        with contextlib.suppress(ProcessLookupError):
            if pgid == pid and pgid != os.getpgrp():
                os.killpg(pgid, sig)  # the JVM leads its own group (start_new_session)
            else:
                os.kill(pid, sig)

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


# ------------------------------------------------------------------------------------- CLI state file


def read_state(path: Path | None = None) -> dict[str, Any] | None:
    path = state_file() if path is None else path
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_state(broker: LocalBroker, path: Path | None = None) -> None:
    path = state_file() if path is None else path
    path.parent.mkdir(parents=True, exist_ok=True)
    state = asdict(broker.status())
    state["kafka_version"] = KAFKA_VERSION
    state["updated_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(path)


def broker_from_state(state: dict[str, Any]) -> LocalBroker:
    port = state.get("port")
    controller_port = state.get("controller_port")
    return LocalBroker(
        state["data_dir"],
        port=int(port) if port is not None else None,
        controller_port=int(controller_port) if controller_port is not None else None,
    )


def running_local_broker() -> LocalBroker | None:
    """The broker recorded by ``posrecon broker up``, if it is still running."""
    state = read_state()
    if state is None or "data_dir" not in state:
        return None
    broker = broker_from_state(state)
    return broker if broker.is_running() else None


def default_bootstrap() -> str:
    """Bootstrap servers for the other commands.

    ``$POSRECON_KAFKA_BOOTSTRAP_SERVERS``, else the broker started by ``posrecon broker up`` (if it
    runs), else ``127.0.0.1:19092``.
    """
    env = os.environ.get(ENV_BOOTSTRAP)
    if env:
        return env
    broker = running_local_broker()
    if broker is not None:
        return broker.bootstrap
    return DEFAULT_BOOTSTRAP


# ------------------------------------------------------------------------------------------------ CLI


def _cmd_up(args: argparse.Namespace) -> int:
    running = running_local_broker()
    if running is not None:
        print(f"already running: {running.status().describe()}", file=sys.stderr)
        if args.port is not None and args.port != running.port:
            print(
                f"note: --port {args.port} ignored; run `posrecon broker down` first to move it",
                file=sys.stderr,
            )
        if args.data_dir and Path(args.data_dir).expanduser().resolve() != running.data_dir:
            print(
                f"note: --data-dir {args.data_dir} ignored; the running broker uses {running.data_dir}",
                file=sys.stderr,
            )
        print(running.bootstrap)
        return 0
    state = read_state() or {}
    data_dir = Path(args.data_dir) if args.data_dir else Path(state.get("data_dir") or cache_dir() / "broker-data")
    same_data = Path(state.get("data_dir") or "") == data_dir.expanduser().resolve()
    port: int
    controller_port: int | None = None
    if args.port is not None:
        port = args.port
    elif same_data and state.get("port") and port_is_free(int(state["port"])):
        port = int(state["port"])  # come back where we were
    else:
        port = preferred_port(DEFAULT_PORT)
    if same_data and state.get("controller_port"):
        previous = int(state["controller_port"])
        if previous != port and port_is_free(previous):
            controller_port = previous
    if controller_port is None:
        controller_port = preferred_port(port + 1, exclude=[port])
    broker = LocalBroker(data_dir, port=port, controller_port=controller_port)
    print(f"starting Kafka {KAFKA_VERSION} (KRaft) in {broker.data_dir} ...", file=sys.stderr)
    started = time.monotonic()
    try:
        broker.start(timeout=args.timeout)
    except BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    write_state(broker)
    print(
        f"broker up in {time.monotonic() - started:.1f} s: pid {broker.pid}, controller port "
        f"{broker.controller_port}, log {broker.log_file}",
        file=sys.stderr,
    )
    print(broker.bootstrap)
    return 0


def _cmd_down(args: argparse.Namespace) -> int:
    state = read_state()
    if state is None or "data_dir" not in state:
        print(f"no local broker recorded ({state_file()} missing)", file=sys.stderr)
        return 0
    broker = broker_from_state(state)
    try:
        stopped = broker.stop(timeout=args.timeout)
    except BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    write_state(broker)
    print(
        f"broker stopped (data kept in {broker.data_dir})" if stopped else "broker was not running",
        file=sys.stderr,
    )
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    state = read_state()
    if state is None or "data_dir" not in state:
        print(f"no local broker recorded ({state_file()} missing); start one with `posrecon broker up`")
        return 1
    status = broker_from_state(state).status()
    if args.json:
        print(json.dumps(asdict(status), indent=2))
    else:
        print(status.describe())
    return 0 if status.running else 1


def register(subparsers: Any) -> None:
    """Add ``posrecon broker up|down|status``."""
    parser = subparsers.add_parser(
        "broker",
        help="run a local single-node Kafka broker (KRaft) for development",
        description=(
            f"Manage a local single-node Apache Kafka {KAFKA_VERSION} broker (KRaft, broker+controller in "
            "one JVM, 127.0.0.1 only, replication factor 1).\n\n"
            "Needs Java 17+ and, the first time, Maven: the jars are fetched from Maven Central by "
            f"deploy/kafka/pom.xml into $POSRECON_CACHE_DIR or <repo>/.cache (kafka-{KAFKA_VERSION}/libs).\n"
            f"The running broker is recorded in <cache>/{STATE_FILE_NAME}; other commands use it as their "
            f"default bootstrap unless ${ENV_BOOTSTRAP} is set."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="broker_command", metavar="ACTION")

    up = sub.add_parser(
        "up",
        help="start the broker (no-op if already running); prints the bootstrap address",
        description=(
            "Start the local broker in the background and wait (up to --timeout) until clients can use it. "
            "Prints the bootstrap address (127.0.0.1:PORT) on stdout. If it already runs, only reports it."
        ),
    )
    up.add_argument(
        "--port",
        type=int,
        default=None,
        help=f"client port (default: the previous one, else {DEFAULT_PORT} if free, else a free port); "
        "the controller uses another free port",
    )
    up.add_argument(
        "--data-dir",
        default=None,
        metavar="DIR",
        help="where the broker keeps its config, logs and data, kept across restarts "
        "(default: the previous one, else <cache>/broker-data)",
    )
    up.add_argument(
        "--timeout",
        type=float,
        default=START_TIMEOUT_S,
        help="seconds to wait for the broker (default: %(default)s)",
    )
    up.set_defaults(func=_cmd_up)

    down = sub.add_parser(
        "down",
        help="stop the broker (data is kept)",
        description="Stop the recorded local broker: SIGTERM, then SIGKILL after --timeout seconds. Data is kept.",
    )
    down.add_argument(
        "--timeout",
        type=float,
        default=STOP_TIMEOUT_S,
        help="seconds to wait before SIGKILL (default: %(default)s)",
    )
    down.set_defaults(func=_cmd_down)

    status = sub.add_parser(
        "status",
        help="show whether the broker runs, its pid and ports (exit code 0 if running)",
        description="Show the recorded local broker: running or not, pid, ports, bootstrap. "
        "Exit code 0 if running, 1 if not.",
    )
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.set_defaults(func=_cmd_status)

    def _usage(_: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    parser.set_defaults(func=_usage)
