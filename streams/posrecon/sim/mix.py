"""Which scenario each order gets: ``normal`` for 1 − fault_rate of them, the rest spread by weight."""

from __future__ import annotations

import random
from collections.abc import Collection, Mapping

from posrecon.sim.scenarios import FAULT_SCENARIOS, NORMAL, SCENARIOS, V2_SCENARIOS
from posrecon.sim.vocabulary import CONTRACT_V1

#: ``batches``: settlement batches with control records (contract v2) when > 0
BATCHES = "batches"
#: the faults of settlement batches (sim/batching.py), drawn for ``fault_rate`` of the batches by these weights
BATCH_FAULTS: tuple[str, ...] = (
    "batch_missing_notice",
    "batch_extra_notice",
    "batch_amount_off",
    "batch_fee_off",
    "batch_late_control",
    "batch_repeated_control",
    "batch_replaced_control",
    "batch_late_notice",
)
#: mix names of contract v2 beyond the order scenarios
V2_MIX_NAMES: tuple[str, ...] = (*V2_SCENARIOS, BATCHES, *BATCH_FAULTS)
#: relative weight of each fault scenario (equal by default); ``batches`` 1: on
DEFAULT_WEIGHTS: dict[str, float] = {
    **dict.fromkeys(FAULT_SCENARIOS, 1.0),
    BATCHES: 1.0,
    **dict.fromkeys(BATCH_FAULTS, 1.0),
}
#: the v1 mix: contract v2's scenarios and batches weigh 0 (draws exactly as the v1 simulator did)
V1_WEIGHTS: dict[str, float] = {name: 0.0 if name in V2_MIX_NAMES else w for name, w in DEFAULT_WEIGHTS.items()}


def default_weights(contract: str) -> dict[str, float]:
    return dict(V1_WEIGHTS if contract == CONTRACT_V1 else DEFAULT_WEIGHTS)


def has_batches(weights: Mapping[str, float] | None) -> bool:
    """Whether a (contract v2) mix has settlement batches with control records."""
    return (DEFAULT_WEIGHTS if weights is None else weights).get(BATCHES, 0.0) > 0


def batch_fault_weights(weights: Mapping[str, float] | None) -> dict[str, float]:
    chosen = DEFAULT_WEIGHTS if weights is None else weights
    return {name: chosen.get(name, 0.0) for name in BATCH_FAULTS}


def has_v2_traffic(weights: Mapping[str, float] | None) -> bool:
    """Whether a mix draws contract v2 scenarios (then merchant pricing is configured too)."""
    chosen = DEFAULT_WEIGHTS if weights is None else weights
    return any(chosen.get(name, 0.0) > 0 for name in V2_SCENARIOS)


def parse_mix(text: str, contract: str = "v2") -> dict[str, float]:
    """``"late=3,missing=0.5,garbage=0"`` → weights overriding the defaults (0 disables a scenario; ``batches=0``
    settlement batches). Under contract v1 the v2 scenarios and batches weigh 0 and may not be named."""
    weights = default_weights(contract)
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in DEFAULT_WEIGHTS:
            known = ", ".join(DEFAULT_WEIGHTS)
            raise ValueError(f"--mix wants name=weight pairs with names among: {known}; got {item!r}")
        if contract == CONTRACT_V1 and name in V2_MIX_NAMES:
            raise ValueError(f"--mix: {name} is a contract v2 scenario (not with --contract v1)")
        weight = float(value)
        if weight < 0:
            raise ValueError(f"--mix weight of {name} must be >= 0")
        weights[name] = weight
    return weights


class ScenarioMix:
    """Draws scenario names; fault scenarios outside ``feasible`` (no room in the span) are never drawn."""

    def __init__(self, fault_rate: float, weights: Mapping[str, float] | None, feasible: Collection[str]) -> None:
        if not 0.0 <= fault_rate <= 1.0:
            raise ValueError("fault rate must be within [0, 1]")
        chosen = DEFAULT_WEIGHTS if weights is None else weights
        self._fault_rate = fault_rate
        orders = {name: w for name, w in chosen.items() if name in SCENARIOS}  # batches are drawn apart
        self._faults = [(name, w) for name, w in orders.items() if w > 0 and name in feasible and name != NORMAL]
        self.infeasible = sorted(name for name, w in orders.items() if w > 0 and name not in feasible)

    def pick(self, rng: random.Random, room: int) -> str:
        """A scenario needing at most ``room`` orders."""
        if not self._faults or rng.random() >= self._fault_rate:
            return NORMAL
        while True:
            name = rng.choices([n for n, _ in self._faults], weights=[w for _, w in self._faults], k=1)[0]
            if SCENARIOS[name].orders <= room:
                return name
            if all(SCENARIOS[n].orders > room for n, _ in self._faults):
                return NORMAL
