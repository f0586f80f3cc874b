"""Harness for broker-backed tests: worker processes (started and killed by pid), feeding, and the
verifier modelled on Kafka's EOS system tests (read_committed, no duplicates, no loss, per-key order)
plus Flink's per-key sequence check (revisions contiguous per order)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from posrecon.app.batch_stage import batch_topics
from posrecon.app.internal_topics import internal_topics
from posrecon.config import RuleConfig, Topics, load_rules
from posrecon.kafka.feeder import Feeder
from posrecon.kafka.outputs import Outputs, read_outputs
from posrecon.kafka.progress import wait_drained
from posrecon.net import find_free_port
from posrecon.replay import run_replay
from scenario import HOUR, T0, note, term

# every Alert field but detected_at (wall clock); contract v2 adds status, resolves_alert_id and batch_id
ALERT_COMPARED = (
    "alert_id",
    "kind",
    "severity",
    "order_id",
    "merchant_id",
    "terminal_id",
    "reason",
    "event_time",
    "related_ids",
    "status",
    "resolves_alert_id",
    "batch_id",
)


def topic_env(topics: Topics) -> dict[str, str]:
    return {
        "POSRECON_TOPIC_TERMINAL": topics.terminal,
        "POSRECON_TOPIC_SETTLEMENT": topics.settlement,
        "POSRECON_TOPIC_RECONCILED": topics.reconciled,
        "POSRECON_TOPIC_ALERTS": topics.alerts,
        "POSRECON_TOPIC_DEADLETTER": topics.deadletter,
        "POSRECON_TOPIC_EXCEPTION_ACTIONS": topics.exception_actions,
        "POSRECON_TOPIC_EXCEPTIONS": topics.exceptions,
        "POSRECON_TOPIC_BATCHES": topics.batches,
        "POSRECON_TOPIC_BATCH_RECONCILED": topics.batch_reconciled,
    }


class WorkerProcess:
    """A `posrecon run` OS process; killed by its own pid. ``config``: the rules file (e.g. the simulation's
    posrecon.toml with its merchant pricing), the same one the replay oracle must use."""

    def __init__(
        self,
        bootstrap: str,
        topics: Topics,
        app_id: str,
        worker_id: str,
        log_dir: Path,
        extra: list[str] | None = None,
        config: Path | None = None,
    ) -> None:
        self.log_path = log_dir / f"worker-{worker_id}.log"
        env = {**os.environ, **topic_env(topics)}  # topic names: the environment wins over the config file
        cmd = [
            sys.executable,
            "-m",
            "posrecon.cli",
            "run",
            "--bootstrap",
            bootstrap,
            "--app-id",
            app_id,
            "--worker-id",
            worker_id,
            *(extra or ["--no-wall-clock-advance"]),
        ]
        if config is not None:
            cmd += ["--config", str(config)]
        self._log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        self.proc.wait(10)
        self._log.close()

    def stop(self, timeout: float = 30) -> int:
        if self.alive():
            os.kill(self.pid, signal.SIGTERM)
        code = self.proc.wait(timeout)
        self._log.close()
        return code

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def feed_file(bootstrap: str, topics: Topics, path: Path, start: int = 0, stop: int | None = None) -> int:
    """Lines ``start:stop`` of ``path``, as one feed of the whole file would produce them: a line without an
    ``ingest_time`` takes the previous line's, also across the ``start`` boundary (a fresh Feeder stamped such a
    first line with the wall clock, a timestamp decades ahead of the simulated ones that held back its
    partition's later records while the other side went on: test_rebalance with batches, seed 615720)."""
    every = path.read_text().splitlines()
    feeder = Feeder(bootstrap, topics)
    feeder.last_ts = last_ingest_time(every[:start])
    return feeder.feed(every[start:stop])


def last_ingest_time(lines: list[str]) -> int | None:
    """The ingest_time the Feeder would carry after ``lines`` (the last line that has one)."""
    for line in reversed(lines):
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if type(doc) is dict and type(doc.get("ingest_time")) is int:
            return int(doc["ingest_time"])
    return None


@dataclass
class Oracle:
    reconciled: list[dict[str, Any]]
    alerts: list[dict[str, Any]]
    deadletters: Counter[str]
    batch_reconciled: list[dict[str, Any]] = field(default_factory=list)


