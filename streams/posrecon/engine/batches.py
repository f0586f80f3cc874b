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
A control record closed after the batch watermark is held the same way, until the watermark passes its closed_at
(applied on arrival, it balanced a batch against the notices counted so far, while replay had counted one more
that a partition still to catch up was holding: tests/property/test_batch_ledger.py). At one instant, held notices
go first, then held control records, then deadlines.

Alerts: each batch alert's condition is (batch_id, generation); the generation counts how often the batch
became BALANCED while alerts were open (each such time resolves them). So a batch that goes MISMATCH ->
BALANCED -> MISMATCH (a replaced control record) gets a second, distinct BATCH_MISMATCH.
"""

from __future__ import annotations

import heapq
from typing import Any, Final

from posrecon.config import RuleConfig
from posrecon.engine.batch_alerts import batch_alert_id as batch_alert_id  # re-exported: tools look alerts up here
from posrecon.engine.batch_alerts import opened_alert, resolved_alert
from posrecon.engine.batch_state import (
    COUNTED,
    HEADER,
    HISTORY,
    NO_WATERMARK,
    SETTLED,
    BatchControl,
    BatchState,
    HeldRow,
)
from posrecon.engine.batch_state import BatchSighting as BatchSighting  # re-exported: the stage and tools use it
from posrecon.engine.batch_state import RowKey as RowKey
from posrecon.engine.model import Alert, AlertKind, BatchReconciliation, BatchStatus, SettlementBatch

DECIDE: Final = 0  # timer kinds, in the order they fire when due at the same instant
EVICT: Final = 9
MAX_HELD = 10_000  # held notices per batch: bounds the state a stalled partition can make one batch hold


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
        self.held_controls: list[tuple[int, str]] = []  # (closed_at, batch_id) of held control records, checked
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
        s, status = sighting, COUNTED.get(sighting.status)
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
        if state.control is not None:  # (without one nothing is decided: no cause text to build per notice)
            self._evaluate(state, settled_at, notice_id, f"notice {notice_id}", now)

    def on_control(
        self, record: SettlementBatch, source: int | None = None, watermark: int | None = None, now: int | None = None
    ) -> None:
        """A (validated) control record; ``watermark``: its source's watermark once applied, if it moves one."""
        control = BatchControl.of(record)
        batch_id = record["batch_id"]
        state = self._state(batch_id, control.closed_at)
        if (state.control if state.held_control is None else state.held_control) == control:
            self.redeliveries += 1
        elif control.closed_at > self.watermark:
            state.held_control = control  # a later record replaces one still held (the heap entry is checked)
            heapq.heappush(self.held_controls, (control.closed_at, batch_id))
            self._touch(state, control.closed_at, HEADER)
        else:
            state.held_control = None
            self._apply_control(state, control, now)
            self._fire_due(now)  # a control record behind the deadline decides at once
        if source is not None and watermark is not None:
            self.advance(source, watermark, now)

    def _apply_control(self, state: BatchState, control: BatchControl, now: int | None) -> None:
        state.control = control
        self._touch(state, control.closed_at, HEADER)
        if state.status is None:
            heapq.heappush(self.timers, (control.closed_at + self.wait, DECIDE, state.batch_id))
        self._evaluate(state, control.closed_at, state.batch_id, "control record", now)

    def advance(self, source: int, watermark: int, now: int | None = None) -> None:
        """``source``'s watermark moved (a sighting, or an idle partition's watermark passed on)."""
        marks = self.source_watermarks
        previous = marks.get(source, NO_WATERMARK)
        if watermark > previous:
            marks[source] = watermark
            # the minimum moves only if this source held it (most sources the stage passes on stand still)
            if previous <= self.watermark and len(marks) >= self.sources:
                aligned = watermark if self.sources == 1 else min(marks.values())
                if aligned > self.watermark:
                    self.watermark = aligned
                    self._fire_due(now)

    def next_due(self, never: int) -> int:
        """The earliest event time at which a timer, a held notice or a held control record is due (``never``
        when none is)."""
        timers, held, controls = self.timers, self.held, self.held_controls
        return min(queue[0][0] if queue else never for queue in (timers, held, controls))

    # --- rules --------------------------------------------------------------------------------------------

    def _state(self, batch_id: str, event_time: int) -> BatchState:
        state = self.batches.get(batch_id)
        if state is None:
            state = self.batches[batch_id] = BatchState(batch_id, max(self.watermark, event_time))
            heapq.heappush(self.timers, (self._evict_at(state), EVICT, batch_id))
        return state

    def _touch(self, state: BatchState, event_time: int, notice_id: str) -> None:
        last = state.last_change if state.last_change > self.watermark else self.watermark  # (max() is a generic call)
        state.last_change = last if last > event_time else event_time
        dirty = self.dirty
        if dirty is not None:
            dirty.add(state.header_key)
            dirty.add((state.batch_id, notice_id))

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
        fields = (
            control.currency,
            expected,
            count,
            control.gross_amount_minor,
            gross,
            control.fee_amount_minor,
            fee,
            status,
        )
        if fields != state.record:
            state.revision += 1
            state.record = fields
            state.status = status
            state.history = [*state.history[1 - HISTORY :], [state.revision, *fields, event_time]]
            self.records.append(_reconciliation(state.batch_id, fields, state.revision))
            if self.dirty is not None:
                self.dirty.add(state.header_key)
        self._alerts(state, status, event_time, cause_id, cause, now)

    def _alerts(
        self, state: BatchState, status: str, event_time: int, cause_id: str, cause: str, now: int | None
    ) -> None:
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
            self.dirty.add(state.header_key)

    def _fire_due(self, now: int | None) -> None:
        """Due timers, held notices and held control records, in event-time order (at one instant: notices,
        then control records, then timers)."""
        timers, held, controls = self.timers, self.held, self.held_controls
        watermark = self.watermark
        while True:
            any_timer, any_held, any_control = len(timers) > 0, len(held) > 0, len(controls) > 0
            next_timer, next_control = timers[0][0] if any_timer else 0, controls[0][0] if any_control else 0
            next_held = held[0][0] if any_held else 0
            held_due = any_held and next_held <= watermark
            if (
                held_due
                and (not any_timer or next_held <= next_timer)
                and (not any_control or next_held <= next_control)
            ):
                settled_at, notice_id, batch_id = heapq.heappop(held)
                state = self.batches.get(batch_id)
                if state is not None and notice_id in state.held and state.held[notice_id][4] == settled_at:
                    self._count(state, notice_id, state.held.pop(notice_id), now)
                continue
            if any_control and next_control <= watermark and (not any_timer or next_control <= next_timer):
                closed_at, batch_id = heapq.heappop(controls)
                state = self.batches.get(batch_id)
                control = None if state is None else state.held_control
                if state is not None and control is not None and control.closed_at == closed_at:
                    state.held_control = None
                    self._apply_control(state, control, now)
                continue
            if not any_timer or next_timer > watermark:
                return
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
            self.dirty.add(state.header_key)
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
        self.held_controls.clear()
        for row in rows:
            if row[0] == "B":
                self.batches[row[1]] = BatchState.from_header_row(row)
        for row in rows:
            if row[0] == "N" and row[1] in self.batches:
                state = self.batches[row[1]]
                order_id, status, amount, fee, settled_at, revision = row[3:9]
                status = COUNTED[status]
                state.notices[row[2]] = (order_id, status, amount, fee, settled_at, revision)
                state.gross += amount if status is SETTLED else -amount
                state.fee += fee if status is SETTLED else 0
            elif row[0] == "H" and row[1] in self.batches:
                state = self.batches[row[1]]
                order_id, status, amount, fee, settled_at, merchant_id = row[3:9]
                state.held[row[2]] = (order_id, COUNTED[status], amount, fee, settled_at, merchant_id)
                self.held.append((settled_at, row[2], row[1]))
        for batch_id, state in self.batches.items():
            self.timers.append((self._evict_at(state), EVICT, batch_id))
            if state.status is None and state.control is not None:
                self.timers.append((state.control.closed_at + self.wait, DECIDE, batch_id))
            if state.held_control is not None:
                self.held_controls.append((state.held_control.closed_at, batch_id))
        heapq.heapify(self.timers)
        heapq.heapify(self.held)
        heapq.heapify(self.held_controls)
        self.watermark = watermark
        self.source_watermarks = dict(source_watermarks or {})

    def view(self, batch_id: str) -> dict[str, Any] | None:
        """What ``GET /batches/{id}`` shows (:meth:`BatchState.view`), None for a batch not kept here."""
        state = self.batches.get(batch_id)
        return None if state is None else state.view()


def _reconciliation(batch_id: str, fields: tuple[Any, ...], revision: int) -> BatchReconciliation:
    currency, expected, count, expected_gross, gross, expected_fee, fee, status = fields
    return {
        "batch_id": batch_id,
        "currency": currency,
        "expected_count": expected,
        "received_count": count,
        "expected_gross_minor": expected_gross,
        "received_gross_minor": gross,
        "expected_fee_minor": expected_fee,
        "received_fee_minor": fee,
        "status": status,
        "revision": revision,
    }
