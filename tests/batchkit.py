"""Settlement batches for test inputs: ``add_batches`` gives the notices of any contract JSONL input batch ids and
inserts control records (``"source": "batch"`` lines) with the faults of issue 14: a notice missing, an extra
notice, an amount or a fee off, a control record late, repeated or replaced, a notice arriving after the
decision, a control record with no notices, an invalid control record. The simulator has no batches yet; this
is the tests' stand-in (deterministic per seed)."""

from __future__ import annotations

import bisect
import json
import random
from pathlib import Path
from typing import Any

HOUR = 3_600_000
FAULTS = (
    "balanced",
    "balanced",
    "balanced",
    "missing",
    "amount",
    "fee",
    "extra",
    "late_control",
    "repeated",
    "replaced",
    "after_decision",
    "ghost",
)


def add_batches(src: Path, dst: Path, seed: int, sizes: tuple[int, int] = (4, 16)) -> dict[str, str]:
    """Write ``src`` with batches to ``dst``; returns batch_id -> fault."""
    rng = random.Random(seed)
    rows: list[tuple[int, str | dict[str, Any]]] = []  # (ingest time, line: parsed, or text kept as is)
    last = 0
    for text in src.read_text().splitlines():
        try:
            doc = json.loads(text)
        except ValueError:
            doc = None
        if type(doc) is dict and type(doc.get("ingest_time")) is int:
            last = doc["ingest_time"]
            rows.append((last, doc))
        else:
            rows.append((last, text))
    if any(type(d) is dict and d.get("source") == "batch" for _, d in rows):  # the input has its own batches
        dst.write_text(src.read_text())
        return {}
    notices = [d for _, d in rows if type(d) is dict and _batchable(d)]
    notices.sort(key=lambda d: d["record"]["settled_at"])
    chunks: list[tuple[str, list[dict[str, Any]]]] = []
    given: dict[str, list[dict[str, Any]]] = {}  # batches the input already names (the simulator's)
    unbatched = []
    for doc in notices:
        named = doc["record"]["batch_id"]
        if named is None:
            unbatched.append(doc)
        else:
            given.setdefault(named, []).append(doc)
    chunks.extend(given.items())
    i = 0
    while i < len(unbatched):
        chunk = unbatched[i : i + rng.randint(*sizes)]
        chunks.append((f"bat-{seed}-{len(chunks)}", chunk))
        i += len(chunk)
    controls: list[dict[str, Any]] = []
    moved: list[dict[str, Any]] = []
    faults: dict[str, str] = {}
    for k, (batch_id, chunk) in enumerate(chunks):
        fault = faults[batch_id] = FAULTS[k % len(FAULTS)]
        for doc in chunk:
            doc["record"]["batch_id"] = batch_id
        controls.extend(_controls(batch_id, fault, chunk, moved))
    controls.append(_invalid_control(seed, notices))
    faults[f"bat-{seed}-invalid"] = "invalid"
    kept = [(t, d) for t, d in rows if not any(d is m for m in moved)]
    for doc in [*moved, *controls]:
        times = [t for t, _ in kept]
        kept.insert(bisect.bisect_right(times, doc["ingest_time"]), (doc["ingest_time"], doc))
    dst.write_text("\n".join(d if isinstance(d, str) else json.dumps(d) for _, d in kept) + "\n")
    return faults


def _batchable(doc: dict[str, Any]) -> bool:
    rec = doc.get("record")
    return (
        doc.get("source") == "settlement"
        and type(rec) is dict
        and (rec.get("batch_id") is None or type(rec.get("batch_id")) is str)
        and rec.get("status") in ("SETTLED", "REVERSED", "FAILED")
        and type(rec.get("settled_at")) is int
        and type(rec.get("amount_minor")) is int
        and all(type(rec.get(k)) is str for k in ("notice_id", "order_id", "merchant_id", "currency"))
    )


def _totals(chunk: list[dict[str, Any]]) -> tuple[int, int, int]:
    seen: set[str] = set()
    count = gross = fee = 0
    for doc in chunk:
        rec = doc["record"]
        if rec["status"] == "FAILED" or rec["notice_id"] in seen:
            continue
        seen.add(rec["notice_id"])
        count += 1
        gross += rec["amount_minor"] if rec["status"] == "SETTLED" else -rec["amount_minor"]
        fee += rec.get("fee_minor", 0) if rec["status"] == "SETTLED" else 0
    return count, gross, fee


def _controls(
    batch_id: str, fault: str, chunk: list[dict[str, Any]], moved: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    first = chunk[0]["record"]
    closed_at = max(d["record"]["settled_at"] for d in chunk)
    arrived = max(d["ingest_time"] for d in chunk) + 60_000
    count, gross, fee = _totals(chunk)
    if fault == "missing":
        count, gross = count + 1, gross + 1234
    elif fault == "amount":
        gross += 7
    elif fault == "fee":
        fee += 3
    elif fault == "extra":
        count -= 1
    elif fault == "late_control":
        arrived = closed_at + 3 * HOUR
        count += 1
    elif fault == "ghost":
        count, gross, fee = 3, 3000, 0
    elif fault == "after_decision":
        late = chunk[-1]
        late["ingest_time"] = closed_at + 2 * HOUR + 1
        moved.append(late)
    record = {
        "batch_id": batch_id,
        "merchant_id": first["merchant_id"],
        "currency": first["currency"],
        "notice_count": max(count, 0),
        "gross_amount_minor": gross,
        "fee_amount_minor": max(fee, 0),
        "closed_at": closed_at,
    }
    line = {"source": "batch", "ingest_time": arrived, "record": record}
    if fault == "repeated":
        return [line, {**line, "ingest_time": arrived + 5_000}]
    if fault == "replaced":
        wrong = {**line, "record": {**record, "gross_amount_minor": gross + 100}}
        return [wrong, {**line, "ingest_time": closed_at + 2 * HOUR}]
    if fault == "ghost":
        for doc in chunk:
            doc["record"]["batch_id"] = None
    return [line]


def _invalid_control(seed: int, notices: list[dict[str, Any]]) -> dict[str, Any]:
    t = notices[len(notices) // 2]["ingest_time"] if notices else 0
    record = {
        "batch_id": f"bat-{seed}-invalid",
        "merchant_id": "m1",
        "currency": "EUR",
        "notice_count": -1,
        "gross_amount_minor": 0,
        "fee_amount_minor": 0,
        "closed_at": t,
    }
    return {"source": "batch", "ingest_time": t, "record": record}