def replay_oracle(
    path: Path, out: Path, partitions: int, rules: RuleConfig | None = None, config: Path | None = None
) -> Oracle:
    """``replay --partitions N`` of ``path``: with ``rules``, else the rules of ``config`` (a TOML file, as the
    worker's ``--config``), else the defaults."""
    if rules is None:
        rules = load_rules(config) if config is not None else RuleConfig()
    run_replay(path, out, rules, None, partitions, progress=False)
    rec = [json.loads(line) for line in (out / "reconciled.jsonl").read_text().splitlines()]
    alerts = [json.loads(line) for line in (out / "alerts.jsonl").read_text().splitlines()]
    dead = Counter(json.loads(line)["reason"] for line in (out / "deadletter.jsonl").read_text().splitlines())
    batches_path = out / "batch-reconciled.jsonl"
    batches = [json.loads(line) for line in batches_path.read_text().splitlines()] if batches_path.exists() else []
    return Oracle(rec, alerts, dead, batches)


@dataclass
class Verdict:
    duplicates: int
    missing: int
    unexpected: int
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


Revisions = tuple[Counter[tuple[str, int]], dict[str, list[int]], dict[tuple[str, int], dict[str, Any]], list[str]]


def revisions(records: Iterable[Any], key_field: str, topic: str) -> Revisions:
    """Of a revisioned output topic's records: how often each (key, revision) came, each key's revisions in
    order, the latest record per (key, revision), and the records not keyed by their ``key_field``."""
    problems: list[str] = []
    seen: Counter[tuple[str, int]] = Counter()
    per_key: dict[str, list[int]] = defaultdict(list)
    live: dict[tuple[str, int], dict[str, Any]] = {}
    for rec in records:
        v = rec.value
        if rec.key != v[key_field].encode():
            problems.append(f"{topic} key {rec.key!r} is not its {key_field} {v[key_field]}")
        seen[(v[key_field], v["revision"])] += 1
        per_key[v[key_field]].append(v["revision"])
        live[(v[key_field], v["revision"])] = v
    return seen, per_key, live, problems


def verify(outputs: Outputs, oracle: Oracle, batches_exact: bool = True) -> Verdict:
    """Exactly-once check of live outputs against the replay oracle. ``batches_exact=False`` (several workers at
    once): batch records and alerts are still exactly once and contiguous, but only each batch's last record
    is compared with the oracle's (a notice near its batch's deadline may land before or after the decision
    when workers progress at different event times: docs/architecture.md, settlement batches)."""
    # reconciled: every (order_id, revision) exactly once, contiguous, in order per key, equal to the oracle
    seen, per_order, live_rows, problems = revisions(outputs.reconciled, "order_id", "reconciled")
    duplicates = sum(n - 1 for n in seen.values() if n > 1)
    for order, revs in per_order.items():
        if revs != list(range(1, len(revs) + 1)):
            problems.append(f"order {order}: revisions {revs} not contiguous/in order")
            break
    expected_rows = {(r["order_id"], r["revision"]): r for r in oracle.reconciled}
    missing = len(set(expected_rows) - set(live_rows))
    unexpected = len(set(live_rows) - set(expected_rows))
    differing = [k for k in set(expected_rows) & set(live_rows) if expected_rows[k] != live_rows[k]]
    # alerts: every alert_id exactly once, equal to the oracle except detected_at (wall clock)
    alert_ids = Counter(a.value["alert_id"] for a in outputs.alerts)
    duplicates += sum(n - 1 for n in alert_ids.values() if n > 1)

    def compared(alert: dict[str, Any]) -> bool:
        return batches_exact or alert.get("batch_id") is None

    live_alerts = {
        a.value["alert_id"]: tuple(a.value[f] for f in ALERT_COMPARED) for a in outputs.alerts if compared(a.value)
    }
    expected_alerts = {a["alert_id"]: tuple(a[f] for f in ALERT_COMPARED) for a in oracle.alerts if compared(a)}
    missing += len(set(expected_alerts) - set(live_alerts))
    unexpected += len(set(live_alerts) - set(expected_alerts))
    differing += [k for k in set(expected_alerts) & set(live_alerts) if expected_alerts[k] != live_alerts[k]]  # type: ignore[misc]
    problems += verify_batches(outputs, oracle, batches_exact)
    problems += verify_resolutions(outputs)
    dead = Counter(d.headers.get("reason", "?") for d in outputs.deadletters)
    if dead != oracle.deadletters:
        problems.append(f"dead letters {dict(dead)} != oracle {dict(oracle.deadletters)}")
        problems += deadletters_twice(outputs)
    if duplicates:
        problems.append(f"{duplicates} duplicated outputs")
    if missing:
        problems.append(f"{missing} outputs missing (oracle has them)")
    if unexpected:
        problems.append(f"{unexpected} outputs not in the oracle")
    if differing:
        problems.append(f"{len(differing)} outputs differ from the oracle, e.g. {differing[:3]}")
    return Verdict(duplicates, missing, unexpected, problems)


