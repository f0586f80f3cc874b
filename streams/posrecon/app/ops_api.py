"""The worker's small HTTP API for operations (stdlib server, one thread, read-only).

* ``GET /healthz``: 200 while the worker loop is turning (last turn < 30 s ago), else 503.
* ``GET /readyz``: 200 once partitions are assigned and state is restored, else 503.
* ``GET /orders/{order_id}``: the order's state and timeline (events, notices, alerts fired, decision)
  when this worker owns its partition; 404 with the owning partition otherwise (``posrecon lookup``
  asks every worker it is given, or reads the changelog and output topics itself).
* ``GET /batches/{batch_id}``: a settlement batch's control totals, what it received, status, recent revisions,
  open alerts and its notices, when this worker owns the batch's partition (404 with the partition otherwise).
* ``GET /pending?older_than=MS``: approved orders still waiting for settlement, older than MS (event time).

Every route but ``/healthz`` and ``/readyz`` needs a bearer token (posrecon.app.auth: viewer reads,
operator acts); optional TLS.
"""

from __future__ import annotations

import ssl
import time
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlparse

from posrecon.app.auth import Authenticator, send_json
from posrecon.app.http_server import ApiServer, not_found
from posrecon.engine.order import (
    FIRED_CONFLICT,
    FIRED_EXPIRED,
    FIRED_FAILED_CONFLICT,
    FIRED_LATE,
    FIRED_MISMATCH,
    FIRED_MISSING,
    FIRED_ORPHAN,
    OrderState,
    TerminalPhase,
)
from posrecon.kafka.partitioner import partition_for

if TYPE_CHECKING:
    from posrecon.app.worker import Worker

FIRED_NAMES = (
    (FIRED_MISSING, "MISSING_SETTLEMENT"),
    (FIRED_ORPHAN, "ORPHAN_SETTLEMENT"),
    (FIRED_EXPIRED, "EXPIRED_ORDER"),
    (FIRED_LATE, "LATE_SETTLEMENT"),
    (FIRED_MISMATCH, "AMOUNT_MISMATCH"),
    (FIRED_CONFLICT, "STATUS_CONFLICT"),
    (FIRED_FAILED_CONFLICT, "STATUS_CONFLICT"),
)
#: the names of ``OrderState.last_fields`` (engine/order.py ``RecordFields``), in order; the record's net amount
#: is not kept there (settled - fee - reversed) and is derived by :func:`order_view`
RECORD_FIELDS = (
    "order_id",
    "merchant_id",
    "terminal_id",
    "outcome",
    "currency",
    "approved_amount_minor",
    "settled_amount_minor",
    "approved_at",
    "settled_at",
    "settlement_lag_ms",
    "notice_id",
    "settled_parts",
    "fee_minor",
    "reversed_amount_minor",
)


def order_view(order: OrderState, partition: int, watermark: int) -> dict[str, Any]:
    """JSON view of one order: state, timeline (event time order), alerts fired, latest decision."""
    timeline: list[dict[str, Any]] = []
    if order.created_at is not None:
        timeline.append({"at": order.created_at, "what": "ORDER_CREATED"})
    if order.approval is not None:
        a = order.approval
        timeline.append(
            {
                "at": a.event_time,
                "what": "AUTH_APPROVED",
                "event_id": a.event_id,
                "amount_minor": a.amount_minor,
                "currency": a.currency,
                "terminal_id": a.terminal_id,
            }
        )
    if order.terminal_phase in (TerminalPhase.DECLINED, TerminalPhase.VOIDED, TerminalPhase.TIMED_OUT):
        name = {TerminalPhase.DECLINED: "AUTH_DECLINED", TerminalPhase.VOIDED: "VOIDED"}.get(
            order.terminal_phase, "AUTH_TIMEOUT"
        )
        timeline.append({"at": order.phase_time, "what": name})
    for status, notice in (("SETTLED", order.settled), ("FAILED", order.failed), ("REVERSED", order.reversal)):
        if notice is not None:
            timeline.append(
                {
                    "at": notice.settled_at,
                    "what": status,
                    "notice_id": notice.notice_id,
                    "amount_minor": notice.amount_minor,
                    "currency": notice.currency,
                }
            )
    timeline.sort(key=lambda item: (item["at"], item["what"]))
    decision: dict[str, Any] | None = (
        dict(zip(RECORD_FIELDS, order.last_fields, strict=True)) if order.last_fields else None
    )
    if decision is not None:
        decision["revision"] = order.revision
        settled = decision["settled_amount_minor"]
        decision["net_amount_minor"] = (
            None
            if settled is None
            else settled - (decision["fee_minor"] or 0) - (decision["reversed_amount_minor"] or 0)
        )
    return {
        "order_id": order.order_id,
        "partition": partition,
        "watermark": watermark,
        "merchant_id": order.merchant_id,
        "terminal_id": order.terminal_id,
        "terminal_state": order.terminal_phase.name,
        "settlement_state": order.settlement_phase.name,
        "timeline": timeline,
        "event_ids": list(order.seen_events),
        "notice_ids": list(order.seen_notices),
        "alerts_fired": sorted({name for bit, name in FIRED_NAMES if order.fired & bit}),
        "decision": decision,
    }


