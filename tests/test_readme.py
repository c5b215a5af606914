"""The README's Python example must run as printed (with a tiny step count)."""

import re
from pathlib import Path

import pytest

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_readme_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code = re.search(r"```python\n(.*?)```", README, re.S).group(1)
    assert "steps=8000" in code and 'checkpoint="runs/joint/checkpoint.pt"' in code
    code = code.replace("steps=8000", "steps=2")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert (tmp_path / "runs" / "joint" / "checkpoint.pt").is_file()