def deadletters_twice(outputs: Outputs) -> list[str]:
    """The input records dead-lettered more than once, with where each copy landed (a duplicate's source
    position and its dead-letter offsets tell which transactions held it: defect 12)."""
    copies: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for d in outputs.deadletters:
        h = d.headers
        source = (h.get("source.topic", "?"), h.get("source.partition", "?"), h.get("source.offset", "?"))
        copies[source].append(f"{d.partition}@{d.offset}")
    twice = {f"{t}[{p}]@{o}": at for (t, p, o), at in copies.items() if len(at) > 1}
    return [f"dead-lettered more than once (source: dead-letter partition@offset): {twice}"] if twice else []


def verify_resolutions(outputs: Outputs) -> list[str]:
    """Contract v2: each RESOLVED record closes an OPEN alert of its kind that is among the outputs, and no alert
    is resolved twice (the content of both records is compared with the oracle's with the other alerts)."""
    by_id = {a.value["alert_id"]: a.value for a in outputs.alerts}
    closed: Counter[str] = Counter()
    problems: list[str] = []
    for alert in by_id.values():
        if alert.get("status") != "RESOLVED":
            continue
        opened = by_id.get(alert.get("resolves_alert_id") or "")
        closed[alert.get("resolves_alert_id") or ""] += 1
        if opened is None or opened.get("status") != "OPEN" or opened["kind"] != alert["kind"]:
            problems.append(f"RESOLVED {alert['alert_id']} closes no OPEN {alert['kind']} alert among the outputs")
            break
    twice = [k for k, n in closed.items() if n > 1]
    if twice:
        problems.append(f"{len(twice)} alerts resolved more than once, e.g. {twice[:3]}")
    return problems


def verify_batches(outputs: Outputs, oracle: Oracle, exact: bool = True) -> list[str]:
    """pos.batch-reconciled: each (batch_id, revision) exactly once, keyed by batch_id, revisions contiguous
    and in order per batch, equal to the oracle; batch alerts keyed by batch_id (their content is checked with
    the other alerts)."""
    seen, per_batch, live, problems = revisions(outputs.batch_reconciled, "batch_id", "batch-reconciled")
    duplicated = [k for k, n in seen.items() if n > 1]
    if duplicated:
        problems.append(f"{len(duplicated)} batch revisions more than once, e.g. {duplicated[:3]}")
    broken = [b for b, revs in per_batch.items() if revs != list(range(1, len(revs) + 1))]
    if broken:
        problems.append(f"batch revisions not contiguous/in order: {[(b, per_batch[b]) for b in broken[:3]]}")
    expected = {(r["batch_id"], r["revision"]): r for r in oracle.batch_reconciled}
    if not exact:  # each batch's last record, but its revision
        expected = {(r["batch_id"], 0): {**r, "revision": 0} for r in oracle.batch_reconciled}
        live = {(b, 0): {**live[(b, revs[-1])], "revision": 0} for b, revs in per_batch.items()}
    missing, unexpected = sorted(set(expected) - set(live)), sorted(set(live) - set(expected))
    differing = sorted(k for k in set(expected) & set(live) if expected[k] != live[k])
    for what, keys in (
        ("missing (oracle has them)", missing),
        ("not in the oracle", unexpected),
        ("differing from the oracle", differing),
    ):
        if keys:
            problems.append(f"{len(keys)} batch records {what}, e.g. {keys[:3]}")
    for a in outputs.alerts:
        batch_id = a.value.get("batch_id")
        if batch_id is not None and a.key != batch_id.encode():
            problems.append(f"batch alert {a.value['alert_id']} keyed {a.key!r}, not by its batch_id")
            break
    return problems


