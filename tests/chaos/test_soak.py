"""The soak profile (``make soak``, POSRECON_SOAK=1): everything at once, for a long time.

>= 500k input events (simulated, 4 partitions), all produced first, worked through by two workers (w0, w1)
on a dedicated broker while a schedule of faults runs, spread evenly over the backlog: SIGKILLs of either
worker (>= 5), clean leave/rejoin rebalances, and a broker crash+restart. A worker that stops making progress for 60 s is counted as hung, killed and replaced
(as a supervisor would), so exactly-once is still checked end to end. At the end: committed offsets at the
end of the input, no open transaction, outputs == replay oracle with no duplicate and nothing lost.

Figures (events, kills, rebalances, broker restarts, duplicates, lost, recovery seconds ...) are printed and
written to tests/chaos/last_soak.json; ``recovery_seconds`` there is the 1M-open-order restart of
test_recovery.py when it ran in the same session (tests/chaos/last_recovery.json), else the slowest
kill-to-progress time seen here.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import pytest
from chaoskit import Figures, chaos_input, chaos_seed, check_exactly_once, input_lag, wait_until

from conftest import warm
from livekit import WorkerProcess, feed_file
from posrecon.config import Topics
from posrecon.localbroker import LocalBroker

pytestmark = [pytest.mark.chaos, pytest.mark.soak, pytest.mark.broker]
PARTITIONS = 4
HERE = Path(__file__).resolve().parent
SESSION_START = time.time()


def test_soak(
    own_broker: LocalBroker, make_topics: Callable[..., Topics], spawn: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    seed, rng = chaos_seed()
    orders = int(os.environ.get("POSRECON_SOAK_ORDERS", "180000"))
    print(f"soak: {orders} orders")
    bootstrap = own_broker.bootstrap
    warm(bootstrap)
    started = time.monotonic()
    src, lines, topics, app, oracle = chaos_input(
        bootstrap, make_topics, tmp_path, orders, seed % 1000 + 51, PARTITIONS
    )
    assert lines >= 500_000 or orders < 180_000, lines
    figures = Figures(events=lines)
    # all input is on the broker before the workers start: the faults then hit a large backlog, and the
    # comparison with replay measures exactly-once only (not the merge timing of test_burst_after_stall.py)
    feed_file(bootstrap, topics, src)
    workers = {wid: spawn(bootstrap, topics, app, wid) for wid in ("w0", "w1")}
    slowest_recovery = 0.0

    def lag() -> int:
        return input_lag(bootstrap, topics, app)

    def progressing(within: float, what: str) -> float:
        """Seconds until the committed input offsets move; replaces hung workers after ``within`` s."""
        before = lag()
        if before == 0:
            return 0.0
        t0 = time.monotonic()
        try:
            wait_until(lambda: lag() < before, within, what, 0.5)
        except TimeoutError:
            figures.notes.append(f"{what}: no progress in {within:.0f} s at lag {before}: workers replaced")
            for wid, worker in list(workers.items()):
                worker.kill()
                workers[wid] = spawn(bootstrap, topics, app, wid)
            wait_until(lambda: lag() < before, 120, f"{what} (after replacing the workers)", 0.5)
        return time.monotonic() - t0

    schedule = [
        "kill:w0",
        "rebalance:w1",
        "kill:w1",
        "kill:w0",
        "broker",
        "kill:w1",
        "rebalance:w0",
        "kill:w0",
        "kill:w1",
        "rebalance:w1",
    ]
    for i, step in enumerate(schedule):
        goal = int(lines * (1 - (i + 1) / (len(schedule) + 1)))  # evenly through the backlog
        wait_until(lambda g=goal: lag() < g, 600, f"step {i}: lag below {goal}", 0.5)
        time.sleep(rng.uniform(0, 2))
        action, _, wid = step.partition(":")
        if action == "kill":
            workers[wid].kill()
            figures.kills += 1
            workers[wid] = spawn(bootstrap, topics, app, wid)
            slowest_recovery = max(slowest_recovery, progressing(60, f"step {i}: after kill -9 of {wid}"))
        elif action == "rebalance":
            code = workers[wid].stop(60)
            assert code == 0, workers[wid].log()[-3000:]
            figures.rebalances += 1
            time.sleep(rng.uniform(1, 4))
            workers[wid] = spawn(bootstrap, topics, app, wid)
            figures.rebalances += 1
            progressing(60, f"step {i}: after {wid} left and rejoined")
        else:
            own_broker.kill()
            time.sleep(rng.uniform(1, 3))
            own_broker.start()
            figures.broker_restarts += 1
            warm(bootstrap)
            progressing(60, f"step {i}: after the broker crash/restart")

    check = check_exactly_once(
        bootstrap,
        topics,
        app,
        oracle,
        drain_timeout=1800,
        alive=lambda: any(w.alive() for w in workers.values()),
        batches_exact=False,
    )  # several workers at once: livekit.verify
    for wid, worker in workers.items():
        assert worker.stop(60) == 0, f"{wid}:\n{worker.log()[-3000:]}"
    figures.count(check)
    figures.wall_seconds = round(time.monotonic() - started, 1)
    figures.recovery_seconds = round(slowest_recovery, 2)
    summary = asdict(figures)
    summary["recovery_seconds_meaning"] = "slowest kill -9 -> committed progress in this run"
    recovery_file = HERE / "last_recovery.json"
    if recovery_file.is_file() and recovery_file.stat().st_mtime >= SESSION_START:
        rec = json.loads(recovery_file.read_text())
        summary.update(
            recovery_seconds=rec["recovery_seconds"],
            restore_seconds=rec["restore_seconds"],
            open_orders_restored=rec["open_orders_restored"],
            recovery_seconds_meaning="restart after kill -9 with 1M open orders -> first decisions readable",
        )
        summary["slowest_kill_recovery_seconds"] = round(slowest_recovery, 2)
    summary["seed"] = seed
    summary["verdict"] = check.explain()
    (HERE / "last_soak.json").write_text(json.dumps(summary, indent=2) + "\n")
    print("soak figures: " + json.dumps(summary, sort_keys=True))
    assert check.ok, f"seed {seed}: {check.explain()}"
    assert figures.kills >= 5 and figures.rebalances >= 2 and figures.broker_restarts >= 1
