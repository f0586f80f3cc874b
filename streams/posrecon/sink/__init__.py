"""Sinks that book ``pos.reconciled`` into a downstream store (``posrecon sink postgres``: the reference ledger).

The store holds both the booked rows and the consumed offsets, written in one database transaction, so a
crash at any point neither books a record twice nor skips one (see :mod:`posrecon.sink.ledger_sink`).
"""
