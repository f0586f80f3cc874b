"""The worker's ops API and `posrecon lookup` against a live worker on a real broker."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from livekit import app_of, feed_file, mixed_input, ops_worker, replay_oracle, topic_env
from livekit import drain as _drain
from posrecon.app.internal_topics import internal_topics
from posrecon.kafka.progress import group_lag

pytestmark = pytest.mark.broker


VIEWER_TOKEN = "viewer-token-for-ops-api-test"


def _get(url: str) -> tuple[int, Any]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {VIEWER_TOKEN}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_ops_api_and_lookup_show_an_orders_timeline(bootstrap: str, fresh_topics: Any, tmp_path: Path) -> None:
    topics = fresh_topics(4)
    src = mixed_input(tmp_path / "input.jsonl", 300, seed=5)
    oracle = replay_oracle(src, tmp_path / "replay", 4)
    mismatch = next(a for a in oracle.alerts if a["kind"] == "AMOUNT_MISMATCH")
    order_id = mismatch["order_id"]
    feed_file(bootstrap, topics, src)
    app = app_of(topics)
    worker, ops, metrics = ops_worker(bootstrap, topics, tmp_path, VIEWER_TOKEN)
    try:
        _drain(bootstrap, topics, app)
        base = f"http://127.0.0.1:{ops}"
        assert _get(f"{base}/healthz")[0] == 200
        assert _get(f"{base}/readyz") == (200, {"ready": True, "partitions": [0, 1, 2, 3]})
        status, view = _get(f"{base}/orders/{order_id}")
        assert status == 200, view
        whats = [item["what"] for item in view["timeline"]]
        assert "AUTH_APPROVED" in whats and "SETTLED" in whats
        assert view["alerts_fired"] == ["AMOUNT_MISMATCH"]
        assert view["decision"]["outcome"] == "AMOUNT_MISMATCH" and view["decision"]["revision"] == 1
        assert _get(f"{base}/orders/no-such-order")[0] == 404
        pending = _get(f"{base}/pending?older_than=0")[1]
        assert pending["count"] > 0 and all(row["age_ms"] >= 0 for row in pending["orders"])

        cli = [sys.executable, "-m", "posrecon.cli", "lookup", order_id]
        out = subprocess.run(
            [*cli, "--worker", base, "--token", VIEWER_TOKEN], capture_output=True, text=True, check=True
        ).stdout
        assert "AMOUNT_MISMATCH" in out and "SETTLED" in out and "AUTH_APPROVED" in out
        env = {**__import__("os").environ, **topic_env(topics)}
        out = subprocess.run(
            [*cli, "--bootstrap", bootstrap, "--app-id", app], capture_output=True, text=True, check=True, env=env
        ).stdout
        assert "AMOUNT_MISMATCH" in out and "revision 1: AMOUNT_MISMATCH" in out and mismatch["reason"] in out

        with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=5) as resp:
            exposed = resp.read().decode()
        for name in (
            "posrecon_events_total",
            "posrecon_alerts_total",
            "posrecon_reconciled_total",
            "posrecon_deadletters_total",
            "posrecon_open_orders",
            "posrecon_transactions_total",
            "posrecon_authorization_latency_seconds_bucket",
            "posrecon_settlement_lag_seconds_bucket",
        ):
            assert name in exposed, name
        # drained: no lag on any partition, including the card sightings (transactional: their tail is a commit
        # marker, which a gauge of "log end - position" counted as one record behind forever)
        deadline = time.monotonic() + 15
        while True:
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=5) as resp:
                lags = [line for line in resp.read().decode().splitlines() if line.startswith("posrecon_consumer_lag{")]
            behind = [line for line in lags if float(line.rsplit(" ", 1)[1]) != 0]
            if (lags and not behind) or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert any("card-sightings" in line for line in lags), lags
        assert not behind, behind
        # ... and the group's committed offsets are at the log ends, the card sightings' commit markers included
        # (Transaction.drained_positions): consumer-group tools show a lag of 0
        _, sightings, _ = internal_topics(app)
        deadline = time.monotonic() + 15
        while (lag := group_lag(bootstrap, app, [topics.terminal, topics.settlement, sightings])) and (
            time.monotonic() < deadline
        ):
            time.sleep(0.5)
        assert lag == 0
    finally:
        assert worker.stop() == 0, worker.log()[-2000:]
