"""A real PostgreSQL for the ledger sink's tests (the Debian package's server binaries, no system cluster).

* ``postgres_server`` (session): ``initdb`` + ``pg_ctl start`` in a fresh temp dir, listening on a free loopback
  port only, trust auth, fsync off (the tests kill the sink, never the database); stopped and removed at the
  end. As root the binaries run as the ``postgres`` system user (initdb refuses root).
* ``pg_dsn``: a DSN of a new, empty database on that server, one per test.

The binaries are found by globbing ``/usr/lib/postgresql/*/bin`` (Debian keeps them off PATH; ``make tools``
installs the ``postgresql`` package). Without them the tests skip with the reason, unless
``POSRECON_REQUIRE_BROKER=1`` (CI: ``make test``) makes that a failure.
"""

from __future__ import annotations

import atexit
import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from posrecon.net import LOOPBACK, find_free_port


@dataclass(frozen=True)
class PostgresServer:
    bin_dir: Path
    data_dir: Path
    port: int
    run_as: tuple[str, ...]  # the command prefix that runs a binary as the server's owner

    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@{LOOPBACK}:{self.port}/{dbname}"

    def ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.run_as, str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )


def _unavailable(reason: str) -> None:
    if os.environ.get("POSRECON_REQUIRE_BROKER") == "1":
        pytest.fail(f"PostgreSQL unavailable: {reason}")
    pytest.skip(f"PostgreSQL unavailable: {reason}")


def find_bin_dir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` that has initdb, pg_ctl and postgres."""
    found = [Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")]
    found = [d for d in found if (d / "pg_ctl").exists() and (d / "postgres").exists()]
    return max(found, key=lambda d: int(d.parent.name) if d.parent.name.isdigit() else 0) if found else None


def _run_as_owner() -> tuple[str, ...] | None:
    if os.geteuid() != 0:
        return ()
    runuser = shutil.which("runuser")
    try:
        import pwd

        pwd.getpwnam("postgres")
    except KeyError:
        return None
    return (runuser, "-u", "postgres", "--") if runuser else None


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    bin_dir = find_bin_dir()
    if bin_dir is None:
        _unavailable("no /usr/lib/postgresql/*/bin/initdb (install the Debian package postgresql: make tools)")
    run_as = _run_as_owner()
    if run_as is None:
        _unavailable("running as root without a `postgres` user and runuser to drop to it")
    assert bin_dir is not None and run_as is not None
    # not under pytest's tmp dir: that is root's, mode 0700, and the server runs as another user
    root = Path(tempfile.mkdtemp(prefix="posrecon-pg-"))
    if run_as:
        shutil.chown(root, "postgres", "postgres")
    data = root / "data"
    init = subprocess.run(
        [*run_as, str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    if init.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"initdb failed: {init.stderr[-2000:]}")
    server = PostgresServer(bin_dir, data, find_free_port(), run_as)
    options = f"-p {server.port} -c listen_addresses={LOOPBACK} -k {root} -c fsync=off -c full_page_writes=off"
    started = server.ctl("-l", str(root / "server.log"), "-o", options, "-w", "-t", "60", "start")
    if started.returncode != 0:
        log = (root / "server.log").read_text() if (root / "server.log").exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"pg_ctl start failed: {started.stderr[-1000:]} {log[-2000:]}")
    atexit.register(server.ctl, "-m", "immediate", "stop")  # if the session dies without its teardown
    try:
        yield server
    finally:
        server.ctl("-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_dsn(postgres_server: PostgresServer) -> str:
    """A new empty database for one test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server.dsn(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return postgres_server.dsn(name)
