"""Hypothesis strategies: small multi-order inputs in the contract's replay shape."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from scenario import MIN, T0, note, term

ORDERS = [f"o{i}" for i in range(6)]
CARDS = ["tok_a", "tok_b", None]
TERMINAL_KINDS = ["ORDER_CREATED", "AUTH_APPROVED", "AUTH_DECLINED", "AUTH_TIMEOUT", "VOIDED"]
STATUSES = ["SETTLED", "FAILED", "REVERSED"]


@st.composite
def terminal_line(draw: st.DrawFn, t_max: int) -> dict[str, Any]:
    order = draw(st.sampled_from(ORDERS))
    kind = draw(st.sampled_from(TERMINAL_KINDS))
    t = T0 + draw(st.integers(0, t_max))
    eid = f"e{draw(st.integers(0, 40))}"  # small id space: redeliveries happen
    amount = draw(st.sampled_from([1000, 1000, 1000, 999]))
    return term(order, kind, t, eid=f"{order}-{eid}", amount=amount, card=draw(st.sampled_from(CARDS)))


@st.composite
def settlement_line(draw: st.DrawFn, t_max: int, v2: bool = False) -> dict[str, Any]:
    order = draw(st.sampled_from(ORDERS))
    status = draw(st.sampled_from(STATUSES))
    t = T0 + draw(st.integers(0, t_max))
    nid = f"n{draw(st.integers(0, 20))}"
    amount = draw(st.sampled_from([1000, 1000, 1000, 1001]))
    if not v2:
        return note(order, status, t, nid=f"{order}-{nid}", amount=amount)
    # contract v2: split captures (2-3 parts), partial refunds, fees, batches
    count = draw(st.sampled_from([1, 1, 2, 3]))
    seq = draw(st.integers(1, count))
    amount = draw(st.sampled_from([amount, 300, 500]))
    fee = draw(st.sampled_from([0, 10]))
    batch = draw(st.sampled_from([None, "b1", "b2"]))
    return note(order, status, t, nid=f"{order}-{nid}", amount=amount, seq=seq, count=count, fee=fee, batch=batch)


def streams(t_max: int, max_size: int = 40) -> st.SearchStrategy[tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
    return st.tuples(
        st.lists(terminal_line(t_max), max_size=max_size), st.lists(settlement_line(t_max), max_size=max_size)
    )


def any_input(
    t_max: int = 48 * 60 * MIN, max_size: int = 60, v2: bool = False
) -> st.SearchStrategy[list[dict[str, Any]]]:
    """Terminal and settlement lines of a few orders (``v2``: notices with the contract v2 fields varied)."""
    return st.lists(st.one_of(terminal_line(t_max), settlement_line(t_max, v2)), max_size=max_size)


@st.composite
def interleaving(draw: st.DrawFn, a: list[Any], b: list[Any]) -> list[Any]:
    """A random merge of a and b that keeps each list's own order."""
    slots = draw(st.permutations([0] * len(a) + [1] * len(b)))
    ia, ib, out = iter(a), iter(b), []
    for s in slots:
        out.append(next(ia) if s == 0 else next(ib))
    return out
