"""Which notices a settlement batch holds (contract v2): notices are cut into batches of 50–2,000 after the
orders' traffic is generated, and the batch_id of every line of a notice is set to its batch's.

A merchant with enough notices gets batches of its own (merchant_id set on the control record); the notices
of the smaller merchants are pooled by the merchant's home currency into acquirer files (merchant_id null).
Batches are cut in settled_at order, 50–80 counted notices each, and the first batch of each of the busiest
merchants holds 500–2,000. Only notices that arrive on time belong to a batch with a control record (a notice
whose first copy arrives more than ``ON_TIME_MS`` after its settled_at keeps the v1 batch id, which no
control record names): so every notice of a batch is in before its deadline unless a fault delays it.
Notices the simulation drew without a batch_id (about 10 %) keep none.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from posrecon.sim.line import Line, Record
from posrecon.sim.timing import MINUTE
from posrecon.sim.vocabulary import REVERSED, SETTLED, SETTLEMENT

#: counted notices per batch (a remainder below the minimum joins the group's previous batch)
BATCH_SIZE = (50, 80)
#: the first batch of each of the busiest merchants: a big settlement file
BIG_BATCH_SIZE = (500, 1_950)
BIG_BATCH_MERCHANTS = 3
#: a notice whose first copy arrives later than this after its settled_at is not put in a batch
ON_TIME_MS = 2 * MINUTE
#: closed_at lies this long after the batch's latest settled_at
CLOSE_DELAY = (1 * MINUTE, 15 * MINUTE)


@dataclass(slots=True)
class BatchFile:
    """One batch: its notices (first valid copy of each, in settled_at order) and the control record's scope."""

    batch_id: str
    merchant_id: str | None
    currency: str
    notices: list[Line] = field(default_factory=list)
    closed_at: int = 0

    @property
    def counted(self) -> list[Line]:
        """The notices that move money: SETTLED and REVERSED (a FAILED one is not counted)."""
        return [line for line in self.notices if _record(line)["status"] in (SETTLED, REVERSED)]

    def received(self) -> tuple[int, int, int]:
        """(count, gross, fee) the batch receives: Σ SETTLED − Σ REVERSED amounts, Σ fee_minor of SETTLED."""
        count = gross = fee = 0
        for line in self.counted:
            record = _record(line)
            count += 1
            if record["status"] == SETTLED:
                gross += record["amount_minor"]
                fee += record["fee_minor"]
            else:
                gross -= record["amount_minor"]
        return count, gross, fee


def _record(line: Line) -> Record:
    assert line.record is not None
    return line.record


def cut_batches(
    lines: Iterable[Line], rng: random.Random, seed: int, home_currency: Mapping[str, str]
) -> list[BatchFile]:
    """Cut the on-time notices of ``lines`` into batches and set the batch_id of every copy of their notices."""
    copies: dict[str, list[Line]] = {}
    for line in lines:
        record = line.record
        if line.valid and line.source == SETTLEMENT and record is not None and record.get("batch_id") is not None:
            copies.setdefault(record["notice_id"], []).append(line)
    groups: dict[tuple[str, str], list[Line]] = {}
    for same in copies.values():
        first = same[0]
        record = first.record
        assert record is not None
        if first.ingest_time - record["settled_at"] > ON_TIME_MS:
            continue
        groups.setdefault(("merchant", record["merchant_id"]), []).append(first)
    pooled: dict[tuple[str, str], list[Line]] = {}
    for (kind, merchant_id), notices in list(groups.items()):
        if sum(1 for line in notices if _record(line)["status"] in (SETTLED, REVERSED)) < BATCH_SIZE[0] * 2:
            del groups[(kind, merchant_id)]
            pooled.setdefault(("pool", home_currency.get(merchant_id, "")), []).extend(notices)
    busiest = sorted(groups, key=lambda key: (-len(groups[key]), key))[:BIG_BATCH_MERCHANTS]
    batches: list[BatchFile] = []
    for key in sorted(groups) + sorted(pooled):
        notices = sorted(groups.get(key) or pooled[key], key=lambda line: (_record(line)["settled_at"], _notice(line)))
        kind, name = key
        for chunk in _chunks(notices, rng, big=key in busiest):
            opening = _record(chunk[0])
            batch = BatchFile(
                f"bt-{seed}-{len(batches) + 1}",
                name if kind == "merchant" else None,
                home_currency.get(name, str(opening["currency"])) if kind == "merchant" else name,
                chunk,
                max(int(_record(line)["settled_at"]) for line in chunk) + rng.randint(*CLOSE_DELAY),
            )
            for line in chunk:
                for copy in copies[_notice(line)]:
                    assert copy.record is not None
                    copy.record["batch_id"] = batch.batch_id
            batches.append(batch)
    return batches


def _notice(line: Line) -> str:
    return str(_record(line)["notice_id"])


def _chunks(notices: list[Line], rng: random.Random, big: bool) -> list[list[Line]]:
    """Consecutive runs of ``notices`` with 50–80 counted notices each (the first one big when ``big``); a
    remainder with too few counted notices joins the previous run (or, alone, is no batch)."""
    runs: list[list[Line]] = []
    run: list[Line] = []
    counted = 0
    target = rng.randint(*(BIG_BATCH_SIZE if big else BATCH_SIZE))
    for line in notices:
        run.append(line)
        counted += _record(line)["status"] in (SETTLED, REVERSED)
        if counted >= target:
            runs.append(run)
            run, counted = [], 0
            target = rng.randint(*BATCH_SIZE)
    if run and counted >= BATCH_SIZE[0]:
        runs.append(run)
    elif run and runs:
        runs[-1].extend(run)
    return runs
