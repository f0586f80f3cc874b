"""ISO 4217 alpha-3 codes, from the maintained ``pycountry`` database (not a hand-written list)."""

from __future__ import annotations

import pycountry

ISO_4217_CODES: frozenset[str] = frozenset(c.alpha_3 for c in pycountry.currencies)


def is_iso4217(code: str) -> bool:
    return code in ISO_4217_CODES
