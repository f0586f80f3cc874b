"""``posrecon sink postgres`` against a real broker and a real PostgreSQL: the table equals the topic, also after
a kill -9 mid-run and a restart (no decision booked twice, none skipped), and aborted records are never booked.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from posrecon.kafka.progress import group_lag
from posrecon.serde.codec import AvroCodec
from posrecon.sink.postgres import ROW_COLUMNS, Row, latest_per_order, row_of

CODEC = AvroCodec("ReconciledOrder")
_REV = ROW_COLUMNS.index("revision")


def decision(order: int, revision: int) -> dict[str, Any]:
    """Revision 1 settles in full; later ones refund part of it (the ledger's net amounts move)."""
    amount = 1000 + order % 977
    fee = amount // 40
    refund = 0 if revision == 1 else (revision - 1) * 100
    return {
        "order_id": f"o{order:06d}",
        "merchant_id": f"m{order % 7}",
        "terminal_id": None if order % 5 else "t1",
        "outcome": "MATCHED" if revision == 1 else "PARTIALLY_REVERSED",
        "currency": "EUR",
        "approved_amount_minor": amount,
        "settled_amount_minor": amount,
        "approved_at": 1_800_000_000_000 + order,
        "settled_at": 1_800_000_060_000 + order,
        "settlement_lag_ms": 60_000,
        "notice_id": f"n{order}",
        "revision": revision,
        "settled_parts": 1,
        "fee_minor": fee,
        "reversed_amount_minor": refund,
        "net_amount_minor": amount - fee - refund,
    }


def produce_decisions(bootstrap: str, topic: str, orders: int, per_transaction: int = 2000, first: int = 0) -> int:
    """Orders ``first`` … with 1..3 revisions (revision r of every order before revision r + 1, so an order's
    revisions land in different sink batches), in committed transactions, and one aborted transaction of
    ``aborted-*`` orders in the middle. The number of committed records."""
    records = [decision(o, r) for r in (1, 2, 3) for o in range(first, first + orders) if r <= 1 + o % 3]
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": f"sink-test-{topic}-{first}",
            "partitioner": "murmur2_random",
            "linger.ms": 5,
        }
    )
    producer.init_transactions(30)
    for start in range(0, len(records), per_transaction):
        if start == per_transaction:
            producer.begin_transaction()
            for i in range(300):
                aborted = {**decision(i, 1), "order_id": f"aborted-{i}"}
                producer.produce(topic, key=aborted["order_id"].encode(), value=CODEC.encode(aborted))
            producer.flush(30)  # the aborted records are in the log, behind an abort marker
            producer.abort_transaction(30)
        producer.begin_transaction()
        for record in records[start : start + per_transaction]:
            producer.produce(topic, key=record["order_id"].encode(), value=CODEC.encode(record))
        producer.commit_transaction(30)
    return len(records)


def topic_rows(bootstrap: str, topic: str) -> list[Row]:
    """What a read_committed reader finds in the topic, as ledger rows."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "sink-test-reader",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
        }
    )
    try:
        partitions = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        rows, ended, deadline = [], set(), time.monotonic() + 120
        while len(ended) < len(partitions) and time.monotonic() < deadline:
            for m in consumer.consume(5000, 1.0):
                if m.error() is not None:
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        ended.add(m.partition())
                    continue
                ended.discard(m.partition())
                rows.append(row_of(CODEC.decode(m.value()), topic, m.partition(), m.offset()))
        assert len(ended) == len(partitions), "the topic was not read to its end"
        return rows
    finally:
        consumer.close()


def log_end(bootstrap: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "sink-test-ends"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions)
    finally:
        consumer.close()


def booked_to(dsn: str, topic: str) -> int:
    """Σ next_offset over the topic's partitions in the ledger (0 before the schema exists)."""
    try:
        with psycopg.connect(dsn, connect_timeout=5) as conn:
            row = conn.execute(
                "SELECT coalesce(sum(next_offset), 0) FROM sink_offsets WHERE topic = %s", (topic,)
            ).fetchone()
    except psycopg.errors.UndefinedTable:
        return 0
    assert row is not None
    return int(row[0])


