"""``posrecon run``: the live worker."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
from typing import TYPE_CHECKING

from posrecon.logs import setup_logging

if TYPE_CHECKING:
    from posrecon.app.worker import Worker

log = logging.getLogger("posrecon.worker")


class StopSignals:
    """SIGTERM / SIGINT: the worker's loop ends after its turn (``Worker.stopping``), commits and closes.

    Installed first thing, before the imports and the first metadata request (a second or more): a stop that
    comes before the worker exists is remembered, so that it ends the process cleanly (exit 0), not by the
    signal's default action (-15, or a KeyboardInterrupt traceback)."""

    def __init__(self) -> None:
        self.requested = False
        self.worker: Worker | None = None
        signal.signal(signal.SIGTERM, self._set)
        signal.signal(signal.SIGINT, self._set)

    def attach(self, worker: Worker) -> None:
        self.worker = worker

    def _set(self, signum: int, _frame: object) -> None:
        self.requested = True
        if self.worker is not None:
            self.worker.stopping = True


def _main(args: argparse.Namespace) -> int:
    stop = StopSignals()  # first: the imports below take a second
    from prometheus_client import start_http_server

    from posrecon.app import auth
    from posrecon.app.worker import Worker, WorkerOptions
    from posrecon.config import default_bootstrap, load_settings
    from posrecon.kafka.topics import CoPartitioningError, TopicError
    from posrecon.metrics import WorkerMetrics
    from posrecon.serde.wire import SchemaRegistrationError

    setup_logging(args.log_level)
    settings = load_settings(args.config)
    bootstrap = args.bootstrap or settings.kafka.get("bootstrap.servers") or default_bootstrap()
    try:  # before anything starts: a bad tokens file or certificate stops here (message names no token)
        ops_security = auth.from_arguments(args) if args.ops_port is not None else (None, None)
    except (auth.TokensFileError, OSError) as exc:
        print(f"posrecon run: {exc}")
        return 2
    from posrecon.engine import BUILD

    log.info("engine", extra={"fields": {"compiled": BUILD.compiled, "build": BUILD.reason}})
    metrics = WorkerMetrics()
    if args.metrics_port is not None:
        start_http_server(args.metrics_port, addr=args.listen, registry=metrics.registry)
        log.info("metrics served", extra={"fields": {"url": f"http://{args.listen}:{args.metrics_port}/metrics"}})
    options = WorkerOptions(
        bootstrap=bootstrap,
        app_id=args.app_id,
        worker_id=args.worker_id,
        batch_max_records=args.batch,
        max_task_idle_ms=args.max_task_idle_ms,
        wall_clock_lag_ms=None if args.no_wall_clock_advance else args.wall_clock_lag_ms,
        idle_advance_after_ms=args.idle_advance_after_ms,
        internal_replication=args.internal_replication,
        queue_high_records=args.max_buffered_records,
        queue_low_records=max(1, args.max_buffered_records // 5),
        static_membership=args.static_membership,
    )
    try:  # [serde] format = "confluent": the output schemas are registered here (serde/wire.py)
        worker = Worker(settings, options, metrics)
    except SchemaRegistrationError as exc:
        log.error(
            "schema registry refused an output schema", extra={"fields": {"subject": exc.subject, "reason": exc.reason}}
        )
        print(f"posrecon run: {exc}")
        return 2
    stop.attach(worker)
    if stop.requested:  # before the worker existed: no client opened yet, nothing to close
        return _stopped_before_start()
    ops = None
    if args.ops_port is not None:
        from posrecon.app.ops_api import OpsApi

        ops = OpsApi(worker, args.listen, args.ops_port, *ops_security)
        ops.start()
        log.info("ops API served", extra={"fields": {"url": f"http://{args.listen}:{ops.port}/healthz"}})
    try:
        worker.run(max_seconds=args.max_seconds)
    except CoPartitioningError as exc:
        log.error("input topics are not co-partitioned", extra={"fields": {"error": str(exc)}})
        print(f"posrecon run: {exc}")
        return 2
    except TopicError as exc:  # the input topics' metadata did not come (no broker at that address)
        if worker.stopping:
            return _stopped_before_start()
        log.error("cannot start", extra={"fields": {"error": str(exc), "bootstrap": bootstrap}})
        print(f"posrecon run: {exc}")
        return 2
    finally:
        if ops is not None:
            ops.stop()
    log.info("worker stopped", extra={"fields": {"records": worker.processed, "input_pauses": worker.input_pauses}})
    if worker.has_abandoned_producers:
        # a producer replaced after a stall may still sit inside librdkafka; destroying it could block
        # forever, and its transaction is already fenced: leave without running destructors
        logging.shutdown()
        os._exit(0)
    return 0


def _stopped_before_start() -> int:
    log.info("worker stopped before it started (SIGTERM / SIGINT during start-up)")
    return 0


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value else None


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "run",
        help="run the live worker (Kafka in, exactly-once out)",
        description=(
            "Consume pos.terminal-events and pos.settlement-notices, reconcile, and produce pos.reconciled,\n"
            "pos.alerts and pos.deadletter in Kafka transactions. Start several with different --worker-id\n"
            "to scale out (one consumer group, partitions shared). Stop with Ctrl-C / SIGTERM."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--bootstrap", help="Kafka bootstrap servers (default: the local broker, or config)")
    parser.add_argument("--config", metavar="FILE.toml", help="rules, [topics] and [kafka] client settings")
    parser.add_argument(
        "--app-id",
        default=os.environ.get("POSRECON_APP_ID", "posrecon"),
        help="consumer group and internal topic prefix (default posrecon)",
    )
    parser.add_argument(
        "--worker-id",
        default=os.environ.get("POSRECON_WORKER_ID", socket.gethostname()),
        help="stable id of this worker; its transactional.id is <app-id>-<worker-id>",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=_env_int("POSRECON_METRICS_PORT"),
        help="serve Prometheus /metrics on this port (env POSRECON_METRICS_PORT)",
    )
    parser.add_argument(
        "--ops-port",
        type=int,
        default=_env_int("POSRECON_HEALTH_PORT"),
        help="serve /healthz, /readyz, /orders/{id}, /pending on this port (env POSRECON_HEALTH_PORT)",
    )
    parser.add_argument(
        "--listen",
        default=os.environ.get("POSRECON_LISTEN", "127.0.0.1"),
        help="address for the metrics and ops ports (default 127.0.0.1; 0.0.0.0 in containers)",
    )
    from posrecon.app.auth import add_arguments as add_ops_auth_arguments

    add_ops_auth_arguments(parser)
    parser.add_argument(
        "--internal-replication",
        type=int,
        default=_env_int("POSRECON_INTERNAL_REPLICATION") or 1,
        help="replication factor of the internal topics the worker creates (default 1; use 3 in production)",
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=10_000,
        help="input records per batch when behind (default 10000); what arrives while the previous transaction"
        " commits joins the next one, up to 4 batches: fewer transactions, fewer markers",
    )
    parser.add_argument(
        "--max-task-idle-ms",
        type=int,
        default=int(os.environ.get("POSRECON_MAX_TASK_IDLE_MS", "100")),
        help="wait this long for an empty input partition before taking the other's records "
        "(default 100; env POSRECON_MAX_TASK_IDLE_MS)",
    )
    parser.add_argument(
        "--static-membership",
        action="store_true",
        default=os.environ.get("POSRECON_STATIC_MEMBERSHIP") == "1",
        help="static group membership (KIP-345): a worker restarted with the same --worker-id gets its partitions"
        " back without waiting for the session timeout (10 s); use with stable worker ids (StatefulSet pods)."
        " A worker stopped cleanly keeps its partitions idle until it returns or the session times out",
    )
    parser.add_argument(
        "--max-buffered-records",
        type=int,
        default=5000,
        help="flow control: pause fetching an input partition with more records than this waiting to be processed"
        " (resumed below a fifth of it; default 5000)",
    )
    parser.add_argument(
        "--no-wall-clock-advance",
        action="store_true",
        help="never advance an idle partition's watermark by wall clock (replay-identical output)",
    )
    parser.add_argument(
        "--wall-clock-lag-ms",
        type=int,
        default=300_000,
        help="idle partitions advance their watermark to wall clock minus this (default 300000)",
    )
    parser.add_argument(
        "--idle-advance-after-ms",
        type=int,
        default=2_000,
        help="a partition is idle after this long without records at its log end (default 2000)",
    )
    parser.add_argument("--max-seconds", type=float, default=None, help="stop after this many seconds")
    parser.add_argument(
        "--log-level",
        default=os.environ.get("POSRECON_LOG_LEVEL", "INFO"),
        help="DEBUG adds a status line of every input queue every 5 s (env POSRECON_LOG_LEVEL)",
    )
    parser.set_defaults(func=_main)
