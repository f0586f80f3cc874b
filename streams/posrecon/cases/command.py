"""``posrecon cases``: the case stage and its ops API; ``posrecon console``: the same with the web console on.

``posrecon console ARGS`` is exactly ``posrecon cases --console ARGS``: the console is a page of the case API
(it lives where the case state lives), served at ``/console/`` on ``--ops-port``.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket

from posrecon.logs import setup_logging

log = logging.getLogger("posrecon.cases")


def _main(args: argparse.Namespace) -> int:
    from posrecon.app import auth
    from posrecon.cases.api import CaseApi
    from posrecon.cases.stage import CaseOptions, CaseStage
    from posrecon.config import default_bootstrap, load_settings
    from posrecon.kafka.topics import TopicError
    from posrecon.serde.wire import SchemaRegistrationError

    setup_logging(args.log_level)
    settings = load_settings(args.config)
    bootstrap = args.bootstrap or settings.kafka.get("bootstrap.servers") or default_bootstrap()
    try:  # before anything starts: a bad tokens file or certificate stops here (the message names no token)
        authenticator, tls = auth.from_arguments(args)
    except (auth.TokensFileError, OSError) as exc:
        print(f"posrecon {args.command}: {exc}")
        return 2
    options = CaseOptions(
        bootstrap=bootstrap, app_id=args.app_id, stage_id=args.stage_id, internal_replication=args.internal_replication
    )
    try:  # [serde] format = "confluent": the output schemas are registered here (serde/wire.py)
        stage = CaseStage(settings, options)
        api = CaseApi(stage, args.listen, args.ops_port, authenticator, tls, args.worker_url, args.console)
    except SchemaRegistrationError as exc:
        print(f"posrecon {args.command}: {exc}")
        return 2

    def _stop(_signum: int, _frame: object) -> None:
        stage.stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    api.start()
    scheme = "https" if tls else "http"
    url = f"{scheme}://{args.listen}:{api.port}" + ("/console/" if args.console else "/cases")
    log.info("case API served", extra={"fields": {"url": url}})
    try:
        stage.run(max_seconds=args.max_seconds)
    except TopicError as exc:
        print(f"posrecon {args.command}: {exc}")
        return 2
    finally:
        api.stop()
    log.info("case stage stopped", extra={"fields": {"records": stage.processed}})
    return 0


def _arguments(parser: argparse.ArgumentParser, console: bool) -> None:
    from posrecon.app.auth import add_arguments as add_ops_auth_arguments

    parser.add_argument("--bootstrap", help="Kafka bootstrap servers (default: the local broker, or config)")
    parser.add_argument("--config", metavar="FILE.toml", help="rules (state_retention_ms), [topics], [kafka]")
    parser.add_argument(
        "--app-id",
        default=os.environ.get("POSRECON_APP_ID", "posrecon"),
        help="the worker's app id: group <app-id>-cases, topic <app-id>-cases-changelog",
    )
    parser.add_argument(
        "--stage-id",
        default=os.environ.get("POSRECON_STAGE_ID", socket.gethostname()),
        help="stable id of this stage; its transactional.id is <app-id>-cases-<stage-id>",
    )
    parser.add_argument(
        "--ops-port",
        type=int,
        default=int(os.environ.get("POSRECON_CASES_PORT", "8090")),
        help="port of the case API (and console); default 8090, env POSRECON_CASES_PORT",
    )
    parser.add_argument(
        "--listen",
        default=os.environ.get("POSRECON_LISTEN", "127.0.0.1"),
        help="address of the case API (default 127.0.0.1; 0.0.0.0 in containers)",
    )
    parser.add_argument(
        "--worker-url",
        default=os.environ.get("POSRECON_WORKER_URL"),
        help="the worker's ops API (e.g. http://posrecon:8081): order timelines and batches (env POSRECON_WORKER_URL)",
    )
    add_ops_auth_arguments(parser)
    parser.add_argument(
        "--internal-replication",
        type=int,
        default=1,
        help="replication of <app-id>-cases-changelog when created (3 in production)",
    )
    parser.add_argument("--max-seconds", type=float, default=None, help="stop after this many seconds")
    parser.add_argument("--log-level", default=os.environ.get("POSRECON_LOG_LEVEL", "INFO"))
    if console:
        parser.set_defaults(console=True)
    else:
        parser.add_argument("--console", action="store_true", help="also serve the web console at /console/")
    parser.set_defaults(func=_main)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cases = sub.add_parser(
        "cases",
        help="run the case stage: alerts and operator actions in, exception cases out (exactly once), case API",
        description=(
            "Consume pos.alerts and pos.exception-actions, keep a case per alert, and produce pos.exceptions\n"
            "(compacted, key alert_id) in Kafka transactions; serve the case API on --ops-port (bearer tokens:\n"
            "viewer reads, operator acts). Stop with Ctrl-C / SIGTERM."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _arguments(cases, console=False)
    console = sub.add_parser(
        "console",
        help="the case stage with the web console at http://LISTEN:OPS_PORT/console/ (= cases --console)",
        description="`posrecon cases --console`: the case stage, its API, and the operators' web console.",
    )
    _arguments(console, console=True)
