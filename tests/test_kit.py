"""The lecturer's kit: the student edition has no solution left, every notebook has its self-check, the
syllabus names exercises that exist, and the publishing workflow is a valid GitHub workflow.

Solutions are found here from their content, not from the ``solution`` tag that ``make student``
removes (tools/student_edition.py): a collapsed block titled "Solution ..." or "Answer key ...", a code
cell that starts with ``# Solution``, and every code cell that the notebook hides after its
``## Exercises`` heading.  The student edition must have dropped exactly those cells.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from tools import student_edition

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
SOLUTION_BLOCK = re.compile(r"(\{dropdown\}|<summary>)\s*(Solution|Answer key)", re.IGNORECASE)
SOLUTION_CODE = re.compile(r"\s*#\s*Solution\b", re.IGNORECASE)
SOLVES = re.compile(r"Solution to exercise (\d+)", re.IGNORECASE)
EXERCISE = re.compile(r"^\*\*(\d+)\.", re.MULTILINE)
HIDDEN = {"hide-cell", "hide-input", "hide-output"}
QUESTION = re.compile(r"^\*\*Q(\d+)\.\*\*", re.MULTILINE)
ANSWER = "<details><summary>Answer</summary>"
SETTLES = re.compile(r"\b(section|cell|figure|table|print|printout|printed|plot|panel|curve|output|number|line)s?\b",
                     re.IGNORECASE)


def _source(cell: dict) -> str:
    return "".join(cell["source"])


def _heading(cell: dict, title: str) -> bool:
    return cell["cell_type"] == "markdown" and _source(cell).lstrip().startswith(title)


def found_solutions(nb: dict) -> list[int]:
    """Indices of the solution cells of ``nb``, found from their content and place, not their tags."""
    found, in_exercises = [], False
    for i, cell in enumerate(nb["cells"]):
        text, tags = _source(cell), set(cell.get("metadata", {}).get("tags", []))
        in_exercises = in_exercises or _heading(cell, "## Exercises")
        if cell["cell_type"] == "markdown" and SOLUTION_BLOCK.search(text):
            found.append(i)
        elif cell["cell_type"] == "code" and (SOLUTION_CODE.match(text) or (in_exercises and tags & HIDDEN)):
            found.append(i)
    return found


def exercises(nb: dict) -> list[int]:
    """The exercise numbers (``**N. ...``) of the Markdown after ``## Exercises``, outside solutions."""
    numbers, in_exercises, solutions = [], False, set(found_solutions(nb))
    for i, cell in enumerate(nb["cells"]):
        in_exercises = in_exercises or _heading(cell, "## Exercises")
        if in_exercises and cell["cell_type"] == "markdown" and i not in solutions:
            numbers += [int(n) for n in EXERCISE.findall(_source(cell))]
    return numbers


def _read(path: Path) -> dict:
    return nbformat.read(path, as_version=4)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_exercise_has_a_solution_and_every_solution_is_tagged(path: Path) -> None:
    nb = _read(path)
    numbers, solutions = exercises(nb), found_solutions(nb)
    assert numbers and numbers == list(range(1, len(numbers) + 1)), f"{path.name}: exercises numbered {numbers}"
    solved = {int(n) for i in solutions for n in SOLVES.findall(_source(nb["cells"][i]))}
    assert set(numbers) <= solved, f"{path.name}: exercises without a solution: {sorted(set(numbers) - solved)}"
    tagged = [i for i, c in enumerate(nb["cells"]) if student_edition.SOLUTION_TAG in c.get("metadata", {}).get("tags", [])]
    assert tagged == solutions, (f"{path.name}: cells tagged `solution` {tagged} are not the solutions found "
                                 f"from their content {solutions}")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_student_edition_drops_exactly_the_solutions(path: Path) -> None:
    nb, student = _read(path), student_edition.student_notebook(path)
    solutions = found_solutions(nb)
    kept = [c["id"] for i, c in enumerate(nb["cells"]) if i not in solutions]
    assert [c["id"] for c in student["cells"]] == kept
    assert found_solutions(student) == [], f"{path.name}: a solution survives in the student edition"
    assert exercises(student) == exercises(nb)


