"""Where a worker's time goes: summarize a py-spy raw profile (or a cProfile file) of ``posrecon run``.

``python bench/profile_summary.py PROFILE.raw`` (py-spy ``record --format raw --idle``) or ``PROFILE.prof``
(cProfile). Prints the share of the main loop's wall-clock samples per stage (each sample is charged to the
leaf-most recognised frame: a C call such as ``commit_transaction`` by the source line that calls it, waits
on the transaction helper thread included) and the top leaf frames.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

#: (label, frame pattern): what a Python frame on the stack stands for; the leaf-most match wins
STAGES: list[tuple[str, str]] = [
    ("Avro decode (compiled codec; fastavro for old writers)", "AvroCodec.decode"),
    ("Avro encode of outputs (compiled codec)", "AvroCodec.encode"),
    ("changelog rows: to_row + JSON", "encode_order"),
    ("cyclic GC (gcpolicy young collections)", "posrecon/gcpolicy.py"),
    ("engine (rules, deadlines)", "ReconciliationEngine."),
    ("engine (rules, deadlines)", "Decisions."),
    ("engine (rules, deadlines)", "Timers."),
    ("engine (rules, deadlines)", "Snapshots."),
    ("card stage (sightings rows + index)", "Outbox.card_sighting"),
    ("dead letters (scrub + headers)", "Outbox.dead_letter"),
    ("metrics (prometheus_client)", "prometheus_client/"),
    ("merge / select (TaskMerger)", "Intake.select"),
    ("backlog check (position / watermarks)", "Positions.refresh_backlog"),
    ("flow control (pause / resume)", "Intake.flow_control"),
    ("fresh end offsets (merge)", "Positions.caught_up"),
    ("fresh end offsets (merge)", "EndOffsets."),
    ("gauges (every 5 s: scan of open orders)", "Telemetry.update_gauges"),
    ("restore on assignment", "Worker._on_assign"),
    ("waiting for the previous batch's commit (helper thread)", "Transaction.finish"),
    ("card changelog rows", "encode_bucket"),
    ("card changelog rows", "encode_card_key"),
    ("card changelog rows", "encode_card_watermarks"),
    ("emit: card sightings rows + output loop", "Outbox.emit"),
    ("changelog loop (keys, dirty sets)", "Outbox.write_changelogs"),
]

#: C calls have no Python frame of their own: recognised by the source line of the Python frame calling them
C_CALLS: list[tuple[str, str]] = [
    # the per-record loop and the engine, compiled together: one C call from the worker's frame
    ("self.feed.feed(", "per-record loop + engine (compiled: engine/record_feed.py)"),
    # the output loops, compiled with the engine (engine/output_feed.py), called from Outbox
    ("feed.reconciled(", "decisions: encode + rows (compiled output feed)"),
    ("feed.alerts(", "alerts: encode + rows (compiled output feed)"),
    ("feed.sightings(", "card stage: murmur2 + card index (compiled output feed)"),
    ("self.feed.changelogs(", "changelog rows: to_row + JSON (compiled output feed)"),
    ("self.feed.produce(", "producer.produce calls"),
    ("commit_transaction", "commit_transaction (flush + EndTxn round trips)"),
    ("send_offsets_to_transaction", "send_offsets_to_transaction"),
    ("begin_transaction", "begin_transaction"),
    ("consumer.consume(", "consumer.consume (fetch wait)"),
    (".position(", "backlog check (position / watermarks)"),
    ("get_watermark_offsets(", "backlog check (position / watermarks)"),
    ("producer.produce(", "producer.produce calls"),
    ("produce(topic, value", "producer.produce calls"),  # Outbox.produce_into's local alias
    ("producer.poll(", "producer.produce calls"),
    ("schemaless_reader(", "Avro decode (compiled codec; fastavro for old writers)"),
    ("schemaless_writer(", "Avro encode of outputs (compiled codec)"),
]

OTHER = "other Python (worker loop bookkeeping)"
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:]*):(?P<line>\d+)\)$")
_SOURCE_ROOTS = [Path(__file__).resolve().parent.parent / "streams"]


def _source_line(file: str, line: int) -> str:
    import linecache

    for root in _SOURCE_ROOTS:
        candidate = root / file
        if candidate.is_file():
            text = linecache.getline(str(candidate), line)
            if text.rstrip().endswith("("):  # a call spread over lines: its callee is on the next one
                text += linecache.getline(str(candidate), line + 1)
            return text
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
    """The stage of one sample: walk from the leaf to the root, the first recognised frame decides."""
    for frame in reversed(frames):
        c_call = _c_call(frame)
        if c_call is not None:
            return c_call
        for label, pattern in STAGES:
            if pattern in frame:
                return label
    return OTHER


def summarize_raw(path: Path) -> dict[str, Any]:
    stages: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = stack.split(";")
        if not any(f.startswith("Worker.run (posrecon/app/worker.py") for f in frames):
            continue  # other threads (transaction helper thread, metrics server): the main loop only
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
