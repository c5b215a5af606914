"""Round 2: the pre-registered protocol of ``results/PROTOCOL.md``.

- :mod:`tarlib.study.round2.protocol`  its constants, rows, choices and stages
- :mod:`tarlib.study.round2.tables`    its tables, statistics, targets and figures
- :mod:`tarlib.study.round2.publish`   ``weights/``, ``results/round2/seg_outputs.npz``, Figures 2 and 3
"""
