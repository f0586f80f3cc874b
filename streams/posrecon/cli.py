"""The `posrecon` console script: one subcommand per job.

Each subcommand lives in its own module exposing ``register(subparsers)``; this file only wires them.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from posrecon import __version__

#: modules that contribute subcommands, in the order `--help` lists them
COMMAND_MODULES = (
    "posrecon.replay",
    "posrecon.sim.command",
    "posrecon.sim.evaluate",
    "posrecon.localbroker",
    "posrecon.kafka.topics",
    "posrecon.kafka.produce_command",
    "posrecon.app.command",
    "posrecon.app.lookup",
    "posrecon.cases.command",
    "posrecon.sink.command",
    "posrecon.demo",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="posrecon",
        description=(
            "Reconcile POS terminal events with acquirer settlement notices.\n\n"
            "Offline:  posrecon simulate --orders 1000 --out /tmp/sim && "
            "posrecon replay /tmp/sim/input.jsonl --out /tmp/out\n"
            "Live:     posrecon broker up && posrecon topics create && posrecon run"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"posrecon {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:  # a subcommand still being built must not break the others
            if exc.name is None or not (name == exc.name or name.startswith(exc.name + ".")):
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
