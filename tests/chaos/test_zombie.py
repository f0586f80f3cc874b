"""A zombie worker that commits late (KIP-447's unfenceable window) must not corrupt the new owner's state.

Sequence (deterministic, no sleeps racing the worker):

1. half the input is fed; the zombie (tests/chaos/zombie_worker.py: the real Worker, worker id ``w1``) processes
   it and SIGSTOPs itself right after ``send_offsets_to_transaction`` of its 3rd transaction, before
   ``commit_transaction``. Its transaction is open: outputs, changelog records and input offsets pending.
2. ``w0`` (a normal ``posrecon run``) starts; after the zombie's session times out the group gives ``w0``
   every partition and ``w0`` restores its state from the changelogs (``partitions assigned`` logged).
3. SIGCONT: the zombie's offsets were accepted under the old generation, so nothing fences its EndTxn -- the
   transaction commits (outputs, changelog and offsets all become visible) and the zombie exits.
4. the rest is fed, ``w0`` drains; the outputs must equal the replay oracle, exactly once.

For that, the state ``w0`` works with must include the zombie's committed batch whenever the offsets ``w0``
resumes from do: restore must happen after the committed offsets are stable (KIP-447: an offset fetch with
require_stable waits for the pending transaction), not before.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from chaoskit import (
    TxnProbe,
    all_topic_names,
    assigned_lines,
    chaos_input,
    check_exactly_once,
    frozen,
    group_members,
    rules_file,
    wait_until,
)

from livekit import WorkerProcess, feed_file, topic_env
from posrecon.config import Topics

pytestmark = [pytest.mark.chaos, pytest.mark.broker]
PARTITIONS = 4
HERE = Path(__file__).resolve().parent


class Zombie:
    def __init__(self, bootstrap: str, topics: Topics, app: str, worker_id: str, log_dir: Path, freeze_at: int) -> None:
        self.log_path = log_dir / f"zombie-{worker_id}.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115
        cmd = [sys.executable, str(HERE / "zombie_worker.py"), bootstrap, app, worker_id, str(freeze_at), "200"]
        rules = rules_file(app)  # the simulation's rules, as the spawn fixture gives w0: or live != replay
        if rules is not None:
            cmd.append(str(rules))
        self.proc = subprocess.Popen(
            cmd, stdout=self._log, stderr=subprocess.STDOUT, env={**os.environ, **topic_env(topics)}
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stopped(self) -> bool:
        try:
            state = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return False
        return state == "T"

    def finish(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self._log.close()


def test_zombie_commit_after_takeover_keeps_exactly_once(
    warm_bootstrap: str, make_topics: Callable[..., Topics], spawn: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    bootstrap = warm_bootstrap
    src, lines, topics, app, oracle = chaos_input(bootstrap, make_topics, tmp_path, 2000, 31, PARTITIONS)
    feed_file(bootstrap, topics, src, 0, lines // 2)
    probe = TxnProbe(bootstrap, all_topic_names(topics, app)[2:])

    zombie = Zombie(bootstrap, topics, app, "w1", tmp_path, freeze_at=3)
    try:
        wait_until(zombie.stopped, 90, "zombie to freeze after sending its offsets")
        frozen_at = time.monotonic()
        assert probe.open(), "the zombie's transaction should be open while it is frozen"
        _, before = group_members(bootstrap, app)
        assert len(before) == 1, before
        successor = spawn(bootstrap, topics, app, "w0", batch=200)

        def successor_owns_all() -> bool:
            state, members = group_members(bootstrap, app)
            return state == "STABLE" and len(members) == 1 and not set(members) & set(before)

        wait_until(successor_owns_all, 60, "the group to expel the zombie and assign everything to w0", 0.3)
        taken_over = time.monotonic() - frozen_at
        # a worker that restores as soon as it is assigned logs 'partitions assigned' within ~1 s; one that
        # first waits for stable committed offsets (the fix) cannot until the zombie's transaction is over:
        # give it 5 s, then wake the zombie (well inside its 30 s transaction timeout)
        with contextlib.suppress(TimeoutError):
            wait_until(lambda: any(row["inputs"] for row in assigned_lines(successor.log())), 5, "w0 restore")
        restored_before_wakeup = any(row["inputs"] for row in assigned_lines(successor.log()))
        assert time.monotonic() - frozen_at < 25, f"takeover took {taken_over:.1f} s: too close to the txn timeout"
        os.kill(zombie.proc.pid, signal.SIGCONT)
        # it commits and exits, or (if its transaction was aborted meanwhile) is fenced and carries on
        with contextlib.suppress(TimeoutError):
            wait_until(lambda: zombie.proc.poll() is not None or "fenced" in zombie.log(), 30, "zombie outcome")
        zlog = zombie.log()
        committed_late = "transaction committed after waking up" in zlog
        print(
            f"zombie exit {zombie.proc.poll()}; takeover after {taken_over:.1f} s; w0 restored before the "
            f"zombie woke: {restored_before_wakeup}; zombie committed late: {committed_late}"
        )
    finally:
        zombie.finish()

    with frozen([successor]):  # whole chunks only (see chaoskit.frozen)
        feed_file(bootstrap, topics, src, lines // 2)
    check = check_exactly_once(bootstrap, topics, app, oracle, alive=successor.alive)
    assert successor.stop() == 0, successor.log()[-3000:]
    print(f"zombie committed late: {committed_late}; verdict: {check.explain()}")
    assert check.ok, (
        f"zombie committed late: {committed_late}; w0 restored its state before the zombie's commit: "
        f"{restored_before_wakeup}; {check.explain()}\n--- zombie log tail ---\n{zlog[-1500:]}"
        f"\n--- w0 log ---\n{successor.log()[-1500:]}"
    )
