"""The dev broker's one error type."""

from __future__ import annotations


class BrokerError(RuntimeError):
    """The local broker could not be set up, started or stopped; the message says why and what to do."""
