"""The book's notation table must point at names that exist in tarlib."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTATION = (ROOT / "book" / "notation.md").read_text()
NAMES = sorted(set(re.findall(r"`(tarlib(?:\.\w+)+)`", NOTATION)))


def _resolve(dotted: str) -> object:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(dotted)


def test_notation_table_is_not_empty() -> None:
    assert len(NAMES) > 15


@pytest.mark.parametrize("name", NAMES)
def test_notation_names_exist(name: str) -> None:
    assert _resolve(name) is not None


def test_notation_strategies_exist() -> None:
    from tarlib.training import STRATEGIES

    named = set(re.findall(r'strategy="(\w+)"', NOTATION))
    assert named == set(STRATEGIES), f"notation table names {sorted(named)}, training offers {STRATEGIES}"
