"""One line of simulated input: a record (or garbage) as it arrives, with the rejection it must earn."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from posrecon.sim.vocabulary import TERMINAL, Source

Record = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Line:
    """An input record in arrival order.

    ``record`` is the contract record (or a malformed one, for garbage); ``raw`` is text that is not JSON
    at all. ``ingest_time`` stands for the Kafka record timestamp. ``rejection`` is the dead-letter reason
    the engine must give this line (None: the line is valid and is applied).
    """

    source: Source
    ingest_time: int
    record: Record | None = None
    raw: str | None = None
    rejection: str | None = None

    @property
    def valid(self) -> bool:
        return self.rejection is None

    @property
    def order_id(self) -> str | None:
        if self.record is None:
            return None
        value = self.record.get("order_id")
        return value if isinstance(value, str) else None

    @property
    def event_time(self) -> int | None:
        if self.record is None:
            return None
        value = self.record.get("event_time" if self.source == TERMINAL else "settled_at")
        return value if isinstance(value, int) else None

    def to_json_line(self) -> str:
        """The line of the replay format (without the newline); garbage text is returned as is."""
        if self.raw is not None:
            return self.raw
        envelope = {"source": self.source, "ingest_time": self.ingest_time, "record": self.record}
        return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False)
