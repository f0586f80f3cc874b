"""One test per row of the contract's v2 rule table and auto-resolution table (both arrival orders where the
contract allows)."""

from __future__ import annotations

from typing import Any

import pytest

from posrecon.config import RuleConfig
from posrecon.engine.alerts import record_fingerprint
from posrecon.engine.engine import ReconciliationEngine
from posrecon.engine.order import OrderState
from scenario import HOUR, MIN, T0, batch_control, note, run, term, tick

BOTH_ORDERS = pytest.mark.parametrize("flip", [False, True], ids=["terminal-first", "settlement-first"])
PRICED = RuleConfig.from_mapping({"merchants": {"m1": {"fee_rate_bps": 100, "fee_fixed_minor": 5}}})
SLA = 24 * HOUR


def _ordered(terminal: list[dict[str, Any]], settlement: list[dict[str, Any]], flip: bool) -> list[dict[str, Any]]:
    return settlement + terminal if flip else terminal + settlement


def _parts(order: str, amounts: list[int], t: int = T0 + HOUR, **kw: Any) -> list[dict[str, Any]]:
    n = len(amounts)
    return [
        note(order, "SETTLED", t + i * MIN, nid=f"{order}-p{i + 1}", amount=a, seq=i + 1, count=n, **kw)
        for i, a in enumerate(amounts)
    ]


# --- split captures ---------------------------------------------------------------------------------------


@BOTH_ORDERS
def test_split_capture_decided_when_all_parts_are_in_by_their_sum(flip: bool) -> None:
    res = run(_ordered([term("o1", "AUTH_APPROVED", T0, amount=1000)], _parts("o1", [300, 300, 400]), flip))
    assert res.outcomes("o1")[-1] == "MATCHED" and res.kinds() == []
    final = res.final("o1")
    assert final is not None
    assert (final["settled_amount_minor"], final["settled_parts"], final["settled_at"], final["notice_id"]) == (
        1000,
        3,
        T0 + HOUR + 2 * MIN,
        "o1-p3",
    )
    assert final["settlement_lag_ms"] == HOUR + 2 * MIN


def test_split_capture_with_parts_missing_is_not_decided_before_the_sla() -> None:
    res = run([term("o1", "AUTH_APPROVED", T0, amount=1000), *_parts("o1", [300, 300, 400])[:2]])
    assert res.outcomes("o1") == [] and res.kinds() == []


@BOTH_ORDERS
def test_part_counted_again_is_duplicate_settlement(flip: bool) -> None:
    parts = _parts("o1", [500, 500])
    again = note("o1", "SETTLED", T0 + 2 * HOUR, nid="o1-again", amount=500, seq=2, count=2)
    res = run(_ordered([term("o1", "AUTH_APPROVED", T0, amount=1000)], [*parts, again], flip))
    alert = res.alert("DUPLICATE_SETTLEMENT", "o1")
    assert alert["severity"] == "CRITICAL" and "o1-again" in alert["related_ids"]
    final = res.final("o1")
    assert final is not None and (final["outcome"], final["settled_amount_minor"], final["settled_parts"]) == (
        "MATCHED",
        1000,
        2,
    )


def test_second_settled_of_a_whole_order_is_duplicate_settlement() -> None:
    res = run(
        [
            term("o1", "AUTH_APPROVED", T0),
            note("o1", "SETTLED", T0 + HOUR, nid="n1"),
            note("o1", "SETTLED", T0 + 2 * HOUR, nid="n2"),
        ]
    )
    assert res.kinds("o1") == ["DUPLICATE_SETTLEMENT"] and res.outcomes("o1") == ["MATCHED"]


def test_sla_with_k_of_n_parts_is_missing_settlement_and_partially_settled() -> None:
    res = run([term("o1", "AUTH_APPROVED", T0, amount=1000), *_parts("o1", [300, 300, 400])[:2]], until=T0 + SLA)
    alert = res.alert("MISSING_SETTLEMENT", "o1")
    assert "2 of 3 parts" in alert["reason"]
    final = res.final("o1")
    assert final is not None and (final["outcome"], final["settled_amount_minor"], final["settled_parts"]) == (
        "PARTIALLY_SETTLED",
        600,
        2,
    )


