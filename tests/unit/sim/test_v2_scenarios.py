"""Each contract v2 scenario: its records really are what its truth says (checked from the records, per order).

Every scenario is generated alone (40 instances) and each order's records are read back: the truth must follow
from them by the contract's rules.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

import pytest

from posrecon.config import RuleConfig
from posrecon.sim.generator import Simulation, generate
from posrecon.sim.mix import DEFAULT_WEIGHTS
from posrecon.sim.pan import card_number_runs, mask_runs
from posrecon.sim.terms import MerchantTerms
from posrecon.sim.truth import Expectation

Record = dict[str, Any]
RULES = RuleConfig()
SLA, GRACE, TTL = RULES.settlement_sla_ms, RULES.orphan_grace_ms, RULES.order_ttl_ms


def alone(name: str, instances: int = 40, seed: int = 17, rules: RuleConfig | None = None) -> Simulation:
    """``name`` only; a v1 scenario with a pinch of a v2 one, so that merchant pricing is configured."""
    mix = {**dict.fromkeys(DEFAULT_WEIGHTS, 0.0), "split_capture": 0.001, name: 1.0}
    return generate(instances, seed, rules, fault_rate=1.0, mix=mix)


class Order:
    """One order's valid records, split by kind, with its expectation."""

    def __init__(self, expectation: Expectation, records: list[tuple[str, Record]]) -> None:
        self.exp = expectation
        self.terminal = [r for source, r in records if source == "terminal"]
        self.notices = [r for source, r in records if source == "settlement"]

    def events(self, event_type: str) -> list[Record]:
        return [r for r in self.terminal if r["event_type"] == event_type]

    def notices_of(self, status: str) -> list[Record]:
        return list({r["notice_id"]: r for r in self.notices if r["status"] == status}.values())

    @property
    def approved(self) -> Record:
        (approval,) = self.events("AUTH_APPROVED")
        return approval

    def settled_sum(self) -> int:
        """Σ amount over counted parts (the first notice of each capture_seq)."""
        first: dict[int, int] = {}
        for notice in self.notices_of("SETTLED"):
            first.setdefault(notice.get("capture_seq", 1), notice["amount_minor"])
        return sum(first.values())

    def reversed_sum(self) -> int:
        return sum(r["amount_minor"] for r in self.notices_of("REVERSED"))


def orders(simulation: Simulation, name: str) -> list[Order]:
    records: dict[str, list[tuple[str, Record]]] = defaultdict(list)
    for line in simulation.lines:
        if line.valid and line.record is not None:
            records[line.record["order_id"]].append((line.source, line.record))
    found = [Order(exp, records[o]) for o, exp in simulation.truth.orders.items() if exp.scenario == name]
    assert len(found) >= 20
    return found


def tolerance(simulation: Simulation, order: Order) -> int:
    return MerchantTerms(simulation.truth.rules).tolerance(
        order.approved["merchant_id"], order.approved["amount_minor"]
    )


def test_split_capture_parts_add_up_with_correct_fees() -> None:
    simulation = alone("split_capture")
    terms = MerchantTerms(simulation.truth.rules)
    for order in orders(simulation, "split_capture"):
        parts = order.notices_of("SETTLED")
        count = parts[0]["capture_count"]
        assert 2 <= count <= 5 and {p["capture_count"] for p in parts} == {count}
        assert sorted(p["capture_seq"] for p in parts) == list(range(1, count + 1))
        assert order.settled_sum() == order.approved["amount_minor"]
        for part in parts:
            fee = terms.fee(part["merchant_id"], part["amount_minor"])
            assert fee is None or part["fee_minor"] == fee
        fees = sum(p["fee_minor"] for p in parts)
        amount = order.approved["amount_minor"]
        assert (order.exp.outcome, order.exp.alerts) == ("MATCHED", ())
        assert order.exp.amounts == (count, amount, fees, 0, amount - fees)


