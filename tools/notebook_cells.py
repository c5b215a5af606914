"""Insert or update the two standard code cells at the top of every notebook (idempotent).

    python tools/notebook_cells.py [NOTEBOOK ...]   # default: every notebooks/*.ipynb
    python tools/notebook_cells.py --check          # exit 1 if a notebook differs from what this writes

Right after the first markdown cell (title and learning goals) every notebook gets

1. the Colab cell (id ``colab-setup``, tag ``remove-cell``, so the book does not show it):
   it does nothing outside Google Colab; on Colab it clones the repository at the tag of
   pyproject's version (so that weights/ and results/ match the notebook) and runs
   tools/colab_setup.py, which installs it and says when a runtime restart is needed;
2. the fast-mode cell (id ``fast-mode``): prints whether fast mode is on and how to change it.

Older copies of either cell (found by id) are removed first, so rerunning changes nothing.
tests/test_notebook_cells.py checks that every notebook holds exactly these cells.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REPOSITORY = "https://github.com/tarlib-course/tarlib"


def version() -> str:
    """The project's version, from pyproject.toml (the one version source)."""
    match = re.search(r'^version\s*=\s*"([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    if not match:
        raise ValueError("pyproject.toml: expected a line `version = \"X.Y.Z\"` in [project]")
    return match.group(1)


def colab_cell_source() -> str:
    tag = f"v{version()}"
    return f"""\
# On Google Colab only (this cell does nothing elsewhere): get the course at {tag} and install it.
import sys

if "google.colab" in sys.modules:
    import os
    import subprocess

    if not os.path.isdir("/content/tarlib"):
        subprocess.run(["git", "clone", "--quiet", "--depth=1", "--branch={tag}",
                        "{REPOSITORY}", "/content/tarlib"], check=True)
    loaded = sorted({{name.split(".")[0] for name in sys.modules}})
    if subprocess.run([sys.executable, "/content/tarlib/tools/colab_setup.py", *loaded]).returncode:
        raise SystemExit("tarlib is not set up: see the message above.")
    sys.path.insert(0, "/content/tarlib")  # the editable install, importable before a restart
    os.chdir("/content/tarlib/notebooks")"""


FAST_MODE_SOURCE = """\
import tarlib

print(tarlib.explain_fast_mode())"""


def standard_cells() -> list[dict]:
    """The two cells, exactly as every notebook must hold them."""
    def cell(cell_id: str, source: str, tags: list[str]) -> dict:
        return {"cell_type": "code", "execution_count": None, "id": cell_id,
                "metadata": {"tags": tags} if tags else {}, "outputs": [], "source": source.splitlines(True)}
    return [cell("colab-setup", colab_cell_source(), ["remove-cell"]), cell("fast-mode", FAST_MODE_SOURCE, [])]


def updated(notebook: dict) -> dict:
    """``notebook`` with the standard cells (re)placed right after its first markdown cell."""
    cells = notebook["cells"]
    if not cells or cells[0]["cell_type"] != "markdown":
        raise ValueError("expected the notebook to open with a markdown cell (title and learning goals)")
    ids = {c["id"] for c in standard_cells()}
    rest = [c for c in cells[1:] if c.get("id") not in ids]
    return {**notebook, "nbformat": 4, "nbformat_minor": max(notebook.get("nbformat_minor", 0), 5),
            "cells": [cells[0], *standard_cells(), *rest]}


def dumps(notebook: dict) -> str:
    return json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a notebook needs an update")
    args = parser.parse_args(argv)
    stale = []
    for path in args.notebooks or sorted((ROOT / "notebooks").glob("*.ipynb")):
        text = path.read_text()
        new = dumps(updated(json.loads(text)))
        if new != text:
            stale.append(path.name)
            if not args.check:
                path.write_text(new)
    if args.check and stale:
        print(f"run python tools/notebook_cells.py: {', '.join(stale)} lack the standard cells", file=sys.stderr)
        return 1
    print(("would update: " if args.check else "updated: ") + (", ".join(stale) or "nothing"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