def wait_for(condition: Callable[[], bool], timeout: float, what: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"the sink exited ({proc.returncode}) before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def start_sink(bootstrap: str, topic: str, dsn: str, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    argv = [
        sys.executable,
        "-m",
        "posrecon.cli",
        "sink",
        "postgres",
        "--bootstrap",
        bootstrap,
        "--topic",
        topic,
        "--group",
        f"sink-{topic}",
        "--progress-interval",
        "1",
        "--no-progress",
        *extra,
    ]
    with open(log, "ab") as out:  # the DSN through the environment, as a deployment would pass it
        return subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "POSRECON_SINK_DSN": dsn}
        )


def ledger(dsn: str, table: str) -> list[Row]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(f"SELECT {', '.join(ROW_COLUMNS)} FROM {table}").fetchall()


def assert_ledger_equals_topic(dsn: str, bootstrap: str, topic: str, produced: int) -> None:
    expected = topic_rows(bootstrap, topic)
    assert len(expected) == produced  # the aborted transaction is not in what a read_committed reader sees
    revisions = ledger(dsn, "reconciled_revisions")
    keys = [(r[0], r[_REV]) for r in revisions]
    assert len(revisions) == len(expected), f"ledger {len(revisions)} rows, topic {len(expected)} records"
    assert len(set(keys)) == len(keys), "an (order_id, revision) booked twice"
    assert sorted(revisions) == sorted(expected), "the ledger differs from the topic"
    assert not [k for k in keys if k[0].startswith("aborted-")], "records of an aborted transaction were booked"
    by_order: dict[str, list[int]] = {}
    for order_id, revision in keys:
        by_order.setdefault(order_id, []).append(revision)
    gaps = [o for o, revs in by_order.items() if sorted(revs) != list(range(1, len(revs) + 1))]
    assert not gaps, f"orders with a revision gap: {gaps[:5]}"
    assert sorted(ledger(dsn, "reconciled_current")) == sorted(latest_per_order(expected))


def log_lines(log: Path) -> list[dict[str, Any]]:
    lines = []
    for line in log.read_text().splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def test_the_ledger_equals_the_topic(bootstrap: str, fresh_topics: Any, pg_dsn: str, tmp_path: Path) -> None:
    topic = fresh_topics(4).reconciled
    produced = produce_decisions(bootstrap, topic, orders=3000)
    log = tmp_path / "sink.log"
    sink = start_sink(bootstrap, topic, pg_dsn, log, "--batch-size", "500")
    try:
        end = log_end(bootstrap, topic)
        wait_for(lambda: booked_to(pg_dsn, topic) == end, 120, "the ledger reaching the log end", sink)
        time.sleep(1.5)  # a progress line after the end
    finally:
        sink.send_signal(signal.SIGTERM)
        assert sink.wait(60) == 0, log.read_text()[-3000:]
    assert_ledger_equals_topic(pg_dsn, bootstrap, topic, produced)
    lines = log_lines(log)
    progress = [line for line in lines if line["msg"] == "sink progress"]
    assert progress and progress[-1]["lag"] == 0, progress[-3:]
    stopped = [line for line in lines if line["msg"] == "sink stopped"]
    assert stopped and stopped[0]["booked"] == produced and stopped[0]["repeated"] == 0
    assert "postgres@" not in log.read_text()  # no DSN in the logs
    # the informational group commits: standard lag tools see the sink caught up
    assert group_lag(bootstrap, f"sink-{topic}", [topic], transactional=[topic]) == 0