def test_split_capture_late_part_lands_after_the_sla() -> None:
    simulation = alone("split_capture_late")
    raced = {race.order_id for race in simulation.races}
    for order in orders(simulation, "split_capture_late"):
        lags = sorted(p["settled_at"] - order.approved["event_time"] for p in order.notices_of("SETTLED"))
        assert lags[-1] > SLA >= lags[-2]
        assert order.settled_sum() == order.approved["amount_minor"]
        assert (order.exp.outcome, order.exp.alerts, order.exp.resolved) == (
            "MATCHED_LATE",
            ("LATE_SETTLEMENT", "MISSING_SETTLEMENT"),
            ("MISSING_SETTLEMENT",),
        )
        assert order.approved["order_id"] in raced


def test_split_capture_missing_has_k_of_n_parts() -> None:
    simulation = alone("split_capture_missing")
    for order in orders(simulation, "split_capture_missing"):
        parts = order.notices_of("SETTLED")
        assert 1 <= len(parts) < parts[0]["capture_count"]
        assert order.exp.outcome == "PARTIALLY_SETTLED" and order.exp.alerts == ("MISSING_SETTLEMENT",)


def test_split_capture_duplicate_repeats_one_capture_seq_under_another_notice_id() -> None:
    simulation = alone("split_capture_duplicate")
    for order in orders(simulation, "split_capture_duplicate"):
        parts = order.notices_of("SETTLED")
        seqs = [p["capture_seq"] for p in parts]
        assert len(seqs) == parts[0]["capture_count"] + 1 and len(set(seqs)) == len(seqs) - 1
        assert order.settled_sum() == order.approved["amount_minor"]
        assert order.exp.outcome == "MATCHED" and order.exp.alerts == ("DUPLICATE_SETTLEMENT",)


@pytest.mark.parametrize("name", ["split_amount_mismatch", "split_within_tolerance"])
def test_split_sum_against_the_tolerance(name: str) -> None:
    simulation = alone(name)
    for order in orders(simulation, name):
        off = abs(order.settled_sum() - order.approved["amount_minor"])
        if name == "split_amount_mismatch":
            assert off > tolerance(simulation, order)
            assert order.exp.outcome == "AMOUNT_MISMATCH" and order.exp.alerts == ("AMOUNT_MISMATCH",)
        else:
            assert off <= tolerance(simulation, order) and (order.exp.outcome, order.exp.alerts) == ("MATCHED", ())


def test_v1_amount_mismatch_is_beyond_the_tolerance_in_bps() -> None:
    simulation = alone("amount_mismatch", 60, rules=RuleConfig(amount_tolerance_bps=1_500))
    assert simulation.truth.rules.merchants
    for order in orders(simulation, "amount_mismatch"):
        assert abs(order.notices_of("SETTLED")[0]["amount_minor"] - order.approved["amount_minor"]) > tolerance(
            simulation, order
        )


def test_refunds_add_up() -> None:
    simulation = alone("partial_refund", 60)
    for order in orders(simulation, "partial_refund"):
        settled, refunded = order.settled_sum(), order.reversed_sum()
        assert 0 < refunded <= settled and not order.exp.alerts
        assert order.exp.amounts is not None and order.exp.amounts[1::2] == (settled, refunded)
        assert order.exp.outcome == ("REVERSED" if refunded == settled else "PARTIALLY_REVERSED")


def test_over_refund_beyond_the_tolerance_is_a_mismatch() -> None:
    simulation = alone("over_refund", 80)
    for order in orders(simulation, "over_refund"):
        excess = order.reversed_sum() - order.settled_sum()
        beyond = excess > tolerance(simulation, order)
        assert excess > 0 and order.exp.outcome == "REVERSED"
        assert order.exp.alerts == (("AMOUNT_MISMATCH",) if beyond else ())
    assert simulation.truth.notes.get("over_refund.within_tolerance", 0) > 0


@pytest.mark.parametrize("name", ["fee_mismatch", "fee_within_tolerance"])
def test_fees_against_the_merchant_pricing(name: str) -> None:
    simulation = alone(name)
    terms = MerchantTerms(simulation.truth.rules)
    for order in orders(simulation, name):
        merchant = order.approved["merchant_id"]
        assert terms.priced(merchant)
        offs = [
            abs(p["fee_minor"] - (terms.fee(merchant, p["amount_minor"]) or 0)) for p in order.notices_of("SETTLED")
        ]
        if name == "fee_mismatch":
            assert max(offs) > terms.fee_tolerance(merchant) and order.exp.alerts == ("FEE_MISMATCH",)
        else:
            assert 0 < max(offs) <= terms.fee_tolerance(merchant) and not order.exp.alerts
        assert order.exp.outcome == "MATCHED"