@BOTH_ORDERS
def test_over_capture_is_amount_mismatch_at_once_and_once(flip: bool) -> None:
    parts = _parts("o1", [800, 800, 100])
    res = run(_ordered([term("o1", "AUTH_APPROVED", T0, amount=1000)], parts[:2], flip))
    assert res.kinds("o1") == ["AMOUNT_MISMATCH"] and res.outcomes("o1") == ["AMOUNT_MISMATCH"]
    res = run(_ordered([term("o1", "AUTH_APPROVED", T0, amount=1000)], parts, flip))
    assert res.kinds("o1") == ["AMOUNT_MISMATCH"] and res.outcomes("o1")[-1] == "AMOUNT_MISMATCH"


def test_under_capture_with_all_parts_is_amount_mismatch() -> None:
    res = run([term("o1", "AUTH_APPROVED", T0, amount=1000), *_parts("o1", [300, 300])])
    assert res.kinds("o1") == ["AMOUNT_MISMATCH"] and res.outcomes("o1") == ["AMOUNT_MISMATCH"]


# --- refunds ----------------------------------------------------------------------------------------------


def _settled_then_refunds(*refunds: int, **rule_kw: Any) -> Any:
    lines = [
        term("o1", "AUTH_APPROVED", T0, amount=1000),
        note("o1", "SETTLED", T0 + HOUR, nid="s1", amount=1000, fee=10),
    ]
    lines += [note("o1", "REVERSED", T0 + (2 + i) * HOUR, nid=f"r{i}", amount=a) for i, a in enumerate(refunds)]
    return run(lines, rules=RuleConfig(**rule_kw) if rule_kw else None)


def test_partial_refund_is_partially_reversed_with_net_amount() -> None:
    res = _settled_then_refunds(300)
    assert res.outcomes("o1") == ["MATCHED", "PARTIALLY_REVERSED"] and res.kinds() == []
    final = res.final("o1")
    assert final is not None
    assert (final["reversed_amount_minor"], final["fee_minor"], final["net_amount_minor"], final["notice_id"]) == (
        300,
        10,
        690,
        "r0",
    )


def test_refunds_adding_up_to_the_settlement_are_reversed() -> None:
    res = _settled_then_refunds(300, 700)
    assert res.outcomes("o1") == ["MATCHED", "PARTIALLY_REVERSED", "REVERSED"] and res.kinds() == []
    final = res.final("o1")
    assert final is not None and final["notice_id"] == "r1" and final["net_amount_minor"] == -10


def test_refund_exceeding_the_settlement_is_amount_mismatch_once() -> None:
    res = _settled_then_refunds(600, 600, 10)
    assert res.kinds("o1") == ["AMOUNT_MISMATCH"] and res.outcomes("o1")[-1] == "REVERSED"
    assert "refund exceeds settlement" in res.alert("AMOUNT_MISMATCH")["reason"]


def test_refund_exceeding_within_the_tolerance_is_no_alert() -> None:
    res = _settled_then_refunds(1005, amount_tolerance_minor=5)
    assert res.kinds() == [] and res.outcomes("o1")[-1] == "REVERSED"


# --- tolerance, fees, merchant rules --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settled", "absolute", "kinds"),
    [(1100, 0, []), (1101, 0, ["AMOUNT_MISMATCH"]), (899, 0, ["AMOUNT_MISMATCH"]), (1101, 101, [])],
)
def test_tolerance_is_the_larger_of_bps_and_absolute(settled: int, absolute: int, kinds: list[str]) -> None:
    rules = RuleConfig(amount_tolerance_bps=1000, amount_tolerance_minor=absolute)  # 10 % of 1000 = 100
    res = run(
        [term("o1", "AUTH_APPROVED", T0, amount=1000), note("o1", "SETTLED", T0 + HOUR, amount=settled)], rules=rules
    )
    assert res.kinds() == kinds


