"""Every recorded command line still parses: the manifest's, the results' and the docs'.

The commands that made the published weights and the committed results are recorded in
``weights/manifest.json``, in result JSON files (``command``) and in the README,
CONTRIBUTING, the book and ``results/*.md``.  Each must stay accepted by the parser of its
entry point (parsed only, never run).
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
from collections.abc import Callable
from pathlib import Path

import pytest

from tarlib import analysis, experiments
from tarlib.study import cli, robustness

ROOT = Path(__file__).resolve().parents[1]
PARSERS: dict[str, Callable[[], argparse.ArgumentParser]] = {
    "tarlib.experiments": experiments.build_parser,
    "tarlib.reproduce": cli.build_parser,
    "tarlib.study": cli.build_parser,
    "tarlib.robustness": robustness.build_parser,
    "tarlib.analysis": analysis.build_parser,
}
# ``python -m tarlib.X`` and its arguments, up to the end of a code span, a comment or prose punctuation
COMMAND = re.compile(r"python -m (tarlib(?:\.\w+)+)((?: +[^\s`|;#)\"',]*[^\s`|;#)\"',.])*)")
# the manifest's "python -m tarlib.X ARGS, then ARGS": a second command of the same module
THEN = re.compile(r"python -m (tarlib\.\w+) [^,]*, then ((?:--[\w-]+(?: \w+)?(?: |$))+)")


def _manifest() -> list[str]:
    models = json.loads((ROOT / "weights" / "manifest.json").read_text())["models"]
    return [c for m in models for c in m["commands"]] + [m["reproduce"] for m in models]


def _result_commands() -> list[str]:
    def walk(node: object) -> list[str]:
        if isinstance(node, dict):
            return [v for k, v in node.items() if k == "command" and isinstance(v, str)] + \
                [c for v in node.values() for c in walk(v)]
        return [c for v in node for c in walk(v)] if isinstance(node, list) else []

    return [c for path in sorted((ROOT / "results").rglob("*.json")) for c in walk(json.loads(path.read_text()))]


def _docs() -> list[str]:
    paths = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "book").glob("*.md")),
             *sorted((ROOT / "results").rglob("*.md"))]
    return [p.read_text() for p in paths]


def commands(text: str) -> list[tuple[str, list[str]]]:
    """Every ``python -m tarlib.X ARGS`` in ``text``: (module, arguments); ``a, then ARGS`` counts twice."""
    return [(m.group(1), shlex.split(m.group(2))) for pattern in (COMMAND, THEN) for m in pattern.finditer(text)]


RECORDED = sorted({(module, tuple(args)) for text in [*_manifest(), *_result_commands(), *_docs()]
                   for module, args in commands(text)})


def test_every_kind_of_record_was_found() -> None:
    modules = {module for module, _ in RECORDED}
    assert {"tarlib.experiments", "tarlib.reproduce", "tarlib.robustness"} <= modules
    assert len(_manifest()) > 20 and _result_commands()


@pytest.mark.parametrize("module, args", RECORDED, ids=lambda v: " ".join(v) if isinstance(v, tuple) else v)
def test_a_recorded_command_parses(module: str, args: tuple[str, ...]) -> None:
    assert module in PARSERS, f"python -m {module} is recorded but is no entry point"
    PARSERS[module]().parse_args(list(args))
