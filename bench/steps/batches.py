"""Step ``batches`` (issue 14): what settlement batches cost one worker, in the same run.

Two contract v2 data sets from the same seed (``--batch-orders`` orders each, full fault mix): (a) with
settlement batches (notices carry batch_id/fee, control records on their own topic), (b) the same mix with
``batches=0`` and every notice's batch_id stripped (``batches=0`` alone keeps them: the batch stage would still
count their sightings). Each goes into its own set of input topics (``bench.with-batches.*``,
``bench.without-batches.*``), then ``--batch-workers`` (1) posrecon workers (fresh app id, the data set's rules:
merchant pricing) are measured over each as ``worker_1`` is (:func:`throughput.drive`: from the first committed
transaction until every input record, card sighting and batch sighting is committed). With batches the batch
stage counts the notices' sightings and decides the batches; a sighting whose batch partition another worker
owns goes through ``<app>-batch-sightings`` in the same transaction (with one worker, none does); without, the
stage never activates. Both data sets are loaded before either worker starts, so the two measurements follow
each other on the same broker.

The outputs are checked against the simulation's truth: dead letters, decided orders, order alerts (OPEN and
RESOLVED), batch alerts by kind and status, and the final status of every batch (highest revision).
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import dataset
from harness import (
    BENCH_DIR,
    PY,
    StepTimeout,
    create_topics,
    ensure_internal_topics,
    free_port,
    log_end,
    tail,
    topic_set,
)
from session import PARTITIONS, Bench

from posrecon.config import Topics
from posrecon.sim.vocabulary import BATCH_ALERT_KINDS
from steps.throughput import drive

#: (name, ``posrecon simulate --mix``, notices without batch_id): the same seed and order mix, with and without
#: settlement batches. ``batches=0`` alone leaves out the control records but not the notices' batch_id: the batch
#: stage would still count (and, with 2 workers, repartition) their sightings, so those are stripped too
VARIANTS: tuple[tuple[str, str | None, bool], ...] = (
    ("with_batches", None, False),
    ("without_batches", "batches=0", True),
)
INPUT_KEYS = ("terminal", "settlement", "batches")
#: the topics the worker's config names (its inputs and every output it writes)
CONFIG_KEYS = (*INPUT_KEYS, "reconciled", "alerts", "deadletter", "batch_reconciled")


def variant_topics(name: str) -> Topics:
    """The private topics of one variant: ``bench.with-batches.terminal-events`` …"""
    prefix = f"bench.{name.replace('_', '-')}"
    return dataclasses.replace(
        topic_set(prefix),
        batches=f"{prefix}.settlement-batches",
        batch_reconciled=f"{prefix}.batch-reconciled",
        exception_actions=f"{prefix}.exception-actions",
        exceptions=f"{prefix}.exceptions",
    )


def worker_config(rules_toml: str, topics: Topics) -> str:
    """A worker's TOML config: the data set's rules (top-level keys and ``[merchants."<id>"]`` tables, as
    ``posrecon simulate`` writes them), then ``[topics]``."""
    lines = [f'{key} = "{getattr(topics, key)}"' for key in CONFIG_KEYS]
    return rules_toml.rstrip("\n") + "\n\n[topics]\n" + "\n".join(lines) + "\n"


def final_by_batch(records: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Each batch's status in its final BatchReconciliation (highest revision)."""
    final: dict[str, tuple[int, str]] = {}
    for rec in records:
        seen = final.get(rec["batch_id"])
        if seen is None or rec["revision"] > seen[0]:
            final[rec["batch_id"]] = (rec["revision"], rec["status"])
    return {batch_id: status for batch_id, (_rev, status) in final.items()}