def test_tolerance_is_the_merchants() -> None:
    rules = RuleConfig.from_mapping({"merchants": {"m2": {"amount_tolerance_minor": 50}}})
    lines = [
        term("o1", "AUTH_APPROVED", T0, merchant="m2"),
        note("o1", "SETTLED", T0 + HOUR, amount=1040, merchant="m2"),
        term("o2", "AUTH_APPROVED", T0),
        note("o2", "SETTLED", T0 + HOUR, amount=1040),
    ]
    assert run(lines, rules=rules).kinds() == ["AMOUNT_MISMATCH"]
    assert run(lines, rules=rules).alert("AMOUNT_MISMATCH")["order_id"] == "o2"


def test_merchant_sla_moves_the_missing_settlement_deadline() -> None:
    rules = RuleConfig.from_mapping({"merchants": {"m2": {"settlement_sla_ms": HOUR}}})
    res = run(
        [term("o1", "AUTH_APPROVED", T0, merchant="m2"), term("o2", "AUTH_APPROVED", T0)],
        rules=rules,
        until=T0 + 2 * HOUR,
    )
    assert [a["order_id"] for a in res.opened()] == ["o1"]


@BOTH_ORDERS
@pytest.mark.parametrize(("fee", "kinds"), [(15, []), (16, ["FEE_MISMATCH"])])
def test_fee_mismatch_once_per_order(flip: bool, fee: int, kinds: list[str]) -> None:
    # expected fee of 1000 at 100 bps + 5 = 15
    settlement = [note("o1", "SETTLED", T0 + HOUR, nid=f"p{i}", amount=1000, fee=fee, seq=i, count=2) for i in (1, 2)]
    res = run(_ordered([term("o1", "AUTH_APPROVED", T0, amount=2000)], settlement, flip), rules=PRICED)
    assert res.kinds("o1") == kinds and res.outcomes("o1")[-1] == "MATCHED"
    final = res.final("o1")
    assert final is not None and final["fee_minor"] == 2 * fee


@pytest.mark.parametrize(("fee", "kinds"), [(15, []), (14, []), (17, ["FEE_MISMATCH"])])
def test_fee_mismatch_of_a_whole_settlement_beyond_the_fee_tolerance(fee: int, kinds: list[str]) -> None:
    rules = RuleConfig.from_mapping(
        {"merchants": {"m1": {"fee_rate_bps": 100, "fee_fixed_minor": 5, "fee_tolerance_minor": 1}}}
    )
    res = run([term("o1", "AUTH_APPROVED", T0), note("o1", "SETTLED", T0 + HOUR, fee=fee)], rules=rules)
    assert res.kinds() == kinds


def test_no_fee_check_without_pricing() -> None:
    res = run([term("o1", "AUTH_APPROVED", T0), note("o1", "SETTLED", T0 + HOUR, fee=999)])
    assert res.kinds() == []


# --- NOT_CHARGED --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("terminal", [[], ["ORDER_CREATED"], ["ORDER_CREATED", "AUTH_TIMEOUT"]])
def test_failed_notice_for_a_never_approved_order_is_not_charged(terminal: list[str]) -> None:
    lines = [term("o1", k, T0 + i * 1000) for i, k in enumerate(terminal)]
    res = run([*lines, note("o1", "FAILED", T0 + 5 * MIN, nid="f1")])
    assert res.outcomes("o1") == ["NOT_CHARGED"] and res.kinds("o1") == []
    final = res.final("o1")
    assert final is not None and final["settled_amount_minor"] is None and final["notice_id"] == "f1"


@pytest.mark.parametrize("terminal", ["AUTH_DECLINED", "VOIDED"])
def test_failed_notice_for_a_declined_or_voided_order_is_no_decision(terminal: str) -> None:
    res = run([term("o1", terminal, T0), note("o1", "FAILED", T0 + 5 * MIN)])
    assert res.outcomes("o1") == []


# --- validation ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("seq", "count"), [(0, 1), (3, 2), (1, 0)])
def test_capture_outside_its_count_is_invalid_capture(seq: int, count: int) -> None:
    res = run([note("o1", "SETTLED", T0, seq=seq, count=count)])
    assert res.rejections == ["INVALID_CAPTURE"] and res.kinds() == ["INVALID_EVENT"] and res.outcomes("o1") == []


