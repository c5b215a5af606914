"""Published weights of the project's own full runs (``weights/``), for the notebooks and for reuse.

    >>> from tarlib import pretrained
    >>> pretrained.names()                       # what is published
    >>> model = pretrained.load("mnist_joint_C0.5")   # T ∘ R of the joint run, C = 0.5 (eq. (20))
    >>> x_hat, d = model(y)

The weights come from ``python -m tarlib.reproduce`` (section 5 of the paper, full
runs on 2 CPU cores) and are copied to ``weights/`` with
``python -m tarlib.reproduce --round 2 --export-weights``.  ``weights/manifest.json`` records for
each model its files and their SHA-256, the command that trained it and its test
metrics.  Loading checks the SHA-256 first and reads the files with
``torch.load(..., weights_only=True)``, which cannot run code from a file.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from collections.abc import Collection
from pathlib import Path
from typing import Any

import torch

from tarlib import experiments, nets, physics, training
from tarlib.config import sha256_file, write_json

PARTS = ("R", "T")  # the reconstruction R_θ and the task network T_ϑ


HOW_TO_GET = (
    "get the published weights with `git clone https://github.com/tarlib-course/tarlib` "
    "(its weights/ folder) or `pip install` of that repository, or rebuild them with "
    "`python -m tarlib.reproduce --round 2 --export-weights --runs RUNS`; TARLIB_WEIGHTS_DIR selects another folder"
)


def weights_dir() -> Path:
    """Where the published weights are.

    ``$TARLIB_WEIGHTS_DIR`` if set; else ``tarlib/weights`` inside an installed wheel
    (``pip install .`` packs ``weights/`` there); else ``weights/`` of the source checkout.
    """
    if os.environ.get("TARLIB_WEIGHTS_DIR"):
        return Path(os.environ["TARLIB_WEIGHTS_DIR"])
    packaged = Path(__file__).resolve().parent / "weights"
    if (packaged / "manifest.json").is_file():
        return packaged
    return Path(__file__).resolve().parents[1] / "weights"


def manifest(directory: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """The models in ``directory/manifest.json``, by name."""
    path = Path(directory or weights_dir()) / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"no manifest of published weights at {path}: {HOW_TO_GET}")
    return {m["name"]: m for m in json.loads(path.read_text())["models"]}


def names(directory: str | Path | None = None) -> list[str]:
    """The names of the published models."""
    return sorted(manifest(directory))


def _entry(name: str, directory: Path) -> dict[str, Any]:
    models = manifest(directory)
    if name not in models:
        raise KeyError(f"no published model {name!r}; the models are {sorted(models)}")
    return models[name]


def _build(entry: dict[str, Any], directory: Path, device: str | torch.device,
           verify: bool = True) -> tuple[nets.TaskAdapted, Any]:
    """T ∘ R (eval mode) and M of a manifest entry, its files checked against their SHA-256 (``verify``)."""
    model, M = experiments.build_model(entry["experiment"], entry["recon"], mu=entry.get("mu"),
                                       norm=entry.get("norm", "batch"), task_net=entry.get("task_net", "cnn"))
    for part, file in entry["files"].items():
        path = directory / file["path"]
        if not path.is_file():
            raise FileNotFoundError(f"{path} (part {part} of {entry['name']}) is missing: {HOW_TO_GET}")
        if verify and (digest := sha256_file(path)) != file["sha256"]:
            raise ValueError(
                f"{path} (part {part} of {entry['name']}) was altered: its SHA-256 {digest} does not match "
                f"the manifest's {file['sha256']}; restore it (`git checkout -- weights/{file['path']}` in a "
                f"checkout) or {HOW_TO_GET}"
            )
        training.load_weights(getattr(model, part), path)
    return model.to(device).eval(), M.to(device)


def _check(entry: dict[str, Any], directory: Path, n: int | None, device: str | torch.device) -> dict[str, float]:
    model, M = _build(entry, directory, device)
    batches = experiments.test_batches(entry["experiment"], M, entry["seed"], n, device)
    return training.evaluate(model, batches, experiments.TASKS[entry["experiment"]])


def load(name: str, device: str | torch.device = "cpu", directory: str | Path | None = None) -> nets.TaskAdapted:
    """The published model ``name`` as T ∘ R in eval mode, its files checked against the manifest.

    Warns when an MNIST model was trained with another μ than the library's default
    (:data:`tarlib.physics.MNIST_MU`): feed it data from :func:`data_model` then.
    """
    directory = Path(directory or weights_dir())
    entry = _entry(name, directory)
    mu = entry.get("mu")
    if entry["experiment"] == "mnist" and mu is not None and mu != physics.MNIST_MU:
        warnings.warn(f"{name} was trained with μ = {mu}, but physics.mnist_data_model() defaults to "
                      f"μ = {physics.MNIST_MU}: feed it data from tarlib.pretrained.data_model({name!r})", stacklevel=2)
    return _build(entry, directory, device)[0]


def data_model(name: str, directory: str | Path | None = None) -> physics.DataModel:
    """The data model M that the published model ``name`` was trained and tested with.

    Feed a published model data from this M: its noise level and, for MNIST, its
    attenuation scale μ are those of the run (``mu`` in the manifest).
    """
    entry = _entry(name, Path(directory or weights_dir()))
    return experiments.data_model(entry["experiment"], entry["recon"], entry.get("mu"))


def load_reconstruction(name: str, device: str | torch.device = "cpu", directory: str | Path | None = None) -> torch.nn.Module:
    """Only the reconstruction network R_θ of the published model ``name`` (eval mode).

    A published model is always the pair T ∘ R of one run, named after the run that
    trained its *last* part.  So ``"mnist_pretrain_T"`` holds the R_θ pre-trained with the
    squared L2 loss (eq. (4), run ``mnist_pretrain_R``) next to the classifier trained on
    true images; this function returns that R_θ.
    """
    directory = Path(directory or weights_dir())
    entry = _entry(name, directory)
    if "R" not in entry["files"]:
        with_r = sorted(n for n, m in manifest(directory).items() if "R" in m["files"])
        raise ValueError(f"published model {name!r} has no reconstruction network R; models with one: {with_r}")
    return _build(entry, directory, device)[0].R


def check(name: str, n: int | None = 1000, device: str | torch.device = "cpu",
          directory: str | Path | None = None) -> dict[str, float]:
    """Test metrics of the published ``name`` on the first ``n`` (None: all) test images, with its run's noise."""
    directory = Path(directory or weights_dir())
    return _check(_entry(name, directory), directory, n, device)


