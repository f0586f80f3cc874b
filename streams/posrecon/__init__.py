"""posrecon: real-time reconciliation of POS terminal events against settlement notices."""

__version__ = "0.1.0"
