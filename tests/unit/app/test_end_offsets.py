"""EndOffsets: answers only count when asked for late enough; stuck requests are given up, the client replaced."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

import pytest

from posrecon.app import end_offsets
from posrecon.app.end_offsets import EndOffsets


class Answer:
    def __init__(self, offset: int) -> None:
        self.offset = offset


class FakeAdmin:
    def __init__(self, answers: dict[tuple[str, int], int] | None) -> None:
        self.answers = answers  # None: requests never complete (a stuck client)
        self.requests: list[list[tuple[str, int]]] = []

    def list_offsets(self, request: dict[Any, Any], **_kwargs: Any) -> dict[Any, Future[Any]]:
        self.requests.append(sorted((tp.topic, tp.partition) for tp in request))
        futures: dict[Any, Future[Any]] = {}
        for tp in request:
            future: Future[Any] = Future()
            if self.answers is not None:
                future.set_result(Answer(self.answers[(tp.topic, tp.partition)]))
            futures[tp] = future
        return futures


def test_an_answer_counts_only_if_asked_for_after_the_given_time(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1_000]
    monkeypatch.setattr(end_offsets, "_wall_ms", lambda: clock[0])
    admin = FakeAdmin({("t", 0): 42})
    offsets = EndOffsets(lambda: admin)
    assert offsets.answer(("t", 0), 1_000) is None  # nothing known yet: asked for with the next poll
    offsets.poll()
    offsets.poll()  # collects the answer (asked at 1000)
    assert offsets.answer(("t", 0), 1_000) == 42
    assert offsets.answer(("t", 0), 1_001) is None  # too old for a wait that began later
    assert admin.requests == [[("t", 0)]]
    clock[0] = 2_000
    offsets.poll()
    offsets.poll()
    assert offsets.answer(("t", 0), 1_500) == 42 and len(admin.requests) == 2


def test_stuck_requests_are_given_up_and_the_admin_client_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [0]
    monkeypatch.setattr(end_offsets, "_wall_ms", lambda: clock[0])
    made: list[FakeAdmin] = []

    def make() -> FakeAdmin:
        made.append(FakeAdmin(None if not made else {("t", p): 7 for p in range(3)}))
        return made[-1]

    offsets = EndOffsets(make, request_timeout_s=5)
    for p in range(3):
        offsets.want(("t", p))
    offsets.poll()  # sent to the stuck client
    clock[0] = 6_000
    offsets.poll()
    assert len(made) == 1  # not overdue yet (5 s + 2 s)
    clock[0] = 8_000
    offsets.poll()  # three requests given up: a new client, asked again at once
    assert len(made) == 2 and offsets.replaced == 1
    offsets.poll()
    assert [offsets.answer(("t", p), 8_000) for p in range(3)] == [7, 7, 7]
