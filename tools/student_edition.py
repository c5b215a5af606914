"""Write the student edition of the course: every notebook without its solutions.

    python tools/student_edition.py [OUT]        (default: _build/student; `make student`)

A solution is a cell tagged ``solution`` (the course's convention, CONTRIBUTING.md): a collapsed
``Solution to exercise N`` block, a ``# Solution to exercise N`` code cell, or the answer key of a
project.  nbconvert's ``TagRemovePreprocessor`` drops those cells and nothing else; exercises,
self-checks and kept ``# NBVAL_CHECK_OUTPUT`` outputs stay, so that the student notebooks still run
top to bottom under nbval in fast mode (CI does it).  ``tests/test_student.py`` finds the solutions
again without reading any tag and fails if one survives.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbconvert.exporters import NotebookExporter
from nbconvert.preprocessors import TagRemovePreprocessor

ROOT = Path(__file__).resolve().parents[1]
SOLUTION_TAG = "solution"
README = """# The course's student edition

These notebooks are the course's notebooks without their solutions (`make student`, from a checkout
of the repository). Exercises and self-checks are kept; every exercise says what to do. Run them in
a checkout of the repository (put them in place of `notebooks/`, or next to it: they read the
course's data, weights and results through `tarlib`). The full edition, with every solution, is the
book and the repository itself: solutions are public there.
"""


def exporter() -> NotebookExporter:
    """nbconvert's notebook-to-notebook exporter with the tag-removal preprocessor for ``solution`` cells."""
    remove = TagRemovePreprocessor(remove_cell_tags={SOLUTION_TAG}, enabled=True)
    out = NotebookExporter()
    out.register_preprocessor(remove, enabled=True)
    return out


def student_notebook(path: Path) -> nbformat.NotebookNode:
    """The notebook at ``path`` without its ``solution`` cells."""
    body, _ = exporter().from_filename(str(path))
    return nbformat.reads(body, as_version=4)


def write(out: Path, notebooks: Path = ROOT / "notebooks") -> list[Path]:
    """Write the student edition of every ``NN_*.ipynb`` of ``notebooks`` to ``out/notebooks``; the paths."""
    sources = sorted(notebooks.glob("[0-9][0-9]_*.ipynb"))
    if not sources:
        raise FileNotFoundError(f"no notebooks NN_*.ipynb in {notebooks}")
    (out / "notebooks").mkdir(parents=True, exist_ok=True)
    (out / "README.md").write_text(README)
    written = []
    for source in sources:
        target = out / "notebooks" / source.name
        nbformat.write(student_notebook(source), target)
        written.append(target)
    return written


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else ROOT / "_build" / "student"
    for path in write(out):
        print(f"wrote {path.relative_to(out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