def test_the_check_finds_an_untagged_solution(tmp_path: Path) -> None:
    """A solution that lost its tag survives nbconvert's removal: the tests above catch it."""
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("## Exercises\n\n**1. Add.** Compute 1 + 1."),
        nbformat.v4.new_markdown_cell("<details><summary>Solution to exercise 1</summary>\n\n2\n\n</details>"),
        nbformat.v4.new_code_cell("print(1 + 1)", metadata={"tags": ["hide-cell"]}),
    ])
    path = tmp_path / "00_x.ipynb"
    nbformat.write(nb, path)
    assert found_solutions(nb) == [1, 2] and exercises(nb) == [1]
    assert found_solutions(student_edition.student_notebook(path)) == [1, 2]  # no tag: nothing removed
    for cell in nb.cells[1:]:
        cell.metadata["tags"] = ["solution"]
    nbformat.write(nb, path)
    assert found_solutions(student_edition.student_notebook(path)) == []


def test_make_student_writes_every_notebook(tmp_path: Path) -> None:
    written = student_edition.write(tmp_path)
    assert [p.name for p in written] == [p.name for p in NOTEBOOKS]
    assert (tmp_path / "README.md").is_file()


def self_checks(nb: dict) -> list[tuple[str, str]]:
    """(question, answer) pairs of the notebook's ``## Self-check`` cell."""
    cells = [_source(c) for c in nb["cells"] if _heading(c, "## Self-check")]
    assert len(cells) == 1, f"{len(cells)} self-check cells"
    parts = QUESTION.split(cells[0])[1:]
    pairs = []
    for number, text in zip(parts[::2], parts[1::2], strict=True):
        question, _, answer = text.partition(ANSWER)
        assert answer.strip().endswith("</details>"), f"Q{number}: no collapsed answer"
        pairs.append((question.strip(), answer.removesuffix("</details>").strip()))
    return pairs


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_notebook_has_three_to_five_self_checks_with_collapsed_answers(path: Path) -> None:
    """(tests/test_hygiene.py checks that Summary, Self-check and Exercises are the last three sections.)"""
    pairs = self_checks(_read(path))
    assert 3 <= len(pairs) <= 5, f"{path.name}: {len(pairs)} self-check questions"
    for question, answer in pairs:
        assert question and answer, f"{path.name}: empty question or answer"
        assert SETTLES.search(answer), f"{path.name}: the answer to '{question[:60]}' names nothing that settles it"


def test_the_syllabus_names_exercises_that_exist() -> None:
    text = (ROOT / "book" / "syllabus.md").read_text()
    named = re.findall(r"\b(\d\d) \(ex\. (\d+)–(\d+)\)", text)
    counts = {p.name[:2]: len(exercises(_read(p))) for p in NOTEBOOKS}
    assert sorted(n for n, _, _ in named) == sorted(counts), "the lecture map names each notebook's exercises once"
    for notebook, first, last in named:
        assert int(first) == 1 and int(last) == counts[notebook], (
            f"the syllabus names exercises {first}–{last} of notebook {notebook}, which has {counts[notebook]}")
    toc = (ROOT / "_toc.yml").read_text()
    assert toc.index("book/syllabus") < toc.index("notebooks/00_getting_started")


WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def test_the_publishing_workflow_is_a_valid_github_workflow(tmp_path: Path) -> None:
    """Validated offline against the GitHub-workflow schema bundled with check-jsonschema (the dev extra); a broken
    copy fails."""
    exe = str(Path(sys.executable).parent / "check-jsonschema")
    assert WORKFLOWS

    def valid(*paths: Path) -> subprocess.CompletedProcess:
        return subprocess.run([exe, "--builtin-schema", "vendor.github-workflows", *map(str, paths)],
                              capture_output=True, text=True, timeout=120)

    assert valid(*WORKFLOWS).returncode == 0, valid(*WORKFLOWS).stdout
    broken = tmp_path / "broken.yml"
    broken.write_text(WORKFLOWS[0].read_text().replace("runs-on:", "runs_on:", 1))
    assert valid(broken).returncode != 0
    text = (ROOT / ".github" / "workflows" / "book.yml").read_text()
    assert "tags:" in text and "FAST=0" in text and "deploy-pages" in text
