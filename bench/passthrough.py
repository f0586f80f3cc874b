"""Raw baseline: the Python ceiling of the worker's I/O shape, with no rules.

confluent-kafka consumer (the worker's settings: consumer group, range assignment, ``read_committed``,
``fetch.wait.max.ms=50``) → fastavro decode of the single-object encoded record → fastavro encode (with
``--codec compiled``: posrecon's compiled codec, ``posrecon/serde/compiled.py``, as the worker uses) → one
transactional producer (the worker's settings: ``linger.ms=5``, murmur2) writing ``--out`` keyed by the input
key, and per transaction ``send_offsets_to_transaction`` with the consumer's group metadata (KIP-447) then
``commit_transaction``. The loop has the worker's shape: each turn ``consume(2000, timeout=0.05)``, then one
transaction over at most ``--batch`` (10000, as the worker) buffered records. Records that do not decode are
forwarded as their raw bytes (the worker dead-letters them).

``python bench/passthrough.py --bootstrap HOST:PORT --group G --out TOPIC [--max-seconds S]
[--exit-when-drained] [--codec fastavro|compiled]``; SIGTERM/SIGINT stop it cleanly. Prints a JSON summary
on stdout at exit.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from posrecon.serde.codec import AvroCodec, DecodeError


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--group", required=True, help="consumer group (and transactional.id prefix)")
    parser.add_argument("--terminal", default="pos.terminal-events")
    parser.add_argument("--settlement", default="pos.settlement-notices")
    parser.add_argument("--out", required=True, help="output topic")
    parser.add_argument("--batch", type=int, default=10_000, help="max records per transaction (worker: 10000)")
    parser.add_argument("--max-seconds", type=float, default=None)
    parser.add_argument(
        "--codec",
        choices=("fastavro", "compiled"),
        default="fastavro",
        help="fastavro (the raw baseline as defined) or posrecon's compiled codec (what the worker runs)",
    )
    parser.add_argument("--exit-when-drained", action="store_true", help="stop once every partition is at its end")
    args = parser.parse_args(argv)

    stopping = False

    def _stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)

    codecs = {args.terminal: AvroCodec("TerminalEvent"), args.settlement: AvroCodec("SettlementNotice")}
    compiled = args.codec == "compiled"
    transcode = {
        topic: (codec.decode, codec.encode) if compiled else (codec.decode_reference, codec.encode_reference)
        for topic, codec in codecs.items()
    }
    producer = Producer(
        {
            "bootstrap.servers": args.bootstrap,
            "transactional.id": f"{args.group}-passthrough",
            "transaction.timeout.ms": 30_000,
            "partitioner": "murmur2_random",
            "linger.ms": 5,
            "queue.buffering.max.messages": 500_000,
            "log_level": 4,
        }
    )
    producer.init_transactions(30)
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": args.group,
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            "partition.assignment.strategy": "range",
            "enable.partition.eof": True,
            "fetch.wait.max.ms": 50,
            "session.timeout.ms": 10_000,
            "heartbeat.interval.ms": 1_000,
            "log_level": 4,
        }
    )
    assigned: set[tuple[str, int]] = set()
    at_end: set[tuple[str, int]] = set()

    def on_assign(_c: Consumer, parts: list[TopicPartition]) -> None:
        assigned.update((tp.topic, tp.partition) for tp in parts)

    def on_revoke(_c: Consumer, parts: list[TopicPartition]) -> None:
        for tp in parts:
            assigned.discard((tp.topic, tp.partition))
            at_end.discard((tp.topic, tp.partition))

    consumer.subscribe([args.terminal, args.settlement], on_assign=on_assign, on_revoke=on_revoke)
    buffer: deque[Any] = deque()
    spent = dict.fromkeys(("consume", "buffer", "codec_produce", "send_offsets", "commit"), 0.0)
    processed = 0
    undecodable = 0
    transactions = 0
    first_record: float | None = None
    last_commit: float | None = None
    started = time.monotonic()
    out = args.out
    try:
        while not stopping:
            if args.max_seconds is not None and time.monotonic() - started > args.max_seconds:
                break
            t0 = time.perf_counter()
            polled = consumer.consume(2000, timeout=0.05)
            t1 = time.perf_counter()
            spent["consume"] += t1 - t0
            for msg in polled:
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        at_end.add((msg.topic(), msg.partition()))
                    elif err.fatal():
                        raise KafkaException(err)
                    continue
                at_end.discard((msg.topic(), msg.partition()))
                buffer.append(msg)
            if not buffer:
                if args.exit_when_drained and assigned and at_end >= assigned:
                    break
                continue
            if first_record is None:
                first_record = time.monotonic()
            offsets: dict[tuple[str, int], int] = {}
            t2 = time.perf_counter()
            spent["buffer"] += t2 - t1
            producer.begin_transaction()
            n = min(len(buffer), args.batch)
            for _ in range(n):
                msg = buffer.popleft()
                topic = msg.topic()
                decode, encode = transcode[topic]
                try:
                    value = encode(decode(msg.value()))
                except DecodeError:
                    value = msg.value()
                    undecodable += 1
                while True:
                    try:
                        producer.produce(out, value, msg.key())
                        break
                    except BufferError:
                        producer.poll(0.05)
                offsets[(topic, msg.partition())] = msg.offset() + 1
            t3 = time.perf_counter()
            spent["codec_produce"] += t3 - t2
            producer.send_offsets_to_transaction(
                [TopicPartition(t, p, o) for (t, p), o in sorted(offsets.items())],
                consumer.consumer_group_metadata(),
            )
            t4 = time.perf_counter()
            spent["send_offsets"] += t4 - t3
            producer.commit_transaction()
            spent["commit"] += time.perf_counter() - t4
            transactions += 1
            processed += n
            last_commit = time.monotonic()
    finally:
        consumer.close()
        producer.flush(10)
    busy = (last_commit - first_record) if first_record is not None and last_commit is not None else 0.0
    print(
        json.dumps(
            {
                "records": processed,
                "codec": args.codec,
                "undecodable": undecodable,
                "transactions": transactions,
                "mean_batch": processed / max(transactions, 1),
                "busy_s": round(busy, 3),
                "records_per_s": processed / busy if busy > 0 else None,
                "seconds_in": {k: round(v, 3) for k, v in spent.items()},
                "cpu_s": round(time.process_time(), 3),
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
