"""The two layers of tarlib: the library never imports the study, and nothing imports itself back.

``lint-imports`` (``make lint``) checks the contracts of ``pyproject.toml``
(``[tool.importlinter]``); these tests show that it catches a broken one, that the
contracts name every module, and that no import cycle exists, counting the imports
inside functions.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
CONTRACTS = {c["id"]: c for c in CONFIG["contracts"]}
LINT = Path(sys.executable).with_name("lint-imports")


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("tarlib")


def _lint(root: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` on the package under ``root`` with this checkout's contracts."""
    return subprocess.run([str(LINT), "--config", str(ROOT / "pyproject.toml"), "--no-cache"], cwd=root,
                          env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                          timeout=120)


def test_the_contracts_name_every_module(graph) -> None:
    library = set(CONTRACTS["library"]["source_modules"])
    study = {m for m in graph.modules if m.startswith("tarlib.study")} | {"tarlib.reproduce", "tarlib.robustness"}
    assert set(CONTRACTS["library"]["forbidden_modules"]) == {"tarlib.study", "tarlib.study.**", "tarlib.reproduce",
                                                              "tarlib.robustness"}
    assert library | study == set(graph.modules) and not library & study, (
        f"a module of neither layer: {sorted(set(graph.modules) - library - study)}; add it to [tool.importlinter]")


def test_no_import_cycles_counting_imports_inside_functions(graph) -> None:
    """Strongly connected components of the module graph (Tarjan): each must be one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while not component or component[-1] != module:
                component.append(stack.pop())
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    assert not cycles, f"import cycles: {cycles}"
    # grimp counts an import inside a function like one at the top of a module
    assert graph.direct_import_exists(importer="tarlib.analysis", imported="tarlib.pretrained")


def test_lint_imports_keeps_the_contracts_of_this_checkout(tmp_path) -> None:
    shutil.copytree(ROOT / "tarlib", tmp_path / "tarlib")
    result = _lint(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 3 kept, 0 broken." in result.stdout


@pytest.mark.parametrize("module, imported, contract", [
    ("metrics", "from tarlib.study import claims", "The library never imports the study"),
    ("records", "from tarlib import analysis", "No import cycles"),
])
def test_lint_imports_fails_on_a_library_module_importing_the_study_or_a_cycle(tmp_path, module, imported,
                                                                               contract) -> None:
    shutil.copytree(ROOT / "tarlib", tmp_path / "tarlib")
    path = tmp_path / "tarlib" / f"{module}.py"
    path.write_text(path.read_text() + f"\n\ndef _injected() -> None:\n    {imported}  # noqa\n")  # inside a function
    result = _lint(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{contract} BROKEN" in result.stdout
