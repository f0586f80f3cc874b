"""``posrecon lookup ORDER_ID``: an order's state, timeline, alerts and decisions (``--batch BATCH_ID``: a
settlement batch's, see app/batch_lookup.py).

Asks the workers given with ``--worker`` (their ops API) first; otherwise, or when none owns the order,
reads Kafka directly: the order-state changelog partition of the order, and the order's records on
``pos.reconciled`` and ``pos.alerts`` (same partition: every topic is keyed by order_id with murmur2).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition


def _from_workers(
    order_id: str, workers: list[str], token: str | None = None, route: str = "orders"
) -> dict[str, Any] | None:
    headers = {"Authorization": f"Bearer {token}"} if token else {}  # viewer is enough (docs/operations.md)
    for base in workers:
        url = f"{base.rstrip('/')}/{route}/{quote(order_id, safe='')}"
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as resp:
                doc: dict[str, Any] = json.loads(resp.read())
                doc["source"] = url
                return doc
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                print(f"lookup: {url}: HTTP {exc.code}", file=sys.stderr)
        except OSError as exc:
            print(f"lookup: {url}: {exc}", file=sys.stderr)
    return None


def scan_partition(
    bootstrap: str, client: dict[str, str], topic: str, partition: int, key: bytes | Callable[[bytes | None], bool]
) -> list[Any]:
    """The records of ``topic``/``partition`` whose key is ``key`` (or for which ``key(record key)`` is true)."""
    wanted = key if callable(key) else key.__eq__
    consumer = Consumer(
        {
            **client,
            "bootstrap.servers": bootstrap,
            "group.id": "posrecon-lookup",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
        }
    )
    found: list[Any] = []
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        if high <= low:
            return found
        consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING)])
        while True:
            msgs = consumer.consume(5000, timeout=5)
            if not msgs:
                break
            done = False
            for msg in msgs:
                err = msg.error()
                if err is not None:
                    done = err.code() == KafkaError._PARTITION_EOF
                    continue
                if wanted(msg.key()):
                    found.append(msg)
            if done:
                break
    finally:
        consumer.close()
    return found


def input_partitions(bootstrap: str, client: dict[str, str], topic: str) -> int:
    """The partition count of an input topic (every topic the workers read has it)."""
    meta = Consumer({**client, "bootstrap.servers": bootstrap, "group.id": "posrecon-lookup"})
    try:
        return len(meta.list_topics(topic, timeout=10).topics[topic].partitions)
    finally:
        meta.close()


def lookup_in_kafka(order_id: str, bootstrap: str, app_id: str, config: str | None) -> dict[str, Any] | None:
    from posrecon.app.internal_topics import internal_topics
    from posrecon.app.ops_api import order_view
    from posrecon.app.state_store import decode_order
    from posrecon.config import load_settings
    from posrecon.kafka.partitioner import partition_for
    from posrecon.serde.wire import codec_for

    settings = load_settings(config)
    client = dict(settings.kafka)
    client.pop("bootstrap.servers", None)
    changelog, _, _ = internal_topics(app_id)
    partitions = input_partitions(bootstrap, client, settings.topics.terminal)
    partition = partition_for(order_id.encode(), partitions)
    key = order_id.encode()
    state = scan_partition(bootstrap, client, changelog, partition, key)
    reconciled_codec, alert_codec = codec_for("ReconciledOrder", settings.serde), codec_for("Alert", settings.serde)
    reconciled = [
        reconciled_codec.decode(m.value())
        for m in scan_partition(bootstrap, client, settings.topics.reconciled, partition, key)
    ]
    alerts = [
        alert_codec.decode(m.value()) for m in scan_partition(bootstrap, client, settings.topics.alerts, partition, key)
    ]
    if not state and not reconciled and not alerts:
        return None
    view: dict[str, Any] = {"order_id": order_id, "partition": partition}
    if state and state[-1].value() is not None:
        view = order_view(decode_order(state[-1].value()), partition, -1)
        view.pop("watermark")
    view["source"] = (
        f"kafka {bootstrap} (changelog {changelog}, {settings.topics.reconciled}, {settings.topics.alerts})"
    )
    view["revisions"] = reconciled
    view["alerts"] = alerts
    return view


def render(view: dict[str, Any]) -> str:
    lines = [f"order {view['order_id']}  (partition {view.get('partition')}, from {view.get('source')})"]
    if "terminal_state" in view:
        lines.append(
            f"  terminal: {view['terminal_state']}   settlement: {view['settlement_state']}   "
            f"merchant {view['merchant_id']}  terminal {view['terminal_id']}"
        )
        lines.append("  timeline (event time, epoch ms):")
        for item in view["timeline"]:
            extra = "  ".join(f"{k}={v}" for k, v in item.items() if k not in ("at", "what"))
            lines.append(f"    {item['at']}  {item['what']:<14} {extra}")
    if view.get("alerts"):
        lines.append("  alerts:")
        for a in view["alerts"]:
            lines.append(f"    {a['event_time']}  {a['kind']:<20} {a['severity']:<8} {a['reason']}")
    elif view.get("alerts_fired"):
        lines.append(f"  alerts fired: {', '.join(view['alerts_fired'])}")
    revisions = view.get("revisions") or ([view["decision"]] if view.get("decision") else [])
    if revisions:
        lines.append("  decisions:")
        for r in revisions:
            lines.append(
                f"    revision {r['revision']}: {r['outcome']}  approved {r['approved_amount_minor']} "
                f"settled {r['settled_amount_minor']} {r['currency']}  notice {r['notice_id']}"
            )
    else:
        lines.append("  decision: none yet")
    return "\n".join(lines)


def _main(args: argparse.Namespace) -> int:
    batch = args.batch is not None
    if batch == (args.order_id is not None):
        print("lookup: give an ORDER_ID or --batch BATCH_ID", file=sys.stderr)
        return 2
    wanted = args.batch if batch else args.order_id
    view = _from_workers(wanted, args.worker, args.token, "batches" if batch else "orders") if args.worker else None
    if view is None:
        from posrecon.config import default_bootstrap, load_settings

        bootstrap = args.bootstrap or load_settings(args.config).kafka.get("bootstrap.servers") or default_bootstrap()
        if batch:
            from posrecon.app.batch_lookup import batch_in_kafka

            view = batch_in_kafka(wanted, bootstrap, args.app_id, args.config)
        else:
            view = lookup_in_kafka(wanted, bootstrap, args.app_id, args.config)
    if view is None:
        print(f"{'batch' if batch else 'order'} {wanted}: not found")
        return 1
    if args.json:
        print(json.dumps(view, indent=2, default=str))
    elif batch:
        from posrecon.app.batch_lookup import render_batch

        print(render_batch(view))
    else:
        print(render(view))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "lookup",
        help="show an order's state, timeline, alerts and decisions",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("order_id", metavar="ORDER_ID", nargs="?")
    parser.add_argument("--batch", metavar="BATCH_ID", help="show a settlement batch instead of an order")
    parser.add_argument(
        "--worker",
        action="append",
        default=[],
        metavar="URL",
        help="a worker's ops API, e.g. http://127.0.0.1:8080 (repeatable)",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("POSRECON_TOKEN"),
        help="bearer token for --worker (a viewer's is enough; env POSRECON_TOKEN)",
    )
    parser.add_argument("--bootstrap", help="Kafka bootstrap servers (default: the local broker)")
    parser.add_argument("--app-id", default="posrecon", help="the workers' --app-id (changelog topic prefix)")
    parser.add_argument("--config", metavar="FILE.toml")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(func=_main)
