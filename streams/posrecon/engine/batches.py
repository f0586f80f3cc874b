"""Settlement batches: control totals against the notices a batch received (contract v2, issue 14).

A :class:`BatchLedger` holds one :class:`BatchState` per batch_id, beside the order books and the card index.
Notices reach it as :class:`BatchSighting` rows (live: through a repartition by batch_id, as card sightings do),
control records (``SettlementBatch``) from the co-located ``pos.settlement-batches`` input.

What a batch received: its distinct SETTLED and REVERSED notices (FAILED ones move no money; a notice id seen
again is a redelivery). It is decided as soon as a control record exists and counts and both sums are equal
(BALANCED), else when the batch watermark reaches closed_at + batch_grace_ms + allowed_lateness_ms: fewer
notices than expected -> INCOMPLETE + BATCH_INCOMPLETE, otherwise MISMATCH + BATCH_MISMATCH. Once decided, every
change re-evaluates the status at once (a new revision when the record changed) and its alert follows it.
Without a control record nothing is emitted; the batch's notices wait for it until evicted.

The batch watermark is the minimum over the source partitions' watermarks that sightings carry (as in
:mod:`~posrecon.engine.cards`): sightings from many order partitions interleave in any order. Deadlines are
fired in (due, kind, batch_id) order, so outputs do not depend on how the state was restored.

Event-time alignment (as Flink aligns on watermarks): a notice settled after the batch watermark is held, not
counted, until the watermark passes its settled_at. Live, partitions progress at different speeds, so such a notice
can arrive before a deadline that replay fires first; holding it makes both count it on the same side of the
deadline. When the watermark advances, due deadlines and held notices are processed together in event-time order
(notices settled at or before a deadline's instant first; notices among themselves by (settled_at, notice_id)).
Held notices are kept per batch (at most MAX_HELD; beyond that the earliest is counted at once) and snapshotted.

Alerts: each batch alert's condition is (batch_id, generation); the generation counts how often the batch
became BALANCED while alerts were open (each such time resolves them). So a batch that goes MISMATCH ->
BALANCED -> MISMATCH (a replaced control record) gets a second, distinct BATCH_MISMATCH.
"""

from __future__ import annotations

import heapq
from typing import Any, NamedTuple

from posrecon.config import RuleConfig
from posrecon.engine.batch_alerts import batch_alert_id as batch_alert_id  # re-exported: tools look alerts up here
from posrecon.engine.batch_alerts import opened_alert, resolved_alert
from posrecon.engine.model import (
    Alert,
    AlertKind,
    BatchReconciliation,
    BatchStatus,
    SettlementBatch,
)

NO_WATERMARK = -(1 << 62)
SETTLED = "SETTLED"
REVERSED = "REVERSED"
_COUNTED = {SETTLED: SETTLED, REVERSED: REVERSED}  # maps a decoded status to the shared constant kept per notice
DECIDE = 0  # timer kinds, in the order they fire when due at the same instant
EVICT = 9
HISTORY = 16  # revisions kept per batch for the operator view (the output topic has them all)
MAX_HELD = 10_000  # held notices per batch: bounds the state a stalled partition can make one batch hold
HEADER = ""  # the notice_id part of a batch header's row key (notice ids are never empty)

RowKey = tuple[str, str]  # (batch_id, HEADER) for a batch's header row, (batch_id, notice_id) for a notice row
#: per received notice: (order_id, status, amount_minor, fee_minor, settled_at, revision that first counted it)
NoticeRow = tuple[str, str, int, int, int, int]
#: per held notice: (order_id, status, amount_minor, fee_minor, settled_at, merchant_id)
HeldRow = tuple[str, str, int, int, int, str]


class BatchSighting(NamedTuple):
    """A valid settlement notice with a batch_id, as the order stage hands it to the batch stage."""

    batch_id: str
    notice_id: str
    status: str
    amount_minor: int
    fee_minor: int
    currency: str
    merchant_id: str
    settled_at: int
    source_partition: int = 0
    source_watermark: int = NO_WATERMARK  # the order partition's watermark once the notice is applied
    order_id: str = ""  # kept per notice for the operator view