def test_not_charged_orders_were_never_approved() -> None:
    simulation = alone("not_charged")
    for order in orders(simulation, "not_charged"):
        (failed,) = order.notices_of("FAILED")
        assert not order.events("AUTH_APPROVED") and not order.events("AUTH_DECLINED") and not order.events("VOIDED")
        created = order.events("ORDER_CREATED")
        if created:  # the TTL passed before the bank's answer: EXPIRED_ORDER opens, then resolves
            assert failed["settled_at"] > created[0]["event_time"] + TTL
            assert order.exp.alerts == order.exp.resolved == ("EXPIRED_ORDER",)
        else:
            assert not order.terminal and not order.exp.alerts
        assert order.exp.outcome == "NOT_CHARGED"


def duplicate_amount(order: Order) -> int:
    """The amount of the one SETTLED notice that repeats a capture_seq already counted."""
    seen: set[int] = set()
    repeats = []
    for part in order.notices_of("SETTLED"):
        if part["capture_seq"] in seen:
            repeats.append(part)
        seen.add(part["capture_seq"])
    (duplicate,) = repeats
    return int(duplicate["amount_minor"])


def test_late_records_that_resolve() -> None:
    checks: dict[str, Callable[[Order], object]] = {
        "missing_then_failed": lambda o: o.notices_of("FAILED")[0]["settled_at"] > o.approved["event_time"] + SLA,
        "orphan_then_refused": lambda o: (
            not o.events("AUTH_APPROVED")
            and o.terminal[0]["event_time"] > o.notices_of("SETTLED")[0]["settled_at"] + GRACE
        ),
        "expired_then_answered": lambda o: o.terminal[1]["event_time"] > o.terminal[0]["event_time"] + TTL,
        "conflict_refunded": lambda o: (
            (o.events("AUTH_DECLINED") or o.events("VOIDED")) and o.reversed_sum() == o.settled_sum()
        ),
        "duplicate_refunded": lambda o: o.reversed_sum() == duplicate_amount(o),
    }
    for name, holds in checks.items():
        for order in orders(alone(name), name):
            assert holds(order), (name, order.terminal, order.notices)
            assert order.exp.resolved and set(order.exp.resolved) <= set(order.exp.alerts)


def test_duplicate_charge_resolved_by_voiding_the_later_order() -> None:
    simulation = alone("duplicate_charge_voided")
    found = orders(simulation, "duplicate_charge_voided")
    later = [o for o in found if o.events("VOIDED")]
    assert len(later) == len(found) // 2
    for order in later:
        assert order.exp.alerts == order.exp.resolved == ("DUPLICATE_CHARGE",) and order.exp.outcome is None


def test_card_numbers_in_fields_are_dead_lettered_with_the_order_id_masked() -> None:
    simulation = alone("pan_in_field", 60)
    rejected = [line for line in simulation.lines if line.rejection == "PAN_IN_FIELD"]
    assert len(rejected) == simulation.truth.deadletters["PAN_IN_FIELD"] >= 20
    keys = set(simulation.truth.orders)
    for line in rejected:
        assert line.record is not None
        holding = [name for name, value in line.record.items() if isinstance(value, str) and card_number_runs(value)]
        assert len(holding) == 1
        order_id = line.record["order_id"]
        key = mask_runs(order_id) if holding == ["order_id"] else order_id
        assert key in keys and not card_number_runs(key)
        assert simulation.truth.orders[key].alerts == ("INVALID_EVENT",)
    assert {"order_id", "terminal_id", "merchant_id"} <= {n.split(".")[1] for n in simulation.truth.notes}


def test_numeric_look_alike_order_ids_reconcile() -> None:
    simulation = alone("pan_lookalike_id", 60)
    for order in orders(simulation, "pan_lookalike_id"):
        order_id = order.approved["order_id"]
        digits = order_id.replace(" ", "").replace("-", "")
        assert digits.isdigit() and 12 <= len(digits) <= 20 and not card_number_runs(order_id)
        assert order.exp.outcome == "MATCHED" and not order.exp.alerts
    assert not simulation.truth.deadletters
