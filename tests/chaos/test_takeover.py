"""kill -9 in a two-worker group with a backlog: the survivor takes over the victim's tasks mid-stream.

Unlike test_kill9 (one worker, the successor has the same transactional.id and fences its predecessor at once),
here the partitions of a killed worker move to the *other* live worker, whose producer cannot fence the dead
one. The victim may die after its EndTxn reached the coordinator (the commit completes without it) or with
offsets already sent; the survivor must restore exactly the state that matches the offsets it resumes from.
Before the restore waited for open transactions on the changelog, this produced duplicate revisions and
thousands of wrong decisions (stale state: approvals missing, so settlements turned into orphans).

All input is produced before the workers start, so the comparison with replay is exact.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from chaoskit import (
    Figures,
    TxnProbe,
    all_topic_names,
    chaos_input,
    chaos_seed,
    check_exactly_once,
    input_lag,
    kill_inside_transaction,
    stop_cleanly,
    wait_until,
)

from livekit import WorkerProcess, feed_file
from posrecon.config import Topics

pytestmark = [pytest.mark.chaos, pytest.mark.broker]
PARTITIONS = 4


def test_kill9_with_takeover_by_the_other_worker(
    warm_bootstrap: str, make_topics: Callable[..., Topics], spawn: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    seed, rng = chaos_seed()
    bootstrap = warm_bootstrap
    src, _, topics, app, oracle = chaos_input(bootstrap, make_topics, tmp_path, 9_000, seed % 1000 + 61, PARTITIONS)
    total = feed_file(bootstrap, topics, src)
    probe = TxnProbe(bootstrap, all_topic_names(topics, app)[2:])
    figures = Figures(events=total)
    workers = {wid: spawn(bootstrap, topics, app, wid) for wid in ("w0", "w1")}  # default batch: long commits
    # one kill aimed at an open transaction, one at a random moment (often inside a large commit)
    for share, victim, aimed in ((0.75, "w0", True), (0.4, "w1", False)):
        goal = int(total * rng.uniform(share - 0.05, share + 0.05))
        wait_until(lambda g=goal: input_lag(bootstrap, topics, app) < g, 180, f"lag below {goal}")
        if aimed:
            figures.kills_with_open_transaction += kill_inside_transaction(workers[victim], probe)
        else:
            time.sleep(rng.uniform(0, 1.0))
            workers[victim].kill()
        figures.kills += 1
        workers[victim] = spawn(bootstrap, topics, app, victim)
    check = check_exactly_once(
        bootstrap,
        topics,
        app,
        oracle,
        drain_timeout=300,
        alive=lambda: any(w.alive() for w in workers.values()),
        batches_exact=False,
    )  # several workers at once: livekit.verify
    stop_cleanly(workers)
    figures.count(check)
    print(figures.summary())
    assert check.ok, f"seed {seed}: {check.explain()}"
