"""While nbval runs the notebooks, opening a file of round 1 fails the notebook.

Round 1 of the reproduction is superseded: its files stay at the top of ``results/``
(``results/*.json``, ``results/*.md``) as a record, and the course reads the published round
in ``results/round2/`` (``tarlib.records``).  This module is a pytest plugin that the root
``conftest.py`` registers (``pytest -p round1_audit`` does the same with ``tools/`` on the
path).  Before nbval starts a notebook's kernel, it points ``IPYTHONDIR`` at a temporary
IPython folder whose startup file calls :func:`install` in the kernel: an audit hook on
Python's ``open`` event (:func:`sys.addaudithook`) that raises :class:`Round1ReadError`
for a round-1 file, so the cell that reads it fails.  Unit tests (and their subprocesses)
run without it; each pytest-xdist worker has its own folder.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parents[1] / "results"
SUFFIXES = (".json", ".md")  # round 1's records and tables, directly in results/
_ipython_dir: Path | None = None  # this process's IPython folder, made at the first notebook
_user_ipython_dir = os.environ.get("IPYTHONDIR")  # restored for every other test


class Round1ReadError(RuntimeError):
    """A notebook opened a file of round 1 (not an OSError, so that no ``except OSError`` hides it)."""


def is_round1_file(path: Any, results: str | Path = RESULTS) -> bool:
    """Whether ``path`` (as given to ``open``; relative to the working directory) is ``results/*.json``
    or ``results/*.md``.  File descriptors and files in ``results/round*/`` are not."""
    if isinstance(path, int):
        return False
    try:
        name = os.fsdecode(os.fspath(path))
    except TypeError:
        return False
    if not name.endswith(SUFFIXES):  # cheap test first: every import opens a file too
        return False
    return os.path.dirname(os.path.realpath(name)) == os.path.realpath(results)


def install(results: str | Path = RESULTS) -> None:
    """Add an audit hook to this process: opening a round-1 file (:func:`is_round1_file`) raises
    :class:`Round1ReadError`, whatever the mode.  An audit hook cannot be removed again."""
    results = os.path.realpath(results)

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event == "open" and args and is_round1_file(args[0], results):
            raise Round1ReadError(
                f"{os.fsdecode(os.fspath(args[0]))} is a file of round 1, the old, superseded round "
                f"(results/*.json and results/*.md): read the published round in results/round2/ "
                f"(tarlib.records.course_runs, course_tables, results_dir() / 'round2'). "
                f"Raised by tools/round1_audit.py while nbval runs the notebooks.")

    sys.addaudithook(hook)


def ipython_dir(folder: Path, results: str | Path = RESULTS) -> Path:
    """Make ``folder`` an IPython folder whose startup file runs :func:`install` in every kernel started
    with ``IPYTHONDIR=folder``; returns ``folder``."""
    startup = folder / "profile_default" / "startup"
    startup.mkdir(parents=True, exist_ok=True)
    (startup / "00-round1-audit.py").write_text(
        "# written by tools/round1_audit.py: opening a round-1 result file fails the notebook\n"
        "def _round1_audit() -> None:\n"
        "    import importlib.util\n\n"
        f"    spec = importlib.util.spec_from_file_location('round1_audit', {str(Path(__file__).resolve())!r})\n"
        "    module = importlib.util.module_from_spec(spec)\n"
        "    spec.loader.exec_module(module)\n"
        f"    module.install({str(results)!r})\n\n\n"
        "_round1_audit()\n"
        "del _round1_audit\n")
    return folder


def _set_ipython_dir(value: str | None) -> None:
    if value is None:
        os.environ.pop("IPYTHONDIR", None)
    else:
        os.environ["IPYTHONDIR"] = value


def pytest_runtest_setup(item: Any) -> None:
    """Before each test: ``IPYTHONDIR`` is this process's audit folder for a notebook's cells (nbval
    starts the kernel at the first cell's set-up, and the kernel inherits the environment), and what
    it was before pytest for any other test."""
    global _ipython_dir
    if item.path.suffix != ".ipynb":
        if _ipython_dir is not None:
            _set_ipython_dir(_user_ipython_dir)
        return
    if _ipython_dir is None:
        _ipython_dir = ipython_dir(Path(tempfile.mkdtemp(prefix="tarlib-round1-audit-")))
    os.environ["IPYTHONDIR"] = str(_ipython_dir)


def pytest_unconfigure(config: Any) -> None:
    """Remove this process's audit folder (its kernels have stopped) and restore ``IPYTHONDIR``."""
    if _ipython_dir is not None:
        _set_ipython_dir(_user_ipython_dir)
        shutil.rmtree(_ipython_dir, ignore_errors=True)
