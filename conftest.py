"""Project-wide pytest configuration (unit tests and nbval)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from tools import notebook_times, round1_audit

_NOTEBOOK_SECONDS: dict[str, float] = defaultdict(float)


def pytest_configure(config):
    """Notebooks run under nbval fail when they open a file of round 1 (tools/round1_audit.py)."""
    if not config.pluginmanager.has_plugin("round1_audit"):  # unless given as -p round1_audit
        config.pluginmanager.register(round1_audit, "round1_audit")


def pytest_collectstart(collector):
    """Do not compare stderr of notebook cells: tqdm progress bars write there."""
    path = getattr(collector, "path", None)
    if path is not None and path.suffix == ".ipynb":
        collector.skip_compare += ("stderr",)


def pytest_runtest_logreport(report):
    """Add up the time of every cell of each notebook that nbval runs (kernel start included)."""
    path = report.nodeid.split("::")[0]
    if path.endswith(".ipynb"):
        _NOTEBOOK_SECONDS[Path(path).stem] += report.duration


def pytest_terminal_summary(terminalreporter):
    """After an nbval run: each notebook's run time, their sum and the budget (tools/notebook_times.py; reported
    here, while CI fails over budget on the book build's times)."""
    if not _NOTEBOOK_SECONDS:
        return
    terminalreporter.section("notebook run times (nbval)")
    terminalreporter.write_line(notebook_times.report(dict(sorted(_NOTEBOOK_SECONDS.items()))))
