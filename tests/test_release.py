"""One version (pyproject.toml) everywhere a release is named; licence, citation and changelog present."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

import tarlib

ROOT = Path(__file__).resolve().parents[1]
VERSION = re.search(r'^version\s*=\s*"([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
TAG = f"v{VERSION}"


def test_tarlib_reads_its_version_from_the_installed_metadata() -> None:
    source = (ROOT / "tarlib" / "__init__.py").read_text()
    assert "metadata.version(\"tarlib\")" in source
    assert VERSION not in source, "no second copy of the version in tarlib/__init__.py"
    assert re.fullmatch(r"\d+\.\d+\.\d+.*|0\+unknown", tarlib.__version__)


def test_binder_badge_and_launch_buttons_point_at_the_release_tag() -> None:
    readme = (ROOT / "README.md").read_text()
    badges = re.findall(r"mybinder\.org/v2/gh/tarlib-course/tarlib/([^?\s)]+)", readme)
    assert badges and set(badges) == {TAG}, f"README's Binder badge must open {TAG}, not {badges}"
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["repository"]["url"] == "https://github.com/tarlib-course/tarlib"
    assert config["repository"]["branch"] == TAG
    assert config["launch_buttons"]["binderhub_url"] and config["launch_buttons"]["colab_url"]
    html = config["html"]
    assert html["use_repository_button"] and html["use_issues_button"] and html["use_download_button"]


def test_citation_changelog_and_licence() -> None:
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert citation["cff-version"].startswith("1.2")
    assert citation["version"] == VERSION
    assert citation["license"] == "MIT"
    assert [r["doi"] for r in citation["references"]] == ["10.1088/1361-6420/ac28ec"]
    changelog = (ROOT / "CHANGELOG.md").read_text()
    first = re.search(r"^## \[?([0-9][^\]\s]*)", changelog, re.M).group(1)
    assert first == VERSION, f"CHANGELOG.md's newest entry is {first}, pyproject says {VERSION}"
    licence = (ROOT / "LICENSE").read_text()
    for needed in ("MIT License", "CC BY 4.0", "MNIST", "MNI152"):
        assert needed in licence
