"""No result of our runs is typed into a notebook's Markdown: results are printed by code or read from results/.

Every number in a Markdown cell that has a decimal point, a thousands comma or a percent sign must be declared
below, with what it is: a parameter of the course's design, a worked example of mathematics, or the paper's
number (labelled as the paper's in the text).  Section, equation and version numbers are not counted.  A new
number fails the test until it is declared here or, if it is a result, printed by a code cell instead; a
declared number that the notebook no longer has fails too, so that the list stays the notebooks' own.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NUMBER = re.compile(r"(?<![\w.])[−-]?\d+(?:[.,]\d+)+(?:\s?%)?|(?<![\w.])\d+\s?%")
REFERENCE = re.compile(r"(?:(?:[Ss]ections?|[Ss]ec\.|§|[Ee]qs?\.\s*\(|Table|Figure|Python|version|Proposition|Corollary)\s*"
                       r"|[Ss]ections? \d+\.\d+–)$")  # a reference, or the end of a range of sections

DESIGN, MATH, PAPER = "a parameter of the course's design", "a worked example of mathematics", "the paper's number"
DECLARED: dict[str, dict[str, str]] = {
    "00": {"70,000": DESIGN},  # MNIST's size
    "01": {"0.001": DESIGN, "0.1%": PAPER, "6,000": DESIGN, "8,000": PAPER},  # noise level, photons, steps
    "02": {"-0.5": MATH, "0.05": MATH, "0.1": MATH, "0.15": MATH, "0.2": MATH, "0.25": MATH, "0.5": MATH,
           "0.75": MATH, "0.8": MATH, "1.5": MATH, "2.5": MATH, "8,000": PAPER},  # toy priors; the paper's steps
    "03": {"0.01": MATH, "0.1%": PAPER, "0.4": MATH, "0.6": MATH, "0.7": MATH, "0.8": MATH, "0.82": MATH,
           "0.98": MATH, "0.981": MATH, "0.998": MATH, "0.9994": MATH, "55,000": DESIGN, "99%": MATH},
    "04": {"0.05": DESIGN, "0.5": DESIGN, "0.9": DESIGN, "0.999": DESIGN, "10,000": DESIGN, "5%": DESIGN,
           "95%": DESIGN},  # C values, test-set size, levels of the rule
    "05": {"0.001": MATH, "0.1": DESIGN},
    "06": {"0.01": DESIGN, "19.7": PAPER},
    "07": {"0.1%": PAPER, "0.5": DESIGN, "0.9": DESIGN},
    "08": {"0.5": DESIGN, "10,000": DESIGN},
    "09": {"0.01": DESIGN, "0.5": DESIGN, "0.999": DESIGN, "10,000": DESIGN, "95%": DESIGN},
    "10": {"0.15": DESIGN, "0.5": DESIGN, "10,000": DESIGN, "95%": DESIGN},  # 0.15: round 3's tie margin
    "11": {"10,000": DESIGN, "95%": DESIGN},
}


def typed_numbers(markdown: str) -> set[str]:
    """The numbers of ``markdown`` that this test counts (spaces before % removed)."""
    found = set()
    for m in NUMBER.finditer(markdown):
        if REFERENCE.search(markdown[max(0, m.start() - 14):m.start()]) or re.fullmatch(r"\d+\.\d+\.\d+", m.group()):
            continue
        found.add(m.group().replace(" ", ""))
    return found


def _markdown(path: Path) -> str:
    cells = json.loads(path.read_text())["cells"]
    return "\n\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")), ids=lambda p: p.stem)
def test_every_typed_number_is_declared(path: Path) -> None:
    found, declared = typed_numbers(_markdown(path)), DECLARED.get(path.name[:2], {})
    assert not found - set(declared), (
        f"{path.name}: Markdown types {sorted(found - set(declared))}; print results from code, or declare a design "
        "parameter, a worked example or the paper's number in tests/test_typed_numbers.py")
    assert not set(declared) - found, f"{path.name}: declared but no longer typed: {sorted(set(declared) - found)}"


def test_the_check_sees_a_typed_result_and_skips_references() -> None:
    text = "Joint training reaches 97.73 % (sections 5.1–5.2, eq. (18), version 0.3.0), with 10,000 images and 12 %."
    assert typed_numbers(text) == {"97.73%", "10,000", "12%"}