class BatchControl(NamedTuple):
    """A control record's expectation (the SettlementBatch fields but batch_id)."""

    merchant_id: str | None
    currency: str
    notice_count: int
    gross_amount_minor: int
    fee_amount_minor: int
    closed_at: int

    @classmethod
    def of(cls, record: SettlementBatch) -> BatchControl:
        return cls(
            record["merchant_id"], record["currency"], record["notice_count"], record["gross_amount_minor"],
            record.get("fee_amount_minor", 0), record["closed_at"],
        )  # fmt: skip


class BatchState:
    __slots__ = (
        "batch_id", "control", "fee", "generation", "gross", "held", "history", "last_change", "merchant_id", "notices",
        "open_alerts", "record", "revision", "status",
    )  # fmt: skip

    def __init__(self, batch_id: str, last_change: int) -> None:
        self.batch_id = batch_id
        self.control: BatchControl | None = None
        self.notices: dict[str, NoticeRow] = {}
        self.held: dict[str, HeldRow] = {}  # notices settled after the batch watermark, not counted yet
        self.gross = 0  # received: sum SETTLED - sum REVERSED
        self.fee = 0  # received: sum fee_minor of SETTLED
        self.status: str | None = None  # None: undecided (nothing emitted yet)
        self.revision = 0
        self.record: tuple[Any, ...] | None = None  # the last emitted record's fields but batch_id and revision
        self.open_alerts: tuple[tuple[str, str], ...] = ()  # (kind, alert_id) of OPEN batch alerts
        self.generation = 0
        self.last_change = last_change
        self.merchant_id: str | None = None  # smallest merchant_id among the notices (control has none)
        self.history: list[list[Any]] = []  # the last HISTORY revisions: record fields + revision + event time

    def header_row(self) -> list[Any]:
        control = None if self.control is None else list(self.control)
        record = None if self.record is None else list(self.record)
        alerts = [list(a) for a in self.open_alerts]
        return ["B", self.batch_id, control, self.status, self.revision, record, alerts, self.generation,
                self.last_change, self.merchant_id, self.history]  # fmt: skip

    def notice_row(self, notice_id: str) -> list[Any] | None:
        """A counted notice's row ("N"), a held one's ("H": same key, it becomes "N" once counted), else None."""
        if notice_id in self.notices:
            return ["N", self.batch_id, notice_id, *self.notices[notice_id]]
        return ["H", self.batch_id, notice_id, *self.held[notice_id]] if notice_id in self.held else None

    def counts(self) -> tuple[int, int, int]:
        return len(self.notices), self.gross, self.fee

    def merchant(self) -> str | None:
        control = self.control
        return control.merchant_id if control is not None and control.merchant_id else self.merchant_id


