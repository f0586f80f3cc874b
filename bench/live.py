"""Live-traffic figures for ``bench/run.py``: end-to-end latency at a steady rate, deadline → alert delay.

Latency: simulated traffic (full fault mix) produced steadily at a fixed rate to private topics, each
record's Kafka timestamp = the wall clock at produce time and its event time rewritten to
``produce time + (event_time − ingest_time)`` (so clock-skew faults stay faults); one worker with the
production defaults. For every ``pos.reconciled`` record: latency = its record timestamp (set by the
worker's producer when it produces the record, inside the open transaction) − the timestamp of the
latest input record of that order produced before it (the record that triggered the revision). A
``read_committed`` consumer running alongside also records when each reconciled record became visible
(after the transaction commit): that is the latency a ledger consumer sees.

Deadline → alert: ORDER_CREATED records whose TTL deadline (``event_time + order_ttl_ms``) falls a few
seconds in the future in wall-clock terms (their event and record time lie ``order_ttl_ms`` − 3…9 s in the
past), no authorisation; a worker in wall-clock mode (``--wall-clock-lag-ms 0 --idle-advance-after-ms
500``). Delay = EXPIRED_ORDER alert record timestamp − deadline wall time.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from harness import (
    Children,
    StepTimeout,
    cpu_seconds,
    create_contract_topics,
    ensure_internal_topics,
    free_port,
    now_ms,
    percentile,
    scrape,
    summary_ms,
    tail,
    topic_set,
    wait_for_log,
    worker_cmd,
    write_config,
)

from posrecon.config import RuleConfig, Topics
from posrecon.kafka.feeder import Feeder
from posrecon.kafka.outputs import read_outputs, read_topic
from posrecon.kafka.progress import group_lag
from posrecon.serde.codec import AvroCodec


class VisibilityWatcher(threading.Thread):
    """read_committed consumer of one topic: wall-clock ms at which each (partition, offset) arrived."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        super().__init__(daemon=True)
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"bench-visibility-{time.monotonic_ns()}",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "fetch.wait.max.ms": 10,
                "log_level": 4,
            }
        )
        self.consumer.assign([TopicPartition(topic, p, -2) for p in range(partitions)])
        self.arrived: dict[tuple[int, int], int] = {}
        self.stopping = False

    def run(self) -> None:
        try:
            while not self.stopping:
                msgs = self.consumer.consume(1000, timeout=0.05)
                now = now_ms()
                for msg in msgs:
                    if msg.error() is None:
                        self.arrived[(msg.partition(), msg.offset())] = now
        finally:
            self.consumer.close()


def _delta(before: dict[str, float], after: dict[str, float], key: str) -> float | None:
    return after[key] - before.get(key, 0.0) if key in after else None


def _ratio(before: dict[str, float], after: dict[str, float], histogram: str) -> float | None:
    total = _delta(before, after, f"{histogram}_sum")
    count = _delta(before, after, f"{histogram}_count")
    return round(total / count, 1) if total is not None and count else None


def encode_traffic(
    lines: list[Any], rate: float, t0_ms: int
) -> list[tuple[str, bytes | None, bytes, int, str | None, str]]:
    """(topic, key, value, scheduled ms, order id, kind) per line; line i is scheduled at t0 + i/rate."""
    feeder = Feeder.__new__(Feeder)  # only encode_line is used: no producer
    feeder.topics = Topics()
    feeder.codecs = {"terminal": AvroCodec("TerminalEvent"), "settlement": AvroCodec("SettlementNotice")}
    out = []
    for i, line in enumerate(lines):
        sched = t0_ms + int(i * 1000 / rate)
        if line.raw is not None or not isinstance(line.record, dict):
            text = line.to_json_line()
            order_id, kind = None, "raw"
        else:
            record = dict(line.record)
            field = "event_time" if line.source == "terminal" else "settled_at"
            if isinstance(record.get(field), int):
                record[field] = sched + (record[field] - line.ingest_time)
            text = json.dumps({"source": line.source, "ingest_time": sched, "record": record}, separators=(",", ":"))
            order_id = record.get("order_id") if isinstance(record.get("order_id"), str) else None
            kind = str(record.get("notice_id") if line.source == "settlement" else "terminal")
        topic, key, value, _ts = feeder.encode_line(text)
        out.append((topic, key, value, sched, order_id, kind))
    return out


def warm_producer(bootstrap: str, producer: Producer, inputs: list[str]) -> None:
    """Make the traffic producer ready before the clock starts: its idempotent producer id, the connection
    and the input topics' metadata. Otherwise the first records wait inside the generator for those (up to
    seconds on a fresh broker) with their timestamps already set, and that wait was counted as the worker's
    latency. The warm-up record goes to a topic of its own; the inputs stay exactly the simulated traffic."""
    warmup = f"{inputs[0]}-warmup"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(warmup, 1, 1)]).values():
        with contextlib.suppress(KafkaException):  # exists already
            future.result(30)
    producer.list_topics(timeout=10)
    for topic in inputs:
        producer.list_topics(topic, timeout=10)
    producer.produce(warmup, b"warm-up")
    if producer.flush(30) != 0:
        raise RuntimeError("the latency traffic producer could not deliver its warm-up record")