class OpsApi(ApiServer):
    def __init__(
        self, worker: Worker, host: str, port: int, auth: Authenticator | None = None, tls: ssl.SSLContext | None = None
    ) -> None:
        self.worker = worker
        # no authenticator given: closed (every route but the open ones answers 401), never open
        self.auth = auth or Authenticator(None)
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:  # access logs would carry order ids: keep quiet
                return

            def parse_request(self) -> bool:  # every method passes here before its do_*: the one auth gate
                return super().parse_request() and api.auth.admit(self)

            def do_GET(self) -> None:
                send_json(self, *api.handle(self.path))

        self._serve(host, port, Handler, tls, "posrecon-ops-api")

    def handle(self, path: str) -> tuple[int, dict[str, Any]]:
        url = urlparse(path)
        worker = self.worker
        if url.path == "/healthz":
            alive = time.monotonic() - worker.last_turn < 30
            return (200 if alive else 503), {"status": "ok" if alive else "stalled"}
        if url.path == "/readyz":
            ready = worker.ready
            return (200 if ready else 503), {"ready": ready, "partitions": sorted(worker.tasks)}
        if url.path.startswith("/orders/"):
            return self._order(unquote(url.path[len("/orders/") :]))
        if url.path.startswith("/batches/"):  # app/batch_stage.py
            return worker.batch_stage.view(unquote(url.path[len("/batches/") :]))
        if url.path == "/pending":
            params = parse_qs(url.query)
            older_than = int(params.get("older_than", ["0"])[0])
            limit = int(params.get("limit", ["1000"])[0])
            return 200, self._pending(older_than, limit)
        paths = ["/healthz", "/readyz", "/orders/{order_id}", "/batches/{batch_id}", "/pending"]
        return 404, {"error": "unknown path", "paths": paths}

    def _order(self, order_id: str) -> tuple[int, dict[str, Any]]:
        worker = self.worker
        partition = partition_for(order_id.encode(), worker.partitions) if worker.partitions else 0
        book = worker.engine.books.get(partition)
        if book is None or partition not in worker.tasks:
            return not_found("partition not owned by this worker", "order_id", order_id, partition)
        order = book.orders.get(order_id)
        if order is None:
            error = "order not in state (unknown, or evicted after retention)"
            return not_found(error, "order_id", order_id, partition)
        return 200, order_view(order, partition, book.watermark)

    def _pending(self, older_than: int, limit: int) -> dict[str, Any]:
        rows: list[dict[str, Any]] = []
        for partition, book in list(self.worker.engine.books.items()):
            for order in list(book.orders.values()):
                a = order.awaiting_settlement()
                if a is None:
                    continue
                age = book.watermark - a.event_time
                if age >= older_than:
                    rows.append(
                        {
                            "order_id": order.order_id,
                            "partition": partition,
                            "approved_at": a.event_time,
                            "age_ms": age,
                            "amount_minor": a.amount_minor,
                            "currency": a.currency,
                        }
                    )
        rows.sort(key=lambda r: -r["age_ms"])
        return {"count": len(rows), "older_than_ms": older_than, "orders": rows[:limit]}