@pytest.mark.parametrize(
    ("line", "field"),
    [
        (term("ord-4111111111111111", "AUTH_APPROVED", T0, eid="e1"), "order_id"),
        (term("o1", "AUTH_APPROVED", T0, terminal="t-4111-1111-1111-1111"), "terminal_id"),
        (term("o1", "AUTH_DECLINED", T0, decline_code="5555555555554444"), "decline_code"),
        (note("o1", "SETTLED", T0, nid="n-378282246310005"), "notice_id"),
        (note("o1", "SETTLED", T0, batch="b 4111 1111 1111 1111"), "batch_id"),
        (note("o1", "SETTLED", T0, merchant="6011111111111117"), "merchant_id"),
    ],
)
def test_card_number_in_any_field_is_pan_in_field_and_never_echoed(line: dict[str, Any], field: str) -> None:
    res = run([line])
    assert res.rejections == ["PAN_IN_FIELD"] and res.reconciled == []
    alert = res.alert("INVALID_EVENT")
    assert field in alert["reason"]
    text = repr(alert)
    for digits in ("411111111111", "555555555555", "378282246310", "601111111111", "4111 1111 1111", "4111-1111-1111"):
        assert digits not in text
    if field == "order_id":
        assert alert["order_id"] == "ord-************1111"


@pytest.mark.parametrize("order_id", ["ord-4111111111111112", "ord-1111111111111117", "ord-41111111111111111111"])
def test_numbers_failing_luhn_or_prefix_or_too_long_pass(order_id: str) -> None:
    res = run([term(order_id, "AUTH_APPROVED", T0), note(order_id, "SETTLED", T0 + HOUR)])
    assert res.rejections == [] and res.outcomes(order_id) == ["MATCHED"]


def test_pan_scan_fields_narrows_the_scan() -> None:
    rules = RuleConfig(pan_scan_fields=("terminal_id",))
    res = run(
        [term("4111111111111111", "AUTH_APPROVED", T0), note("4111111111111111", "SETTLED", T0 + HOUR)], rules=rules
    )
    assert res.rejections == [] and res.outcomes("4111111111111111") == ["MATCHED"]


def test_fingerprint_keeps_v1_ids_and_tells_capture_fields_apart() -> None:
    v1 = note("o1", "SETTLED", T0)["record"]
    v1 = {k: v for k, v in v1.items() if k not in ("capture_seq", "capture_count")}
    assert record_fingerprint(v1) == record_fingerprint({**v1, "capture_seq": 1, "capture_count": 1})
    assert record_fingerprint(v1) != record_fingerprint({**v1, "capture_seq": 0})


# --- auto-resolution ----------------------------------------------------------------------------------------


def test_missing_settlement_resolved_by_the_late_settlement() -> None:
    res = run([term("o1", "AUTH_APPROVED", T0), tick(T0 + SLA + MIN), note("o1", "SETTLED", T0 + 26 * HOUR, nid="n1")])
    assert res.kinds("o1") == ["LATE_SETTLEMENT", "MISSING_SETTLEMENT"] and res.resolved("o1") == ["MISSING_SETTLEMENT"]
    resolved = next(a for a in res.alerts if a["status"] == "RESOLVED")
    assert resolved["event_time"] == T0 + 26 * HOUR and resolved["related_ids"] == ["n1"]


def test_missing_settlement_resolved_by_the_last_part_only() -> None:
    parts = _parts("o1", [300, 700], t=T0 + 25 * HOUR)
    res = run([term("o1", "AUTH_APPROVED", T0, amount=1000), parts[0], tick(T0 + SLA + HOUR + MIN)])
    assert res.resolved() == [] and res.outcomes("o1") == ["PARTIALLY_SETTLED"]
    res = run([term("o1", "AUTH_APPROVED", T0, amount=1000), parts[0], tick(T0 + SLA + HOUR + MIN), parts[1]])
    assert res.resolved("o1") == ["MISSING_SETTLEMENT"] and res.outcomes("o1")[-1] == "MATCHED_LATE"


def test_missing_settlement_resolved_by_a_failed_notice() -> None:
    res = run([term("o1", "AUTH_APPROVED", T0), tick(T0 + SLA + MIN), note("o1", "FAILED", T0 + 25 * HOUR)])
    assert res.resolved("o1") == ["MISSING_SETTLEMENT"] and res.outcomes("o1") == ["SETTLEMENT_FAILED"]


