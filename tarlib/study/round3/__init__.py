"""Round 3: when does task adaptation pay?  The pre-registered protocol of ``results/round3/PROTOCOL.md``.

- :mod:`tarlib.study.round3.protocol`  its levels, rows, choices, stages and time estimates
- :mod:`tarlib.study.round3.tables`    its statistics (one shared image bootstrap, Holm), tables, targets, figure
"""