def test_kill_9_mid_run_then_restart_books_each_decision_once(
    bootstrap: str, fresh_topics: Any, pg_dsn: str, tmp_path: Path
) -> None:
    topic = fresh_topics(6).reconciled
    produced = produce_decisions(bootstrap, topic, orders=25_000)  # 50k decisions
    assert produced == 49_999
    end = log_end(bootstrap, topic)
    log = tmp_path / "sink.log"
    sink = start_sink(bootstrap, topic, pg_dsn, log, "--batch-size", "200")
    try:
        wait_for(lambda: booked_to(pg_dsn, topic) >= end // 4, 180, "a quarter booked", sink)
    finally:
        sink.kill()  # SIGKILL: no cleanup, maybe inside a database transaction
        sink.wait(30)
    at_kill = booked_to(pg_dsn, topic)
    assert 0 < at_kill < end, f"the kill did not land mid-run ({at_kill} of {end})"
    with psycopg.connect(pg_dsn) as conn:
        row = conn.execute("SELECT count(*) FROM reconciled_revisions").fetchone()
    assert row is not None and 0 < row[0] < produced
    restarted = start_sink(bootstrap, topic, pg_dsn, log, "--batch-size", "2000", "--exit-at-end")
    try:
        assert restarted.wait(240) == 0, log.read_text()[-3000:]
    finally:
        if restarted.poll() is None:
            restarted.kill()
    assert booked_to(pg_dsn, topic) == end
    assert_ledger_equals_topic(pg_dsn, bootstrap, topic, produced)
    stopped = [line for line in log_lines(log) if line["msg"] == "sink stopped"]
    assert len(stopped) == 1 and stopped[0]["booked"] == produced - row[0] and stopped[0]["repeated"] == 0
    assert stopped[0]["conflicts"] == 0 and stopped[0]["lag"] == 0
    print(f"\nkill -9 after {row[0]} of {produced} decisions booked; the restart booked {stopped[0]['booked']}")


def test_a_second_sink_joining_shares_the_partitions(
    bootstrap: str, fresh_topics: Any, pg_dsn: str, tmp_path: Path
) -> None:
    """Scale-out: the rebalance hands half the partitions, booked part way, to a second sink; each decision is
    still booked once, and each sink books the new records of its own partitions."""
    topic = fresh_topics(6).reconciled
    produced = produce_decisions(bootstrap, topic, orders=3_000)
    logs = [tmp_path / "sink-a.log", tmp_path / "sink-b.log"]
    sinks = [start_sink(bootstrap, topic, pg_dsn, logs[0], "--batch-size", "100")]
    try:
        end = log_end(bootstrap, topic)
        wait_for(lambda: booked_to(pg_dsn, topic) == end, 120, "the first records booked", sinks[0])
        sinks.append(start_sink(bootstrap, topic, pg_dsn, logs[1], "--batch-size", "100"))
        wait_for(
            lambda: bool([line for line in log_lines(logs[1]) if line["msg"].startswith("partitions assigned")]),
            120,
            "the second sink's partitions",
            sinks[1],
        )
        produced += produce_decisions(bootstrap, topic, orders=3_000, first=100_000)
        end = log_end(bootstrap, topic)
        wait_for(lambda: booked_to(pg_dsn, topic) == end, 120, "the ledger reaching the log end", sinks[0])
    finally:
        for sink in sinks:
            sink.send_signal(signal.SIGTERM)
        codes = [sink.wait(60) for sink in sinks]
    assert codes == [0, 0], logs[0].read_text()[-2000:] + logs[1].read_text()[-2000:]
    assert_ledger_equals_topic(pg_dsn, bootstrap, topic, produced)
    stopped = [next(line for line in log_lines(log) if line["msg"] == "sink stopped") for log in logs]
    assert sum(s["booked"] for s in stopped) == produced and all(s["repeated"] == 0 for s in stopped)
    assert all(s["booked"] > 0 and s["conflicts"] == 0 for s in stopped), stopped
    assigned = [[line for line in log_lines(log) if line["msg"].startswith("partitions assigned")] for log in logs]
    # A is assigned at start and again when B joins (a group may take one more round to settle: count >= 2)
    assert len(assigned[0]) >= 2, assigned[0]
    assert any(line["offsets"] for line in assigned[1]), "B took over no partition part way booked"
