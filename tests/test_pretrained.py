"""The published weights in weights/: integrity, loading through the public API, and their metrics."""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from tarlib import config, experiments, physics, pretrained, records
from tarlib.study import registry, round1
from tarlib.study.round2 import publish
from tarlib.study.round3 import publish as round3_publish

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "weights"
CHECKED = "mnist_joint_C0.5"  # the MNIST model whose accuracy is recomputed


@pytest.fixture(scope="module")
def models() -> dict:
    return pretrained.manifest(WEIGHTS)


ROUND2_ENTRIES_SHA256 = "01197657fb4559310b48134d9d4e51dc76dc56cf9e61c1d525b262fa1ce545c4"  # as round 2 published them


def _published(models: dict) -> dict[str, dict[str, str]]:
    """What should be published: round 2's models once it has published them (else round 1's), and round 3's
    once it has added them."""
    if not any(m.get("round") == 2 for m in models.values()):
        return round1.PUBLISHED
    out = publish.published(registry.load_choices(ROOT / "results" / "round2"))
    if any(m.get("round") == 3 for m in models.values()):
        out |= round3_publish.published(registry.load_choices(ROOT / "results" / "round3"))
    return out


def test_round3_adds_its_models_and_leaves_round2_byte_for_byte(models) -> None:
    """Round 2's manifest entries and files are those it published; round 3's additions stay within 5 MB."""
    round2 = [m for m in models.values() if m["round"] == 2]
    digest = hashlib.sha256(json.dumps(round2, sort_keys=True).encode()).hexdigest()
    assert digest == ROUND2_ENTRIES_SHA256, "round 2's published entries changed"
    round3 = [m for m in models.values() if m["round"] == 3]
    if not round3:
        pytest.skip("round 3 has not published its models (python -m tarlib.study --round 3 --export-weights)")
    assert sum(f["bytes"] for m in round3 for f in m["files"].values()) <= 5e6
    assert {f["path"] for m in round2 for f in m["files"].values()}.isdisjoint(
        {f["path"] for m in round3 for f in m["files"].values()})
    assert records.published_round(WEIGHTS) == 2  # the course's published round for Table 1 stays round 2
    assert {m["name"] for m in round3} == set(round3_publish.published(
        registry.load_choices(ROOT / "results" / "round3")))


@pytest.mark.parametrize("name", sorted(round3_publish.published(registry.load_choices(ROOT / "results" / "round3")))
                         if (ROOT / "results" / "round3" / "choices.json").is_file() else [])
def test_round3_models_load_weights_only_and_reproduce_their_check(models, name: str) -> None:
    """Each new architecture (rank-16 map, small LGD, linear T) rebuilds from the manifest, loads with
    weights_only=True, and re-evaluates within 0.2 points of its manifest's check on 1,000 test images."""
    if name not in models:
        pytest.skip(f"{name} is not published yet")
    m = models[name]
    for file in m["files"].values():
        state = torch.load(WEIGHTS / file["path"], map_location="cpu", weights_only=True)
        assert all(isinstance(v, torch.Tensor) for v in state.values())
    recomputed = pretrained.check(name, n=1000, directory=WEIGHTS)
    assert abs(recomputed["accuracy"] - m["check"]["accuracy"]) <= 0.002
    assert abs(recomputed["accuracy"] - m["metrics"]["accuracy"]) <= 0.025


def test_manifest_lists_every_file_and_every_published_model(models) -> None:
    published = _published(models)
    assert set(models) == set(published)
    listed = {f["path"] for m in models.values() for f in m["files"].values()}
    on_disk = {p.name for p in WEIGHTS.glob("*.pt")}
    assert listed == on_disk
    assert sum(p.stat().st_size for p in WEIGHTS.iterdir()) <= 40e6  # the budget of weights/
    for m in models.values():
        assert m["commands"] and all(c.startswith("python -m tarlib.experiments") for c in m["commands"])
        assert set(m["files"]) == set(published[m["name"]])
        assert m["metrics"] and m["check"]
        if "float16" in m:
            assert m["float16"]["agreement"] >= pretrained.FLOAT16_AGREEMENT


