"""``posrecon sink postgres``: book ``pos.reconciled`` into PostgreSQL, exactly once (see docs/operations.md)."""

from __future__ import annotations

import argparse
import logging
import os
import signal

from posrecon.logs import setup_logging

log = logging.getLogger("posrecon.sink")

ENV_DSN = "POSRECON_SINK_DSN"
ENV_GROUP = "POSRECON_SINK_GROUP"
DEFAULT_GROUP = "posrecon-ledger-sink"


def _positive(kind: type[int] | type[float]) -> argparse._ActionType:
    def parse(text: str) -> int | float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value

    return parse


def _main(args: argparse.Namespace) -> int:
    import psycopg

    from posrecon.config import default_bootstrap, load_settings
    from posrecon.sink.ledger_sink import LedgerSink, SinkError, SinkOptions

    setup_logging(args.log_level)
    if not args.dsn:
        print(
            f"posrecon sink postgres: no database: give --dsn or set {ENV_DSN} "
            "(e.g. postgresql://ledger@db.example:5432/ledger)"
        )
        return 2
    try:
        settings = load_settings(args.config)
    except (OSError, ValueError) as exc:
        print(f"posrecon sink postgres: {exc}")
        return 2
    options = SinkOptions(
        dsn=args.dsn,
        bootstrap=args.bootstrap or settings.kafka.get("bootstrap.servers") or default_bootstrap(),
        topic=args.topic or settings.topics.reconciled,
        group=args.group,
        batch_size=args.batch_size,
        poll_timeout=args.poll_timeout,
        exit_at_end=args.exit_at_end,
        max_seconds=args.max_seconds,
        progress_interval=args.progress_interval,
        progress_bar=args.progress,
        kafka_commit=not args.no_kafka_commit,
    )
    sink = LedgerSink(options, settings.kafka, settings.serde)

    def _stop(_signum: int, _frame: object) -> None:
        sink.stopping = True  # the batch in hand is booked (or not) as a whole, then the loop ends

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        totals = sink.run()
    except SinkError as exc:
        log.error("sink stopped on an error", extra={"fields": {"error": str(exc)}})
        print(f"posrecon sink postgres: {exc}")
        return 3
    except psycopg.OperationalError as exc:  # libpq's message names host and database, never the password
        print(f"posrecon sink postgres: database: {str(exc).strip()}")
        return 2
    print(
        f"booked {totals.booked} decisions from {options.topic} in {totals.transactions} transactions "
        f"(repeated {totals.repeated}, tombstones {totals.tombstones})"
    )
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sink = sub.add_parser(
        "sink",
        help="book the reconciled decisions into a downstream store (postgres)",
        description="Book the reconciled decisions (pos.reconciled) into a downstream store.",
    )
    kinds = sink.add_subparsers(dest="sink_kind", metavar="STORE", required=True)
    pg = kinds.add_parser(
        "postgres",
        help="book pos.reconciled into PostgreSQL, exactly once",
        description=(
            "Consume the reconciled decisions (only committed records) and book them into PostgreSQL:\n"
            "  reconciled_revisions  one row per (order_id, revision): outcome, amounts, fee, refunds, net\n"
            "  reconciled_current    one row per order: its highest revision\n"
            "  sink_offsets          (topic, partition) -> next_offset, the sink's progress\n"
            "Tables are created on first run. Rows and offsets are written in one transaction per batch, so a\n"
            "crash or kill -9 never books a decision twice or skips one: just start the sink again.\n\n"
            "Example:\n"
            "  posrecon sink postgres --dsn postgresql://ledger@localhost:5432/ledger\n"
            "  POSRECON_SINK_DSN=postgresql://ledger@db/ledger posrecon sink postgres --config posrecon.toml\n"
            "Stop with Ctrl-C / SIGTERM. Progress (booked, lag) goes to stderr as JSON log lines."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    pg.add_argument(
        "--dsn",
        default=os.environ.get(ENV_DSN),
        help=f"PostgreSQL connection string (libpq URI or key=value; env {ENV_DSN}); a password is "
        "better in ~/.pgpass or PGPASSWORD than here",
    )
    pg.add_argument("--bootstrap", help="Kafka bootstrap servers (default: config [kafka], else the local broker)")
    pg.add_argument("--topic", help="topic to book (default: config [topics] reconciled, else pos.reconciled)")
    pg.add_argument(
        "--group",
        default=os.environ.get(ENV_GROUP, DEFAULT_GROUP),
        help=f"consumer group; sinks of one group share the partitions (default {DEFAULT_GROUP}, env {ENV_GROUP})",
    )
    pg.add_argument("--config", metavar="FILE.toml", help="[topics] and [kafka] (security settings …) of posrecon.toml")
    pg.add_argument(
        "--batch-size",
        type=_positive(int),
        default=2000,
        help="records per poll, booked in one transaction (default 2000)",
    )
    pg.add_argument("--poll-timeout", type=_positive(float), default=0.5, help="seconds a poll waits (default 0.5)")
    pg.add_argument(
        "--exit-at-end",
        action="store_true",
        help="stop once every assigned partition is booked to its end (a catch-up run)",
    )
    pg.add_argument("--max-seconds", type=_positive(float), default=None, help="stop after this many seconds")
    pg.add_argument(
        "--progress-interval",
        type=float,
        default=10.0,
        help="seconds between progress log lines (booked, rate, lag); 0: none (default 10)",
    )
    pg.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="a progress bar on stderr (default: when stderr is a terminal)",
    )
    pg.add_argument(
        "--no-kafka-commit",
        action="store_true",
        help="do not also commit offsets to the consumer group (informational, for lag tools)",
    )
    pg.add_argument("--log-level", default=os.environ.get("POSRECON_LOG_LEVEL", "INFO"))
    pg.set_defaults(func=_main)
