"""Reads alert output rows for scoring: (order_id, kind, status) multisets, and the checks contract v2 puts on
RESOLVED records (each closes an OPEN alert of the same kind and order — batch, for a batch alert —, with severity
INFO; an alert resolves at most once). Also finds card numbers anywhere in output rows (none may appear, masked
ones do not count)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from posrecon.sim.pan import card_number_runs
from posrecon.sim.vocabulary import BATCH_ALERT_KINDS, OPEN, RESOLVED

Row = Mapping[str, Any]
#: (order_id — batch_id for a batch alert —, kind, status)
AlertKey = tuple[str | None, str, str]


def status_of(row: Row) -> str:
    """A row without ``status`` (a v1 alert) is OPEN."""
    status = row.get("status")
    return OPEN if status is None else str(status)


def subject_of(row: Row) -> Any:
    """What an alert is about: its batch_id for a batch alert (order_id null), else its order_id."""
    return row.get("batch_id") if row["kind"] in BATCH_ALERT_KINDS else row.get("order_id")


@dataclass(frozen=True, slots=True)
class AlertReading:
    actual: Counter[AlertKey]
    duplicate_ids: tuple[str, ...]
    #: RESOLVED alert ids whose resolves_alert_id is no OPEN alert of the same kind and order, or not severity INFO
    bad_resolutions: tuple[str, ...]
    #: OPEN alert ids that more than one RESOLVED record closes
    repeated_resolutions: tuple[str, ...]


def read_alerts(rows: Iterable[Row]) -> AlertReading:
    actual: Counter[AlertKey] = Counter()
    ids: Counter[str] = Counter()
    opened: dict[str, tuple[Any, Any]] = {}
    resolutions: list[Row] = []
    for row in rows:
        subject = subject_of(row)
        status = status_of(row)
        actual[(None if subject is None else str(subject), str(row["kind"]), status)] += 1
        ids[str(row["alert_id"])] += 1
        if status == OPEN:
            opened[str(row["alert_id"])] = (row["kind"], subject)
        elif status == RESOLVED:
            resolutions.append(row)
    bad = []
    closes: Counter[str] = Counter()
    for row in resolutions:
        target = str(row.get("resolves_alert_id"))
        closes[target] += 1
        if opened.get(target) != (row["kind"], subject_of(row)) or row.get("severity", "INFO") != "INFO":
            bad.append(str(row["alert_id"]))
    return AlertReading(
        actual,
        tuple(sorted(alert_id for alert_id, n in ids.items() if n > 1)),
        tuple(sorted(bad)),
        tuple(sorted(alert_id for alert_id, n in closes.items() if n > 1)),
    )


#: ids the engine mints as hex hashes: about 1 in 20,000 holds a digit run that passes the card-number test by
#: chance (e.g. ``…fce515645028373066bb…``); they carry no input data, so they are not scanned
MINTED_IDS = frozenset({"alert_id", "resolves_alert_id"})


def card_numbers(rows: Iterable[Any]) -> int:
    """How many string values (at any depth of the rows, minted alert ids aside) hold a card number."""
    found = 0
    stack = list(rows)
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            found += len(value) >= 13 and bool(card_number_runs(value))
        elif isinstance(value, Mapping):
            stack.extend(v for k, v in value.items() if k not in MINTED_IDS)
        elif isinstance(value, list | tuple):
            stack.extend(value)
    return found
