"""The ops API's access matrix against a live worker (real broker): tokens, roles, TLS, the closed default."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from livekit import WorkerProcess, app_of, drain, feed_file, mixed_input, topic_env
from posrecon.config import Topics
from posrecon.net import find_free_port

pytestmark = pytest.mark.broker

VIEWER, OPERATOR = "viewer-token-5d1f", "operator-token-8e2a"


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def call(
    url: str,
    method: str = "GET",
    token: str | None = None,
    tls: ssl.SSLContext | None = None,
) -> tuple[int, dict[str, str], Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, method=method, headers=headers, data=b"{}" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=5, context=tls) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        body = exc.read()
        return exc.code, dict(exc.headers), json.loads(body) if body.startswith(b"{") else body.decode()


def wait_ok(base: str, worker: WorkerProcess, tls: ssl.SSLContext | None = None, path: str = "/healthz") -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert worker.alive(), worker.log()[-2000:]
        try:
            if call(f"{base}{path}", tls=tls)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"{base}{path} never answered 200: {worker.log()[-2000:]}")


def app_id(topics: Topics) -> str:
    return app_of(topics)


def start(
    bootstrap: str, topics: Topics, tmp_path: Path, worker_id: str, extra: list[str]
) -> tuple[int, WorkerProcess]:
    port = find_free_port()
    return port, WorkerProcess(
        bootstrap, topics, app_id(topics), worker_id, tmp_path, ["--ops-port", str(port), *extra]
    )


def test_access_matrix_over_tls(bootstrap: str, fresh_topics: Any, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    tokens = tmp_path / "tokens"
    tokens.write_text(f"viewer grafana {VIEWER}\noperator alice {OPERATOR}\n")
    topics = fresh_topics(2)
    port, worker = start(
        bootstrap,
        topics,
        tmp_path,
        "auth",
        ["--tokens-file", str(tokens), "--tls-cert", str(cert), "--tls-key", str(key)],
    )
    tls = ssl.create_default_context(cafile=str(cert))
    base = f"https://127.0.0.1:{port}"
    try:
        wait_ok(base, worker, tls, "/readyz")  # ready: its internal topics exist (lookup reads the changelog)
        rows = [  # (who, method, path, token, expected status)
            ("anyone", "GET", "/healthz", None, 200),
            ("anyone", "GET", "/readyz", None, 200),
            ("no token", "GET", "/pending", None, 401),
            ("bad token", "GET", "/pending", "not-a-token", 401),
            ("no token", "POST", "/pending", None, 401),
            ("viewer", "GET", "/pending", VIEWER, 200),
            ("viewer", "GET", "/orders/o-unknown", VIEWER, 404),
            ("viewer", "POST", "/pending", VIEWER, 403),
            ("operator", "GET", "/pending", OPERATOR, 200),
            ("operator", "POST", "/pending", OPERATOR, "not 401/403"),
        ]
        for who, method, path, token, expected in rows:
            status, headers, body = call(base + path, method, token, tls)
            if expected == "not 401/403":
                assert status not in (401, 403), (who, method, path, status)
            else:
                assert status == expected, (who, method, path, status, body)
            if status in (401, 403):
                assert headers["WWW-Authenticate"].startswith("Bearer"), headers
                assert VIEWER not in json.dumps(body) and OPERATOR not in json.dumps(body)
        # plain HTTP on the TLS port is not served
        with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5)
        # posrecon lookup carries the token (without one it reports the 401)
        feed_file(bootstrap, topics, mixed_input(tmp_path / "input.jsonl", 10, seed=3))
        drain(bootstrap, topics, app_id(topics))
        env = {**os.environ, **topic_env(topics), "SSL_CERT_FILE": str(cert)}
        cli = [
            sys.executable,
            "-m",
            "posrecon.cli",
            "lookup",
            "ord-3-0",
            "--worker",
            base,
            "--bootstrap",
            bootstrap,
            "--app-id",
            app_id(topics),
        ]
        without = subprocess.run(cli, capture_output=True, text=True, env=env, check=False, timeout=60)
        assert "HTTP 401" in without.stderr, without.stderr
        with_token = subprocess.run(
            [*cli, "--token", VIEWER], capture_output=True, text=True, env=env, check=False, timeout=60
        )
        # accepted: the worker answered (404: a matched order leaves state), lookup went on to Kafka
        assert with_token.returncode == 0 and not with_token.stderr, with_token
        assert "ord-3-0" in with_token.stdout, with_token.stdout
    finally:
        assert worker.stop() == 0, worker.log()[-2000:]
    log = worker.log()
    assert VIEWER not in log and OPERATOR not in log and "ops API tokens loaded" in log


def test_without_a_tokens_file_only_the_open_routes_answer(bootstrap: str, fresh_topics: Any, tmp_path: Path) -> None:
    port, worker = start(bootstrap, fresh_topics(2), tmp_path, "closed", [])
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ok(base, worker)
        assert call(f"{base}/pending", token=OPERATOR)[0] == 401
        assert call(f"{base}/orders/o-1")[0] == 401
    finally:
        assert worker.stop() == 0, worker.log()[-2000:]
    assert "ops API without tokens" in worker.log()


def test_a_malformed_tokens_file_stops_the_worker(bootstrap: str, fresh_topics: Any, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"superuser root {OPERATOR}\n")
    _, worker = start(bootstrap, fresh_topics(2), tmp_path, "bad", ["--tokens-file", str(tokens)])
    assert worker.proc.wait(60) == 2
    log = worker.log()
    assert "unknown role 'superuser'" in log and OPERATOR not in log
