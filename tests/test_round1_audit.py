"""tools/round1_audit.py: under nbval, a notebook that opens a file of round 1 fails, one that reads round 2 passes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from tools import round1_audit as audit

ROOT = Path(__file__).resolve().parents[1]


def test_round1_files_are_the_json_and_md_files_directly_in_results(tmp_path, monkeypatch) -> None:
    results = ROOT / "results"
    assert audit.is_round1_file(results / "mnist.md") and audit.is_round1_file(str(results / "mnist_sequential.json"))
    assert audit.is_round1_file(os.fsencode(results / "times.md"))
    monkeypatch.chdir(results / "round2")
    assert audit.is_round1_file("../mnist.md")  # relative to the working directory
    for path in (results / "round2" / "comparison.md", results / "round3" / "x.json", results / "figure3.png",
                 ROOT / "README.md", 3, None):
        assert not audit.is_round1_file(path), path
    assert audit.is_round1_file(tmp_path / "a.json", results=tmp_path)


def _notebook(path: Path, code: str) -> Path:
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)]), path)
    return path


def test_a_notebook_that_opens_a_round1_file_fails_under_nbval(tmp_path) -> None:
    """The mechanism of the root conftest (the plugin, its IPython startup file, the kernel's audit hook) on two
    one-cell notebooks: the one that opens results/mnist.md fails, naming the file; the other passes."""
    results = ROOT / "results"
    bad = _notebook(tmp_path / "reads_round1.ipynb", f"open({str(results / 'mnist.md')!r}).read()")
    good = _notebook(tmp_path / "reads_round2.ipynb", f"open({str(results / 'round2' / 'comparison.md')!r}).read()")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tools"), str(ROOT)])}
    env.pop("IPYTHONDIR", None)
    out = subprocess.run([sys.executable, "-m", "pytest", "-p", "round1_audit", "-p", "no:odl_plugins",
                          "-p", "no:cacheprovider", "-p", "no:xdist", "--nbval-lax", "--nbval-current-env", "-q",
                          str(bad), str(good)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert "1 failed, 1 passed" in out.stdout, out.stdout + out.stderr
    assert "FAILED reads_round1.ipynb" in out.stdout
    assert "Round1ReadError" in out.stdout and "mnist.md is a file of round 1" in out.stdout
    assert "results/round2/" in out.stdout


@pytest.mark.parametrize("mode", ["r", "w", "a"])
def test_the_hook_refuses_every_mode_in_its_own_process(tmp_path, mode) -> None:
    (tmp_path / "old.json").write_text("{}")
    (tmp_path / "round2").mkdir()
    code = (f"import importlib.util; spec = importlib.util.spec_from_file_location('a', {audit.__file__!r}); "
            f"m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); m.install({str(tmp_path)!r}); "
            f"open('round2/new.md', 'w').close(); open('old.json', {mode!r})")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "Round1ReadError: old.json is a file of round 1" in out.stderr, out.stderr