def final_statuses(records: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Batches by the status of their final BatchReconciliation (highest revision)."""
    return dict(sorted(Counter(final_by_batch(records).values()).items()))


def alert_counts(alerts: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Order alerts by status; batch alerts as ``{"KIND/STATUS": n}`` (the truth's form)."""
    orders: Counter[str] = Counter()
    batches: Counter[str] = Counter()
    for alert in alerts:
        if alert["kind"] in BATCH_ALERT_KINDS:
            batches[f"{alert['kind']}/{alert['status']}"] += 1
        else:
            orders[alert["status"]] += 1
    return {
        "alerts_open": orders["OPEN"],
        "alerts_resolved": orders["RESOLVED"],
        "batch_alerts": dict(sorted(batches.items())),
    }


def alerts_by_batch(alerts: Iterable[Mapping[str, Any]]) -> dict[str, list[str]]:
    """Batch alerts per batch_id, as sorted ``"KIND/STATUS"`` (the form of the data set's batch_truth.json)."""
    found: dict[str, list[str]] = {}
    for alert in alerts:
        if alert["kind"] in BATCH_ALERT_KINDS:
            found.setdefault(alert["batch_id"], []).append(f"{alert['kind']}/{alert['status']}")
    return {batch_id: sorted(kinds) for batch_id, kinds in found.items()}


def batch_diffs(
    statuses: Mapping[str, str],
    alerts: Mapping[str, list[str]],
    truth: Mapping[str, Mapping[str, Any]],
    limit: int = 10,
) -> list[str]:
    """The batches whose final status or alerts differ from the truth's (``"<batch_id> (<fault>): got <status>
    [alerts], truth <status> [alerts]"``; no record: status None), at most ``limit`` of them, then how many more."""
    diffs = []
    for batch_id in sorted(set(statuses) | set(alerts) | set(truth)):
        want = truth.get(batch_id, {})
        got = (statuses.get(batch_id), alerts.get(batch_id, []))
        if got != (want.get("status"), want.get("alerts", [])):
            fault = want.get("fault", "unknown batch")
            diffs.append(
                f"{batch_id} ({fault}): got {got[0]} {got[1]}, truth {want.get('status')} {want.get('alerts', [])}"
            )
    return diffs[:limit] + ([f"… and {len(diffs) - limit} more"] if len(diffs) > limit else [])


#: (figure, what the data set's meta.json says it must be)
TRUTH_CHECKS = (
    ("deadletters", "deadletters_expected"),
    ("orders_with_outcome", "orders_with_outcome_expected"),
    ("alerts_open", "alerts_expected"),
    ("alerts_resolved", "resolutions_expected"),
    ("batch_alerts", "batch_alerts_expected"),
    ("batches_decided", "batches_expected"),
    ("batch_statuses", "batch_statuses_expected"),
)


def truth_mismatches(out: Mapping[str, Any], meta: Mapping[str, Any]) -> list[str]:
    """The figures of ``out`` that differ from the truth (``"name: got X, truth Y"``); [] when all match."""
    return [
        f"{got}: got {out.get(got)}, truth {meta.get(want)}"
        for got, want in TRUTH_CHECKS
        if meta.get(want) is not None and out.get(got) != meta.get(want)
    ]


def summarize(on: Mapping[str, Any], off: Mapping[str, Any]) -> dict[str, Any]:
    """With ÷ without, for events/s and events per CPU-second; cost_pct: how much slower with batches (> 0)."""

    def ratio(key: str) -> float | None:
        a, z = on.get(key), off.get(key)
        return round(a / z, 3) if a and z else None

    rate = ratio("events_per_s")
    return {
        "ratio": rate,
        "cost_pct": round((1 - rate) * 100, 1) if rate else None,
        "per_cpu_s_ratio": ratio("events_per_cpu_s"),
    }


def read_outputs(bootstrap: str, topics: Topics) -> dict[str, Any]:
    """What the worker wrote (read_committed): dead letters, decided orders, alerts, batches' final statuses."""
    from harness import count_records, topic_stats

    from posrecon.kafka.outputs import read_topic
    from posrecon.serde.codec import AvroCodec

    out: dict[str, Any] = {"deadletters": count_records(bootstrap, topics.deadletter)}
    out["reconciled_records"], out["orders_with_outcome"] = topic_stats(bootstrap, topics.reconciled)
    codec = AvroCodec("Alert")  # once: building a codec compiles its decoder
    alerts = [codec.decode(m.value()) for m in read_topic(bootstrap, topics.alerts)]
    out.update(alert_counts(alerts))
    out["alerts_by_batch"] = alerts_by_batch(alerts)
    codec = AvroCodec("BatchReconciliation")
    records = [codec.decode(m.value()) for m in read_topic(bootstrap, topics.batch_reconciled)]
    out["batch_records"] = len(records)
    out["status_by_batch"] = final_by_batch(records)
    out["batch_statuses"] = dict(sorted(Counter(out["status_by_batch"].values()).items()))
    out["batches_decided"] = len(out["status_by_batch"])
    return out


def prepare(b: Bench, mix: str | None, strip_batch_ids: bool) -> dict[str, Any]:
    meta = dataset.prepare(
        b.work / "cache", b.args.batch_orders, b.args.seed, PARTITIONS, shards=2, log=b.log, contract="v2", mix=mix,
        strip_batch_ids=strip_batch_ids,
    )  # fmt: skip
    stripped = f", batch_id stripped from {meta['batch_ids_stripped']:,} notices" if strip_batch_ids else ""
    b.log(f"  {meta['records']:,} records ({'cached' if meta['cached'] else 'new'}): {meta['per_topic']}{stripped}")
    return meta


def load(b: Bench, name: str, meta: Mapping[str, Any], topics: Topics, deadline: float) -> dict[str, Any]:
    """Create ``topics`` and load the data set's shards into them (one loader process per shard)."""
    inputs = [getattr(topics, key) for key in INPUT_KEYS]
    specs: dict[str, dict[str, str]] = {t: {"retention.ms": "-1"} for t in inputs}  # 2026 timestamps
    specs.update({topics.reconciled: {"cleanup.policy": "compact"}, topics.alerts: {}, topics.deadletter: {}})
    specs[topics.batch_reconciled] = {"cleanup.policy": "compact"}
    create_topics(b.bootstrap, specs, PARTITIONS)
    started = time.monotonic()
    names = ["--terminal", topics.terminal, "--settlement", topics.settlement, "--batches", topics.batches]
    logs = [b.work / "logs" / f"loader-{name}-{i}.log" for i in range(len(dataset.shard_paths(dict(meta))))]
    procs = [
        b.children.spawn(
            f"loader-{name}-{i}",
            [PY, str(BENCH_DIR / "loader.py"), "--bootstrap", b.bootstrap, "--shard", str(path), *names],
            logs[i],
        )
        for i, path in enumerate(dataset.shard_paths(dict(meta)))
    ]
    for proc, log in zip(procs, logs, strict=True):
        while proc.poll() is None:
            if time.monotonic() > deadline:
                raise StepTimeout(f"loading {name} took too long")
            time.sleep(0.2)
        if proc.returncode != 0:
            raise RuntimeError(f"loader of {name} exited with {proc.returncode}: {tail(log)}")
    total = log_end(b.bootstrap, inputs, PARTITIONS)
    if total != meta["records"]:
        raise RuntimeError(f"{name}: input topics hold {total} records, expected {meta['records']}")
    b.log(f"  {name}: {total:,} records loaded in {time.monotonic() - started:.1f} s")
    return {"records": total, "per_topic": meta["per_topic"], "load_s": round(time.monotonic() - started, 1)}


def measure(b: Bench, name: str, meta: Mapping[str, Any], topics: Topics, deadline: float) -> dict[str, Any]:
    """``--batch-workers`` workers (1) over the variant's topics (fresh app id), then their outputs against the
    truth and what crossed ``<app>-batch-sightings``."""
    from posrecon.app.batch_stage import batch_topics
    from posrecon.app.internal_topics import COMPACTED, create_topics_if_missing
    from posrecon.kafka.clients import admin

    n = b.args.batch_workers
    app_id = f"bench-{name.replace('_', '-')}-w{n}-{time.strftime('%H%M%S')}"
    _, card_sightings, _ = ensure_internal_topics(b.bootstrap, app_id, PARTITIONS)
    batch_sightings, batch_changelog = batch_topics(app_id)
    wanted = {batch_sightings: {"retention.ms": str(7 * 24 * 3600 * 1000)}, batch_changelog: COMPACTED}
    create_topics_if_missing(admin({"bootstrap.servers": b.bootstrap}), wanted, PARTITIONS)
    rules = (Path(meta["dir"]) / meta["config_file"]).read_text()
    config = b.work / f"{app_id}.toml"
    config.write_text(worker_config(rules, topics))
    procs = []
    for i in range(n):
        port = free_port()
        log = b.work / "logs" / f"{app_id}-{i}.log"
        cmd = b.worker_cmd(
            app_id, f"w{i}", config, "--no-wall-clock-advance", "--metrics-port", str(port),
            *shlex.split(b.args.worker_args),
        )  # fmt: skip
        procs.append((b.children.spawn(f"{app_id}-{i}", cmd, log), log, port))
    inputs = [getattr(topics, key) for key in INPUT_KEYS]
    figures = drive(b, procs, app_id, [card_sightings, batch_sightings], deadline, inputs, meta["records"])
    for proc, _log, _port in procs:
        b.children.stop(proc)
    figures["app_id"] = app_id
    figures["workers"] = n
    figures["per_topic"] = meta["per_topic"]
    figures["notice_batch_ids_stripped"] = meta.get("batch_ids_stripped")
    # one worker owns every batch partition: it counts its sightings in place and sends nothing through here
    figures["batch_sightings_topic_offsets"] = log_end(b.bootstrap, [batch_sightings], PARTITIONS)
    figures["batch_changelog_offsets"] = log_end(b.bootstrap, [batch_changelog], PARTITIONS)
    figures.update(read_outputs(b.bootstrap, topics))
    mismatches = truth_mismatches(figures, meta)
    truth_file = Path(meta["dir"]) / meta.get("batch_truth_file", "")
    statuses, alerts = figures.pop("status_by_batch"), figures.pop("alerts_by_batch")
    if meta.get("batch_truth_file") and truth_file.is_file():
        figures["batch_diffs"] = batch_diffs(statuses, alerts, json.loads(truth_file.read_text()))
    figures["truth_mismatches"] = mismatches
    figures["output_matches_truth"] = not mismatches
    b.log(
        f"  {name}, {n} worker(s): {figures['events_per_s']:,} events/s, {figures['events_per_cpu_s']} per "
        f"CPU-second, {figures['batches_decided']:,} batches decided (truth {meta.get('batches_expected')}), "
        f"{figures['batch_sightings_topic_offsets']:,} offsets on the batch sightings topic"
        + ("" if not mismatches else "  <-- OUTPUT DIVERGES: " + "; ".join(mismatches))
    )
    for diff in figures.get("batch_diffs", []):
        b.log(f"    batch {diff}")
    return figures


def batches(b: Bench, deadline: float) -> dict[str, Any]:
    metas = {name: prepare(b, mix, strip) for name, mix, strip in VARIANTS}
    loads = {name: load(b, name, metas[name], variant_topics(name), deadline) for name in metas}
    runs = {name: measure(b, name, metas[name], variant_topics(name), deadline) for name in metas}
    for name, figures in runs.items():
        figures["load"] = loads[name]
    on, off = runs["with_batches"], runs["without_batches"]
    result: dict[str, Any] = {
        "orders": b.args.batch_orders,
        "seed": b.args.seed,
        "workers": b.args.batch_workers,
        **summarize(on, off),
        "output_matches_truth": on["output_matches_truth"] and off["output_matches_truth"],
        "with_batches": on,
        "without_batches": off,
    }
    b.log(
        f"  with ÷ without batches: {result['ratio']} events/s ({result['cost_pct']}% slower), "
        f"{result['per_cpu_s_ratio']} per CPU-second"
    )
    return result
