"""Ground truth of a simulation: what a correct engine must output, and its JSON form (truth.json).

Format ``posrecon-truth/2`` (contract v2) adds, per order, the alert kinds that resolve (``resolved``: each one
also opened, so it is in ``alerts`` too) and the final record's amounts (``amounts``: settled_parts and the
settled/fee/reversed/net amounts, see ``sim.ledger``; for orders where something settled); at the top, the
contract and the config file the simulation used; with settlement batches, ``batches`` (per batch_id with a
control record: final status, batch alerts that open and resolve, final totals, the fault put in). Files of
format ``posrecon-truth/1`` still load (contract v1: no alert resolves; the evaluator then leaves RESOLVED
records unscored), and a v1 simulation still writes format 1, byte for byte as before.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from posrecon.config import RuleConfig
from posrecon.sim.vocabulary import CONTRACT_V1, CONTRACT_V2, OPEN, RESOLVED

FORMAT_V1 = "posrecon-truth/1"
FORMAT = "posrecon-truth/2"
#: the BatchReconciliation fields a batch's ``totals`` give, in order
BATCH_TOTALS = (
    "expected_count",
    "received_count",
    "expected_gross_minor",
    "received_gross_minor",
    "expected_fee_minor",
    "received_fee_minor",
)
#: the rule keys of contract v1 (a v1 truth file lists only these)
V1_RULE_KEYS = (
    "settlement_sla_ms",
    "orphan_grace_ms",
    "order_ttl_ms",
    "duplicate_charge_window_ms",
    "amount_tolerance_minor",
    "max_amount_minor",
    "max_clock_skew_ms",
    "allowed_lateness_ms",
    "state_retention_ms",
)


@dataclass(frozen=True, slots=True)
class Expectation:
    """For one order: its final outcome (None: no reconciled record), the alert kinds it must get (OPEN records,
    a multiset) and which of them must resolve (one RESOLVED record each)."""

    outcome: str | None
    alerts: tuple[str, ...] = ()
    scenario: str = ""
    resolved: tuple[str, ...] = ()
    #: the final record's settled_parts, settled/fee/reversed/net amounts (v2; None: not checked)
    amounts: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "alerts", tuple(sorted(self.alerts)))
        object.__setattr__(self, "resolved", tuple(sorted(self.resolved)))
        unopened = Counter(self.resolved) - Counter(self.alerts)
        if unopened:
            raise ValueError(f"an alert resolves that never opened: {sorted(unopened)}")

    def with_alert(self, kind: str, resolved: bool = False) -> Expectation:
        return dataclasses.replace(
            self, alerts=(*self.alerts, kind), resolved=(*self.resolved, kind) if resolved else self.resolved
        )

    def to_json(self, format_: str = FORMAT) -> dict[str, Any]:
        if format_ == FORMAT_V1:
            return {"outcome": self.outcome, "alerts": list(self.alerts), "scenario": self.scenario}
        doc: dict[str, Any] = {
            "outcome": self.outcome,
            "alerts": list(self.alerts),
            "resolved": list(self.resolved),
            "scenario": self.scenario,
        }
        if self.amounts is not None:
            doc["amounts"] = list(self.amounts)
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Expectation:
        amounts = doc.get("amounts")
        return cls(
            doc["outcome"],
            tuple(doc["alerts"]),
            doc.get("scenario", ""),
            tuple(doc.get("resolved", ())),
            None if amounts is None else tuple(amounts),
        )


@dataclass(frozen=True, slots=True)
class BatchExpectation:
    """For one settlement batch with a control record: the status of its final BatchReconciliation, the batch
    alert kinds it must get (OPEN records) and which of them resolve, the final record's totals (BATCH_TOTALS
    order) and the fault the simulator put in (``fault`` "" for none; ``variant``: how)."""

    status: str
    alerts: tuple[str, ...] = ()
    resolved: tuple[str, ...] = ()
    totals: tuple[int, ...] = ()
    fault: str = ""
    variant: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "alerts", tuple(sorted(self.alerts)))
        object.__setattr__(self, "resolved", tuple(sorted(self.resolved)))
        if Counter(self.resolved) - Counter(self.alerts):
            raise ValueError("a batch alert resolves that never opened")
        if self.totals and len(self.totals) != len(BATCH_TOTALS):
            raise ValueError(f"batch totals are {', '.join(BATCH_TOTALS)}")

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "alerts": list(self.alerts),
            "resolved": list(self.resolved),
            "totals": list(self.totals),
            "fault": self.fault,
            "variant": self.variant,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> BatchExpectation:
        return cls(
            doc["status"],
            tuple(doc.get("alerts", ())),
            tuple(doc.get("resolved", ())),
            tuple(doc.get("totals", ())),
            doc.get("fault", ""),
            doc.get("variant", ""),
        )


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
    #: which contract the expectations follow (v1: nothing resolves, v1's rules only)
    contract: str = CONTRACT_V2
    #: the config file written beside the input (its rules are ``rules``); None: none written
    config_file: str | None = None
    #: settlement batches with a control record, by batch_id (contract v2; empty: the simulation has none)
    batches: Mapping[str, BatchExpectation] = field(default_factory=dict)

    @property
    def format(self) -> str:
        return FORMAT_V1 if self.contract == CONTRACT_V1 else FORMAT

    def expected_alerts(self) -> dict[str, int]:
        """OPEN alerts expected, by kind."""
        return dict(sorted(Counter(kind for exp in self.orders.values() for kind in exp.alerts).items()))

    def expected_resolutions(self) -> dict[str, int]:
        """RESOLVED records expected, by kind."""
        return dict(sorted(Counter(kind for exp in self.orders.values() for kind in exp.resolved).items()))

    def expected_batch_statuses(self) -> dict[str, int]:
        return dict(sorted(Counter(exp.status for exp in self.batches.values()).items()))

    def expected_batch_alerts(self) -> dict[str, int]:
        """Batch alerts expected, by kind and status ("BATCH_MISMATCH/OPEN")."""
        counts = Counter(f"{kind}/{OPEN}" for exp in self.batches.values() for kind in exp.alerts)
        counts.update(f"{kind}/{RESOLVED}" for exp in self.batches.values() for kind in exp.resolved)
        return dict(sorted(counts.items()))

    def batch_faults(self) -> dict[str, int]:
        return dict(sorted(Counter(exp.fault or "none" for exp in self.batches.values()).items()))

    def to_json(self) -> dict[str, Any]:
        if self.contract == CONTRACT_V1:
            rules = {key: value for key, value in dataclasses.asdict(self.rules).items() if key in V1_RULE_KEYS}
            extra: dict[str, Any] = {}
        else:
            rules = dataclasses.asdict(self.rules)
            rules["pan_scan_fields"] = list(self.rules.pan_scan_fields)
            extra = {"contract": self.contract, "config_file": self.config_file}
        doc = {
            "format": self.format,
            **extra,
            "seed": self.seed,
            "start_ms": self.start_ms,
            "span_ms": self.span_ms,
            "fault_rate": self.fault_rate,
            "rules": rules,
            "until_ms": self.until_ms,
            "lines": self.lines,
            "partitions": self.partitions,
            "scenarios": dict(sorted(self.scenarios.items())),
            "notes": dict(sorted(self.notes.items())),
            "deadletters": dict(sorted(self.deadletters.items())),
            "alerts": self.expected_alerts(),
        }
        if self.contract != CONTRACT_V1:
            doc["resolved"] = self.expected_resolutions()
        doc["orders"] = {order_id: exp.to_json(self.format) for order_id, exp in self.orders.items()}
        if self.batches:  # only then: a truth without batches keeps its bytes
            doc["batch_statuses"] = self.expected_batch_statuses()
            doc["batch_alerts"] = self.expected_batch_alerts()
            doc["batch_faults"] = self.batch_faults()
            doc["batches"] = {batch_id: exp.to_json() for batch_id, exp in self.batches.items()}
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Truth:
        if doc.get("format") not in (FORMAT_V1, FORMAT):
            raise ValueError(f"not a truth file of format {FORMAT} or {FORMAT_V1}: {doc.get('format')!r}")
        contract = CONTRACT_V1 if doc["format"] == FORMAT_V1 else str(doc.get("contract", CONTRACT_V2))
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
            contract=contract,
            config_file=doc.get("config_file"),
            batches={batch_id: BatchExpectation.from_json(exp) for batch_id, exp in doc.get("batches", {}).items()},
        )


def write_truth(path: str | Path, truth: Truth) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(truth.to_json(), fh, indent=1, ensure_ascii=False)
        fh.write("\n")


def read_truth(path: str | Path) -> Truth:
    with open(path, encoding="utf-8") as fh:
        return Truth.from_json(json.load(fh))
