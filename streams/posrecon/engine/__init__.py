"""The reconciliation engine: pure, deterministic rules, no I/O (see docs/architecture.md).

Its modules run compiled by mypyc when a fresh build is there, from source otherwise: posrecon/native.py.
"""

from pathlib import Path

from posrecon.native import activate

BUILD = activate(__path__, Path(__file__).resolve().parent)
