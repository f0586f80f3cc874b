"""One test per row of the contract's rule table (both arrival orders where the contract allows)."""

from __future__ import annotations

import pytest

from posrecon.config import RuleConfig
from scenario import HOUR, MIN, T0, note, run, term, tick

BOTH_ORDERS = pytest.mark.parametrize("flip", [False, True], ids=["terminal-first", "settlement-first"])


def _ordered(terminal: list[dict], settlement: list[dict], flip: bool) -> list[dict]:
    return settlement + terminal if flip else terminal + settlement


def test_redelivered_event_and_notice_are_dropped_and_counted() -> None:
    lines = [term("o1", "AUTH_APPROVED", T0, eid="e1"), note("o1", "SETTLED", T0 + HOUR, nid="n1")]
    res = run(lines + lines)
    assert res.outcomes("o1") == ["MATCHED"]
    assert res.alerts == []
    assert res.engine is not None and res.engine.stats.duplicates_dropped == 2


@BOTH_ORDERS
def test_matched(flip: bool) -> None:
    res = run(
        _ordered(
            [term("o1", "ORDER_CREATED", T0), term("o1", "AUTH_APPROVED", T0 + 5_000)],
            [note("o1", "SETTLED", T0 + 10 * MIN, nid="n1")],
            flip,
        )
    )
    final = res.final("o1")
    assert final is not None
    assert final["outcome"] == "MATCHED" and final["revision"] == 1
    assert final["approved_at"] == T0 + 5_000 and final["settled_at"] == T0 + 10 * MIN
    assert final["settlement_lag_ms"] == 10 * MIN - 5_000 and final["notice_id"] == "n1"
    assert final["terminal_id"] == "t1" and final["currency"] == "EUR"
    assert res.alerts == []


def test_amount_within_tolerance_matches() -> None:
    rules = RuleConfig(amount_tolerance_minor=5)
    res = run(
        [term("o1", "AUTH_APPROVED", T0, amount=1000), note("o1", "SETTLED", T0 + HOUR, amount=1005)], rules=rules
    )
    assert res.outcomes("o1") == ["MATCHED"]


@BOTH_ORDERS
def test_late_settlement_is_late_not_missing(flip: bool) -> None:
    # settlement 25 h after approval carries the watermark past the 24 h deadline itself: LATE, not MISSING
    res = run(_ordered([term("o1", "AUTH_APPROVED", T0)], [note("o1", "SETTLED", T0 + 25 * HOUR)], flip))
    assert res.outcomes("o1") == ["MATCHED_LATE"]
    assert res.kinds() == ["LATE_SETTLEMENT"]
    assert res.alert("LATE_SETTLEMENT")["severity"] == "WARNING"


def test_missing_then_late_when_watermark_passes_first() -> None:
    res = run([term("o1", "AUTH_APPROVED", T0), tick(T0 + 24 * HOUR + MIN), note("o1", "SETTLED", T0 + 26 * HOUR)])
    assert res.kinds("o1") == ["LATE_SETTLEMENT", "MISSING_SETTLEMENT"]
    missing = res.alert("MISSING_SETTLEMENT")
    assert missing["event_time"] == T0 + 24 * HOUR and missing["severity"] == "WARNING"
    assert res.outcomes("o1") == ["MATCHED_LATE"]


@BOTH_ORDERS
@pytest.mark.parametrize("amount,currency", [(999, "EUR"), (1000, "USD")])
def test_amount_mismatch(flip: bool, amount: int, currency: str) -> None:
    res = run(
        _ordered(
            [term("o1", "AUTH_APPROVED", T0)],
            [note("o1", "SETTLED", T0 + HOUR, amount=amount, currency=currency)],
            flip,
        )
    )
    assert res.outcomes("o1") == ["AMOUNT_MISMATCH"]
    alert = res.alert("AMOUNT_MISMATCH")
    assert alert["severity"] == "CRITICAL" and alert["order_id"] == "o1"


