"""Test helpers for the wire format: a contract TerminalEvent, and Confluent-format codecs on a fresh
in-process registry (confluent-kafka's ``mock://``: no registry server runs here)."""

from __future__ import annotations

import uuid
from typing import Any

from posrecon.config import SerdeSettings
from posrecon.serde.confluent import ConfluentCodec
from posrecon.serde.wire import codec_for

EVENT: dict[str, Any] = {
    "event_id": "e1",
    "order_id": "o1",
    "merchant_id": "m1",
    "terminal_id": "t1",
    "event_type": "AUTH_APPROVED",
    "amount_minor": 100,
    "currency": "EUR",
    "card_token": "tok",
    "event_time": 1_700_000_000_000,
    "attempt": 1,
    "decline_code": None,
}

#: a SettlementNotice without the split-capture fields (their defaults apply)
NOTICE_V1: dict[str, Any] = {
    "notice_id": "n1",
    "order_id": "o1",
    "merchant_id": "m1",
    "status": "SETTLED",
    "amount_minor": 100,
    "currency": "EUR",
    "settled_at": 1_700_000_100_000,
    "batch_id": None,
    "fee_minor": 0,
}


def confluent(name: str = "") -> SerdeSettings:
    """A fresh in-process registry (unique name: the client cache is per process)."""
    return SerdeSettings(format="confluent", registry_url=f"mock://{name or uuid.uuid4().hex}")


def confluent_codec(name: str, serde: SerdeSettings, topic: str | None = None) -> ConfluentCodec:
    codec = codec_for(name, serde, topic)
    assert isinstance(codec, ConfluentCodec)
    return codec
