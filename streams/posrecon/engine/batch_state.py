"""What the batch ledger (engine/batches.py) keeps per batch: :class:`BatchState` with its control record
(:class:`BatchControl`), counted and held notices, decision and open alerts; its changelog rows and its operator
view; and the :class:`BatchSighting` rows by which notices reach the ledger."""

from __future__ import annotations

from typing import Any, Final, NamedTuple

from posrecon.engine.model import SettlementBatch

NO_WATERMARK: Final = -(1 << 62)
SETTLED: Final = "SETTLED"
REVERSED: Final = "REVERSED"
COUNTED: Final = {SETTLED: SETTLED, REVERSED: REVERSED}  # maps a decoded status to the shared constant kept per notice
HISTORY: Final = 16  # revisions kept per batch for the operator view (the output topic has them all)
HEADER: Final = ""  # the notice_id part of a batch header's row key (notice ids are never empty)

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
            record["merchant_id"],
            record["currency"],
            record["notice_count"],
            record["gross_amount_minor"],
            record.get("fee_amount_minor", 0),
            record["closed_at"],
        )


class BatchState:
    __slots__ = (
        "batch_id",
        "control",
        "fee",
        "generation",
        "gross",
        "header_key",
        "held",
        "held_control",
        "history",
        "last_change",
        "merchant_id",
        "notices",
        "open_alerts",
        "record",
        "revision",
        "status",
    )

    def __init__(self, batch_id: str, last_change: int) -> None:
        self.batch_id = batch_id
        self.header_key: RowKey = (batch_id, HEADER)  # its header row's key, added to a ledger's dirty keys often
        self.control: BatchControl | None = None
        self.notices: dict[str, NoticeRow] = {}
        self.held: dict[str, HeldRow] = {}  # notices settled after the batch watermark, not counted yet
        self.held_control: BatchControl | None = None  # a control record closed after the watermark, not applied
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
        held = None if self.held_control is None else list(self.held_control)
        return [
            "B",
            self.batch_id,
            control,
            self.status,
            self.revision,
            record,
            alerts,
            self.generation,
            self.last_change,
            self.merchant_id,
            self.history,
            held,
        ]

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

    def view(self) -> dict[str, Any]:
        """What ``GET /batches/{id}`` shows: totals, status, recent revisions and the notices received (late
        ones, counted after the first decision, have ``revision`` > 1); a control record still held (closed
        after the batch watermark) shows as ``held_control``."""
        count, gross, fee = self.counts()
        control, held = self.control, self.held_control
        notices = sorted(self.notices.items(), key=lambda item: (item[1][4], item[0]))
        return {
            "batch_id": self.batch_id,
            "merchant_id": self.merchant(),
            "status": self.status,
            "revision": self.revision,
            "control": None if control is None else control._asdict(),
            "held_control": None if held is None else held._asdict(),
            "received_count": count,
            "received_gross_minor": gross,
            "received_fee_minor": fee,
            "revisions": [dict(zip(HISTORY_FIELDS, h, strict=True)) for h in self.history],
            "open_alerts": [alert for _, alert in self.open_alerts],
            "notices": [dict(zip(NOTICE_FIELDS, (n, *row), strict=True)) for n, row in notices],
        }

    @classmethod
    def from_header_row(cls, row: list[Any]) -> BatchState:
        """The inverse of :meth:`header_row` (the notices come from their own rows)."""
        _, batch_id, control, status, revision, record, alerts, generation, last_change, merchant_id, history = row[:11]
        held = row[11] if len(row) > 11 else None  # rows written before control records were held have none
        state = cls(batch_id, last_change)
        state.held_control = None if held is None else BatchControl(*held)
        state.control = None if control is None else BatchControl(*control)
        state.status = status
        state.revision = revision
        state.record = None if record is None else tuple(record)
        state.open_alerts = tuple((str(k), str(a)) for k, a in alerts)
        state.generation = generation
        state.merchant_id = merchant_id
        state.history = [list(h) for h in history]
        return state


HISTORY_FIELDS = (
    "revision",
    "currency",
    "expected_count",
    "received_count",
    "expected_gross_minor",
    "received_gross_minor",
    "expected_fee_minor",
    "received_fee_minor",
    "status",
    "event_time",
)
NOTICE_FIELDS = ("notice_id", "order_id", "status", "amount_minor", "fee_minor", "settled_at", "revision")
