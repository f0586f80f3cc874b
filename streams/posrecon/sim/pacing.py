"""Makes sure deadlines that must fire before a record arrives really do, however thin the traffic.

A deadline fires once the watermark (the largest event time among valid records so far, per partition)
reaches it plus ``allowed_lateness_ms``. For each race declared by a scenario we check, in arrival order,
that the records of the racing order's partition (of every partition, for a settlement batch's race: its
watermark is their minimum) arriving before the racing record carry the watermark that far; where they do
not, a pacemaker order (a plain declined order: no alert, no outcome) whose id lands on that partition is
placed just past the deadline. Pacing for N partitions also paces for one. After the last line,
:func:`pace_tail` carries every partition past the last settlement batch's deadline the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

from posrecon.sim.line import Line
from posrecon.sim.partitions import partition_of
from posrecon.sim.scenarios import Emitted, Kit, Race
from posrecon.sim.scenarios.authorisation import pacemaker
from posrecon.sim.timing import MINUTE

#: the note a tail pacemaker (:func:`pace_tail`) leaves in the truth, telling it from a race's pacemaker
TAIL_NOTE = "pacemaker.tail"


class _Partitioner:
    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self._cache: dict[str, int] = {}

    def __call__(self, order_id: str | None) -> int:
        if self.partitions <= 1 or order_id is None:
            return 0
        partition = self._cache.get(order_id)
        if partition is None:
            partition = self._cache[order_id] = partition_of(order_id, self.partitions)
        return partition


def _lagging(race: Race, marks: Sequence[int], partition: _Partitioner, lateness: int) -> list[int]:
    """The partitions whose watermark (``marks``, just before the racing line) has not reached the deadline."""
    due = race.deadline + lateness
    if race.everywhere:
        return [p for p, mark in enumerate(marks) if mark < due]
    target = partition(race.order_id)
    return [target] if marks[target] < due else []


def _watermarks_before(
    lines: Sequence[Line], races: Sequence[Race], partition: _Partitioner
) -> dict[int, tuple[int, ...]]:
    """Every partition's watermark just before each racing line arrives (keyed by the line's id)."""
    wanted = {id(race.line) for race in races}
    before: dict[int, tuple[int, ...]] = {}
    watermarks = [-(2**63)] * max(1, partition.partitions)
    for line in lines:
        if id(line) in wanted:
            before[id(line)] = tuple(watermarks)
        event_time = line.event_time
        if line.valid and event_time is not None:
            p = partition(line.order_id)
            watermarks[p] = max(watermarks[p], event_time)
    absent = [race for race in races if id(race.line) not in before]
    if absent:
        raise ValueError(f"racing line of order {absent[0].order_id} is not among the lines")
    return before


def unmet_races(lines: Sequence[Line], races: Sequence[Race], lateness: int, partitions: int = 1) -> list[Race]:
    """Races whose deadline their partition's watermark (every partition's, for ``everywhere`` races) has not
    reached when the racing line arrives."""
    partition = _Partitioner(partitions)
    before = _watermarks_before(lines, races, partition)
    return [race for race in races if _lagging(race, before[id(race.line)], partition, lateness)]


def pace(kit: Kit, lines: list[Line], races: Sequence[Race], partitions: int = 1) -> list[Emitted]:
    """Adds pacemaker orders to ``lines`` (kept sorted by ingest time) until every race is met."""
    lateness = kit.timing.lateness
    partition = _Partitioner(partitions)
    added: list[Emitted] = []
    covered_until: dict[int, int] = {}
    before = _watermarks_before(lines, races, partition)
    unmet = [race for race in races if _lagging(race, before[id(race.line)], partition, lateness)]
    for race in sorted(unmet, key=lambda race: race.deadline):
        for target in _lagging(race, before[id(race.line)], partition, lateness):
            if race.deadline + lateness <= covered_until.get(target, -(2**63)):
                continue
            at = race.deadline + lateness + kit.rng.randint(MINUTE, 2 * MINUTE)
            order_id = kit.records.ids.order()
            while partition(order_id) != target:
                order_id = kit.records.ids.order()
            added.append(pacemaker(kit, at, order_id))
            covered_until[target] = at
    if added:
        lines.extend(line for em in added for line in em.lines)
        lines.sort(key=lambda line: line.ingest_time)
        still = unmet_races(lines, races, lateness, partitions)
        if still:
            raise RuntimeError(f"pacemakers could not meet the deadline race of order {still[0].order_id}")
    return added


def pace_tail(kit: Kit, lines: list[Line], due: int, partitions: int = 1) -> list[Emitted]:
    """Adds a pacemaker order after the last line on every partition whose watermark at the end of ``lines``
    is short of ``due`` (the last settlement batch's deadline plus lateness).

    A batch decided only by its deadline needs every partition's watermark past it. Near the end of the
    traffic nothing later carries it there: replay gets it from ``--until``, live only from the idle
    partitions' wall-clock advance, which depends on a quiet spell being noticed (a demo scored before that
    missed those batches). Placed after every other line, the pacemakers change no other order's truth (the
    truth is replay with ``--until`` past them)."""
    partition = _Partitioner(partitions)
    watermarks = [-(2**63)] * max(1, partition.partitions)
    last_ingest = -(2**63)
    for line in lines:
        last_ingest = max(last_ingest, line.ingest_time)
        if line.valid and line.event_time is not None:
            p = partition(line.order_id)
            watermarks[p] = max(watermarks[p], line.event_time)
    added: list[Emitted] = []
    for target, mark in enumerate(watermarks):
        if mark >= due:
            continue
        at = max(due, last_ingest) + kit.rng.randint(MINUTE, 2 * MINUTE)
        order_id = kit.records.ids.order()
        while partition(order_id) != target:
            order_id = kit.records.ids.order()
        tail = pacemaker(kit, at, order_id)
        tail.notes.append(TAIL_NOTE)
        added.append(tail)
    lines.extend(line for em in added for line in em.lines)
    lines.sort(key=lambda line: line.ingest_time)
    return added
