"""``posrecon broker up|down|status``: the dev broker from the command line, remembered in the state file."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from posrecon.config import (
    DEFAULT_KAFKA_PORT,
    ENV_BOOTSTRAP,
    LOCAL_BROKER_STATE_FILE_NAME,
    cache_dir,
    local_broker_state_file,
)
from posrecon.localbroker.errors import BrokerError
from posrecon.localbroker.maven import KAFKA_VERSION
from posrecon.localbroker.process import START_TIMEOUT_S, STOP_TIMEOUT_S, LocalBroker
from posrecon.localbroker.state import broker_from_state, read_state, running_local_broker, write_state
from posrecon.net import port_is_free, preferred_port


def _cmd_up(args: argparse.Namespace) -> int:
    running = running_local_broker()
    if running is not None:
        print(f"already running: {running.status().describe()}", file=sys.stderr)
        if args.port is not None and args.port != running.port:
            print(
                f"note: --port {args.port} ignored; run `posrecon broker down` first to move it",
                file=sys.stderr,
            )
        if args.data_dir and Path(args.data_dir).expanduser().resolve() != running.data_dir:
            print(
                f"note: --data-dir {args.data_dir} ignored; the running broker uses {running.data_dir}",
                file=sys.stderr,
            )
        print(running.bootstrap)
        return 0
    state = read_state() or {}
    data_dir = Path(args.data_dir) if args.data_dir else Path(state.get("data_dir") or cache_dir() / "broker-data")
    same_data = Path(state.get("data_dir") or "") == data_dir.expanduser().resolve()
    port: int
    controller_port: int | None = None
    if args.port is not None:
        port = args.port
    elif same_data and state.get("port") and port_is_free(int(state["port"])):
        port = int(state["port"])  # come back where we were
    else:
        port = preferred_port(DEFAULT_KAFKA_PORT)
    if same_data and state.get("controller_port"):
        previous = int(state["controller_port"])
        if previous != port and port_is_free(previous):
            controller_port = previous
    if controller_port is None:
        controller_port = preferred_port(port + 1, exclude=[port])
    broker = LocalBroker(data_dir, port=port, controller_port=controller_port)
    print(f"starting Kafka {KAFKA_VERSION} (KRaft) in {broker.data_dir} ...", file=sys.stderr)
    started = time.monotonic()
    try:
        broker.start(timeout=args.timeout)
    except BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    write_state(broker)
    print(
        f"broker up in {time.monotonic() - started:.1f} s: pid {broker.pid}, controller port "
        f"{broker.controller_port}, log {broker.log_file}",
        file=sys.stderr,
    )
    print(broker.bootstrap)
    return 0


def _cmd_down(args: argparse.Namespace) -> int:
    state = read_state()
    if state is None or "data_dir" not in state:
        print(f"no local broker recorded ({local_broker_state_file()} missing)", file=sys.stderr)
        return 0
    broker = broker_from_state(state)
    try:
        stopped = broker.stop(timeout=args.timeout)
    except BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    write_state(broker)
    print(
        f"broker stopped (data kept in {broker.data_dir})" if stopped else "broker was not running",
        file=sys.stderr,
    )
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    state = read_state()
    if state is None or "data_dir" not in state:
        print(f"no local broker recorded ({local_broker_state_file()} missing); start one with `posrecon broker up`")
        return 1
    status = broker_from_state(state).status()
    if args.json:
        print(json.dumps(asdict(status), indent=2))
    else:
        print(status.describe())
    return 0 if status.running else 1


def register(subparsers: Any) -> None:
    """Add ``posrecon broker up|down|status``."""
    parser = subparsers.add_parser(
        "broker",
        help="run a local single-node Kafka broker (KRaft) for development",
        description=(
            f"Manage a local single-node Apache Kafka {KAFKA_VERSION} broker (KRaft, broker+controller in "
            "one JVM, 127.0.0.1 only, replication factor 1).\n\n"
            "Needs Java 17+ and, the first time, Maven: the jars are fetched from Maven Central by "
            f"deploy/kafka/pom.xml into $POSRECON_CACHE_DIR or <repo>/.cache (kafka-{KAFKA_VERSION}/libs).\n"
            f"The running broker is recorded in <cache>/{LOCAL_BROKER_STATE_FILE_NAME}; other commands use it as their "
            f"default bootstrap unless ${ENV_BOOTSTRAP} is set."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="broker_command", metavar="ACTION")

    up = sub.add_parser(
        "up",
        help="start the broker (no-op if already running); prints the bootstrap address",
        description=(
            "Start the local broker in the background and wait (up to --timeout) until clients can use it. "
            "Prints the bootstrap address (127.0.0.1:PORT) on stdout. If it already runs, only reports it."
        ),
    )
    up.add_argument(
        "--port",
        type=int,
        default=None,
        help=f"client port (default: the previous one, else {DEFAULT_KAFKA_PORT} if free, else a free port); "
        "the controller uses another free port",
    )
    up.add_argument(
        "--data-dir",
        default=None,
        metavar="DIR",
        help="where the broker keeps its config, logs and data, kept across restarts "
        "(default: the previous one, else <cache>/broker-data)",
    )
    up.add_argument(
        "--timeout",
        type=float,
        default=START_TIMEOUT_S,
        help="seconds to wait for the broker (default: %(default)s)",
    )
    up.set_defaults(func=_cmd_up)

    down = sub.add_parser(
        "down",
        help="stop the broker (data is kept)",
        description="Stop the recorded local broker: SIGTERM, then SIGKILL after --timeout seconds. Data is kept.",
    )
    down.add_argument(
        "--timeout",
        type=float,
        default=STOP_TIMEOUT_S,
        help="seconds to wait before SIGKILL (default: %(default)s)",
    )
    down.set_defaults(func=_cmd_down)

    status = sub.add_parser(
        "status",
        help="show whether the broker runs, its pid and ports (exit code 0 if running)",
        description="Show the recorded local broker: running or not, pid, ports, bootstrap. "
        "Exit code 0 if running, 1 if not.",
    )
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.set_defaults(func=_cmd_status)

    def _usage(_: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    parser.set_defaults(func=_usage)
