"""First start of workers whose internal topics do not exist yet: none may crash.

The worker creates its changelog and card-sightings topics itself (``create_internal_topics``) and, in the
same second, restores from them in the rebalance callback. ``create_topics`` returns before the broker
serves the new partitions, so the restore's first ``get_watermark_offsets`` can fail with a transient
NOT_LEADER_FOR_PARTITION / UNKNOWN_TOPIC_OR_PART; the exception escapes the rebalance callback and the
process exits with a traceback. Several workers of different apps are started at once (as after a fresh
deploy), which widens the window on a loaded machine; every one must come up and drain its input.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from chaoskit import create_topics_kept, drain, simulate

from conftest import unique_topics
from livekit import WorkerProcess, feed_file

pytestmark = [pytest.mark.chaos, pytest.mark.broker]
PARTITIONS = 4
APPS = 6


def test_fresh_workers_survive_internal_topic_creation(
    warm_bootstrap: str, spawn: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    bootstrap = warm_bootstrap
    src = simulate(tmp_path / "sim", 200, seed=8, partitions=PARTITIONS)
    inputs = create_topics_kept(bootstrap, unique_topics(), PARTITIONS)
    feed_file(bootstrap, inputs, src)
    runs = []
    for i in range(APPS):
        out = create_topics_kept(bootstrap, unique_topics(), PARTITIONS)
        topics = out.__class__(
            terminal=inputs.terminal,
            settlement=inputs.settlement,
            reconciled=out.reconciled,
            alerts=out.alerts,
            deadletter=out.deadletter,
        )
        app = f"app-fresh-{out.reconciled.rsplit('.', 1)[-1]}-{i}"  # internal topics not created yet
        runs.append((topics, app, spawn(bootstrap, topics, app, f"w{i}")))
    crashed = {}
    for topics, app, worker in runs:
        try:
            drain(bootstrap, topics, app, timeout=90, alive=worker.alive)
        except AssertionError:
            crashed[app] = worker.log()[-1200:]
    for _, _, worker in runs:
        if worker.alive():
            worker.stop()
    assert not crashed, f"{len(crashed)}/{APPS} fresh workers crashed at start:\n" + "\n---\n".join(crashed.values())
