"""``posrecon produce``: send a contract JSONL file to the input topics (also used by ``simulate --kafka``)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from posrecon.config import load_settings


def produce_file(
    path: Path, bootstrap: str | None, config: str | None, rate: float | None, progress: bool | None = None
) -> int:
    from tqdm import tqdm

    from posrecon.config import default_bootstrap
    from posrecon.kafka.feeder import Feeder

    settings = load_settings(config)
    server = bootstrap or settings.kafka.get("bootstrap.servers") or default_bootstrap()
    with open(path, encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    feeder = Feeder(server, settings.topics, settings.kafka, serde=settings.serde)
    show = sys.stderr.isatty() if progress is None else progress
    started = time.perf_counter()
    with tqdm(total=len(lines), unit="rec", desc="produce", disable=not show, file=sys.stderr) as bar:
        sent = feeder.feed(lines, rate=rate, progress=bar)
    seconds = time.perf_counter() - started
    print(
        f"produced {sent} records to {settings.topics.terminal} / {settings.topics.settlement} on {server} "
        f"in {seconds:.1f} s ({sent / max(seconds, 1e-9):,.0f}/s)"
    )
    return sent


def _main(args: argparse.Namespace) -> int:
    produce_file(Path(args.input), args.bootstrap, args.config, args.rate)
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "produce",
        help="send a contract JSONL file to the input topics",
        description="Produce each line of INPUT.jsonl (replay format) to the terminal or settlement topic, in order.",
    )
    parser.add_argument("input", metavar="INPUT.jsonl")
    parser.add_argument("--bootstrap", help="Kafka bootstrap servers (default: the local broker)")
    parser.add_argument("--config", metavar="FILE.toml", help="[topics] and [kafka] settings")
    parser.add_argument("--rate", type=float, default=None, help="records per second (default: unthrottled)")
    parser.set_defaults(func=_main)