def measure_latency(
    bootstrap: str,
    children: Children,
    work: Path,
    partitions: int,
    rate: float,
    duration_s: float,
    lines: list[Any],
    deadline: float,
    log: Callable[[str], None],
    worker_args: list[str] | None = None,
    warmup_s: float = 10.0,
) -> dict[str, Any]:
    """Steady traffic at ``rate`` for ``warmup_s`` + ``duration_s``; the figures are of the records produced
    after the warm-up (as OpenMessaging Benchmark's warm-up phase), the whole run's are reported too: the
    first seconds on a freshly created topic set are slower (see docs/performance.md)."""
    topics = topic_set("bench-lat")
    public = Topics()
    create_contract_topics(bootstrap, topics, partitions)
    app_id = "bench-lat"
    _, sightings, _ = ensure_internal_topics(bootstrap, app_id, partitions)
    config = write_config(work / "lat.toml", topics)
    wlog = work / "logs" / "latency-worker.log"
    port = free_port()
    proc = children.spawn(
        "latency-worker",
        worker_cmd(bootstrap, app_id, "lat-0", config, "--metrics-port", str(port), *(worker_args or [])),
        wlog,
    )
    count = min(len(lines), int(rate * (warmup_s + duration_s)))
    lines = lines[:count]
    encode_s = count / 25_000 + 2
    t0 = now_ms() + int(encode_s * 1000)
    started = time.monotonic()
    traffic = encode_traffic(lines, rate, t0)
    log(f"  encoded {count:,} records in {time.monotonic() - started:.1f} s; worker starting …")
    wait_for_log(wlog, "partitions assigned", deadline, proc)
    watcher = VisibilityWatcher(bootstrap, topics.reconciled, partitions)
    watcher.start()
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "partitioner": "murmur2_random",
            "enable.idempotence": True,
            "linger.ms": 5,
            "queue.buffering.max.messages": 1_000_000,
            "log_level": 4,
        }
    )
    warm_producer(bootstrap, producer, [topics.terminal, topics.settlement])
    metrics_before = scrape(port)
    cpu_before = cpu_seconds(proc.pid)
    names = {public.terminal: topics.terminal, public.settlement: topics.settlement}
    inputs: dict[str, list[tuple[int, str]]] = {}
    begin = time.monotonic()
    begin_ms = now_ms()
    sent = 0
    behind_max = 0.0
    try:
        while sent < count:
            now = time.monotonic()
            if now > deadline:
                raise StepTimeout("latency traffic did not finish in time")
            due = min(count, int((now - begin) * rate) + 1)
            behind_max = max(behind_max, (due - sent) / rate)
            while sent < due:
                topic, key, value, _sched, order_id, kind = traffic[sent]
                ts = now_ms()
                while True:
                    try:
                        producer.produce(names[topic], value, key, timestamp=ts)
                        break
                    except BufferError:
                        producer.poll(0.01)
                if order_id is not None:
                    inputs.setdefault(order_id, []).append((ts, kind))
                sent += 1
            producer.poll(0)
            if proc.poll() is not None:
                raise RuntimeError(f"latency worker exited:\n{tail(wlog)}")
            time.sleep(0.002)
        producer.flush(30)
        produce_s = time.monotonic() - begin
        # drained: inputs and sightings committed (how long after the last record tells whether it kept up)
        while group_lag(bootstrap, app_id, [topics.terminal, topics.settlement, sightings], [sightings]) > 0:
            if time.monotonic() > deadline:
                raise StepTimeout("latency worker did not drain in time")
            time.sleep(0.5)
        drain_after_s = time.monotonic() - begin - produce_s
        metrics_after = scrape(port)
        cpu_after = cpu_seconds(proc.pid)
        time.sleep(1.0)
    finally:
        watcher.stopping = True
        watcher.join(10)
    outputs = read_outputs(bootstrap, topics, timeout_s=60)
    measured_from = begin_ms + int(warmup_s * 1000)
    stamp_lat: list[float] = []  # records produced after the warm-up
    whole_lat: list[float] = []
    by_second: dict[int, list[float]] = {}
    settle_lat: list[float] = []
    visible_lat: list[float] = []
    for rec in outputs.reconciled:
        history = inputs.get(rec.value["order_id"])
        if not history:
            continue
        before = [(ts, kind) for ts, kind in history if ts <= rec.timestamp]
        if not before:
            continue
        trigger_ts, kind = max(before)
        whole_lat.append(rec.timestamp - trigger_ts)
        by_second.setdefault((trigger_ts - begin_ms) // 1000, []).append(rec.timestamp - trigger_ts)
        if trigger_ts < measured_from:
            continue
        stamp_lat.append(rec.timestamp - trigger_ts)
        if kind == rec.value.get("notice_id"):
            settle_lat.append(rec.timestamp - trigger_ts)
        arrived = watcher.arrived.get((rec.partition, rec.offset))
        if arrived is not None:
            visible_lat.append(arrived - trigger_ts)
    alert_lat: list[float] = []
    for alert in outputs.alerts:
        history = inputs.get(alert.value.get("order_id") or "")
        before = [ts for ts, _ in history or [] if ts <= alert.timestamp]
        if before and max(before) >= measured_from:
            alert_lat.append(alert.timestamp - max(before))
    return {
        "rate_target_per_s": round(rate, 1),
        "records": count,
        "warmup_s": warmup_s,
        "measured_s": round(min(duration_s, count / rate - warmup_s), 1),
        "produce_s": round(produce_s, 2),
        "rate_achieved_per_s": round(count / produce_s, 1),
        "producer_behind_max_s": round(behind_max, 3),
        "drained_after_last_produce_s": round(drain_after_s, 2),
        "worker_transactions": _delta(metrics_before, metrics_after, 'posrecon_transactions_total{result="committed"}'),
        "worker_mean_records_per_transaction": _ratio(metrics_before, metrics_after, "posrecon_batch_records"),
        "worker_cpu_s": round(cpu_after - cpu_before, 1) if cpu_after is not None and cpu_before is not None else None,
        "produce_started_ms": begin_ms,
        "reconciled_records": len(outputs.reconciled),
        "alerts": len(outputs.alerts),
        "deadletters": len(outputs.deadletters),
        "input_to_reconciled_stamp": summary_ms(stamp_lat),
        "input_to_reconciled_stamp_incl_warmup": summary_ms(whole_lat),
        "settlement_to_reconciled_stamp": summary_ms(settle_lat),
        "input_to_reconciled_visible": summary_ms(visible_lat),
        "input_to_alert_stamp": summary_ms(alert_lat),
        "p50_ms_by_second_of_traffic": [percentile(by_second[k], 50) for k in sorted(by_second)],
        "p99_ms_by_second_of_traffic": [percentile(by_second[k], 99) for k in sorted(by_second)],
        "decisions_by_second_of_traffic": [len(by_second[k]) for k in sorted(by_second)],
    }


def measure_deadline(
    bootstrap: str, children: Children, work: Path, partitions: int, deadline: float, orders: int = 24
) -> dict[str, Any]:
    topics = topic_set("bench-wc")
    create_contract_topics(bootstrap, topics, partitions)
    app_id = "bench-wc"
    ensure_internal_topics(bootstrap, app_id, partitions)
    config = write_config(work / "wc.toml", topics)
    wlog = work / "logs" / "deadline-worker.log"
    proc = children.spawn(
        "deadline-worker",
        worker_cmd(bootstrap, app_id, "wc-0", config, "--wall-clock-lag-ms", "0", "--idle-advance-after-ms", "500"),
        wlog,
    )
    wait_for_log(wlog, "partitions assigned", deadline, proc)
    ttl = RuleConfig().order_ttl_ms
    codec = AvroCodec("TerminalEvent")
    producer = Producer(
        {"bootstrap.servers": bootstrap, "partitioner": "murmur2_random", "linger.ms": 0, "log_level": 4}
    )
    due: dict[str, int] = {}
    now = now_ms()
    for i in range(orders):
        order_id = f"wc-{now}-{i}"
        event_time = now - ttl + 3000 + 250 * i  # deadline 3 … 8.75 s from now
        record = {
            "event_id": f"ev-{order_id}",
            "order_id": order_id,
            "merchant_id": "mch-bench",
            "terminal_id": "trm-bench-01",
            "event_type": "ORDER_CREATED",
            "amount_minor": 1000 + i,
            "currency": "EUR",
            "card_token": None,
            "event_time": event_time,
            "attempt": 1,
            "decline_code": None,
        }
        producer.produce(topics.terminal, codec.encode(record), order_id.encode(), timestamp=event_time)
        due[order_id] = event_time + ttl
    producer.flush(10)
    last_due = max(due.values())
    found: dict[str, tuple[int, int]] = {}
    alert_codec = AvroCodec("Alert")
    while len(found) < orders:
        if time.monotonic() > deadline or now_ms() > last_due + 20_000:
            break
        time.sleep(1.0)
        for msg in read_topic(bootstrap, topics.alerts, timeout_s=20):
            alert = alert_codec.decode(msg.value())
            if alert["kind"] == "EXPIRED_ORDER" and alert["order_id"] in due:
                found[alert["order_id"]] = (msg.timestamp()[1], alert["event_time"])
        if proc.poll() is not None:
            raise RuntimeError(f"deadline worker exited:\n{tail(wlog)}")
    delays = [ts - due[oid] for oid, (ts, _ev) in found.items()]
    return {
        "orders": orders,
        "alerts_found": len(found),
        "alert_event_time_equals_deadline": all(ev == due[oid] for oid, (_ts, ev) in found.items()),
        "delay": summary_ms(delays),
        "worker_flags": "--wall-clock-lag-ms 0 --idle-advance-after-ms 500",
    }