def start_with_part_fed(
    bootstrap: str, topics: Topics, tmp_path: Path, orders: int, seed: int, divisor: int
) -> tuple[Path, int, str, WorkerProcess]:
    """A mixed input of ``orders`` orders, its first 1/``divisor`` fed, and worker w0 started on it.
    Returns (input file, its line count, app id, worker)."""
    src = mixed_input(tmp_path / "input.jsonl", orders, seed=seed)
    total = len(src.read_text().splitlines())
    app = app_of(topics)
    feed_file(bootstrap, topics, src, 0, total // divisor)
    return src, total, app, WorkerProcess(bootstrap, topics, app, "w0", tmp_path)


def read_all(bootstrap: str, topics: Topics) -> Outputs:
    return read_outputs(bootstrap, topics)


def mixed_input(path: Path, orders: int, seed: int) -> Path:
    """A seeded mix touching every rule, sorted by ingest time (as producers would send it)."""
    rng = random.Random(seed)
    lines: list[dict[str, Any]] = []
    for i in range(orders):
        o, t = f"ord-{seed}-{i}", T0 + i * 20_000
        card = f"tok_{rng.randrange(max(2, orders // 20))}"
        amount = rng.choice([1000, 2500, 999_00])
        kind = rng.choice(
            ["normal"] * 6
            + [
                "late",
                "missing",
                "mismatch",
                "orphan",
                "declined_settled",
                "failed",
                "reversed",
                "dup_settle",
                "dup_charge",
                "expired",
                "invalid",
                "redeliver",
            ]
        )
        c = term(o, "ORDER_CREATED", t, card=card, amount=amount)
        a = term(o, "AUTH_APPROVED", t + 3_000, card=card, amount=amount)
        s = note(o, "SETTLED", t + rng.randrange(1, 6) * HOUR, amount=amount)
        per = {
            "normal": [c, a, s],
            "late": [c, a, note(o, "SETTLED", t + 26 * HOUR, amount=amount)],
            "missing": [c, a],
            "mismatch": [c, a, note(o, "SETTLED", t + HOUR, amount=amount + 1)],
            "orphan": [note(o, "SETTLED", t, amount=amount)],
            "declined_settled": [c, term(o, "AUTH_DECLINED", t + 2_000), s],
            "failed": [c, a, note(o, "FAILED", t + HOUR)],
            "reversed": [c, a, s, note(o, "REVERSED", t + 7 * HOUR, amount=amount)],
            "dup_settle": [c, a, s, note(o, "SETTLED", t + 8 * HOUR, amount=amount)],
            "dup_charge": [c, a, term(o, "AUTH_APPROVED", t + 9_000, card=card, amount=amount, attempt=2), s],
            "expired": [c],
            "invalid": [term(o, "AUTH_APPROVED", t, card="4111111111111111")],
            "redeliver": [c, a, a, s, s],
        }[kind]
        for line in per:
            rec = line["record"]
            lines.append({**line, "ingest_time": rec.get("event_time", rec.get("settled_at")) + rng.randrange(0, 2000)})
    lines.sort(key=lambda x: x["ingest_time"])
    text = [json.dumps(x) for x in lines]
    text.insert(len(text) // 3, "this line is not json")
    text.insert(len(text) // 2, json.dumps({"source": "settlement", "record": {"notice_id": "x"}}))
    path.write_text("\n".join(text) + "\n")
    return path


def drain(bootstrap: str, topics: Topics, app_id: str, timeout: float = 120) -> None:
    _, sightings, _ = internal_topics(app_id)
    batch_sightings, _ = batch_topics(app_id)
    wait_drained(
        bootstrap, app_id, [topics.terminal, topics.settlement, topics.batches], [sightings, batch_sightings], timeout
    )


def app_of(topics: Topics) -> str:
    """The application id of a test's worker on ``topics`` (unique per test, as the fresh topics are)."""
    return f"app-{topics.reconciled.rsplit('.', 1)[-1]}"


def ops_worker(
    bootstrap: str, topics: Topics, tmp_path: Path, viewer_token: str, config: Path | None = None
) -> tuple[WorkerProcess, int, int]:
    """Worker w0 (no wall-clock advance) with its ops API and metrics on free ports and one viewer's bearer
    token; returns it and the two ports."""
    ops, metrics = find_free_port(), find_free_port()
    tokens = tmp_path / "tokens"
    tokens.write_text(f"viewer test {viewer_token}\n")
    flags = ["--no-wall-clock-advance", "--ops-port", str(ops), "--metrics-port", str(metrics)]
    worker = WorkerProcess(
        bootstrap, topics, app_of(topics), "w0", tmp_path, [*flags, "--tokens-file", str(tokens)], config=config
    )
    return worker, ops, metrics


def run_until_drained(bootstrap: str, topics: Topics, app_id: str, tmp_path: Path) -> WorkerProcess:
    """Worker w0 started, the inputs drained (:func:`drain`), the worker stopped cleanly (exit 0); returns it
    for its log."""
    worker = WorkerProcess(bootstrap, topics, app_id, "w0", tmp_path)
    try:
        drain(bootstrap, topics, app_id)
    finally:
        assert worker.stop() == 0, worker.log()[-3000:]
    return worker


def simulate(out: Path, orders: int, seed: int, partitions: int = 4, extra: Iterable[str] = ()) -> Path:
    """``posrecon simulate`` into ``out``; returns ``out/input.jsonl``."""
    cmd = [
        sys.executable,
        "-m",
        "posrecon.cli",
        "simulate",
        "--orders",
        str(orders),
        "--out",
        str(out),
        "--seed",
        str(seed),
        "--partitions",
        str(partitions),
        "--quiet",
        *extra,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out / "input.jsonl"
