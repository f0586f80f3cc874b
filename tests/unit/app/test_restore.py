"""app/restore.py: the committed offsets a restore resumes from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, TopicPartition

from posrecon.app import restore
from posrecon.app.restore import committed_offsets, resume_positions


class Reader:
    """Answers ``committed()`` from a script of answers, one per call."""

    def __init__(self, answers: list[list[Any]]) -> None:
        self.answers = answers
        self.calls = 0

    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[Any]:
        answer = self.answers[min(self.calls, len(self.answers) - 1)]
        self.calls += 1
        return answer


@dataclass
class Answered:
    """A ``committed()`` answer for one partition (TopicPartition's ``error`` cannot be set from Python)."""

    topic: str
    partition: int
    offset: int
    error: KafkaError | None = None


def _failed(topic: str, partition: int, code: int) -> Answered:
    return Answered(topic, partition, -1001, KafkaError(code))


@pytest.fixture(autouse=True)
def _no_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(restore.time, "sleep", lambda _s: None)


def test_a_partition_answered_with_an_error_is_fetched_again_not_resumed_from_the_beginning() -> None:
    """An error on one partition read as "nothing committed" would rewind it to the beginning under a state
    that already holds its records (a suspect of defect 12 in session 12)."""
    good = [TopicPartition("in", 0, 40), TopicPartition("in", 1, 7)]
    reader = Reader([[good[0], _failed("in", 1, KafkaError.UNSTABLE_OFFSET_COMMIT)], good])
    committed = committed_offsets(reader, [TopicPartition("in", 0), TopicPartition("in", 1)])  # type: ignore[arg-type]
    assert reader.calls == 2
    assert [(tp.partition, tp.offset) for tp in resume_positions(committed)] == [(0, 40), (1, 7)]


def test_a_partition_error_that_does_not_clear_is_raised_past_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(restore, "COMMITTED_DEADLINE_S", -1)
    reader = Reader([[_failed("in", 0, KafkaError.COORDINATOR_LOAD_IN_PROGRESS)]])
    with pytest.raises(KafkaException):
        committed_offsets(reader, [TopicPartition("in", 0)])  # type: ignore[arg-type]


def test_nothing_committed_resumes_from_the_beginning() -> None:
    reader = Reader([[TopicPartition("in", 0, -1001)]])
    committed = committed_offsets(reader, [TopicPartition("in", 0)])  # type: ignore[arg-type]
    assert resume_positions(committed)[0].offset == OFFSET_BEGINNING


# --- the offsets the state was written with (defect 12) ------------------------------------------------------


def test_a_committed_offset_behind_the_states_resumes_from_the_states_and_is_committed_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Defect 12 as it was found: the broker answered 764 after committing 765 with the batch whose state the
    changelog holds. Resuming at 764 dead-lettered record 764 a second time."""
    committed = [TopicPartition("in", 0, 764), TopicPartition("in", 1, 70), TopicPartition("in", 2, -1001)]
    state = {("in", 0): 765, ("in", 1): 70, ("in", 2): 12}
    recommitted: dict[tuple[str, int], int] = {}
    with caplog.at_level("WARNING", logger="posrecon.worker"):
        resume = resume_positions(committed, state, recommitted.__setitem__)
    assert [(tp.partition, tp.offset) for tp in resume] == [(0, 765), (1, 70), (2, 12)]
    assert recommitted == {("in", 0): 765, ("in", 2): 12}
    assert "behind the restored state's" in caplog.text


def test_a_committed_offset_ahead_of_the_states_wins() -> None:
    """An operator who moved the group forward (skipping input on purpose) is followed; so is a state written
    before the offsets were in the changelog (no row: None)."""
    committed = [TopicPartition("in", 0, 900), TopicPartition("in", 1, 50)]
    recommitted: dict[tuple[str, int], int] = {}
    resume = resume_positions(committed, {("in", 0): 765}, recommitted.__setitem__)
    assert [(tp.partition, tp.offset) for tp in resume] == [(0, 900), (1, 50)]
    assert recommitted == {}
