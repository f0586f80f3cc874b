from __future__ import annotations

import json
import logging

import pytest

from posrecon.logs import JsonFormatter


@pytest.mark.parametrize("card", ["5555555555554444", "5555 5555 5555 4444", "5555-5555-5555-4444"])
def test_log_lines_carry_card_numbers_masked_however_grouped(card: str) -> None:
    record = logging.LogRecord("posrecon", logging.WARNING, __file__, 1, "bad order_id %s", (card,), None)
    record.fields = {"order_id": f"ord-{card}", "offset": 7}
    line = JsonFormatter().format(record)
    squeezed = line.replace(" ", "").replace("-", "")
    assert "555555555555" not in squeezed and "55555555" not in squeezed
    doc = json.loads(line)
    assert doc["msg"].endswith(card[-4:]) and doc["order_id"].endswith(card[-4:]) and doc["offset"] == 7
