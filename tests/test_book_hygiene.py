"""What the built book shows: no check output, every solution executed, no broken inline maths.

- A cell that prints a check (a comparison, ``bool(...)``, ``allclose`` ..., i.e. output like
  "accuracy > 0.8: True") must be tagged ``remove-cell``: nbval still runs and compares it,
  the book does not show it.  Kept outputs of visible cells must not read True/False.
- Exercise solutions that use course code are executed code cells (tagged ``hide-cell`` or
  ``remove-cell``), never code blocks in Markdown, so that the tests run every solution.
- An inline formula broken across lines must not continue on a line that Markdown reads as
  a list item ("- ...", "+ ...", "1. ..."): the page would show raw TeX and a stray bullet.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
PAGES = sorted((ROOT / "book").glob("*.md"))
HIDDEN = {"remove-cell", "remove-output"}
BOOLEAN_CALLS = {"bool", "allclose", "isclose", "equal", "array_equal", "all", "any", "isfinite"}
COURSE_CODE = re.compile(r"\b(tarlib|physics|classical|bayes|decisions|metrics|data|nets|training|pretrained|plotting)\.")
LIST_ITEM = re.compile(r"\s*([-+*]|\d+[.)])\s")


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _tags(cell: dict) -> set[str]:
    return set(cell.get("metadata", {}).get("tags", []))


def _is_check(node: ast.AST) -> bool:
    """Does this expression evaluate to a truth value (a check) rather than a measurement?"""
    if isinstance(node, (ast.Compare, ast.BoolOp)) or (isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not)):
        return True
    if isinstance(node, ast.Call):
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        return name in BOOLEAN_CALLS
    return False


def printed_checks(source: str) -> list[str]:
    """The printed expressions of a code cell that are checks (comparisons, bool(), allclose(), ...)."""
    lines = [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
    tree = ast.parse("\n".join(lines))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "print":
            values = []
            for arg in node.args:
                values += [v.value for v in arg.values if isinstance(v, ast.FormattedValue)] if isinstance(
                    arg, ast.JoinedStr) else [arg]
            found += [ast.unparse(v) for v in values if _is_check(v)]
    return found


def broken_inline_math(markdown: str) -> list[str]:
    """Lines that continue an open inline formula ``$...`` but start like a list item."""
    bad, open_inline, fenced = [], False, False
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            continue
        if not line.strip():
            open_inline = False
            continue
        if open_inline and LIST_ITEM.match(line):
            bad.append(line.strip())
        singles = re.sub(r"\$\$|\\\$", "", line).count("$")
        open_inline ^= singles % 2 == 1
    return bad


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_check_output_is_not_shown_in_the_book(nb: Path) -> None:
    for i, cell in enumerate(_cells(nb)):
        if cell["cell_type"] != "code" or _tags(cell) & HIDDEN:
            continue
        checks = printed_checks(_source(cell))
        assert not checks, (f"{nb.name} cell {i} prints checks {checks} that the book would show: move them to a "
                            "cell tagged remove-cell, or use assert")
        for output in cell.get("outputs", []):
            text = "".join(output.get("text", "")) + "".join(output.get("data", {}).get("text/plain", ""))
            assert not re.search(r"\b(True|False)\b", text), f"{nb.name} cell {i}: visible output reads {text!r}"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_solutions_with_course_code_are_executed(nb: Path) -> None:
    for i, cell in enumerate(_cells(nb)):
        if cell["cell_type"] != "markdown":
            continue
        for block in re.findall(r"```(\w*)\n(.*?)```", _source(cell), re.S):
            language, code = block
            assert not (language in ("", "python", "ipython", "py") and COURSE_CODE.search(code)), (
                f"{nb.name} cell {i}: a code block with course code in Markdown is never run; make it an "
                "executed code cell tagged hide-cell (or remove-cell with a dropdown)")


@pytest.mark.parametrize("path", NOTEBOOKS + PAGES, ids=lambda p: p.name)
def test_inline_formulas_do_not_break_into_list_items(path: Path) -> None:
    texts = ([_source(c) for c in _cells(path) if c["cell_type"] == "markdown"] if path.suffix == ".ipynb"
             else [path.read_text()])
    for text in texts:
        bad = broken_inline_math(text)
        assert not bad, f"{path.name}: inline formula broken onto a line Markdown reads as a list item: {bad}"


def test_the_detectors_detect() -> None:
    """The rules above must be able to fail."""
    assert printed_checks('print("accuracy > 0.8:", accuracy > 0.8)') == ["accuracy > 0.8"]
    assert printed_checks('print(f"ok: {torch.allclose(a, b)}")') == ["torch.allclose(a, b)"]
    assert printed_checks('print(f"{name:>10} {acc:.2f}")') == []
    assert broken_inline_math("data $y = Ax\n- e$ here") == ["- e$ here"]
    assert broken_inline_math("- a list item\n- another with $x$") == []
    assert broken_inline_math("$$\na\n$$\n- item") == []
