"""Input deleted on the broker before the worker read it (retention, truncation) is reported, never silent.

The worker assigns its partitions at the committed offsets with ``auto.offset.reset=error``: when the next
record is gone it logs how many records were lost, counts them (``posrecon_input_records_lost_total``) and
goes on from the log start. This once happened silently in this very test suite (defect 9): the dev broker's
7-day retention deleted simulated input stamped 2026-01-01.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from livekit import drain as _drain
from livekit import feed_file, run_until_drained, start_with_part_fed
from posrecon.kafka.progress import group_lag

pytestmark = pytest.mark.broker
PARTITIONS = 2


def _lost_lines(log: str) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    return [r for r in rows if r["msg"].startswith("input records were deleted before they were processed")]


def test_input_deleted_before_it_was_read_is_reported_and_the_rest_processed(
    bootstrap: str, fresh_topics: Any, tmp_path: Path
) -> None:
    topics = fresh_topics(PARTITIONS)
    src, total, app, first = start_with_part_fed(bootstrap, topics, tmp_path, 120, seed=5, divisor=3)
    try:
        _drain(bootstrap, topics, app)
    finally:
        assert first.stop() == 0
    assert _lost_lines(first.log()) == []

    # a second third arrives while no worker runs and is deleted before anyone reads it
    feed_file(bootstrap, topics, src, total // 3, 2 * total // 3)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": app, "enable.auto.commit": False})
    tps = [TopicPartition(t, p) for t in (topics.terminal, topics.settlement) for p in range(PARTITIONS)]
    committed = {(tp.topic, tp.partition): tp.offset for tp in probe.committed(tps, timeout=10)}
    ends = {(tp.topic, tp.partition): probe.get_watermark_offsets(tp, timeout=10)[1] for tp in tps}
    probe.close()
    expected = {k: ends[k] - committed[k] for k in ends if ends[k] > committed[k]}
    assert sum(expected.values()) > 0
    for future in admin.delete_records([TopicPartition(t, p, ends[(t, p)]) for t, p in expected]).values():
        future.result()

    feed_file(bootstrap, topics, src, 2 * total // 3)  # the last third is there to be processed
    second = run_until_drained(bootstrap, topics, app, tmp_path)  # goes on past the gap: nothing left behind
    log = second.log().split('"msg": "worker started"')[-1]
    reported = {(r["topic"], r["partition"]): r["records_lost"] for r in _lost_lines(log)}
    assert reported == expected
    assert group_lag(bootstrap, app, [topics.terminal, topics.settlement], [], None) == 0
    stopped = [json.loads(line) for line in log.splitlines() if '"worker stopped"' in line]
    assert stopped and stopped[-1]["records"] >= total - 2 * total // 3  # the last third (plus card sightings)