def test_every_file_matches_its_sha256_and_loads_weights_only(models) -> None:
    for m in models.values():
        for file in m["files"].values():
            path = WEIGHTS / file["path"]
            assert config.sha256_file(path) == file["sha256"], path
            state = torch.load(path, map_location="cpu", weights_only=True)
            assert all(isinstance(v, torch.Tensor) for v in state.values())
        model = pretrained.load(m["name"], directory=WEIGHTS)
        assert not model.training


@pytest.mark.parametrize("name", [CHECKED, "mnist_sequential"])
def test_published_mnist_model_reproduces_its_accuracy(models, name: str) -> None:
    m = models[name]
    assert m["check"]["n"] == 1000
    recomputed = pretrained.check(name, n=1000, directory=WEIGHTS)
    assert abs(recomputed["accuracy"] - m["check"]["accuracy"]) <= 0.01
    # a sanity bound against the run's accuracy on all 10,000 test images: the first 1,000
    # digits of the official test set are harder than the rest (about 1 pp for these models)
    assert abs(recomputed["accuracy"] - m["metrics"]["accuracy"]) <= 0.025


def test_a_changed_file_is_refused(models, tmp_path) -> None:
    m = models[CHECKED]
    shutil.copy(WEIGHTS / "manifest.json", tmp_path)
    for file in m["files"].values():
        shutil.copy(WEIGHTS / file["path"], tmp_path)
    pretrained.load(CHECKED, directory=tmp_path)  # the copy loads
    victim = tmp_path / m["files"]["T"]["path"]
    raw = bytearray(victim.read_bytes())
    raw[-10] ^= 0xFF
    victim.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="SHA-256"):
        pretrained.load(CHECKED, directory=tmp_path)


def test_published_mnist_models_and_the_library_agree_on_mu(models) -> None:
    """physics.mnist_data_model(), build_model and pretrained.data_model(name) use one μ (issue 22)."""
    mnist = [name for name, m in models.items() if m["experiment"] == "mnist"]
    assert mnist
    _, M = experiments.build_model("mnist", "lgd")
    assert physics.mnist_data_model().noise.mu == M.noise.mu == physics.MNIST_MU
    for name in mnist:
        assert pretrained.data_model(name).noise.mu == physics.MNIST_MU, name
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # agreement: loading warns about nothing
            pretrained.load(name)


def test_a_model_trained_with_another_mu_warns(models, tmp_path) -> None:
    m = models[CHECKED]
    for file in m["files"].values():
        shutil.copy(WEIGHTS / file["path"], tmp_path)
    manifest = json.loads((WEIGHTS / "manifest.json").read_text())
    manifest["models"] = [{**m, "mu": 0.1}]
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.warns(UserWarning, match=r"μ = 0.1.*pretrained.data_model"):
        pretrained.load(CHECKED, directory=tmp_path)
    assert pretrained.data_model(CHECKED, tmp_path).noise.mu == 0.1


def test_missing_manifest_and_unknown_names_are_explained(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="export-weights"):
        pretrained.manifest(tmp_path)
    with pytest.raises(KeyError, match=CHECKED):
        pretrained.load("no_such_model", directory=WEIGHTS)


def test_export_round_trip(tmp_path) -> None:
    """export copies R.pt / T.pt of a run, and load gives back the same tensors."""
    model, _ = experiments.build_model("mnist")
    run = tmp_path / "runs" / "some_run"
    run.mkdir(parents=True)
    torch.save(model.R.state_dict(), run / "R.pt")
    torch.save(model.T.state_dict(), run / "T.pt")
    spec = {"experiment": "mnist", "recon": "lgd", "seed": 0, "commands": ["python -m tarlib.experiments mnist"],
            "metrics": {}, "files": {"R": "some_run", "T": "some_run"}}
    path = pretrained.export({"m": spec}, tmp_path / "runs", tmp_path / "w", n_check=20)
    entry = json.loads(path.read_text())["models"][0]
    assert entry["check"]["n"] == 20 and 0 <= entry["check"]["accuracy"] <= 1
    loaded = pretrained.load("m", directory=tmp_path / "w")
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="parts"):
        pretrained.export({"m": {**spec, "files": {"X": "some_run"}}}, tmp_path / "runs", tmp_path / "w")