def test_missing_settlement_fires_once_at_deadline() -> None:
    res = run([term("o1", "AUTH_APPROVED", T0), tick(T0 + 24 * HOUR - 1)])
    assert res.kinds() == []
    res = run([term("o1", "AUTH_APPROVED", T0), tick(T0 + 24 * HOUR), tick(T0 + 48 * HOUR, "other")])
    assert res.kinds() == ["MISSING_SETTLEMENT"]
    assert res.reconciled == []


@pytest.mark.parametrize("resolution", ["VOIDED", "FAILED"])
def test_no_missing_settlement_for_voided_or_failed(resolution: str) -> None:
    extra = term("o1", "VOIDED", T0 + MIN) if resolution == "VOIDED" else note("o1", "FAILED", T0 + HOUR)
    res = run([term("o1", "AUTH_APPROVED", T0), extra, tick(T0 + 30 * HOUR)])
    assert "MISSING_SETTLEMENT" not in res.kinds()


@pytest.mark.parametrize("terminal", [[], ["ORDER_CREATED"], ["ORDER_CREATED", "AUTH_TIMEOUT"]])
def test_orphan_settlement(terminal: list[str]) -> None:
    lines = [term("o1", k, T0 + i * 1000) for i, k in enumerate(terminal)]
    lines += [note("o1", "SETTLED", T0 + HOUR), tick(T0 + HOUR + 10 * MIN)]
    res = run(lines)
    orphan = res.alert("ORPHAN_SETTLEMENT", "o1")
    assert orphan["severity"] == "CRITICAL" and orphan["event_time"] == T0 + HOUR + 10 * MIN
    assert res.outcomes("o1") == ["UNMATCHED_SETTLEMENT"]
    final = res.final("o1")
    assert final is not None and final["approved_amount_minor"] is None and final["settled_amount_minor"] == 1000


def test_no_orphan_before_grace_or_when_approval_arrives_in_time() -> None:
    res = run([note("o1", "SETTLED", T0 + HOUR), tick(T0 + HOUR + 10 * MIN - 1)])
    assert res.kinds() == [] and res.reconciled == []
    res = run([note("o1", "SETTLED", T0 + HOUR), term("o1", "AUTH_APPROVED", T0 + HOUR - MIN), tick(T0 + 2 * HOUR)])
    assert res.kinds() == [] and res.outcomes("o1") == ["MATCHED"]


def test_late_approval_after_orphan_gives_new_matched_revision() -> None:
    res = run([note("o1", "SETTLED", T0), tick(T0 + HOUR), term("o1", "AUTH_APPROVED", T0 + 2 * HOUR)])
    assert res.kinds("o1") == ["ORPHAN_SETTLEMENT"]
    assert [(r["outcome"], r["revision"]) for r in res.reconciled] == [("UNMATCHED_SETTLEMENT", 1), ("MATCHED", 2)]


@BOTH_ORDERS
@pytest.mark.parametrize("kind", ["AUTH_DECLINED", "VOIDED"])
def test_settled_for_declined_or_voided_is_status_conflict(flip: bool, kind: str) -> None:
    terminal = [term("o1", "ORDER_CREATED", T0)]
    if kind == "VOIDED":
        terminal.append(term("o1", "AUTH_APPROVED", T0 + 1000))
    terminal.append(term("o1", kind, T0 + MIN))
    res = run([*_ordered(terminal, [note("o1", "SETTLED", T0 + HOUR)], flip), tick(T0 + 3 * HOUR)])
    assert res.outcomes("o1")[-1] == "STATUS_CONFLICT"
    alert = res.alert("STATUS_CONFLICT", "o1")
    assert alert["severity"] == "CRITICAL"
    assert "ORPHAN_SETTLEMENT" not in res.kinds()