class BatchLedger:
    def __init__(self, rules: RuleConfig, sources: int = 1, batch_grace_ms: int | None = None) -> None:
        grace = batch_grace_ms if batch_grace_ms is not None else getattr(rules, "batch_grace_ms", 3_600_000)
        self.wait = int(grace) + rules.allowed_lateness_ms  # closed_at -> the watermark that decides
        self.lateness = rules.allowed_lateness_ms
        self.retention = rules.state_retention_ms
        self.sources = sources
        self.batches: dict[str, BatchState] = {}
        self.timers: list[tuple[int, int, str]] = []  # (due, DECIDE | EVICT, batch_id), checked when popped
        self.held: list[tuple[int, str, str]] = []  # (settled_at, notice_id, batch_id) of held notices, checked
        self.source_watermarks: dict[int, int] = {}
        self.watermark = NO_WATERMARK
        #: row keys changed since the shell last persisted this ledger; None: not tracked
        self.dirty: set[RowKey] | None = None
        self.records: list[BatchReconciliation] = []
        self.alerts: list[Alert] = []
        self.redeliveries = 0  # notices and control records seen again (dropped)

    def __len__(self) -> int:
        return len(self.batches)

    def take(self) -> tuple[list[BatchReconciliation], list[Alert]]:
        """Hand over the records and alerts produced since the last call."""
        records, alerts = self.records, self.alerts
        self.records, self.alerts = [], []
        return records, alerts

    # --- input --------------------------------------------------------------------------------------------

    def on_notice(self, sighting: BatchSighting, now: int | None = None) -> None:
        """A notice of the batch, counted now or held until the watermark passes its settled_at; then its
        source's watermark fires what is due (held notices included)."""
        s, status = sighting, _COUNTED.get(sighting.status)
        if status is not None:
            state = self._state(s.batch_id, s.settled_at)
            notice = (s.order_id, status, s.amount_minor, s.fee_minor, s.settled_at, s.merchant_id)
            if s.notice_id in state.notices or s.notice_id in state.held:
                self.redeliveries += 1
            elif s.settled_at <= self.watermark:
                self._count(state, s.notice_id, notice, now)
            else:
                self._hold(state, s.notice_id, notice, now)
        self.advance(sighting.source_partition, sighting.source_watermark, now)

    def _hold(self, state: BatchState, notice_id: str, held: HeldRow, now: int | None) -> None:
        state.held[notice_id] = held
        heapq.heappush(self.held, (held[4], notice_id, state.batch_id))
        self._touch(state, held[4], notice_id)
        if len(state.held) > MAX_HELD:  # over the bound: the earliest is counted now (alignment is lost for it)
            first = min(state.held, key=lambda n: (state.held[n][4], n))
            self._count(state, first, state.held.pop(first), now)

    def _count(self, state: BatchState, notice_id: str, notice: HeldRow, now: int | None) -> None:
        order_id, status, amount, fee, settled_at, merchant_id = notice
        state.notices[notice_id] = (order_id, status, amount, fee, settled_at, state.revision + 1)
        if status is SETTLED:
            state.gross += amount
            state.fee += fee
        else:
            state.gross -= amount
        if state.merchant_id is None or merchant_id < state.merchant_id:
            state.merchant_id = merchant_id
        self._touch(state, settled_at, notice_id)
        self._evaluate(state, settled_at, notice_id, f"notice {notice_id}", now)

    def on_control(
        self, record: SettlementBatch, source: int | None = None, watermark: int | None = None, now: int | None = None
    ) -> None:
        """A (validated) control record; ``watermark``: its source's watermark once applied, if it moves one."""
        control = BatchControl.of(record)
        batch_id = record["batch_id"]
        state = self._state(batch_id, control.closed_at)
        if state.control == control:
            self.redeliveries += 1
        else:
            state.control = control
            self._touch(state, control.closed_at, HEADER)
            if state.status is None:
                heapq.heappush(self.timers, (control.closed_at + self.wait, DECIDE, batch_id))
            self._evaluate(state, control.closed_at, batch_id, "control record", now)
            self._fire_due(now)  # a control record behind the deadline decides at once
        if source is not None and watermark is not None:
            self.advance(source, watermark, now)

    def advance(self, source: int, watermark: int, now: int | None = None) -> None:
        """``source``'s watermark moved (a sighting, or an idle partition's watermark passed on)."""
        marks = self.source_watermarks
        if watermark > marks.get(source, NO_WATERMARK):
            marks[source] = watermark
            if len(marks) >= self.sources:
                aligned = watermark if self.sources == 1 else min(marks.values())
                if aligned > self.watermark:
                    self.watermark = aligned
                    self._fire_due(now)

    # --- rules --------------------------------------------------------------------------------------------

    def _state(self, batch_id: str, event_time: int) -> BatchState:
        state = self.batches.get(batch_id)
        if state is None:
            state = self.batches[batch_id] = BatchState(batch_id, max(self.watermark, event_time))
            heapq.heappush(self.timers, (self._evict_at(state), EVICT, batch_id))
        return state

    def _touch(self, state: BatchState, event_time: int, notice_id: str) -> None:
        state.last_change = max(state.last_change, self.watermark, event_time)
        if self.dirty is not None:
            self.dirty.add((state.batch_id, HEADER))
            self.dirty.add((state.batch_id, notice_id))

    def _evict_at(self, state: BatchState) -> int:
        """A batch is forgotten a retention after its last change or its pending deadline, whichever is later."""
        control = state.control
        pending = control.closed_at + self.wait if control is not None and state.status is None else NO_WATERMARK
        return max(state.last_change, pending) + self.retention

    def _evaluate(
        self, state: BatchState, event_time: int, cause_id: str, cause: str, now: int | None, deadline: bool = False
    ) -> None:
        control = state.control
        if control is None:
            return
        count, gross, fee = state.counts()
        expected = control.notice_count
        if count == expected and gross == control.gross_amount_minor and fee == control.fee_amount_minor:
            status = BatchStatus.BALANCED._value_
        elif state.status is None and not deadline:
            return  # undecided until it balances or its deadline passes
        else:
            status = (BatchStatus.INCOMPLETE if count < expected else BatchStatus.MISMATCH)._value_
        fields = (control.currency, expected, count, control.gross_amount_minor, gross, control.fee_amount_minor,
                  fee, status)  # fmt: skip
        if fields != state.record:
            state.revision += 1
            state.record = fields
            state.status = status
            state.history = [*state.history[1 - HISTORY :], [state.revision, *fields, event_time]]
            self.records.append(_reconciliation(state.batch_id, fields, state.revision))
            if self.dirty is not None:
                self.dirty.add((state.batch_id, HEADER))
        self._alerts(state, status, event_time, cause_id, cause, now)

    def _alerts(self, state: BatchState, status: str, event_time: int, cause_id: str, cause: str,
                now: int | None) -> None:  # fmt: skip
        detected_at = now if now is not None else max(self.watermark, 0)
        if status == BatchStatus.BALANCED._value_:
            if not state.open_alerts:
                return
            for kind, original in state.open_alerts:
                self.alerts.append(
                    resolved_alert(state, AlertKind(kind), original, event_time, cause_id, cause, detected_at)
                )
            state.open_alerts = ()
            state.generation += 1
        else:
            kind = AlertKind.BATCH_INCOMPLETE if status == BatchStatus.INCOMPLETE._value_ else AlertKind.BATCH_MISMATCH
            if any(k == kind._value_ for k, _ in state.open_alerts):
                return  # once per condition
            alert = opened_alert(state, kind, event_time, cause_id, cause, detected_at)
            state.open_alerts += ((kind._value_, alert["alert_id"]),)
            self.alerts.append(alert)
        if self.dirty is not None:
            self.dirty.add((state.batch_id, HEADER))

    def _fire_due(self, now: int | None) -> None:
        """Due timers and held notices, in event-time order (a notice settled at a timer's instant first)."""
        timers, held = self.timers, self.held
        watermark = self.watermark
        while (timers and timers[0][0] <= watermark) or (held and held[0][0] <= watermark):
            if held and held[0][0] <= watermark and (not timers or held[0][0] <= timers[0][0]):
                settled_at, notice_id, batch_id = heapq.heappop(held)
                state = self.batches.get(batch_id)
                if state is not None and notice_id in state.held and state.held[notice_id][4] == settled_at:
                    self._count(state, notice_id, state.held.pop(notice_id), now)
                continue
            due, kind, batch_id = heapq.heappop(timers)
            state = self.batches.get(batch_id)
            if state is None:
                continue
            control = state.control
            if kind == DECIDE:
                if state.status is None and control is not None and control.closed_at + self.wait == due:
                    cause = f"deadline closed_at + {(self.wait - self.lateness) // 60_000} min"
                    self._evaluate(state, due - self.lateness, state.batch_id, cause, now, deadline=True)
            elif self._evict_at(state) > due:
                heapq.heappush(timers, (self._evict_at(state), EVICT, batch_id))
            else:
                self._evict(state)

    def _evict(self, state: BatchState) -> None:
        del self.batches[state.batch_id]
        if self.dirty is not None:
            self.dirty.add((state.batch_id, HEADER))
            self.dirty.update((state.batch_id, notice_id) for notice_id in [*state.notices, *state.held])

    # --- snapshot and operator view -----------------------------------------------------------------------

    def row(self, key: RowKey) -> list[Any] | None:
        """The changelog row of ``key`` (see :attr:`dirty`), None once gone (a tombstone)."""
        state = self.batches.get(key[0])
        if state is None:
            return None
        if key[1] == HEADER:
            return state.header_row()
        return state.notice_row(key[1])

    def to_rows(self) -> list[list[Any]]:
        rows: list[list[Any]] = []
        for state in self.batches.values():
            rows.append(state.header_row())
            rows.extend(["N", state.batch_id, notice_id, *notice] for notice_id, notice in state.notices.items())
            rows.extend(["H", state.batch_id, notice_id, *notice] for notice_id, notice in state.held.items())
        return rows

    def load_rows(self, rows: list[list[Any]], watermark: int, source_watermarks: dict[int, int] | None = None) -> None:
        """Fill this ledger from :meth:`to_rows` (or changelog rows, in any order)."""
        self.batches.clear()
        self.timers.clear()
        self.held.clear()
        for row in rows:
            if row[0] == "B":
                self.batches[row[1]] = _load_header(row)
        for row in rows:
            if row[0] == "N" and row[1] in self.batches:
                state = self.batches[row[1]]
                order_id, status, amount, fee, settled_at, revision = row[3:9]
                status = _COUNTED[status]
                state.notices[row[2]] = (order_id, status, amount, fee, settled_at, revision)
                state.gross += amount if status is SETTLED else -amount
                state.fee += fee if status is SETTLED else 0
            elif row[0] == "H" and row[1] in self.batches:
                state = self.batches[row[1]]
                order_id, status, amount, fee, settled_at, merchant_id = row[3:9]
                state.held[row[2]] = (order_id, _COUNTED[status], amount, fee, settled_at, merchant_id)
                self.held.append((settled_at, row[2], row[1]))
        for batch_id, state in self.batches.items():
            self.timers.append((self._evict_at(state), EVICT, batch_id))
            if state.status is None and state.control is not None:
                self.timers.append((state.control.closed_at + self.wait, DECIDE, batch_id))
        heapq.heapify(self.timers)
        heapq.heapify(self.held)
        self.watermark = watermark
        self.source_watermarks = dict(source_watermarks or {})

    def view(self, batch_id: str) -> dict[str, Any] | None:
        """What ``GET /batches/{id}`` shows: totals, status, recent revisions and the notices received (late
        ones, counted after the first decision, have ``revision`` > 1)."""
        state = self.batches.get(batch_id)
        if state is None:
            return None
        count, gross, fee = state.counts()
        control = state.control
        notices = sorted(state.notices.items(), key=lambda item: (item[1][4], item[0]))
        return {
            "batch_id": batch_id, "merchant_id": state.merchant(), "status": state.status,
            "revision": state.revision, "control": None if control is None else control._asdict(),
            "received_count": count, "received_gross_minor": gross, "received_fee_minor": fee,
            "revisions": [dict(zip(HISTORY_FIELDS, h, strict=True)) for h in state.history],
            "open_alerts": [alert for _, alert in state.open_alerts],
            "notices": [dict(zip(NOTICE_FIELDS, (n, *row), strict=True)) for n, row in notices],
        }  # fmt: skip


