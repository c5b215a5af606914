"""A non-editable install (the wheel) loads every published model, from outside the checkout.

The wheel is built from this checkout, installed with ``--no-deps`` into a temporary
folder, and imported from a temporary working directory by this interpreter (whose torch,
numpy, ... it reuses), so nothing of the source checkout can be picked up by accident.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VERSION = re.search(r'^version\s*=\s*"([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)

# Runs in the fresh install: loads every model (SHA-256 checked), then shows what an
# altered and a missing file say.
PROBE = textwrap.dedent("""
    import json, shutil, sys
    from pathlib import Path
    import tarlib
    from tarlib import pretrained
    from tarlib.study.round2 import protocol  # the study ships too

    directory = pretrained.weights_dir()
    loaded = [name for name in pretrained.names() if not pretrained.load(name).training]
    entry = pretrained.manifest()["mnist_joint_C0.5"]
    copy = Path(sys.argv[1])
    shutil.copytree(directory, copy)
    victim = copy / entry["files"]["T"]["path"]
    victim.write_bytes(victim.read_bytes()[:-1] + b"x")
    messages = {}
    for case in ("altered", "missing"):
        try:
            pretrained.load("mnist_joint_C0.5", directory=copy)
        except (ValueError, FileNotFoundError) as error:
            messages[case] = str(error)
        victim.unlink(missing_ok=True)
    print(json.dumps({"file": tarlib.__file__, "study": protocol.__file__, "version": tarlib.__version__,
                      "weights": str(directory), "loaded": loaded, "messages": messages}))
""")


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    subprocess.run([*pip, "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-w", str(tmp / "dist")],
                   check=True, cwd=tmp)
    (wheel,) = (tmp / "dist").glob("tarlib-*.whl")
    assert wheel.name.startswith(f"tarlib-{VERSION}-")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(tmp / "site"), str(wheel)], check=True, cwd=tmp)
    return tmp


def test_the_wheel_loads_every_published_model_with_checks(installed: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(installed / "site"), "HOME": str(installed)}
    out = subprocess.run([sys.executable, "-c", PROBE, str(installed / "copy")], cwd=installed, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    site = str(installed / "site")
    assert report["file"].startswith(site), f"imported {report['file']}, not the installed wheel"
    assert report["study"].startswith(site), "the wheel carries the study (tarlib.study and its sub-packages)"
    assert report["weights"].startswith(site), "the weights must come from the wheel, not the checkout"
    assert report["version"] == VERSION
    models = json.loads((ROOT / "weights" / "manifest.json").read_text())["models"]
    assert report["loaded"] == sorted(m["name"] for m in models)
    altered, missing = report["messages"]["altered"], report["messages"]["missing"]
    t_file = next(m for m in models if m["name"] == "mnist_joint_C0.5")["files"]["T"]["path"]  # the file the probe altered
    for message in (altered, missing):
        assert t_file in message, "the message must name the file"
        assert "git clone" in message and "--export-weights" in message, "and say how to get it"
    assert "SHA-256" in altered and "missing" in missing


def test_the_wheel_carries_py_typed(installed: Path) -> None:
    assert (installed / "site" / "tarlib" / "py.typed").is_file()
