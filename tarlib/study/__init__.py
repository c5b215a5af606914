"""The study: the runs that reproduce the paper, and what they show.

``tarlib`` has two layers.  The *library* (every other module of ``tarlib``) is what the
course teaches and a researcher reuses; the *study*, this package, runs and checks the
paper with it.  The study imports the library, never the reverse, and no module imports
itself back through others: ``lint-imports`` checks both (the contracts are in
``pyproject.toml``, ``[tool.importlinter]``).

What every round shares:

- :mod:`tarlib.study.registry`    rows (one run each), tables of them, dependency order
- :mod:`tarlib.study.runner`      the stage runner: resumable, choices on validation data between stages
- :mod:`tarlib.study.executor`    how a stage's rows run: one at a time here, or side by side on Ray
- :mod:`tarlib.study.evaluation`  evaluation on noise draws shared by every model
- :mod:`tarlib.study.tables`      the paper's Table 1, mean ± std cells, verdicts, figures

What one round's protocol decides:

- :mod:`tarlib.study.round0`  a smoke round of four short rows, for trying an executor or a cluster
- :mod:`tarlib.study.round1`  the first round (``results/*.json``)
- :mod:`tarlib.study.round2`  the pre-registered second round (``results/PROTOCOL.md``, ``results/round2/``)
- :mod:`tarlib.study.round3`  the third round: when task adaptation pays, by the capacity of R and T
  (``results/round3/PROTOCOL.md``, ``results/round3/``)
- :mod:`tarlib.study.probe`   the information probe: the classifier trained on Aᵀy, FBP(y), the published
  R(y) and y, one budget (``results/probe/PLAN.md``, ``results/probe/``)

And what the rounds' models show: :mod:`tarlib.study.robustness` (section 7),
:mod:`tarlib.study.claims` (the paper's claims decided on ``results/``) and
:mod:`tarlib.study.projects` (reference solutions of notebook 11's projects, ``results/projects/``).  The command
line is :mod:`tarlib.study.cli`: ``python -m tarlib.study``, or ``python -m tarlib.reproduce``
as the recorded commands write it.
"""