def test_export_in_float16_records_agreement_and_refuses_a_poor_copy(tmp_path, monkeypatch) -> None:
    """half=: files in float16 (about half the bytes), loaded into float32 networks, agreement ≥ 99.8 % checked."""
    torch.manual_seed(0)
    model, _ = experiments.build_model("mnist", mu=0.15)
    run = tmp_path / "runs" / "r"
    run.mkdir(parents=True)
    for part in ("R", "T"):
        torch.save(getattr(model, part).state_dict(), run / f"{part}.pt")
    spec = {"experiment": "mnist", "recon": "lgd", "seed": 0, "mu": 0.15, "commands": ["python -m tarlib.experiments"],
            "metrics": {}, "files": {"R": "r", "T": "r"}}
    path = pretrained.export({"m": spec}, tmp_path / "runs", tmp_path / "w", n_check=20, half=["m"], n_agreement=200)
    entry = json.loads(path.read_text())["models"][0]
    assert entry["float16"]["decisions"] == 200 and entry["float16"]["agreement"] >= pretrained.FLOAT16_AGREEMENT
    stored = torch.load(tmp_path / "w" / "r.T.pt", weights_only=True)
    assert all(v.dtype == torch.float16 for v in stored.values() if v.is_floating_point())
    assert (tmp_path / "w" / "r.T.pt").stat().st_size < 0.7 * (run / "T.pt").stat().st_size
    loaded = pretrained.load("m", directory=tmp_path / "w")
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    assert pretrained.data_model("m", tmp_path / "w").noise.mu == 0.15  # the run's data model, not the default
    monkeypatch.setattr(pretrained, "FLOAT16_AGREEMENT", 1.5)  # no copy can agree on 150 %
    with pytest.raises(ValueError, match="float32"):
        pretrained.export({"m": spec}, tmp_path / "runs", tmp_path / "w2", n_check=20, half=["m"], n_agreement=50)
    with pytest.raises(ValueError, match="not exported"):
        pretrained.export({"m": spec}, tmp_path / "runs", tmp_path / "w3", half=["other"])


def test_float16_models_decide_like_the_float32_runs(models) -> None:
    """A model stored in float16 labels ≥ 99.8 % of the pixels of results/round2/seg_outputs.npz (made from the
    float32 runs, same noise draw) as its float32 run did."""
    from tarlib import analysis

    halves = {n: m for n, m in models.items() if "float16" in m}
    if not halves:
        pytest.skip("no published model is stored in float16")
    outputs = analysis.read_seg_outputs(ROOT / "results" / "round2" / "seg_outputs.npz")
    published = _published(models)
    checked = 0
    for name, m in halves.items():
        row = records.course_name(published[name]["T"])[0]  # seg_outputs.npz names rows by course name
        if row not in outputs["rows"]:
            continue
        M = pretrained.data_model(name, WEIGHTS)
        x, y, z = (torch.cat(t) for t in zip(*experiments.test_batches(m["experiment"], M, m["seed"])))
        index = [int(i) for i in range(0, len(x), 2)][: len(outputs["x"])]
        assert np.allclose(x[index, 0].numpy(), outputs["x"], atol=1e-3), "seg_outputs.npz holds other slices"
        with torch.no_grad():
            labels = pretrained.load(name, directory=WEIGHTS)(y[index])[1].argmax(dim=1).numpy()
        agreement = (labels == (outputs["prob"][row] > 0.5)).mean()
        assert agreement >= pretrained.FLOAT16_AGREEMENT, (name, agreement)
        checked += 1
    assert checked, "no float16 model has float32 outputs in results/round2/seg_outputs.npz to compare with"
