"""Precision and recall of a count of expected vs. actual items with ``tp`` of them right (1.0 when undefined)."""

from __future__ import annotations


def ratio(hits: int, total: int) -> float:
    return 1.0 if total == 0 else hits / total


class Rates:
    """Mixed into score dataclasses that have ``expected``, ``actual`` and ``tp``."""

    __slots__ = ()
    expected: int
    actual: int
    tp: int

    @property
    def fp(self) -> int:
        return self.actual - self.tp

    @property
    def fn(self) -> int:
        return self.expected - self.tp

    @property
    def precision(self) -> float:
        return ratio(self.tp, self.actual)

    @property
    def recall(self) -> float:
        return ratio(self.tp, self.expected)