@pytest.mark.parametrize(
    ("event", "outcome", "opened"),
    [
        ("AUTH_APPROVED", "MATCHED", []),
        ("AUTH_DECLINED", "STATUS_CONFLICT", ["STATUS_CONFLICT"]),
        ("VOIDED", "STATUS_CONFLICT", ["STATUS_CONFLICT"]),
    ],
)
def test_orphan_settlement_resolved_by_the_terminal(event: str, outcome: str, opened: list[str]) -> None:
    res = run([note("o1", "SETTLED", T0), tick(T0 + 11 * MIN), term("o1", event, T0 - MIN)])
    assert res.resolved("o1") == ["ORPHAN_SETTLEMENT"]
    assert res.kinds("o1") == sorted(["ORPHAN_SETTLEMENT", *opened]) and res.outcomes("o1")[-1] == outcome


@pytest.mark.parametrize("clearing", ["AUTH_APPROVED", "AUTH_DECLINED", "VOIDED", "FAILED"])
def test_expired_order_resolved(clearing: str) -> None:
    late = note("o1", "FAILED", T0 + 20 * MIN) if clearing == "FAILED" else term("o1", clearing, T0 + 20 * MIN)
    res = run([term("o1", "ORDER_CREATED", T0), tick(T0 + 16 * MIN), late])
    assert res.kinds("o1") == ["EXPIRED_ORDER"] and res.resolved("o1") == ["EXPIRED_ORDER"]
    if clearing == "FAILED":
        assert res.outcomes("o1") == ["NOT_CHARGED"]


@BOTH_ORDERS
def test_status_conflict_resolved_by_a_full_refund(flip: bool) -> None:
    settlement = [note("o1", "SETTLED", T0 + MIN, nid="s1"), note("o1", "REVERSED", T0 + 2 * MIN, nid="r1")]
    res = run(_ordered([term("o1", "AUTH_DECLINED", T0)], settlement, flip))
    assert res.kinds("o1") == ["STATUS_CONFLICT"] and res.resolved("o1") == ["STATUS_CONFLICT"]
    assert res.outcomes("o1")[-1] == "REVERSED"


def test_failed_status_conflict_never_resolves() -> None:
    res = run([term("o1", "AUTH_APPROVED", T0), note("o1", "FAILED", T0 + HOUR), note("o1", "REVERSED", T0 + 2 * HOUR)])
    assert res.kinds("o1") == ["STATUS_CONFLICT"] and res.resolved() == []


@pytest.mark.parametrize(("amounts", "outcome"), [([1000], "REVERSED"), ([400, 600], "PARTIALLY_REVERSED")])
def test_duplicate_settlement_resolved_by_refunding_the_duplicate(amounts: list[int], outcome: str) -> None:
    n = len(amounts)
    dup = note("o1", "SETTLED", T0 + 2 * HOUR, nid="dup", amount=amounts[-1], seq=n, count=n)
    refund = note("o1", "REVERSED", T0 + 3 * HOUR, nid="r1", amount=amounts[-1])
    res = run([term("o1", "AUTH_APPROVED", T0, amount=1000), *_parts("o1", amounts), dup])
    assert res.resolved() == []
    res = run([term("o1", "AUTH_APPROVED", T0, amount=1000), *_parts("o1", amounts), dup, refund])
    assert res.kinds("o1") == ["DUPLICATE_SETTLEMENT"] and res.resolved("o1") == ["DUPLICATE_SETTLEMENT"]
    assert res.outcomes("o1")[-1] == outcome


