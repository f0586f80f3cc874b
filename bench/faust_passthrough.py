"""The faust option: a faust-streaming app doing the raw baseline's decode → encode passthrough, exactly once.

One agent over both input topics (raw bytes in), the posrecon Avro codec (fastavro) to decode and
re-encode, ``await out.send(key, value)`` to the output topic; ``processing_guarantee="exactly_once"``
(faust's transaction manager: aiokafka transactional producers, one per assigned input partition,
offsets committed with ``send_offsets_to_transaction`` every ``broker_commit_every`` records /
``broker_commit_interval`` seconds — faust's defaults, 10,000 / 2.8 s). In-memory store, no web server;
consumer session timeout 10 s (instead of 60 s) so a restart after ``kill -9`` does not stall a minute.

``python bench/faust_passthrough.py --bootstrap HOST:PORT --app-id ID --out TOPIC
[--terminal T --settlement S]`` runs a faust worker until SIGTERM/SIGINT (a clean stop commits the
open transactions). ``bench/run.py`` measures its rate from the group's committed offsets and checks
exactly-once by comparing the committed output records (``read_committed``) with the committed inputs.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import AsyncIterator
from typing import Any


def build_app(
    bootstrap: str, app_id: str, terminal: str, settlement: str, out_topic: str, session_timeout_s: float = 10.0
) -> Any:
    import faust

    from posrecon.serde.codec import AvroCodec, DecodeError

    app = faust.App(
        app_id,
        broker=f"kafka://{bootstrap}",
        processing_guarantee="exactly_once",
        store="memory://",
        web_enabled=False,
        topic_partitions=12,
        consumer_auto_offset_reset="earliest",
        # faust's default is 60 s: a restarted worker would wait that long for its killed predecessor
        broker_session_timeout=session_timeout_s,
        broker_heartbeat_interval=1.0,
        key_serializer="raw",
        value_serializer="raw",
    )
    codecs = {terminal: AvroCodec("TerminalEvent"), settlement: AvroCodec("SettlementNotice")}
    source = app.topic(
        terminal, settlement, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )
    out = app.topic(out_topic, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")

    @app.agent(source)
    async def passthrough(stream: Any) -> AsyncIterator[None]:
        async for event in stream.events():
            codec = codecs[event.message.topic]
            try:
                value = codec.encode(codec.decode(event.value))
            except DecodeError:
                value = event.value
            await out.send(key=event.key, value=value)
            yield None

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--app-id", required=True)
    parser.add_argument("--terminal", default="pos.terminal-events")
    parser.add_argument("--settlement", default="pos.settlement-notices")
    parser.add_argument("--out", required=True)
    parser.add_argument("--session-timeout", type=float, default=10.0, help="consumer session timeout, s")
    parser.add_argument("--loglevel", default="warn", choices=["crit", "error", "warn", "info", "debug"])
    args = parser.parse_args(argv)
    logging.basicConfig(level={"crit": "CRITICAL", "warn": "WARNING"}.get(args.loglevel, args.loglevel.upper()))
    app = build_app(args.bootstrap, args.app_id, args.terminal, args.settlement, args.out, args.session_timeout)
    sys.argv = [sys.argv[0], "worker", "--loglevel", args.loglevel, "--without-web"]
    app.main()  # faust's CLI: runs the worker until a signal, then exits the process
    return 0


if __name__ == "__main__":
    sys.exit(main())
