"""The case API against a live `posrecon cases` (real broker): the queue and its filters, a case, actions (and
their outcome on pos.exceptions), aging, batches, and the access matrix (401 without a token, 403 for a viewer
acting, open probes)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from caseskit import (
    HOUR,
    OPERATOR,
    VIEWER,
    CasesProcess,
    ExceptionsReader,
    alert,
    call,
    produce_alerts,
    tokens_file,
)
from integration.conftest import unique_topics  # module scope: the fresh_topics fixture is per test
from posrecon.config import Topics
from posrecon.kafka.topics import create_topics

pytestmark = pytest.mark.broker

ALERTS = [
    alert("a-missing", "MISSING_SETTLEMENT", "WARNING", "o-1", "m-1", age_ms=2 * HOUR),
    alert("a-mismatch", "AMOUNT_MISMATCH", "CRITICAL", "o-2", "m-1", age_ms=30 * 60_000),
    alert("a-orphan", "ORPHAN_SETTLEMENT", "WARNING", "o-3", "m-2", age_ms=5 * HOUR),
    alert("a-batch", "BATCH_MISMATCH", "CRITICAL", None, "m-2", age_ms=26 * HOUR, batch_id="b-7"),
    alert("a-acted", "EXPIRED_ORDER", "INFO", "o-4", "m-1", age_ms=HOUR),
]


class Live:
    def __init__(self, stage: CasesProcess, topics: Topics, reader: ExceptionsReader) -> None:
        self.stage, self.topics, self.reader = stage, topics, reader

    def get(self, path: str, token: str | None = VIEWER) -> tuple[int, Any]:
        return call(self.stage.base + path, token=token)

    def post(self, path: str, body: Any, token: str | None = OPERATOR) -> tuple[int, Any]:
        return call(self.stage.base + path, "POST", token, body)


@pytest.fixture(scope="module")
def live(bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    topics = unique_topics()
    create_topics(bootstrap, topics, partitions=3)
    tmp = tmp_path_factory.mktemp("case-api")
    stage = CasesProcess(bootstrap, topics, "cases-api", tmp, tokens_file(tmp))
    reader = ExceptionsReader(bootstrap, topics)
    try:
        stage.wait_ready()
        produce_alerts(bootstrap, topics, ALERTS)
        for a in ALERTS:
            reader.wait_for(lambda r, i=a["alert_id"]: r["alert_id"] == i)
        yield Live(stage, topics, reader)
    finally:
        reader.close()
        stage.stop()


def test_the_queue_filters_sorts_pages_and_counts_by_kind(live: Live) -> None:
    status, page = live.get("/cases?state=OPEN&sort=age&limit=2")
    assert status == 200
    assert page["total"] == 5 and len(page["items"]) == 2
    assert [c["alert_id"] for c in page["items"]] == ["a-batch", "a-orphan"]  # oldest first
    assert page["by_kind"]["AMOUNT_MISMATCH"] == 1 and sum(page["by_kind"].values()) == 5
    assert "history" not in page["items"][0] and page["items"][0]["age_ms"] >= 26 * HOUR
    assert [c["alert_id"] for c in live.get("/cases?offset=2&limit=2&sort=age")[1]["items"]] == ["a-missing", "a-acted"]
    assert [c["alert_id"] for c in live.get("/cases?severity=CRITICAL")[1]["items"]] == ["a-batch", "a-mismatch"]
    assert {c["alert_id"] for c in live.get("/cases?merchant=m-2")[1]["items"]} == {"a-orphan", "a-batch"}
    assert [c["alert_id"] for c in live.get("/cases?kind=amount_mismatch")[1]["items"]] == ["a-mismatch"]
    assert [c["alert_id"] for c in live.get("/cases?batch=b-7")[1]["items"]] == ["a-batch"]
    older = live.get(f"/cases?min_age_ms={4 * HOUR}")[1]
    assert {c["alert_id"] for c in older["items"]} == {"a-orphan", "a-batch"}
    assert live.get("/cases?sort=severity&limit=1")[1]["items"][0]["severity"] == "CRITICAL"


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("state=SHUT", "unknown state SHUT"),
        ("limit=0", "limit 1..500"),
        ("limit=ten", "limit must be an integer"),
        ("kind=NOPE", "unknown kind"),
        ("sort=colour", "sort must be one of"),
        ("colour=red", "unknown query parameter(s) colour"),
    ],
)
def test_a_bad_query_is_a_400_that_says_why(live: Live, query: str, message: str) -> None:
    status, body = live.get(f"/cases?{query}")
    assert status == 400 and message in body["error"]


def test_a_case_has_its_history_and_no_order_without_a_worker(live: Live) -> None:
    status, body = live.get("/cases/a-missing")
    assert status == 200
    case = body["case"]
    assert (
        case["state"] == "OPEN" and case["history"][0]["action"] == "OPEN" and case["history"][0]["actor"] == "posrecon"
    )
    assert body["order"] is None  # no --worker-url
    assert live.get("/cases/nope")[0] == 404


def test_an_operator_acts_and_the_outcome_reaches_pos_exceptions(live: Live) -> None:
    status, sent = live.post("/cases/a-acted/actions", {"action": "assign", "assignee": "bob", "note": "mine"})
    assert status == 202 and sent["actor"] == "alice" and sent["action"] == "ASSIGN"
    record = live.reader.wait_for(lambda r: any(e["action_id"] == sent["action_id"] for e in r["history"]))
    assert record["state"] == "ACKNOWLEDGED" and record["assignee"] == "bob" and record["version"] == 2
    assert record["history"][-1]["actor"] == "alice" and record["history"][-1]["accepted"]
    status, resolved = live.post("/cases/a-acted/actions", {"action": "RESOLVE", "note": "settled by hand"})
    assert status == 202
    record = live.reader.wait_for(lambda r: any(e["action_id"] == resolved["action_id"] for e in r["history"]))
    assert record["state"] == "RESOLVED"
    keys = {key for key, r in live.reader.records if r["alert_id"] == "a-acted"}
    assert keys == {b"a-acted"}  # keyed by alert_id (compacted: the last is the case)


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"not json", 400, "not JSON"),
        ([1, 2], 400, "JSON object"),
        ({"action": "DANCE"}, 400, "action must be one of"),
        ({"action": "RESOLVE", "extra": 1}, 400, "unknown field(s) extra"),
        ({"action": "COMMENT"}, 400, "COMMENT needs a note"),
        ({"action": "ASSIGN"}, 400, "ASSIGN needs an assignee"),
        ({"action": "RESOLVE", "note": 5}, 400, "note must be a string"),
        ({"action": "REOPEN"}, 409, "not closed: nothing to reopen"),
    ],
)
def test_a_bad_action_is_refused_with_a_clear_message(live: Live, body: Any, status: int, message: str) -> None:
    got, answer = live.post("/cases/a-missing/actions", body)
    assert got == status and message in answer["error"]


def test_an_action_on_an_unknown_case_is_a_404(live: Live) -> None:
    assert live.post("/cases/nope/actions", {"action": "ACKNOWLEDGE"})[0] == 404


def test_access_matrix(live: Live) -> None:
    for path in ("/cases", "/cases/a-missing", "/aging", "/batches/b-7", "/whoami"):
        status, body = live.get(path, token=None)
        assert status == 401 and "bearer token" in body["error"], path
        assert live.get(path, token="wrong")[0] == 401, path
        assert live.get(path, token=VIEWER)[0] == 200, path
        assert live.get(path, token=OPERATOR)[0] == 200, path
    assert live.post("/cases/a-missing/actions", {"action": "ACKNOWLEDGE"}, token=None)[0] == 401
    status, body = live.post("/cases/a-missing/actions", {"action": "ACKNOWLEDGE"}, token=VIEWER)
    assert status == 403 and "operator needed" in body["error"]
    assert live.get("/cases/a-missing")[1]["case"]["version"] == 1  # the viewer's attempt changed nothing
    for path in ("/healthz", "/readyz", "/metrics"):
        assert live.get(path, token=None)[0] == 200, path
    assert b'posrecon_cases_held{state="OPEN"}' in live.get("/metrics", token=None)[1]
    assert live.get("/whoami", token=OPERATOR)[1] == {"name": "alice", "role": "operator"}
    # `posrecon cases` without --console: no console, and its path is as closed as any other
    assert live.get("/console/", token=None)[0] == 401
    assert live.get("/console/", token=VIEWER)[0] == 404


def test_aging_and_batches(live: Live) -> None:
    status, aging = live.get("/aging")
    assert status == 200
    buckets = {b["bucket"]: b for b in aging["buckets"]}
    assert buckets["1d-3d"]["by_severity"]["CRITICAL"] == 1  # a-batch, 26 h old
    assert buckets["4h-1d"]["count"] == 1 and buckets["<1h"]["by_severity"]["CRITICAL"] == 1
    assert aging["not_closed"] == sum(b["count"] for b in aging["buckets"])
    status, batch = live.get("/batches/b-7")
    assert status == 200 and batch["worker"] is None
    assert [c["alert_id"] for c in batch["cases"]["items"]] == ["a-batch"]