def test_declined_then_approved_is_not_a_conflict() -> None:
    res = run(
        [
            term("o1", "AUTH_DECLINED", T0, attempt=1),
            term("o1", "AUTH_APPROVED", T0 + 30_000, attempt=2),
            note("o1", "SETTLED", T0 + HOUR),
        ]
    )
    assert res.outcomes("o1") == ["MATCHED"] and res.kinds() == []


@BOTH_ORDERS
def test_failed_notice_for_approved_order(flip: bool) -> None:
    res = run(_ordered([term("o1", "AUTH_APPROVED", T0)], [note("o1", "FAILED", T0 + HOUR, nid="nf")], flip))
    # v2: a FAILED notice before any terminal event is NOT_CHARGED until the approval arrives
    assert res.outcomes("o1") == (["NOT_CHARGED", "SETTLEMENT_FAILED"] if flip else ["SETTLEMENT_FAILED"])
    alert = res.alert("STATUS_CONFLICT", "o1")
    assert alert["severity"] == "WARNING"
    final = res.final("o1")
    assert final is not None and final["notice_id"] == "nf"


def test_second_settled_notice_is_duplicate_settlement_outcome_unchanged() -> None:
    res = run(
        [
            term("o1", "AUTH_APPROVED", T0),
            note("o1", "SETTLED", T0 + HOUR, nid="n1"),
            note("o1", "SETTLED", T0 + 2 * HOUR, nid="n2"),
        ]
    )
    alert = res.alert("DUPLICATE_SETTLEMENT", "o1")
    assert alert["severity"] == "CRITICAL" and alert["related_ids"] == ["n1", "n2"]
    assert res.outcomes("o1") == ["MATCHED"]


def test_reversal_after_settlement_is_a_new_revision() -> None:
    res = run(
        [
            term("o1", "AUTH_APPROVED", T0),
            note("o1", "SETTLED", T0 + HOUR, nid="n1"),
            note("o1", "REVERSED", T0 + 2 * HOUR, nid="r1"),
        ]
    )
    assert [(r["outcome"], r["revision"]) for r in res.reconciled] == [("MATCHED", 1), ("REVERSED", 2)]
    assert res.alerts == []


def test_second_approval_same_order_is_duplicate_charge() -> None:
    res = run(
        [
            term("o1", "AUTH_APPROVED", T0, eid="a1"),
            term("o1", "AUTH_APPROVED", T0 + 20_000, eid="a2", attempt=2),
            note("o1", "SETTLED", T0 + HOUR),
        ]
    )
    alert = res.alert("DUPLICATE_CHARGE", "o1")
    assert alert["severity"] == "WARNING" and alert["related_ids"] == ["a1", "a2"]
    final = res.final("o1")
    assert final is not None and final["approved_at"] == T0 and final["outcome"] == "MATCHED"


@pytest.mark.parametrize("reverse_arrival", [False, True])
def test_cross_order_duplicate_charge_on_later_order(reverse_arrival: bool) -> None:
    first = term("o1", "AUTH_APPROVED", T0, card="tok_x")
    second = term("o2", "AUTH_APPROVED", T0 + 5 * MIN, card="tok_x")
    res = run([second, first] if reverse_arrival else [first, second])
    alert = res.alert("DUPLICATE_CHARGE")
    assert alert["order_id"] == "o2" and alert["related_ids"] == ["o1"] and alert["severity"] == "WARNING"


@pytest.mark.parametrize(
    "change",
    [{"card": "tok_y"}, {"merchant": "m2"}, {"amount": 1001}, {"currency": "USD"}, {"t": T0 + 10 * MIN + 1}],
)
def test_cross_order_duplicate_charge_needs_same_key_within_window(change: dict) -> None:
    kwargs = {"card": "tok_x", **change}
    t = kwargs.pop("t", T0 + 5 * MIN)
    res = run([term("o1", "AUTH_APPROVED", T0, card="tok_x"), term("o2", "AUTH_APPROVED", t, **kwargs)])
    assert res.kinds() == []


