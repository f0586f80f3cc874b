"""The case stage's ops API and, with ``--console``, the web console's files (``posrecon cases`` / ``posrecon
console``). The worker's machinery (posrecon.app.auth): bearer tokens, viewer reads, operator acts, optional TLS.

* ``GET /healthz``, ``/readyz``, ``/metrics``: open, as the worker's.
* ``GET /cases``: the queue across the partitions this stage holds. Filters ``state`` (repeatable or
  comma-separated), ``kind``, ``severity``, ``merchant``, ``batch``, ``min_age_ms``, ``max_age_ms``; ``sort``
  (age, newest, severity, updated), ``offset``, ``limit`` (1..500); answers counts ``by_kind`` and ``by_state``.
* ``GET /cases/{alert_id}``: the case with its history; with ``--worker-url``, the order's timeline from the
  worker's ``GET /orders/{order_id}`` (the caller's bearer token is passed on: give both the same tokens file).
* ``POST /cases/{alert_id}/actions``: body ``{"action", "note", "assignee"}``; the actor is the token's name. An
  ``ExceptionAction`` (fresh action_id) is produced to ``pos.exception-actions`` on the case's partition;
  202 with the action_id once the broker has it. The outcome arrives on ``pos.exceptions``.
* ``GET /whoami``: the token's name and role (the console shows it, and hides nothing: the API decides).
* ``GET /aging``: cases not closed by age bucket and severity. ``GET /batches/{batch_id}``: the batch's cases,
  and the worker's ``GET /batches/{batch_id}`` when ``--worker-url`` is set.
* ``GET /console/...``: the console's static files (no token: they hold no data; every call they make needs one).
"""

from __future__ import annotations

import json
import mimetypes
import ssl
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlparse

from confluent_kafka import KafkaError, Producer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from posrecon.app.auth import Authenticator, principal_of, send_json
from posrecon.app.http_server import ApiServer
from posrecon.app.telemetry import wall_ms
from posrecon.cases.stage import CaseStage
from posrecon.cases.views import (
    MAX_BODY_BYTES,
    BadRequest,
    action_key,
    aging_view,
    new_action,
    parse_action,
    queue_view,
)
from posrecon.serde.wire import codec_for

CONSOLE = "/console"
STATIC_DIR = Path(__file__).resolve().parent.parent / "console" / "static"
#: the console's pages run only their own files: no inline script, nothing from elsewhere, never framed
STATIC_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
WORKER_TIMEOUT_S = 3.0
Answer = tuple[int, Any]


