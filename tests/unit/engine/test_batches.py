"""The batch ledger: control totals against the notices a batch received (contract v2, settlement batches)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from posrecon.config import RuleConfig
from posrecon.engine import batches
from posrecon.engine.batches import (
    BatchLedger,
    BatchSighting,
    batch_alert_id,
)
from posrecon.engine.model import AlertKind, InvalidReason
from posrecon.engine.validation import check_settlement_batch
from scenario import batch_control as control

T0 = 1_767_225_600_000
MIN = 60_000
HOUR = 60 * MIN
GRACE = HOUR  # the contract default batch_grace_ms
RULES = RuleConfig()


def notice(
    nid: str,
    amount: int = 1000,
    fee: int = 10,
    status: str = "SETTLED",
    at: int = T0,
    batch: str = "b1",
    source: int = 0,
    mark: int | None = None,
    merchant: str = "m1",
) -> BatchSighting:
    return BatchSighting(
        batch, nid, status, amount, fee, "EUR", merchant, at, source, at if mark is None else mark, f"o-{nid}"
    )


def statuses(records: list[Any]) -> list[tuple[int, str]]:
    return [(r["revision"], r["status"]) for r in records]


def kinds(alerts: list[Any]) -> list[tuple[str, str]]:
    return [(a["kind"], a["status"]) for a in alerts]


def test_balanced_as_soon_as_counts_and_sums_agree() -> None:
    ledger = BatchLedger(RULES)
    ledger.on_control(control(2, 3000, 20))
    ledger.on_notice(notice("n1", 1000))
    assert ledger.take() == ([], [])  # undecided: one of two
    ledger.on_notice(notice("n2", 2000))
    records, alerts = ledger.take()
    assert records == [
        {
            "batch_id": "b1",
            "currency": "EUR",
            "expected_count": 2,
            "received_count": 2,
            "expected_gross_minor": 3000,
            "received_gross_minor": 3000,
            "expected_fee_minor": 20,
            "received_fee_minor": 20,
            "status": "BALANCED",
            "revision": 1,
        }
    ]
    assert alerts == []


def test_reversed_subtracts_failed_is_not_counted_and_redelivery_is_dropped() -> None:
    ledger = BatchLedger(RULES)
    ledger.on_notice(notice("n1", 5000, fee=50))
    ledger.on_notice(notice("n1", 5000, fee=50))  # redelivery
    ledger.on_notice(notice("n2", 700, fee=7, status="FAILED"))
    ledger.on_notice(notice("n3", 1000, fee=3, status="REVERSED"))  # its fee is not counted
    ledger.on_control(control(2, 4000, 50))
    records, _ = ledger.take()
    assert statuses(records) == [(1, "BALANCED")]
    assert ledger.redeliveries == 1


def test_incomplete_at_the_deadline() -> None:
    ledger = BatchLedger(RULES)
    ledger.on_control(control(3, 3000, 30))
    ledger.on_notice(notice("n1"))
    ledger.on_notice(notice("n2", mark=T0 + GRACE - 1))
    assert ledger.take() == ([], [])
    ledger.advance(0, T0 + GRACE)
    records, alerts = ledger.take()
    assert statuses(records) == [(1, "INCOMPLETE")]
    assert kinds(alerts) == [("BATCH_INCOMPLETE", "OPEN")]
    alert = alerts[0]
    assert alert["severity"] == "WARNING" and alert["order_id"] is None and alert["terminal_id"] is None
    assert alert["batch_id"] == "b1" and alert["merchant_id"] == "m1" and alert["resolves_alert_id"] is None
    assert alert["event_time"] == T0 + GRACE and alert["alert_id"] == batch_alert_id(AlertKind.BATCH_INCOMPLETE, "b1")
    assert "2 of 3 notices" in alert["reason"]


@pytest.mark.parametrize(
    ("amounts", "fees", "why"),
    [
        ([1000, 1000], [10, 11], "fee off"),
        ([1000, 999], [10, 10], "amount off"),
        ([1000, 500, 500], [10, 10, 0], "extra"),
    ],
)
def test_mismatch_at_the_deadline(amounts: list[int], fees: list[int], why: str) -> None:
    ledger = BatchLedger(RULES)
    ledger.on_control(control(2, 2000, 20))
    for k, (amount, fee) in enumerate(zip(amounts, fees, strict=True)):
        ledger.on_notice(notice(f"n{k}", amount, fee))
    ledger.advance(0, T0 + GRACE)
    records, alerts = ledger.take()
    assert statuses(records) == [(1, "MISMATCH")], why
    assert [(a["kind"], a["severity"]) for a in alerts] == [("BATCH_MISMATCH", "CRITICAL")]


def test_grace_from_the_rules_plus_allowed_lateness() -> None:
    ledger = BatchLedger(RuleConfig(batch_grace_ms=10 * MIN, allowed_lateness_ms=MIN))
    ledger.on_control(control(1, 1000, 10))
    ledger.advance(0, T0 + 11 * MIN - 1)
    assert ledger.take() == ([], [])
    ledger.advance(0, T0 + 11 * MIN)
    records, alerts = ledger.take()
    assert statuses(records) == [(1, "INCOMPLETE")] and alerts[0]["event_time"] == T0 + 10 * MIN
    assert BatchLedger(RULES, batch_grace_ms=5).wait == 5


def test_late_notice_gives_a_new_revision_and_resolves_the_alert() -> None:
    ledger = BatchLedger(RULES)
    ledger.on_control(control(2, 2000, 20))
    ledger.on_notice(notice("n1"))
    ledger.advance(0, T0 + 2 * GRACE)
    _, opened = ledger.take()
    ledger.on_notice(notice("n2", at=T0 + 3 * GRACE))
    records, alerts = ledger.take()
    assert statuses(records) == [(2, "BALANCED")]
    assert kinds(alerts) == [("BATCH_INCOMPLETE", "RESOLVED")]
    resolved = alerts[0]
    assert resolved["resolves_alert_id"] == opened[0]["alert_id"] != resolved["alert_id"]
    assert resolved["severity"] == "INFO" and resolved["event_time"] == T0 + 3 * GRACE
    assert resolved["batch_id"] == "b1" and resolved["order_id"] is None and resolved["merchant_id"] == "m1"
    assert resolved["related_ids"] == ["n2"] and "notice n2" in resolved["reason"]
    ledger.on_notice(notice("n2", at=T0 + 3 * GRACE))  # redelivery: nothing changes, no revision
    ledger.on_notice(notice("n9", status="FAILED", at=T0 + 3 * GRACE))
    assert ledger.take() == ([], [])


def test_notice_after_balanced_makes_it_mismatch_at_once() -> None:
    ledger = BatchLedger(RULES)
    ledger.on_control(control(1, 1000, 10))
    ledger.on_notice(notice("n1"))
    ledger.on_notice(notice("n2"))
    records, alerts = ledger.take()
    assert statuses(records) == [(1, "BALANCED"), (2, "MISMATCH")]
    assert kinds(alerts) == [("BATCH_MISMATCH", "OPEN")]
    ledger.on_notice(notice("n3"))  # still MISMATCH: a new revision (counts changed), no second alert
    records, alerts = ledger.take()
    assert statuses(records) == [(3, "MISMATCH")] and alerts == []


def test_control_redelivery_is_ignored_and_replacement_re_evaluates() -> None:
    ledger = BatchLedger(RULES)
    ledger.on_notice(notice("n1"))
    ledger.on_control(control(2, 2000, 20))
    ledger.advance(0, T0 + GRACE)
    assert statuses(ledger.take()[0]) == [(1, "INCOMPLETE")]
    ledger.on_control(control(2, 2000, 20))  # identical: a redelivery
    assert ledger.take() == ([], []) and ledger.redeliveries == 1
    ledger.on_control(control(1, 1000, 10))  # replaced: balances
    records, alerts = ledger.take()
    assert statuses(records) == [(2, "BALANCED")] and kinds(alerts) == [("BATCH_INCOMPLETE", "RESOLVED")]
    assert alerts[0]["related_ids"] == ["b1"] and "control record" in alerts[0]["reason"]
    ledger.on_control(control(1, 1000, 10, closed_at=T0 + 5))  # other content, same record: no revision
    assert ledger.take() == ([], [])


def test_mismatch_balanced_mismatch_opens_a_new_alert_generation() -> None:
    ledger = BatchLedger(RULES)
    ledger.on_notice(notice("n1"))
    ledger.on_control(control(1, 999, 10))
    ledger.advance(0, T0 + GRACE)
    ledger.on_control(control(1, 1000, 10))
    ledger.on_control(control(1, 998, 10))
    records, alerts = ledger.take()
    assert statuses(records) == [(1, "MISMATCH"), (2, "BALANCED"), (3, "MISMATCH")]
    assert kinds(alerts) == [("BATCH_MISMATCH", "OPEN"), ("BATCH_MISMATCH", "RESOLVED"), ("BATCH_MISMATCH", "OPEN")]
    first, resolved, second = (a["alert_id"] for a in alerts)
    assert first == batch_alert_id(AlertKind.BATCH_MISMATCH, "b1", 0)
    assert second == batch_alert_id(AlertKind.BATCH_MISMATCH, "b1", 1)
    assert len({first, resolved, second}) == 3


def test_incomplete_then_mismatch_keeps_both_open_until_balanced() -> None:
    ledger = BatchLedger(RULES)
    ledger.on_notice(notice("n1"))
    ledger.on_control(control(2, 2000, 20))
    ledger.advance(0, T0 + GRACE)
    ledger.on_notice(notice("n2", 1001, at=T0 + GRACE))  # two of two, gross off by one
    ledger.on_control(control(2, 2001, 20))
    records, alerts = ledger.take()
    assert statuses(records) == [(1, "INCOMPLETE"), (2, "MISMATCH"), (3, "BALANCED")]
    assert kinds(alerts) == [
        ("BATCH_INCOMPLETE", "OPEN"),
        ("BATCH_MISMATCH", "OPEN"),
        ("BATCH_INCOMPLETE", "RESOLVED"),
        ("BATCH_MISMATCH", "RESOLVED"),
    ]


def test_no_control_no_output_and_the_control_may_come_after_the_deadline() -> None:
    ledger = BatchLedger(RULES)
    ledger.on_notice(notice("n1"))
    ledger.advance(0, T0 + 5 * GRACE)
    assert ledger.take() == ([], [])
    ledger.on_control(control(2, 2000, 20))  # late: its deadline has passed, decided at once
    records, alerts = ledger.take()
    assert statuses(records) == [(1, "INCOMPLETE")] and kinds(alerts) == [("BATCH_INCOMPLETE", "OPEN")]


def test_merchant_of_a_control_without_one_is_the_notices() -> None:
    ledger = BatchLedger(RULES)
    ledger.on_notice(notice("n1", merchant="m7"))
    ledger.on_notice(notice("n2", merchant="m3"))
    ledger.on_control(control(3, 3000, 30, merchant=None))
    ledger.advance(0, T0 + GRACE)
    assert ledger.take()[1][0]["merchant_id"] == "m3"


def test_watermark_is_the_minimum_over_sources() -> None:
    ledger = BatchLedger(RULES, sources=2)
    ledger.on_control(control(2, 2000, 20))
    ledger.on_notice(notice("n1", source=0, mark=T0 + 2 * GRACE))
    assert ledger.take() == ([], [])  # source 1 not heard from yet
    ledger.advance(1, T0 + GRACE - 1)
    assert ledger.take() == ([], [])
    ledger.on_notice(notice("n2", source=1, mark=T0 + GRACE - 1))  # in time: balances
    assert statuses(ledger.take()[0]) == [(1, "BALANCED")]


def test_state_is_evicted_a_retention_after_its_last_change() -> None:
    ledger = BatchLedger(RuleConfig(state_retention_ms=10 * HOUR))
    ledger.dirty = set()
    ledger.on_control(control(1, 1000, 10))
    ledger.on_notice(notice("n1"))
    ledger.on_notice(notice("x1", batch="b2"))  # never gets a control record
    ledger.advance(0, T0 + 10 * HOUR - 1)
    assert len(ledger) == 2
    ledger.on_notice(notice("x2", batch="b2", at=T0 + 10 * HOUR - 1))
    ledger.advance(0, T0 + 10 * HOUR)
    assert set(ledger.batches) == {"b2"}
    assert ledger.row(("b1", "")) is None and ledger.row(("b1", "n1")) is None and ("b1", "n1") in ledger.dirty
    ledger.advance(0, T0 + 20 * HOUR)
    assert len(ledger) == 0


def test_undecided_batch_is_kept_until_its_deadline_passed() -> None:
    ledger = BatchLedger(RuleConfig(state_retention_ms=HOUR))
    ledger.on_notice(notice("n1"))
    ledger.on_control(control(2, 2000, 20, closed_at=T0 + 5 * HOUR))
    ledger.advance(0, T0 + 5 * HOUR + GRACE - 1)
    assert len(ledger) == 1
    ledger.advance(0, T0 + 5 * HOUR + GRACE)
    assert statuses(ledger.take()[0]) == [(1, "INCOMPLETE")]


def test_rows_round_trip_and_continue_alike() -> None:
    def feed(ledger: BatchLedger, start: int, stop: int) -> None:
        steps: list[Any] = [
            lambda: ledger.on_notice(notice("n1")),
            lambda: ledger.on_control(control(3, 2500, 20)),
            lambda: ledger.on_notice(notice("n2", 2000, status="REVERSED")),
            lambda: ledger.advance(0, T0 + GRACE),
            lambda: ledger.on_notice(notice("n3", 3500, 10, at=T0 + GRACE)),
        ]
        for step in steps[start:stop]:
            step()

    for cut in range(6):
        straight = BatchLedger(RULES)
        feed(straight, 0, 5)
        first = BatchLedger(RULES)
        feed(first, 0, cut)
        rows = json.loads(json.dumps(first.to_rows()))
        restored = BatchLedger(RULES)
        restored.load_rows(list(reversed(rows)), first.watermark, dict(first.source_watermarks))
        assert sorted(map(json.dumps, restored.to_rows())) == sorted(map(json.dumps, first.to_rows()))
        feed(restored, cut, 5)
        assert first.take()[0] + restored.take()[0] == straight.take()[0], cut


def test_view_lists_totals_revisions_and_notices() -> None:
    ledger = BatchLedger(RULES)
    ledger.on_control(control(2, 2000, 20))
    ledger.on_notice(notice("n1"))
    ledger.advance(0, T0 + GRACE)
    ledger.on_notice(notice("n2", at=T0 + GRACE + 5))
    view = ledger.view("b1")
    assert view is not None and ledger.view("nope") is None
    assert (view["status"], view["revision"], view["received_count"]) == ("BALANCED", 2, 2)
    assert [r["status"] for r in view["revisions"]] == ["INCOMPLETE", "BALANCED"]
    assert [(n["notice_id"], n["order_id"], n["revision"]) for n in view["notices"]] == [
        ("n1", "o-n1", 1),
        ("n2", "o-n2", 2),
    ]


def test_history_is_bounded() -> None:
    ledger = BatchLedger(RULES)
    ledger.on_control(control(1, 1000, 10))
    for k in range(40):
        ledger.on_notice(notice(f"n{k}"))
    view = ledger.view("b1")
    assert view is not None and len(view["revisions"]) == 16 and view["revisions"][-1]["revision"] == 40


def test_dirty_keys_name_header_and_notice_rows() -> None:
    ledger = BatchLedger(RULES)
    ledger.dirty = set()
    ledger.on_notice(notice("n1"))
    assert ledger.dirty == {("b1", ""), ("b1", "n1")}
    assert ledger.row(("b1", "n1")) == ["N", "b1", "n1", "o-n1", "SETTLED", 1000, 10, T0, 1]
    header = ledger.row(("b1", ""))
    assert header is not None and header[:2] == ["B", "b1"]


def test_a_notice_settled_after_the_deadline_counts_after_the_decision_whatever_source_brings_it_first() -> None:
    ledger = BatchLedger(RULES, sources=2)
    ledger.on_control(control(1, 1000, 10), 0, T0)
    ledger.advance(1, T0)
    deadline = T0 + GRACE + RULES.allowed_lateness_ms
    ledger.on_notice(notice("n1", at=deadline + 1, source=0))  # source 0 is ahead: held, not counted
    assert ledger.take() == ([], [])
    ledger.advance(1, deadline + 1)  # the deadline first, then the notice: as replay in event-time order
    records, alerts = ledger.take()
    assert statuses(records) == [(1, "INCOMPLETE"), (2, "BALANCED")]
    assert kinds(alerts) == [("BATCH_INCOMPLETE", "OPEN"), ("BATCH_INCOMPLETE", "RESOLVED")]


def test_a_held_notice_settled_at_the_deadline_instant_counts_before_the_decision() -> None:
    ledger = BatchLedger(RULES, sources=2)
    ledger.on_control(control(1, 1000, 10), 0, T0)
    ledger.advance(1, T0)
    deadline = T0 + GRACE + RULES.allowed_lateness_ms
    ledger.on_notice(notice("n1", at=deadline, source=0))
    ledger.advance(1, deadline + 1)
    records, alerts = ledger.take()
    assert statuses(records) == [(1, "BALANCED")] and alerts == []


def test_held_notices_are_in_the_changelog_and_snapshot_rows_and_count_once_restored() -> None:
    ledger = BatchLedger(RULES, sources=2)
    ledger.dirty = set()
    ledger.on_control(control(1, 1000, 10), 0, T0)
    ledger.on_notice(notice("n1", at=T0 + MIN, source=0))  # source 1 not heard from: held
    assert ("b1", "n1") in ledger.dirty
    held = ["H", "b1", "n1", "o-n1", "SETTLED", 1000, 10, T0 + MIN, "m1"]
    assert ledger.row(("b1", "n1")) == held and held in ledger.to_rows()
    restored = BatchLedger(RULES, sources=2)
    restored.load_rows(
        json.loads(json.dumps([ledger.row(key) for key in ledger.dirty])),
        ledger.watermark,
        dict(ledger.source_watermarks),
    )
    restored.on_notice(notice("n1", at=T0 + MIN, source=0))  # a redelivery of the held notice
    assert restored.redeliveries == 1
    restored.advance(1, T0 + MIN)
    assert statuses(restored.take()[0]) == [(1, "BALANCED")]
    assert restored.row(("b1", "n1")) == ["N", "b1", "n1", "o-n1", "SETTLED", 1000, 10, T0 + MIN, 1]


def test_held_notices_are_bounded_per_batch_the_earliest_counts_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batches, "MAX_HELD", 2)
    ledger = BatchLedger(RULES, sources=2)
    for k in (3, 1, 2):
        ledger.on_notice(notice(f"n{k}", at=T0 + k, source=0))
    assert sorted(ledger.batches["b1"].held) == ["n2", "n3"] and list(ledger.batches["b1"].notices) == ["n1"]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"batch_id": ""}, InvalidReason.EMPTY_ID),
        ({"merchant_id": ""}, InvalidReason.EMPTY_ID),
        ({"notice_count": -1}, InvalidReason.INVALID_AMOUNT),
        ({"fee_amount_minor": -1}, InvalidReason.INVALID_AMOUNT),
        ({"gross_amount_minor": 2 * 10_000_000 + 1}, InvalidReason.INVALID_AMOUNT),
        ({"currency": "EURO"}, InvalidReason.INVALID_CURRENCY),
        ({"closed_at": T0 + 300_001}, InvalidReason.CLOCK_SKEW),
        ({"batch_id": "4111 1111 1111 1111"}, InvalidReason.PAN_IN_FIELD),
    ],
)
def test_invalid_control_records(change: dict[str, Any], reason: InvalidReason) -> None:
    record: Any = {**control(2, 2000, 20), **change}
    rejection = check_settlement_batch(record, T0, RULES)
    assert rejection is not None and rejection.reason is reason
    assert "4111111111111111" not in rejection.detail and "4111 1111 1111 1111" not in rejection.detail


@pytest.mark.parametrize(
    "change",
    [{}, {"merchant_id": None}, {"gross_amount_minor": -1500}, {"notice_count": 0, "gross_amount_minor": 0}],
)
def test_valid_control_records(change: dict[str, Any]) -> None:
    record: Any = {**control(2, 2000, 20), **change}
    assert check_settlement_batch(record, T0, RULES) is None
    assert check_settlement_batch(record, None, RULES) is None
