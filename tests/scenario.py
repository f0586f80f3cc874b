"""Test helpers: build contract records tersely and run them through the engine."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from posrecon.config import RuleConfig
from posrecon.engine.engine import ReconciliationEngine

MIN = 60_000
HOUR = 3_600_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def term(
    order: str,
    kind: str,
    t: int,
    *,
    eid: str | None = None,
    amount: int = 1000,
    currency: str = "EUR",
    card: str | None = "tok_a",
    merchant: str = "m1",
    terminal: str = "t1",
    attempt: int = 1,
    decline_code: str | None = None,
) -> dict[str, Any]:
    return {
        "source": "terminal",
        "record": {
            "event_id": eid if eid is not None else f"{order}-{kind}-{t}",
            "order_id": order,
            "merchant_id": merchant,
            "terminal_id": terminal,
            "event_type": kind,
            "amount_minor": amount,
            "currency": currency,
            "card_token": card,
            "event_time": t,
            "attempt": attempt,
            "decline_code": decline_code,
        },
    }


def note(
    order: str,
    status: str,
    t: int,
    *,
    nid: str | None = None,
    amount: int = 1000,
    currency: str = "EUR",
    merchant: str = "m1",
    seq: int = 1,
    count: int = 1,
    fee: int = 0,
    batch: str | None = None,
) -> dict[str, Any]:
    return {
        "source": "settlement",
        "record": {
            "notice_id": nid if nid is not None else f"{order}-{status}-{t}",
            "order_id": order,
            "merchant_id": merchant,
            "status": status,
            "amount_minor": amount,
            "currency": currency,
            "settled_at": t,
            "batch_id": batch,
            "fee_minor": fee,
            "capture_seq": seq,
            "capture_count": count,
        },
    }


def batch_control(
    count: int,
    gross: int,
    fee: int,
    batch: str = "b1",
    closed_at: int = T0,
    merchant: str | None = "m1",
    currency: str = "EUR",
) -> Any:
    """A SettlementBatch control record (the record itself: as a line, ``{"source": "batch", "record": ...}``)."""
    return {
        "batch_id": batch,
        "merchant_id": merchant,
        "currency": currency,
        "notice_count": count,
        "gross_amount_minor": gross,
        "fee_amount_minor": fee,
        "closed_at": closed_at,
    }


def case_action(
    kind: str,
    aid: str = "a1",
    at: int = T0 + 2 * HOUR,
    action_id: str | None = None,
    actor: str = "ann",
    note: str | None = "looked at it",
    assignee: str | None = "bob",
    order_id: str = "o1",
) -> dict[str, Any]:
    """An operator's ExceptionAction on the case of alert ``aid``."""
    return {
        "action_id": action_id or f"{kind}-{at}",
        "alert_id": aid,
        "action": kind,
        "actor": actor,
        "note": note,
        "assignee": assignee,
        "at": at,
        "order_id": order_id,
        "batch_id": None,
        "merchant_id": "m1",
    }


def tick(t: int, order: str = "zz-clock") -> dict[str, Any]:
    """An unrelated valid record that moves the watermark to t (an order that only gets created... later)."""
    return term(order, "AUTH_DECLINED", t, eid=f"clock-{t}", card=None)


@dataclass
class Result:
    reconciled: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    rejections: list[str] = field(default_factory=list)
    batch_records: list[dict[str, Any]] = field(default_factory=list)
    engine: ReconciliationEngine | None = None

    def kinds(self, order: str | None = None) -> list[str]:
        """The OPEN alerts' kinds (v2's RESOLVED records: :meth:`resolved`)."""
        return sorted(a["kind"] for a in self.opened() if order is None or a["order_id"] == order)

    def opened(self) -> list[dict[str, Any]]:
        return [a for a in self.alerts if a["status"] == "OPEN"]

    def resolved(self, order: str | None = None) -> list[str]:
        """The kinds of the RESOLVED records (each checked to close an OPEN alert of its kind, once)."""
        opened = {a["alert_id"]: a for a in self.opened()}
        closed = [a for a in self.alerts if a["status"] == "RESOLVED" and (order is None or a["order_id"] == order)]
        for a in closed:
            original = opened[a["resolves_alert_id"]]
            assert (original["kind"], original["order_id"], a["severity"]) == (a["kind"], a["order_id"], "INFO")
        assert len({a["resolves_alert_id"] for a in closed}) == len(closed), "an alert resolved twice"
        return sorted(a["kind"] for a in closed)

    def outcomes(self, order: str) -> list[str]:
        return [r["outcome"] for r in self.reconciled if r["order_id"] == order]

    def final(self, order: str) -> dict[str, Any] | None:
        rows = [r for r in self.reconciled if r["order_id"] == order]
        return rows[-1] if rows else None

    def alert(self, kind: str, order: str | None = None) -> dict[str, Any]:
        found = [a for a in self.opened() if a["kind"] == kind and (order is None or a["order_id"] == order)]
        assert len(found) == 1, f"expected one {kind}, got {found}"
        return found[0]


def run(
    lines: list[dict[str, Any]], *, until: int | None = None, rules: RuleConfig | None = None, partitions: int = 1
) -> Result:
    from posrecon.kafka.partitioner import partition_for

    engine = ReconciliationEngine(rules or RuleConfig())
    result = Result(engine=engine)
    for line in lines:
        record = line["record"]
        ingest = line.get("ingest_time")
        part = partition_for(record["order_id"].encode(), partitions) if partitions > 1 else 0
        if line["source"] == "terminal":
            rej = engine.on_terminal_event(record, part, ingest, ingest)
        elif line["source"] == "settlement":
            rej = engine.on_settlement_notice(record, part, ingest, ingest)
        else:
            rej = engine.on_settlement_batch(record, part, ingest, ingest)
        if rej is not None:
            result.rejections.append(rej.reason.value)
    if until is not None:
        for p in range(partitions):
            engine.advance(p, until, until)
        engine.sync_batches(until)
    rec, alerts = engine.take()
    result.batch_records, batch_alerts = engine.batches.take()  # type: ignore[assignment]
    alerts.extend(batch_alerts)
    result.reconciled.extend(rec)  # type: ignore[arg-type]
    result.alerts.extend(alerts)  # type: ignore[arg-type]
    return result