def test_voided_order_no_longer_counts_for_duplicate_charge() -> None:
    res = run(
        [
            term("o1", "AUTH_APPROVED", T0, card="tok_x"),
            term("o1", "VOIDED", T0 + MIN),
            term("o2", "AUTH_APPROVED", T0 + 2 * MIN, card="tok_x"),
        ]
    )
    assert res.kinds() == []


@pytest.mark.parametrize("resolution", [None, "AUTH_TIMEOUT"])
def test_expired_order(resolution: str | None) -> None:
    lines = [term("o1", "ORDER_CREATED", T0)]
    if resolution:
        lines.append(term("o1", resolution, T0 + 30_000))
    res = run([*lines, tick(T0 + 15 * MIN)])
    alert = res.alert("EXPIRED_ORDER", "o1")
    assert alert["severity"] == "INFO" and alert["event_time"] == T0 + 15 * MIN


@pytest.mark.parametrize("resolution", ["AUTH_APPROVED", "AUTH_DECLINED", "VOIDED"])
def test_resolved_order_does_not_expire(resolution: str) -> None:
    res = run([term("o1", "ORDER_CREATED", T0), term("o1", resolution, T0 + MIN), tick(T0 + HOUR)])
    assert "EXPIRED_ORDER" not in res.kinds()


@pytest.mark.parametrize(
    "line,reason",
    [
        (term("o1", "AUTH_APPROVED", T0, eid=""), "EMPTY_ID"),
        (term("", "AUTH_APPROVED", T0), "EMPTY_ID"),
        (note("o1", "SETTLED", T0, nid=""), "EMPTY_ID"),
        (term("o1", "AUTH_APPROVED", T0, amount=0), "INVALID_AMOUNT"),
        (note("o1", "SETTLED", T0, amount=-5), "INVALID_AMOUNT"),
        (term("o1", "AUTH_APPROVED", T0, amount=10_000_001), "INVALID_AMOUNT"),
        (term("o1", "AUTH_APPROVED", T0, currency="XXQ"), "INVALID_CURRENCY"),
        (note("o1", "SETTLED", T0, currency="eur"), "INVALID_CURRENCY"),
        (term("o1", "AUTH_APPROVED", T0, card="4111111111111111"), "PAN_IN_CARD_TOKEN"),
        (term("o1", "AUTH_APPROVED", T0, card="4111 1111 1111 1111"), "PAN_IN_CARD_TOKEN"),
        ({**term("o1", "AUTH_APPROVED", T0), "ingest_time": T0 + 5 * MIN + 1}, "CLOCK_SKEW"),
        ({**term("o1", "AUTH_APPROVED", T0), "ingest_time": T0 - 5 * MIN - 1}, "CLOCK_SKEW"),
        ({**note("o1", "SETTLED", T0), "ingest_time": T0 - 5 * MIN - 1}, "CLOCK_SKEW"),
    ],
)
def test_invalid_records_alert_and_are_not_applied(line: dict, reason: str) -> None:
    res = run([line, tick(T0 + 48 * HOUR)])
    assert res.rejections == [reason]
    assert res.kinds() == ["INVALID_EVENT"]
    alert = res.alert("INVALID_EVENT")
    assert alert["severity"] == "WARNING"
    assert "4111111111111111" not in str(alert) and "4111 1111 1111 1111" not in str(alert)
    assert res.reconciled == []


def test_clock_skew_within_bounds_and_settlement_before_ingest_is_valid() -> None:
    res = run(
        [
            {**term("o1", "AUTH_APPROVED", T0), "ingest_time": T0 + 5 * MIN},
            {**note("o1", "SETTLED", T0 + HOUR), "ingest_time": T0 + 30 * HOUR},
        ]
    )
    assert res.rejections == [] and res.outcomes("o1") == ["MATCHED"]