@pytest.mark.parametrize("reverse_arrival", [False, True])
def test_duplicate_charge_resolved_when_the_later_order_is_voided(reverse_arrival: bool) -> None:
    first = term("o1", "AUTH_APPROVED", T0, card="tok_x")
    second = term("o2", "AUTH_APPROVED", T0 + 5 * MIN, card="tok_x")
    pair = [second, first] if reverse_arrival else [first, second]
    res = run([*pair, term("o2", "VOIDED", T0 + 6 * MIN, eid="v2")])
    assert res.kinds() == ["DUPLICATE_CHARGE"] and res.resolved("o2") == ["DUPLICATE_CHARGE"]
    assert next(a for a in res.alerts if a["status"] == "RESOLVED")["related_ids"] == ["v2"]
    res = run([*pair, term("o1", "VOIDED", T0 + 6 * MIN)])  # the earlier order's void resolves nothing
    assert res.kinds() == ["DUPLICATE_CHARGE"] and res.resolved() == []


def test_duplicate_charge_resolved_through_sightings_and_the_card_index() -> None:
    engine = ReconciliationEngine(collect_card_sightings=True)
    for line in (
        term("o1", "AUTH_APPROVED", T0, card="tok_x"),
        term("o2", "AUTH_APPROVED", T0 + MIN, card="tok_x"),
        term("o2", "VOIDED", T0 + 2 * MIN, eid="v2"),
    ):
        engine.on_terminal_event(line["record"])
    assert engine.card_sightings is not None
    found = [dup for s in engine.card_sightings for dup in engine.cards.apply(s)]
    assert [(d.later_order_id, d.resolved_by) for d in found] == [("o2", None), ("o2", "v2")]


# --- state, outputs, batches ----------------------------------------------------------------------------------


def test_every_output_carries_every_key() -> None:
    from posrecon.engine.model import ALERT_FIELDS, RECONCILED_FIELDS

    res = run([term("o1", "AUTH_APPROVED", T0), tick(T0 + SLA + MIN), note("o1", "SETTLED", T0 + 26 * HOUR)])
    assert all(tuple(r) == RECONCILED_FIELDS for r in res.reconciled)
    assert all(tuple(a) == ALERT_FIELDS for a in res.alerts) and len(res.alerts) == 3


def test_a_refund_only_change_is_a_new_revision() -> None:
    res = _settled_then_refunds(100, 100)
    assert [r["revision"] for r in res.reconciled] == [1, 2, 3]
    assert [r["reversed_amount_minor"] for r in res.reconciled] == [0, 100, 200]


def test_v1_order_rows_still_load() -> None:
    res = run([term("o1", "AUTH_APPROVED", T0), note("o1", "SETTLED", T0 + HOUR)])
    assert res.engine is not None
    row: list[Any] = res.engine.books[0].orders["o1"].to_row()
    v1_row = row[:21]
    v1_row[16] = v1_row[16][:11]  # v1 decision fields
    order = OrderState.from_row(v1_row)
    assert order.to_row()[:21] == row[:21]  # the decision fields padded as v2 computes them: no spurious revision
    assert order.open_alerts == () and order.parts is None and order.reversed_sum == 0


def test_split_order_state_round_trips() -> None:
    res = run([term("o1", "AUTH_APPROVED", T0, amount=1000), *_parts("o1", [300, 300, 400])[:2]], until=T0 + SLA)
    assert res.engine is not None
    order = res.engine.books[0].orders["o1"]
    assert order.parts is not None and order.open_alerts
    assert OrderState.from_row(order.to_row()).to_row() == order.to_row()


def test_batch_sightings_in_place_and_collected() -> None:
    from posrecon.engine.model import SettlementBatch

    control: SettlementBatch = batch_control(2, 2000, 0, closed_at=T0 + HOUR)
    lines = [note("o1", "SETTLED", T0, batch="b1"), note("o2", "SETTLED", T0 + MIN, batch="b1")]
    res = run([*lines, {"source": "batch", "record": control}])
    assert res.batch_records == []  # held until the watermark passes closed_at (event-time alignment)
    res = run([*lines, {"source": "batch", "record": control}, tick(T0 + HOUR)])
    assert [(r["status"], r["received_count"]) for r in res.batch_records] == [("BALANCED", 2)]
    res = run([lines[0], {"source": "batch", "record": control}, tick(T0 + 3 * HOUR)])
    assert [r["status"] for r in res.batch_records] == ["INCOMPLETE"]
    batch_alert = res.alert("BATCH_INCOMPLETE")
    assert batch_alert["batch_id"] == "b1" and batch_alert["order_id"] is None
    engine = ReconciliationEngine(collect_batch_sightings=True)
    engine.on_settlement_notice(lines[0]["record"])
    engine.on_settlement_notice(note("o3", "SETTLED", T0)["record"])  # no batch_id: no sighting
    assert engine.batch_sightings is not None and [s.notice_id for s in engine.batch_sightings] == [
        "o1-SETTLED-" + str(T0)
    ]
    assert len(engine.batches) == 0
    # no control-records topic (the worker's batch stage is off): batch_ids are not counted anywhere
    for collect in (True, False):
        off = ReconciliationEngine(collect_batch_sightings=collect, count_batches=False)
        assert off.on_settlement_notice(lines[0]["record"]) is None and off.open_orders() == 1
        assert not off.batch_sightings and len(off.batches) == 0, collect
        assert off._batch_feed is None or not off._batch_feed.unsent


