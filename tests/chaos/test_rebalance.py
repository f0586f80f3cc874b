"""Rebalances under traffic: two workers (w0, w1) in one group; w1 (and once w0) leaves with SIGTERM and comes
back while the input is fed in chunks. Partitions and their state move between the two processes
(eager range assignment: every rebalance revokes everything and restores from the changelogs).
Outputs must still be exactly once and equal to the replay oracle. Each chunk is produced while the workers
are frozen (SIGSTOP/SIGCONT for about a second), so the comparison with replay is not disturbed by the
feed-ordering race that test_feed_race.py is about. The input carries settlement batches: pos.batch-reconciled
is checked too (each (batch_id, revision) once, contiguous, each batch's last record equal to the oracle's).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from chaoskit import (
    Figures,
    assigned_lines,
    chaos_input,
    chaos_seed,
    check_exactly_once,
    frozen,
    input_lag,
    stop_cleanly,
    wait_until,
)

from livekit import WorkerProcess, feed_file
from posrecon.config import Topics

pytestmark = [pytest.mark.chaos, pytest.mark.broker]
PARTITIONS = 4


def test_rebalances_under_traffic_are_exactly_once(
    warm_bootstrap: str, make_topics: Callable[..., Topics], spawn: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    seed, rng = chaos_seed()
    bootstrap = warm_bootstrap
    src, lines, topics, app, oracle = chaos_input(
        bootstrap, make_topics, tmp_path, 2500, seed % 1000 + 11, PARTITIONS, batches=True
    )
    figures = Figures(events=lines)
    started = time.monotonic()

    workers = {wid: spawn(bootstrap, topics, app, wid, batch=200) for wid in ("w0", "w1")}
    every: list[WorkerProcess] = list(workers.values())
    chunks = 8
    bounds = [lines * i // chunks for i in range(chunks + 1)]
    fed = 0
    # chunk 2k is fed; once it is partly processed one worker leaves (SIGTERM: LeaveGroup, immediate
    # rebalance), chunk 2k+1 is fed to the one left, then the leaver rejoins (another rebalance)
    for k, leaver in enumerate(["w1", "w1", "w0", "w1"]):
        with frozen(workers.values()):  # whole chunks only (see chaoskit.frozen)
            fed += feed_file(bootstrap, topics, src, bounds[2 * k], bounds[2 * k + 1])
        goal = (bounds[2 * k + 1] - bounds[2 * k]) * rng.uniform(0.2, 0.8)
        wait_until(lambda g=goal: input_lag(bootstrap, topics, app) < g, 120, f"progress on chunk {2 * k}")
        code = workers[leaver].stop()
        assert code == 0, f"{leaver} did not stop cleanly ({code}):\n{workers[leaver].log()[-3000:]}"
        with frozen(workers.values()):
            fed += feed_file(bootstrap, topics, src, bounds[2 * k + 1], bounds[2 * k + 2])
        starts = workers[leaver].log().count('"worker started"')  # one log file per worker id, appended
        workers[leaver] = spawn(bootstrap, topics, app, leaver, batch=200)
        every.append(workers[leaver])
        # its SIGTERM handler is in place once it says so: a stop during its imports (the next leaver may be this
        # one, and since session 21 a chunk can be half done by then) ended it by the signal, not cleanly
        wait_until(lambda n=starts, w=workers[leaver]: w.log().count('"worker started"') > n, 60, f"{leaver} started")
        figures.rebalances += 2
    assert fed == lines
    check = check_exactly_once(
        bootstrap, topics, app, oracle, alive=lambda: any(w.alive() for w in workers.values()), batches_exact=False
    )  # two workers at once (see livekit.verify)
    stop_cleanly(workers)
    figures.count(check)
    figures.wall_seconds = round(time.monotonic() - started, 1)
    logs = {w.log_path: w.log() for w in every}  # one log file per worker id, appended by each incarnation
    assignments = {path.name: len(assigned_lines(text)) for path, text in logs.items()}
    figures.notes.append(f"'partitions assigned' per worker id: {assignments}")
    print(figures.summary())
    assert check.ok, f"seed {seed}: {check.explain()}"
    # both workers really owned partitions at some point, and ownership moved several times
    owners = {path.name for path, text in logs.items() if any(row["inputs"] for row in assigned_lines(text))}
    assert owners == {"worker-w0.log", "worker-w1.log"}, owners
    assert sum(assignments.values()) >= 6, assignments  # rebalances close together may coalesce