HISTORY_FIELDS = ("revision", "currency", "expected_count", "received_count", "expected_gross_minor",
    "received_gross_minor", "expected_fee_minor", "received_fee_minor", "status", "event_time")  # fmt: skip
NOTICE_FIELDS = ("notice_id", "order_id", "status", "amount_minor", "fee_minor", "settled_at", "revision")


def _load_header(row: list[Any]) -> BatchState:
    _, batch_id, control, status, revision, record, alerts, generation, last_change, merchant_id, history = row
    state = BatchState(batch_id, last_change)
    state.control = None if control is None else BatchControl(*control)
    state.status = status
    state.revision = revision
    state.record = None if record is None else tuple(record)
    state.open_alerts = tuple((str(k), str(a)) for k, a in alerts)
    state.generation = generation
    state.merchant_id = merchant_id
    state.history = [list(h) for h in history]
    return state


def _reconciliation(batch_id: str, fields: tuple[Any, ...], revision: int) -> BatchReconciliation:
    currency, expected, count, expected_gross, gross, expected_fee, fee, status = fields
    return {
        "batch_id": batch_id, "currency": currency, "expected_count": expected, "received_count": count,
        "expected_gross_minor": expected_gross, "received_gross_minor": gross, "expected_fee_minor": expected_fee,
        "received_fee_minor": fee, "status": status, "revision": revision,
    }  # fmt: skip
