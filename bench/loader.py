"""Produce one cached shard of encoded input records (see ``bench/dataset.py``) to the input topics.

One process per shard: each shard holds whole partitions, so the order inside every partition is file
order, as with ``posrecon produce``. Records keep their key, partition and timestamp (= the line's
``ingest_time``); the producer is idempotent like the Feeder, with bigger batches (loading speed only).

``python bench/loader.py --bootstrap HOST:PORT --shard shard-0.pkl [--terminal T --settlement S --batches B]``
(``--batches``: the topic of settlement batches' control records, contract v2 data only)
prints one JSON line: ``{"records": N, "seconds": S}``.
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import time
from collections.abc import Sequence

from confluent_kafka import Producer


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--shard", required=True)
    parser.add_argument("--terminal", default="pos.terminal-events")
    parser.add_argument("--settlement", default="pos.settlement-notices")
    parser.add_argument("--batches", default="pos.settlement-batches")
    parser.add_argument("--limit-per-partition", type=int, default=0, help="only the first N records of each partition")
    args = parser.parse_args(argv)
    with open(args.shard, "rb") as fh:
        records = pickle.load(fh)
    topics = (args.terminal, args.settlement, args.batches)  # by the shard's topic index (bench/dataset.py)
    producer = Producer(
        {
            "bootstrap.servers": args.bootstrap,
            "enable.idempotence": True,
            "linger.ms": 50,
            "batch.size": 1_000_000,
            "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 1_048_576,
            "log_level": 4,
        }
    )
    errors: list[str] = []

    def delivered(err: object, _msg: object) -> None:
        if err is not None and len(errors) < 10:
            errors.append(str(err))

    started = time.monotonic()
    sent = 0
    per_partition: dict[tuple[int, int], int] = {}
    limit = args.limit_per_partition
    produce, poll = producer.produce, producer.poll
    for topic, partition, key, value, ts in records:
        if limit:
            n = per_partition.get((topic, partition), 0)
            if n >= limit:
                continue
            per_partition[(topic, partition)] = n + 1
        while True:
            try:
                produce(topics[topic], value, key, partition, on_delivery=delivered, timestamp=ts)
                break
            except BufferError:
                poll(0.05)
        sent += 1
        if not sent & 1023:
            poll(0)
    remaining = producer.flush(120)
    seconds = time.monotonic() - started
    if remaining or errors:
        print(json.dumps({"records": sent, "seconds": seconds, "undelivered": remaining, "errors": errors}))
        return 1
    print(json.dumps({"records": sent, "seconds": round(seconds, 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
