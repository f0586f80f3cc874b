"""The group's committed offsets behind the state: the worker resumes from the offsets its state was written with.

Defect 12 (docs/guarantees.md): a Kafka 3.9 broker, restarted while a transaction's commit was in flight,
completed the commit (its outputs, changelog rows and offsets are in the logs) but later answered the offset
it had before it. The worker rebuilt the state from the changelogs (with the batch) and resumed from the older
offset: the batch's invalid records were dead-lettered a second time. The order changelog now carries the
offsets each transaction commits (app/state_store.py), and a restore resumes from the further of the two.

Here the broker's answer is reproduced by committing older offsets for the group while no worker runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from livekit import app_of, feed_file, mixed_input, read_all, replay_oracle, run_until_drained, verify

pytestmark = pytest.mark.broker
PARTITIONS = 4


def test_a_restart_resumes_from_the_states_offsets_when_the_groups_are_behind(
    bootstrap: str, fresh_topics: Any, tmp_path: Path
) -> None:
    topics = fresh_topics(PARTITIONS)
    src = mixed_input(tmp_path / "input.jsonl", 400, seed=13)
    total = len(src.read_text().splitlines())
    app = app_of(topics)
    feed_file(bootstrap, topics, src, 0, total // 2)
    run_until_drained(bootstrap, topics, app, tmp_path)

    # the broker forgets the latest commits: every input partition's committed offset goes back by half
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": app, "enable.auto.commit": False})
    tps = [TopicPartition(t, p) for t in (topics.terminal, topics.settlement) for p in range(PARTITIONS)]
    committed = probe.committed(tps, timeout=10)
    assert sum(tp.offset for tp in committed) > 100, committed
    probe.commit(
        offsets=[TopicPartition(tp.topic, tp.partition, tp.offset // 2) for tp in committed], asynchronous=False
    )
    assert [tp.offset for tp in probe.committed(tps, timeout=10)] == [tp.offset // 2 for tp in committed]
    probe.close()

    feed_file(bootstrap, topics, src, total // 2)
    second = run_until_drained(bootstrap, topics, app, tmp_path)
    verdict = verify(read_all(bootstrap, topics), replay_oracle(src, tmp_path / "replay", PARTITIONS))
    assert verdict.ok, verdict.problems
    log = second.log().split('"msg": "worker started"')[-1]
    assert "the group's committed offsets are behind the restored state's" in log
