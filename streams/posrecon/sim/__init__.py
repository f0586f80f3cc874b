"""Traffic simulator with ground truth, and the evaluator that scores engine output against it.

Independent of ``posrecon.engine`` on purpose: it is the oracle that checks the engine.
"""
