"""Ground truth of a simulation: what a correct engine must output, and its JSON form (truth.json)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from posrecon.config import RuleConfig

FORMAT = "posrecon-truth/1"


@dataclass(frozen=True, slots=True)
class Expectation:
    """For one order: its final outcome (None: no reconciled record) and the alert kinds it must get."""

    outcome: str | None
    alerts: tuple[str, ...] = ()
    scenario: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "alerts", tuple(sorted(self.alerts)))

    def with_alert(self, kind: str) -> Expectation:
        return dataclasses.replace(self, alerts=(*self.alerts, kind))

    def to_json(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "alerts": list(self.alerts), "scenario": self.scenario}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Expectation:
        return cls(doc["outcome"], tuple(doc["alerts"]), doc.get("scenario", ""))


@dataclass(frozen=True, slots=True)
class Truth:
    rules: RuleConfig
    until_ms: int
    orders: Mapping[str, Expectation]
    deadletters: Mapping[str, int]
    scenarios: Mapping[str, int]
    seed: int = 0
    start_ms: int = 0
    span_ms: int = 0
    fault_rate: float = 0.0
    lines: int = 0
    notes: Mapping[str, int] = field(default_factory=dict)
    #: the truth holds for one global watermark and for this many partitions
    partitions: int = 1

    def expected_alerts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for expectation in self.orders.values():
            for kind in expectation.alerts:
                counts[kind] = counts.get(kind, 0) + 1
        return dict(sorted(counts.items()))

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "seed": self.seed,
            "start_ms": self.start_ms,
            "span_ms": self.span_ms,
            "fault_rate": self.fault_rate,
            "rules": dataclasses.asdict(self.rules),
            "until_ms": self.until_ms,
            "lines": self.lines,
            "partitions": self.partitions,
            "scenarios": dict(sorted(self.scenarios.items())),
            "notes": dict(sorted(self.notes.items())),
            "deadletters": dict(sorted(self.deadletters.items())),
            "alerts": self.expected_alerts(),
            "orders": {order_id: exp.to_json() for order_id, exp in self.orders.items()},
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Truth:
        if doc.get("format") != FORMAT:
            raise ValueError(f"not a truth file of format {FORMAT}: {doc.get('format')!r}")
        return cls(
            rules=RuleConfig.from_mapping(doc["rules"]),
            until_ms=int(doc["until_ms"]),
            orders={order_id: Expectation.from_json(exp) for order_id, exp in doc["orders"].items()},
            deadletters={k: int(v) for k, v in doc["deadletters"].items()},
            scenarios={k: int(v) for k, v in doc["scenarios"].items()},
            seed=int(doc.get("seed", 0)),
            start_ms=int(doc.get("start_ms", 0)),
            span_ms=int(doc.get("span_ms", 0)),
            fault_rate=float(doc.get("fault_rate", 0.0)),
            lines=int(doc.get("lines", 0)),
            notes={k: int(v) for k, v in doc.get("notes", {}).items()},
            partitions=int(doc.get("partitions", 1)),
        )


def write_truth(path: str | Path, truth: Truth) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(truth.to_json(), fh, indent=1, ensure_ascii=False)
        fh.write("\n")


def read_truth(path: str | Path) -> Truth:
    with open(path, encoding="utf-8") as fh:
        return Truth.from_json(json.load(fh))