def test_invalid_batch_control_is_invalid_event() -> None:
    bad = batch_control(-1, 0, 0, closed_at=T0)
    res = run([{"source": "batch", "record": bad}])
    assert res.rejections == ["INVALID_AMOUNT"] and res.alert("INVALID_EVENT")["batch_id"] == "b1"


def test_snapshot_carries_the_batch_ledger() -> None:
    import json

    control = batch_control(2, 2000, 0, closed_at=T0 + HOUR)
    engine = ReconciliationEngine()
    engine.on_settlement_notice(note("o1", "SETTLED", T0, batch="b1")["record"])
    engine.on_settlement_batch(control)  # type: ignore[arg-type]
    restored = ReconciliationEngine.restore(json.loads(json.dumps(engine.snapshot())))
    restored.on_settlement_notice(note("o2", "SETTLED", T0 + MIN, batch="b1")["record"])
    restored.advance(0, T0 + HOUR)  # the control record is held until the watermark passes its closed_at
    records, _ = restored.batches.take()
    assert [(r["status"], r["received_count"]) for r in records] == [("BALANCED", 2)]


def test_notices_waiting_for_their_control_record_survive_a_snapshot_and_expire_with_retention() -> None:
    import json

    control = batch_control(1, 1000, 0, closed_at=T0 + HOUR)
    engine = ReconciliationEngine()
    engine.on_settlement_notice(note("o1", "SETTLED", T0, batch="b1")["record"])
    restored = ReconciliationEngine.restore(json.loads(json.dumps(engine.snapshot())))
    restored.on_settlement_batch(control)  # type: ignore[arg-type]
    restored.advance(0, T0 + HOUR)
    assert [r["status"] for r in restored.batches.take()[0]] == ["BALANCED"]
    rules = RuleConfig(state_retention_ms=2 * HOUR)
    lines = [note("o1", "SETTLED", T0, batch="b1"), tick(T0 + 3 * HOUR), {"source": "batch", "record": control}]
    res = run(lines, rules=rules, until=T0 + 5 * HOUR)  # the ledger would have forgotten b1's notice by then
    assert [(r["status"], r["received_count"]) for r in res.batch_records] == [("INCOMPLETE", 0)]


def test_several_waiting_notices_of_a_batch_survive_a_snapshot_in_arrival_order() -> None:
    import json

    control = batch_control(3, 3000, 0, closed_at=T0 + HOUR)
    engine = ReconciliationEngine()
    for order_id, at in (("o2", T0 + MIN), ("o1", T0), ("o3", T0 + 2 * MIN)):
        engine.on_settlement_notice(note(order_id, "SETTLED", at, batch="b1")["record"])
    snapshot = json.loads(json.dumps(engine.snapshot()))
    restored = ReconciliationEngine.restore(snapshot)
    assert restored.snapshot()["batches"]["unsent"] == snapshot["batches"]["unsent"]
    [[batch_id, sightings]] = snapshot["batches"]["unsent"]
    assert batch_id == "b1" and [s[10] for s in sightings] == ["o2", "o1", "o3"]
    restored.on_settlement_batch(control)  # type: ignore[arg-type]
    restored.advance(0, T0 + HOUR)
    assert [(r["status"], r["received_count"]) for r in restored.batches.take()[0]] == [("BALANCED", 3)]
