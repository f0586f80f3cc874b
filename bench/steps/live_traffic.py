"""Steps 5-6: latency under steady live traffic, deadline -> alert delay, state bytes per open order, recovery
with 1M open orders (the measurements live in ``bench/live.py`` and ``bench/recovery.py``)."""

from __future__ import annotations

import shlex
from typing import Any

from harness import rss_bytes
from session import PARTITIONS, Bench


def latency(b: Bench, deadline: float) -> dict[str, Any]:
    import live

    one = b.ok("worker_1")
    rate = 0.5 * one["events_per_s"] if one else b.args.fallback_rate
    lines = b.live_lines()
    figures = live.measure_latency(
        b.bootstrap, b.children, b.work, PARTITIONS, rate, b.args.latency_s, lines, deadline, b.log,
        shlex.split(b.args.latency_worker_args), b.args.latency_warmup_s,
    )  # fmt: skip
    figures["worker_args"] = b.args.latency_worker_args
    figures["rate_basis"] = "50% of the one-worker rate" if one else f"fallback {b.args.fallback_rate}/s"
    s = figures["input_to_reconciled_stamp"]
    v = figures["input_to_reconciled_visible"]
    b.log(
        f"  {figures['records']:,} records at {figures['rate_achieved_per_s']:,.0f}/s: input → reconciled "
        f"p50 {s['p50_ms']} p99 {s['p99_ms']} max {s['max_ms']} ms (record timestamps); visible "
        f"(read_committed) p50 {v['p50_ms']} p99 {v['p99_ms']} max {v['max_ms']} ms"
    )
    return figures


def deadline_alert(b: Bench, deadline: float) -> dict[str, Any]:
    import live

    figures = live.measure_deadline(b.bootstrap, b.children, b.work, PARTITIONS, deadline)
    d = figures["delay"]
    b.log(
        f"  {figures['alerts_found']}/{figures['orders']} EXPIRED_ORDER alerts; deadline → alert "
        f"p50 {d['p50_ms']} max {d['max_ms']} ms"
    )
    idle = [p.pid for _n, p, _l in b.children.procs]
    figures["idle_worker_rss_mib"] = round((rss_bytes(idle[0]) or 0) / 2**20, 1) if idle else None
    return figures


def state(b: Bench, deadline: float) -> dict[str, Any]:
    import recovery

    b.live_lines()
    figures = recovery.state_bytes(b.live_jsonl(), b.live_rules)
    b.log(
        f"  {figures['heap_bytes_per_open_order']} heap bytes per open order ({figures['open_orders']:,} "
        f"open), changelog {figures['changelog_bytes_per_open_order']} bytes per open order"
    )
    return figures


def recovery(b: Bench, deadline: float) -> dict[str, Any]:
    import recovery

    figures = recovery.measure_recovery(
        b.bootstrap, b.children, b.work, PARTITIONS, b.args.recovery_orders, deadline, b.log
    )
    idle = (b.ok("deadline") or {}).get("idle_worker_rss_mib")
    if idle and figures.get("rss_after_restore_mib"):
        figures["idle_worker_rss_mib"] = idle
        figures["rss_bytes_per_restored_order_net"] = round(
            (figures["rss_after_restore_mib"] - idle) * 2**20 / max(b.args.recovery_orders, 1), 1
        )
    b.log(
        f"  {figures['orders_restored']:,} orders restored: start → assigned {figures['start_to_assigned_s']}"
        f" s, → first record {figures['start_to_first_record_s']} s"
    )
    return figures
