"""kill -9 of the worker at random points: exactly-once outputs, equal to the replay oracle.

~3000 simulated orders (~8.6k input records) on 4 co-partitioned partitions. A worker with small batches
(many transactions) is SIGKILLed at random progress points, three times as ``w0`` (the successor, same
transactional.id, fences the dead one and aborts its open transaction at once), then once as ``w9``: a new
transactional.id cannot fence ``w0``'s last transaction, so ``w9`` waits until the broker aborts it after
``transaction.timeout.ms`` (KIP-447: the committed offsets it reads stay unstable until then). The last
``w9`` drains the rest. The input is produced in stages while no worker is alive (a stage boundary is no
feed-while-running race, which test_feed_race.py is about): each incarnation is killed inside its own stage,
after it committed work, and the last ``TAIL`` share is produced only once the last kill has landed. Then: no
duplicate (order_id, revision), revisions contiguous, every alert_id once, outputs == replay, committed offsets
at the end of the input, no transaction open on any topic.

Seed: ``POSRECON_CHAOS_SEED`` (printed; default random).
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
    assigned_lines,
    chaos_input,
    chaos_seed,
    check_exactly_once,
    input_lag,
    kill_inside_transaction,
    wait_until,
)

from livekit import WorkerProcess
from posrecon.config import Topics
from posrecon.kafka.feeder import Feeder

pytestmark = [pytest.mark.chaos, pytest.mark.broker]
PARTITIONS = 4
TAIL = 0.06  # below the last kill band


def test_kill9_at_random_points_is_exactly_once(
    warm_bootstrap: str, make_topics: Callable[..., Topics], spawn: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    seed, rng = chaos_seed()
    bootstrap = warm_bootstrap
    src, _, topics, app, oracle = chaos_input(
        bootstrap, make_topics, tmp_path, 3000, seed % 1000 + 1, PARTITIONS, batches=True
    )
    lines = [line for line in src.read_text().splitlines() if line.strip()]
    total = len(lines)
    feeder = Feeder(bootstrap, topics)
    figures = Figures(events=total)
    probe = TxnProbe(bootstrap, all_topic_names(topics, app)[2:])  # outputs and internal topics
    started = time.monotonic()

    # the input is produced in stages, each while no worker is alive (no feed-while-running race, see
    # test_feed_race.py). Incarnation i is killed once the group's commits reach 30-95 % of stage i's new input:
    # past everything stage i-1 held, so every incarnation was assigned, restored and committed work before its
    # kill (a fast one finishing what it was given ran into the kill of a successor not yet assigned, twice in
    # CI), and the held-back rest keeps the lag above 0 (the last TAIL share goes in only after the last kill)
    stages = [0.0, 0.30, 0.55, 0.75, 1 - TAIL]
    plan = ["w0", "w0", "w0", "w9"]
    incarnations: list[WorkerProcess] = []
    fed = 0
    last_lag = [total]
    for i, worker_id in enumerate(plan):
        previous, stage = stages[i], stages[i + 1]
        upto = int(total * stage)
        feeder.feed(lines[fed:upto])
        fed = upto
        target = total - int(total * (previous + (stage - previous) * rng.uniform(0.30, 0.95)))
        worker = spawn(bootstrap, topics, app, worker_id, batch=rng.choice([100, 200, 300]))
        incarnations.append(worker)
        born = time.monotonic()

        def progressed(w: WorkerProcess = worker, t: int = target, held: int = total - fed) -> bool:
            assert w.alive(), f"worker died on its own (seed {seed}):\n{w.log()[-3000:]}"
            last_lag[0] = input_lag(bootstrap, topics, app) + held  # fed - committed, plus held back
            return last_lag[0] <= t

        wait_until(progressed, 150, f"{worker_id} to get below {target} records of lag (seed {seed})")
        time.sleep(rng.uniform(0, 0.25))
        kill_inside_transaction(worker, probe)  # the hard case: outputs + changelog + offsets half written
        figures.kills += 1
        pending = probe.open()  # not the group's offsets: those block while a transaction is pending
        figures.kills_with_open_transaction += bool(pending)
        figures.notes.append(
            f"{worker_id} pid {worker.pid}: lived {time.monotonic() - born:.1f} s, killed at lag "
            f"<= {last_lag[0]}/{total}, leaving a transaction open on {len(pending)} partitions"
        )
        assert last_lag[0] > 0, "the input was fully processed before the kill: the kill proved nothing"

    feeder.feed(lines[fed:])  # no worker alive: as pre-produced input to the last one
    last = spawn(bootstrap, topics, app, "w9")
    check = check_exactly_once(bootstrap, topics, app, oracle, drain_timeout=180, alive=last.alive)
    assert last.stop() == 0, last.log()[-3000:]
    figures.count(check)
    figures.wall_seconds = round(time.monotonic() - started, 1)
    print(figures.summary())
    assert check.ok, f"seed {seed}: {check.explain()}\n" + "\n".join(figures.notes)
    assert figures.kills >= 4
    # every successor restored state from the changelogs rather than starting empty
    for worker in [*incarnations[1:], last]:
        restored = sum(row.get("orders_restored", 0) for row in assigned_lines(worker.log()))
        assert restored > 0, f"{worker.log_path} restored no orders:\n{worker.log()[-2000:]}"