def export(
    models: dict[str, dict[str, Any]], runs: str | Path, directory: str | Path | None = None, n_check: int = 1000,
    half: Collection[str] = (), n_agreement: int | None = None,
) -> Path:
    """Copy the weights of finished runs to ``directory`` and write its manifest; return the manifest's path.

    The manifest's entries of the rounds being exported (``"round"`` of each spec) are replaced; those of
    other rounds stay as they are, entry and files byte for byte (round 3 adds its models to round 2's).

    ``models`` maps a model name to ``{"experiment", "recon", "seed", "command", "metrics",
    "files": {part: run}}`` (optionally ``"mu"``, ``"norm"`` and ``"task_net"``, passed to
    :func:`tarlib.experiments.build_model`): the part (R or T) is copied from
    ``runs/<run>/<part>.pt``.  Each entry also gets ``check``: its metrics on the first
    ``n_check`` test images, which the tests recompute from the published files.

    The models named in ``half`` are stored in float16 (half the bytes) and loaded back
    into float32 networks.  This is allowed only where the stored model decides like the
    float32 one: the same class for ≥ 99.8 % of all test images (MNIST), the same label
    for ≥ 99.8 % of all test pixels (segmentation), else a ValueError.  The agreement is
    recorded as ``float16`` in the entry (``n_agreement``: on the first test images only).
    Afterwards ``directory`` holds no ``.pt`` file that the new manifest does not list.
    """
    directory, runs = Path(directory or weights_dir()), Path(runs)
    directory.mkdir(parents=True, exist_ok=True)
    unknown = sorted(set(half) - set(models))
    if unknown:
        raise ValueError(f"half names models that are not exported: {unknown}")
    manifest_path, rounds = directory / "manifest.json", {spec.get("round") for spec in models.values()}
    kept = [m for m in (json.loads(manifest_path.read_text())["models"] if manifest_path.is_file() else [])
            if m.get("round") not in rounds]
    clash = sorted(set(models) & {m["name"] for m in kept})
    if clash:
        raise ValueError(f"{clash} are published already by another round; choose other names")
    entries = []
    for name, spec in models.items():
        files = {}
        for part, run in spec["files"].items():
            if part not in PARTS:
                raise ValueError(f"{name}: parts are {PARTS}, got {part!r}")
            target = directory / f"{run}.{part}.pt"
            if any(f["path"] == target.name for m in kept for f in m["files"].values()):
                raise ValueError(f"{name}: {target.name} belongs to a model of another round; it is not replaced")
            if name in half:
                state = training.load_checkpoint(runs / run / f"{part}.pt")
                training.save_state({k: v.half() if v.is_floating_point() else v for k, v in state.items()}, target)
            else:
                shutil.copyfile(runs / run / f"{part}.pt", target)
            files[part] = {"path": target.name, "sha256": sha256_file(target), "bytes": target.stat().st_size}
        entry = {"name": name, **{k: v for k, v in spec.items() if k != "files"}, "files": files}
        if name in half:
            full = {part: {"path": str((runs / run / f"{part}.pt").resolve())} for part, run in spec["files"].items()}
            entry["float16"] = float16_agreement({**entry, "files": full}, entry, directory, n_agreement)
        entry["check"] = _check(entry, directory, n_check if entry["experiment"] == "mnist" else None, "cpu")
        entries.append(entry)
    write_json(manifest_path, {"models": kept + entries})
    listed = {f["path"] for e in kept + entries for f in e["files"].values()}
    for stale in directory.glob("*.pt"):  # weights of an earlier export that the new manifest drops
        if stale.name not in listed:
            stale.unlink()
    return manifest_path


FLOAT16_AGREEMENT = 0.998  # share of test decisions a float16 copy must share with its float32 model


@torch.no_grad()
def float16_agreement(full: dict[str, Any], stored: dict[str, Any], directory: Path,
                      n: int | None = None) -> dict[str, Any]:
    """Share of test decisions (classes, or pixel labels) on which the stored copy agrees with the full model.

    ``full`` and ``stored`` are manifest entries whose file paths point at the float32 and the
    stored weights.  Every test image (all pixels of every test slice; ``n``: the first ones)
    with the noise of the entry's seed; raises unless the share is at least :data:`FLOAT16_AGREEMENT`.
    """
    decisions = []
    for entry in (full, stored):
        model, M = _build(entry, directory, "cpu", verify=entry is stored)
        batches = experiments.test_batches(entry["experiment"], M, entry["seed"], n)
        decisions.append(torch.cat([model(y)[1].argmax(dim=1).flatten() for _, y, _ in batches]))
    share = float((decisions[0] == decisions[1]).double().mean())
    if share < FLOAT16_AGREEMENT:
        raise ValueError(f"{stored['name']}: the float16 copy agrees with the float32 model on {share:.4%} of the "
                         f"test decisions, below {FLOAT16_AGREEMENT:.1%}; publish it in float32")
    return {"agreement": share, "decisions": len(decisions[0])}
