"""``posrecon run`` stopped during its start-up, and started with no broker at its address.

A worker is stopped (SIGTERM: a rolling update, a test, Ctrl-C) at any moment, also in the second its imports
take before it reaches Kafka. Stopped then, it used to die by the signal's default action (exit -15: a chaos
test's restarted worker, seed 131008); started against an address where no broker listens it ended on a
traceback. The real CLI in a subprocess, against a loopback port nothing listens on (no broker needed).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from posrecon.net import find_free_port

_SIGTERM_BIT = 1 << (signal.SIGTERM - 1)  # in /proc/<pid>/status SigCgt: a handler is installed


@contextmanager
def _worker_without_broker() -> Iterator[subprocess.Popen[str]]:
    """``posrecon run`` pointed at a free loopback port (nothing listens there); killed if still running after."""
    bootstrap = f"127.0.0.1:{find_free_port()}"
    cmd = [sys.executable, "-m", "posrecon.cli", "run", "--bootstrap", bootstrap, "--app-id", "start-stop"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()


def _sigterm_caught(pid: int) -> bool:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) & _SIGTERM_BIT)
    return False


def test_sigterm_during_start_up_ends_the_worker_cleanly_before_it_reaches_kafka() -> None:
    with _worker_without_broker() as proc:
        deadline = time.monotonic() + 60
        while not _sigterm_caught(proc.pid):  # the first handler the process installs: send the stop right then
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0]
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "worker stopped before it started" in out
    assert "Traceback" not in out
    # stopped before the first client: no connection to the (absent) broker was even tried
    assert "Connect to" not in out and "worker started" not in out


def test_no_broker_at_the_address_is_a_clear_error_not_a_traceback() -> None:
    with _worker_without_broker() as proc:
        out, _ = proc.communicate(timeout=90)
    assert proc.returncode == 2, out
    assert "posrecon run: cannot read topic metadata from Kafka" in out
    assert "Traceback" not in out
