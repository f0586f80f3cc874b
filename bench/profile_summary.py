"""Where a worker's time goes: summarize a py-spy raw profile (or a cProfile file) of ``posrecon run``.

``python bench/profile_summary.py PROFILE.raw`` (py-spy ``record --format raw --idle``) or ``PROFILE.prof``
(cProfile). Prints the share of the worker loop's samples spent inside each stage (inclusive: a sample
counts for every stage on its stack, the stages below are chosen to not nest) and the top functions by
self time.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

#: (label, frame pattern) — stages of one loop turn, inclusive; first match from the leaf wins
STAGES: list[tuple[str, str]] = [
    ("commit_transaction (broker round trips)", "commit_transaction"),
    ("send_offsets_to_transaction", "send_offsets_to_transaction"),
    ("begin_transaction", "begin_transaction"),
    ("Avro decode (fastavro)", "AvroCodec.decode"),
    ("Avro encode of outputs (fastavro)", "AvroCodec.encode"),
    ("changelog rows: to_row + json.dumps", "encode_order"),
    ("engine (rules, deadlines)", "ReconciliationEngine."),
    ("card stage (sightings JSON + index)", "Worker._card_sighting"),
    ("producer.produce calls", "Worker._send "),
    ("dead letters (scrub + headers)", "Worker._dead_letter"),
    ("metrics (prometheus_client)", "prometheus_client/"),
    ("merge / select (TaskMerger)", "Worker._select"),
    ("backlog check (position / watermarks)", "Worker._refresh_backlog"),
    ("gauges (every 5 s: scan of open orders)", "Worker._update_gauges"),
    ("restore on assignment", "Worker._on_assign"),
]

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:]*):(?P<line>\d+)\)$")
_SOURCE_ROOTS = [Path(__file__).resolve().parent.parent / "streams"]

#: C calls (no Python frame of their own): recognised by the source line of the leaf Python frame
C_CALLS: list[tuple[str, str]] = [
    ("commit_transaction(", "commit_transaction (broker round trips)"),
    ("send_offsets_to_transaction(", "send_offsets_to_transaction"),
    ("begin_transaction(", "begin_transaction"),
    ("consumer.consume(", "consumer.consume (fetch wait)"),
    (".position(", "backlog check (position / watermarks)"),
    ("get_watermark_offsets(", "backlog check (position / watermarks)"),
    ("producer.produce(", "producer.produce calls"),
    ("producer.poll(", "producer.produce calls"),
    ("schemaless_reader(", "Avro decode (fastavro)"),
    ("schemaless_writer(", "Avro encode of outputs (fastavro)"),
]


def _source_line(file: str, line: int) -> str:
    import linecache

    for root in _SOURCE_ROOTS:
        candidate = root / file
        if candidate.is_file():
            return linecache.getline(str(candidate), line)
    return ""


def _c_call(frame: str) -> str | None:
    m = _FRAME.match(frame)
    if m is None or not m["file"].startswith("posrecon/"):
        return None
    text = _source_line(m["file"], int(m["line"]))
    for needle, label in C_CALLS:
        if needle in text:
            return label
    return None


def _stage(frames: list[str]) -> str:
    c_call = _c_call(frames[-1])
    if c_call is not None and not any("AvroCodec." in f or "encode_order" in f for f in frames):
        return c_call
    # the leaf-most frame that matches a stage decides (e.g. json.dumps under encode_order -> changelog)
    for frame in reversed(frames):
        for label, pattern in STAGES:
            if pattern in frame:
                return label
    return "other Python (worker loop bookkeeping)"


def summarize_raw(path: Path) -> dict[str, Any]:
    stages: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = stack.split(";")
        if not any("posrecon/app/worker.py" in f for f in frames):
            continue  # other threads
        count = int(count_text)
        total += count
        stages[_stage(frames)] += count
        leaf = _FRAME.match(frames[-1])
        name = f"{leaf['func']} ({leaf['file']})" if leaf else frames[-1]
        c_call = _c_call(frames[-1])
        self_time[f"{name} -> {c_call}" if c_call else name] += count
    return {
        "samples": total,
        "stages_pct": {k: round(100 * v / total, 1) for k, v in stages.most_common()} if total else {},
        "top_self_pct": {k: round(100 * v / total, 1) for k, v in self_time.most_common(15)} if total else {},
    }


def summarize_cprofile(path: Path) -> dict[str, Any]:
    import pstats

    stats = pstats.Stats(str(path))
    rows = []
    total = 0.0
    for (file, line, func), (_cc, _nc, tt, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        total += tt
        rows.append((tt, f"{func} ({Path(file).name}:{line})"))
    rows.sort(reverse=True)
    return {"total_s": round(total, 2), "top_self_pct": {name: round(100 * tt / total, 1) for tt, name in rows[:20]}}


def summarize(path: Path) -> dict[str, Any]:
    return summarize_cprofile(path) if path.suffix == ".prof" else summarize_raw(path)


def main() -> int:
    import json

    print(json.dumps(summarize(Path(sys.argv[1])), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