class CaseApi(ApiServer):
    def __init__(
        self,
        stage: CaseStage,
        host: str,
        port: int,
        auth: Authenticator | None = None,
        tls: ssl.SSLContext | None = None,
        worker_url: str | None = None,
        console: bool = False,
    ) -> None:
        self.stage = stage
        self.auth = auth or Authenticator(None)  # none given: closed, never open
        self.worker_url = worker_url.rstrip("/") if worker_url else None
        self.console = console
        self.action_codec = codec_for("ExceptionAction", stage.settings.serde, stage.topics.exception_actions)
        self._producer: Producer | None = None
        self._producer_lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:  # access logs would carry case and order ids
                return

            def parse_request(self) -> bool:  # every method passes here: the one auth gate
                if not super().parse_request():
                    return False
                return api.is_static(self.command, self.path) or api.auth.admit(self)

            def do_GET(self) -> None:
                api.get(self)

            def do_HEAD(self) -> None:
                api.get(self)

            def do_POST(self) -> None:
                api.post(self)

        self._serve(host, port, Handler, tls, "posrecon-cases-api")

    def stop(self) -> None:
        super().stop()
        if self._producer is not None:
            self._producer.flush(5)

    # --- routes ------------------------------------------------------------------------------------------------

    def is_static(self, method: str, path: str) -> bool:
        route = urlparse(path).path
        return self.console and method in ("GET", "HEAD") and (route == "/" or route.startswith(CONSOLE))

    def get(self, handler: BaseHTTPRequestHandler) -> None:
        url = urlparse(handler.path)
        if self.is_static(handler.command, handler.path):
            self._static(handler, url.path)
            return
        if url.path == "/metrics":
            self._send(handler, 200, generate_latest(self.stage.metrics.registry), CONTENT_TYPE_LATEST)
            return
        if url.path == "/whoami":  # who the console is signed in as (and whether it may act)
            principal = principal_of(handler)
            assert principal is not None  # not an open path: the gate let a token through
            send_json(handler, 200, {"name": principal.name, "role": principal.role.name.lower()})
            return
        try:
            send_json(handler, *self.read(url.path, parse_qs(url.query), handler.headers.get("Authorization")))
        except BadRequest as exc:
            send_json(handler, exc.status, exc.body)

    def read(self, path: str, params: dict[str, list[str]], authorization: str | None) -> Answer:
        stage, now = self.stage, wall_ms()
        if path == "/healthz":
            alive = time.monotonic() - stage.last_turn < 30
            return (200 if alive else 503), {"status": "ok" if alive else "stalled"}
        if path == "/readyz":
            return (200 if stage.ready else 503), {"ready": stage.ready, "partitions": sorted(stage.books)}
        if path == "/cases":
            with stage.lock:
                return 200, queue_view(stage.union(), now, params)
        if path == "/aging":
            with stage.lock:
                return 200, aging_view(stage.union(), now)
        if path.startswith("/cases/") and path.count("/") == 2:
            return self._case(unquote(path[len("/cases/") :]), now, authorization)
        if path.startswith("/batches/") and path.count("/") == 2:
            return self._batch(unquote(path[len("/batches/") :]), now, params, authorization)
        paths = ["/cases", "/cases/{alert_id}", "/cases/{alert_id}/actions (POST)", "/aging", "/batches/{batch_id}"]
        return 404, {"error": "unknown path", "paths": paths}

    def _case(self, alert_id: str, now: int, authorization: str | None) -> Answer:
        with self.stage.lock:
            found = self.stage.find(alert_id)
            case = found[1].view(alert_id) if found else None
        if found is None or case is None:
            return 404, {
                "error": "no such case here (unknown, closed past retention, or held by another stage)",
                "alert_id": alert_id,
            }
        body: dict[str, Any] = {"case": case, "partition": found[0], "age_ms": now - case["opened_at"], "now": now}
        if case["order_id"]:
            body["order"] = self._worker(f"/orders/{quote(case['order_id'], safe='')}", authorization)
        return 200, body

    def _batch(self, batch_id: str, now: int, params: dict[str, list[str]], authorization: str | None) -> Answer:
        with self.stage.lock:
            cases = queue_view(self.stage.union(), now, {**params, "batch": [batch_id]})
        worker = self._worker(f"/batches/{quote(batch_id, safe='')}", authorization)
        return 200, {"batch_id": batch_id, "cases": cases, "worker": worker}

    def _worker(self, path: str, authorization: str | None) -> dict[str, Any] | None:
        """The worker's answer for ``path`` ({"status", "body"}), or None when no --worker-url is set."""
        if self.worker_url is None:
            return None
        request = urllib.request.Request(self.worker_url + path, headers={"Authorization": authorization or ""})
        try:
            with urllib.request.urlopen(request, timeout=WORKER_TIMEOUT_S) as response:
                return {"status": response.status, "body": json.loads(response.read())}
        except urllib.error.HTTPError as exc:
            try:
                detail = json.loads(exc.read())
            except ValueError:
                detail = {"error": exc.reason}
            return {"status": exc.code, "body": detail}
        except (OSError, ValueError) as exc:  # unreachable, timed out, not JSON: the case is still shown
            return {"status": 502, "body": {"error": f"worker not reachable: {type(exc).__name__}"}}

    def post(self, handler: BaseHTTPRequestHandler) -> None:
        path = urlparse(handler.path).path
        parts = path.split("/")
        if len(parts) != 4 or parts[1] != "cases" or parts[3] != "actions":
            send_json(handler, 404, {"error": "unknown path", "paths": ["/cases/{alert_id}/actions"]})
            return
        try:
            length = int(handler.headers.get("Content-Length") or 0)
            if not 0 <= length <= MAX_BODY_BYTES:
                raise BadRequest(413, f"the body must be at most {MAX_BODY_BYTES} bytes")
            status, body = self.act(unquote(parts[2]), handler.rfile.read(length), handler)
        except BadRequest as exc:
            status, body = exc.status, exc.body
        except ValueError:
            status, body = 400, {"error": "Content-Length must be an integer"}
        send_json(handler, status, body)

    def act(self, alert_id: str, body: bytes, handler: BaseHTTPRequestHandler) -> Answer:
        principal = principal_of(handler)
        assert principal is not None  # the gate let an operator through
        action, note, assignee = parse_action(body)
        with self.stage.lock:
            found = self.stage.find(alert_id)
            case = found[1].view(alert_id) if found else None
        if found is None or case is None:
            raise BadRequest(404, "no such case here (unknown, closed past retention, or held by another stage)")
        record = new_action(case, action, principal.name, note, assignee, wall_ms())
        error = self._produce(action_key(case), self.action_codec.encode(record), found[0])  # type: ignore[arg-type]
        if error is not None:
            return 503, {"error": f"the action was not accepted by Kafka: {error}; retry"}
        return 202, {
            "action_id": record["action_id"],
            "alert_id": alert_id,
            "action": action,
            "actor": principal.name,
            "partition": found[0],
        }

    def _produce(self, key: bytes, value: bytes, partition: int) -> str | None:
        """Produce one action and wait for the broker's acknowledgement; the error's text, or None."""
        outcome: list[KafkaError | None] = []
        with self._producer_lock:
            if self._producer is None:
                config = {**self.stage.client_config, "enable.idempotence": True, "linger.ms": 0}
                self._producer = Producer(config)
            producer = self._producer
        topic = self.stage.topics.exception_actions
        producer.produce(topic, value, key, partition, on_delivery=lambda err, _msg: outcome.append(err))
        deadline = time.monotonic() + 15
        while not outcome and time.monotonic() < deadline:
            producer.poll(0.05)
        if not outcome:
            return "no acknowledgement within 15 s"
        return None if outcome[0] is None else outcome[0].str()

    # --- the console's files -----------------------------------------------------------------------------------

    def _static(self, handler: BaseHTTPRequestHandler, path: str) -> None:
        if path in ("/", CONSOLE):
            handler.send_response(302)
            handler.send_header("Location", CONSOLE + "/")
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        name = path[len(CONSOLE) + 1 :] or "index.html"
        files = {p.name: p for p in STATIC_DIR.iterdir() if p.is_file()}  # flat: no path leaves the directory
        file = files.get(name)
        if file is None:
            send_json(handler, 404, {"error": "no such console file"})
            return
        kind = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        self._send(handler, 200, file.read_bytes(), kind + ("; charset=utf-8" if kind.startswith("text/") else ""))

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, status: int, data: bytes, content_type: str) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(data)))
        for name, value in STATIC_HEADERS.items():
            handler.send_header(name, value)
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(data)
