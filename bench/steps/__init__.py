"""The steps of ``bench/run.py``, each a function ``(bench, deadline) -> figures`` run by ``Bench.step``."""
