"""tarlib.study.claims: each claim of the paper decided by a stated rule on the JSON files in results/."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tarlib.study import claims

RESULTS = Path(__file__).resolve().parents[1] / "results"


def test_every_claim_is_decided_on_the_committed_results() -> None:
    found = claims.check(RESULTS)
    assert len(found) == 6 and all(c.reproduced is not None for c in found)
    where = {c.where for c in found}
    assert where == {"section 5.1, Table 1", "section 5.2, Figure 3", "section 7"}
    table = claims.markdown(found)
    assert table.count("\n") == len(found) + 2 and "the paper's numbers" in table


def _copy(tmp_path: Path, names: list[str]) -> Path:
    for name in names:
        shutil.copy(RESULTS / f"{name}.json", tmp_path)
    return tmp_path


def test_the_table1_rule_compares_the_gap_with_the_seed_spread(tmp_path) -> None:
    runs = ["mnist_sequential", "mnist_sequential_seed1", "mnist_joint_C0.5"]
    folder = _copy(tmp_path, runs)
    seq = [json.loads((folder / f"{r}.json").read_text())["metrics"]["test"]["accuracy"] for r in runs[:2]]
    for accuracy, expected in ((max(seq) + 0.05, True), (min(seq) - 0.05, False)):
        data = json.loads((RESULTS / "mnist_joint_C0.5.json").read_text())
        data["metrics"]["test"]["accuracy"] = accuracy
        (folder / "mnist_joint_C0.5.json").write_text(json.dumps(data))
        (claim,) = [c for c in claims.check(folder, round=1) if "classifies better" in c.claim]
        assert claim.reproduced is expected


def test_missing_results_decide_nothing(tmp_path) -> None:
    assert claims.check(tmp_path, round=1) == []
    assert claims.mean_metric(tmp_path, "mnist_sequential", "accuracy", round=1) is None
    with pytest.raises(ValueError, match="folder"):
        claims.check(tmp_path / "absent")
