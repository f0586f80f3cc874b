from __future__ import annotations

import pytest

from posrecon.deadletter import DeadLetter


@pytest.mark.parametrize(
    "card", ["4111111111111111", "4111 1111 1111 1111", "4111-1111-1111-1111", "3782-822463-10005"]
)
def test_dead_letters_carry_card_numbers_masked_however_grouped(card: str) -> None:
    digits = card.replace(" ", "").replace("-", "")
    letter = DeadLetter.of(
        "PAN_IN_FIELD",
        f"order_id holds {card}",
        "ValueError",
        "pos.settlement-notices",
        0,
        7,
        key=f"ord-{card}".encode(),
        value=b'{"order_id": "ord-' + card.encode() + b'"}',
    )
    for blob in (letter.key or b"", letter.value or b"", *(v for _, v in letter.headers())):
        squeezed = blob.replace(b" ", b"").replace(b"-", b"")
        assert digits[:-4].encode() not in squeezed and digits[:8].encode() not in squeezed
    assert letter.detail.endswith(card[-4:]) and "*" in letter.detail