def test_invalid_record_does_not_move_the_watermark() -> None:
    res = run([term("o1", "AUTH_APPROVED", T0), term("o2", "AUTH_APPROVED", T0 + 30 * HOUR, amount=0)])
    assert res.kinds() == ["INVALID_EVENT"]
    assert res.engine is not None and res.engine.watermark() == T0


def test_allowed_lateness_delays_deadlines() -> None:
    rules = RuleConfig(allowed_lateness_ms=HOUR)
    res = run([term("o1", "AUTH_APPROVED", T0), tick(T0 + 24 * HOUR + 30 * MIN)], rules=rules)
    assert res.kinds() == []
    res = run([term("o1", "AUTH_APPROVED", T0), tick(T0 + 25 * HOUR)], rules=rules)
    missing = res.alert("MISSING_SETTLEMENT")
    assert missing["event_time"] == T0 + 24 * HOUR


def test_records_behind_the_watermark_are_processed() -> None:
    res = run([tick(T0 + 10 * HOUR), term("o1", "AUTH_APPROVED", T0), note("o1", "SETTLED", T0 + HOUR)])
    assert res.outcomes("o1") == ["MATCHED"]


def test_alert_ids_are_deterministic_and_unique() -> None:
    lines = [
        term("o1", "AUTH_APPROVED", T0),
        note("o1", "SETTLED", T0 + HOUR, amount=5),
        note("o2", "SETTLED", T0),
        term("o3", "AUTH_APPROVED", T0),
        tick(T0 + 30 * HOUR),
    ]
    a, b = run(lines), run(lines)
    assert [x["alert_id"] for x in a.alerts] == [x["alert_id"] for x in b.alerts]
    # AMOUNT_MISMATCH, ORPHAN_SETTLEMENT, MISSING_SETTLEMENT and a DUPLICATE_CHARGE (o1, o3 share the card)
    assert len({x["alert_id"] for x in a.alerts}) == len(a.alerts) == 4


def test_state_is_evicted_after_retention_once_no_deadline_is_pending() -> None:
    rules = RuleConfig(state_retention_ms=HOUR)
    res = run([term("o1", "AUTH_APPROVED", T0), note("o1", "SETTLED", T0 + HOUR), tick(T0 + 26 * HOUR)], rules=rules)
    assert res.engine is not None
    assert "o1" not in res.engine.book(0).orders
    res = run([term("o1", "AUTH_APPROVED", T0), note("o1", "SETTLED", T0 + HOUR), tick(T0 + 2 * HOUR)], rules=rules)
    assert res.engine is not None and "o1" in res.engine.book(0).orders


def test_per_partition_watermarks() -> None:
    # with 2 partitions, traffic on another partition does not fire o1's deadline
    from posrecon.kafka.partitioner import partition_for

    other = next(f"x{i}" for i in range(100) if partition_for(f"x{i}".encode(), 2) != partition_for(b"o1", 2))
    lines = [term("o1", "AUTH_APPROVED", T0), term(other, "AUTH_DECLINED", T0 + 30 * HOUR, card=None)]
    assert run(lines, partitions=2).kinds() == []
    assert run(lines, partitions=1).kinds() == ["MISSING_SETTLEMENT"]


def test_second_approval_of_an_order_counts_for_cross_order_duplicate_charge_once_per_pair() -> None:
    res = run(
        [
            term("x", "AUTH_APPROVED", T0, eid="x1", card="tok_x"),
            term("y", "AUTH_APPROVED", T0 + 15 * MIN, card="tok_x"),
            term("x", "AUTH_APPROVED", T0 + 12 * MIN, eid="x2", card="tok_x", attempt=2),
            term("x", "AUTH_APPROVED", T0 + 13 * MIN, eid="x3", card="tok_x", attempt=3),
        ]
    )
    cross = [a for a in res.alerts if a["kind"] == "DUPLICATE_CHARGE" and a["related_ids"] == ["x"]]
    assert len(cross) == 1 and cross[0]["order_id"] == "y"
    assert len({a["alert_id"] for a in res.alerts}) == len(res.alerts)
