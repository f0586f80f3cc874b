"""``posrecon lookup --batch BATCH_ID``: a settlement batch's totals, status, revisions and notices.

Asks the workers given with ``--worker`` (``GET /batches/{id}``) first; otherwise reads Kafka: the batch's rows
on ``<app>-batch-changelog`` (its partition: murmur2 of the batch_id), rebuilt into a ledger for the same view
the worker gives, and the batch's records on ``pos.batch-reconciled`` and ``pos.alerts`` (keyed by batch_id).
"""

from __future__ import annotations

import json
from typing import Any

from posrecon.app.batch_stage import batch_topics
from posrecon.app.lookup import input_partitions, scan_partition
from posrecon.app.state_store import WATERMARK_KEY, unpack_row
from posrecon.config import load_settings
from posrecon.engine.batch_state import NO_WATERMARK
from posrecon.engine.batches import BatchLedger
from posrecon.kafka.partitioner import partition_for
from posrecon.serde.wire import codec_for


def batch_in_kafka(batch_id: str, bootstrap: str, app_id: str, config: str | None) -> dict[str, Any] | None:
    settings = load_settings(config)
    client = dict(settings.kafka)
    client.pop("bootstrap.servers", None)
    partitions = input_partitions(bootstrap, client, settings.topics.terminal)
    _, changelog = batch_topics(app_id)
    partition = partition_for(batch_id.encode(), partitions)
    key = batch_id.encode()
    prefix = json.dumps([batch_id], separators=(",", ":")).encode()[:-1] + b","  # keys ["batch_id","notice_id"]

    def ours(k: bytes | None) -> bool:
        return k is not None and k != WATERMARK_KEY and k.startswith(prefix)

    latest: dict[bytes, bytes | None] = {}
    for msg in scan_partition(bootstrap, client, changelog, partition, ours):
        latest[msg.key()] = msg.value()
    rows = [unpack_row(value) for value in latest.values() if value is not None]
    reconciled = settings.topics.batch_reconciled
    record_codec, alert_codec = codec_for("BatchReconciliation", settings.serde), codec_for("Alert", settings.serde)
    records = [record_codec.decode(m.value()) for m in scan_partition(bootstrap, client, reconciled, partition, key)]
    alerts = [
        alert_codec.decode(m.value()) for m in scan_partition(bootstrap, client, settings.topics.alerts, partition, key)
    ]
    if not rows and not records and not alerts:
        return None
    ledger = BatchLedger(settings.rules)
    ledger.load_rows(rows, NO_WATERMARK)
    view: dict[str, Any] = ledger.view(batch_id) or {"batch_id": batch_id}
    view["partition"] = partition
    view["source"] = f"kafka {bootstrap} ({changelog}, {settings.topics.batch_reconciled}, {settings.topics.alerts})"
    view["records"] = records
    view["alerts"] = alerts
    return view


def render_batch(view: dict[str, Any]) -> str:
    lines = [f"batch {view['batch_id']}  (partition {view.get('partition')}, from {view.get('source')})"]
    control = view.get("control")
    if control:
        lines.append(
            f"  control: {control['notice_count']} notices, gross {control['gross_amount_minor']}, "
            f"fee {control['fee_amount_minor']} {control['currency']}  closed_at {control['closed_at']}  "
            f"merchant {control['merchant_id']}"
        )
    else:
        lines.append("  control: none received")
    if "received_count" in view:
        lines.append(
            f"  received: {view['received_count']} notices, gross {view['received_gross_minor']}, "
            f"fee {view['received_fee_minor']}   status {view['status']}  "
            f"revision {view['revision']}"
        )
    revisions = view.get("records") or view.get("revisions") or []
    if revisions:
        lines.append("  revisions:")
        for r in revisions:
            lines.append(
                f"    revision {r['revision']}: {r['status']}  count {r['received_count']}/"
                f"{r['expected_count']}  gross {r['received_gross_minor']}/{r['expected_gross_minor']}  "
                f"fee {r['received_fee_minor']}/{r['expected_fee_minor']} {r['currency']}"
            )
    for a in view.get("alerts") or []:
        lines.append(f"  alert {a['event_time']}  {a['kind']:<17} {a['status']:<8} {a['reason']}")
    if view.get("open_alerts") and not view.get("alerts"):
        lines.append(f"  open alerts: {', '.join(view['open_alerts'])}")
    notices = view.get("notices") or []
    if notices:
        lines.append(f"  notices ({len(notices)}; revision > 1: counted after the first decision):")
        for n in notices:
            lines.append(
                f"    {n['settled_at']}  {n['notice_id']}  order {n['order_id']}  {n['status']:<8} "
                f"{n['amount_minor']} fee {n['fee_minor']}  revision {n['revision']}"
            )
    return "\n".join(lines)
