"""Robustness to a changed acquisition: the claim of section 7, tested on the published models.

    python -m tarlib.robustness                  # full tables (under one CPU-hour), resumable
    python -m tarlib.robustness --tables-only    # results/round2/robustness.md and .png from the JSON

Section 7 of the paper argues that a task-adapted (joint) reconstruction should cope
better than a sequential one when data are acquired differently from the training
data.  This module evaluates the MNIST models of ``weights/`` (:mod:`tarlib.pretrained`),
*without retraining*, on data of other data models M: other doses (photons per line,
eq. (1) with Poisson noise) and other numbers of angles, and measures each model's
accuracy drop against the drop of the sequential model (eq. (13)).

- Learned gradient descent reads the data only through ∇nll of M, so it accepts a new
  operator and noise level.  It divides that gradient by a scale fixed when it is built
  (``grad_scale = 1/nll_curvature(M)``, :class:`tarlib.nets.LearnedGradientDescent`).
  Policy ``"rebuilt"`` builds R again for the new M (the scale follows M); policy
  ``"trained"`` keeps the scale of the training data model.  Both are evaluated.
- FBP + classifier: FBP is rebuilt for the new geometry; its data are the
  log-transformed counts of the new dose.
- The sinogram CNN has a dense layer sized for 5 × 25 data: it cannot take another
  number of angles and is evaluated on the dose sweep only.

All models see the same photon counts for a condition (one seeded draw), so the
comparison is paired over test images.  "More robust than sequential" means a smaller
mean accuracy drop with a paired bootstrap 95 % interval (over test images) of the
difference of drops that excludes 0.  The command writes ``robustness.json`` (with the exact
command and the SHA-256 of every weights file used), ``robustness.md`` and ``robustness.png``
into ``results/round2/``, next to the records of the round whose models ``weights/`` publishes.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import odl.applications.tomo as tomo
import torch
from matplotlib.figure import Figure

import tarlib
from tarlib import data, nets, physics, pretrained, records, stats
from tarlib.config import atomic_write, write_json

DOSES = (15, 30, 60, 120, 240)  # photons per unattenuated line, I0 of eq. (1) with Poisson noise
ANGLES = (3, 4, 5, 6, 8)  # projection angles in [0, π)
REFERENCE = "mnist_sequential"  # the model every drop is compared with
# joint C = 0.5 (the paper's best row of Table 1), joint C = 0.01 (round 2's choice on validation, where the task
# gets most of R's gradient) and end-to-end (C = 0, the most task-adapted end of eq. (18)); C = 0.999 via --models
MODELS = (REFERENCE, "mnist_joint_C0.5", "mnist_joint_C0.01", "mnist_end_to_end", "mnist_fbp_classifier",
          "mnist_sinogram_cnn")
POLICIES = ("rebuilt", "trained")  # learned gradient descent: grad_scale of the new M, or the trained one
NO_POLICY = "-"  # models without a gradient scale (FBP + classifier, sinogram CNN)
BATCH = 500


@dataclass(frozen=True, order=True)
class Condition:
    """A data model of the MNIST experiment: ``photons`` per line (I0) and ``angles`` in [0, π)."""

    photons: float
    angles: int

    def __str__(self) -> str:
        return f"{self.photons:g} photons, {self.angles} angles"


TRAINED = Condition(60, 5)  # section 5.1: the condition every published model was trained on


def conditions(doses: tuple[float, ...] = DOSES, angles: tuple[int, ...] = ANGLES) -> list[Condition]:
    """The dose sweep at 5 angles and the angle sweep at 60 photons (the training condition once)."""
    if any(not d > 0 for d in doses) or any(int(a) != a or a < 1 for a in angles):
        raise ValueError(f"doses must be > 0 and angles integers ≥ 1, got doses={doses}, angles={angles}")
    sweep = {Condition(float(d), TRAINED.angles) for d in doses} | {Condition(TRAINED.photons, int(a)) for a in angles}
    return sorted(sweep | {TRAINED})


def trained_mu(directory: str | Path | None = None) -> float:
    """The attenuation scale μ of the data the published MNIST models were trained on (the manifest's)."""
    return pretrained.data_model(REFERENCE, directory).noise.mu


def data_model(condition: Condition, mu: float | None = None) -> physics.DataModel:
    """M for ``condition``: the 28×28 MNIST space, ``angles`` × 25 lines, Poisson counts (raw).

    ``mu`` is the attenuation scale, by default the published models' (:func:`trained_mu`):
    only the dose and the angles change, not the material.
    """
    space, _ = physics.mnist_geometry()
    geometry = tomo.parallel_beam_geometry(space, num_angles=condition.angles, det_shape=25)
    noise = physics.PoissonTransmission(condition.photons, mu=trained_mu() if mu is None else mu)
    return physics.DataModel(physics.RayTransform(space, geometry), noise)


def accepts(model: nets.TaskAdapted, condition: Condition) -> bool:
    """Whether ``model`` can read data of ``condition`` (the sinogram CNN only takes 5 angles)."""
    return model.R is not None or model.T.data_shape[0] == condition.angles


def with_data_model(model: nets.TaskAdapted, M: physics.DataModel, policy: str = "rebuilt") -> nets.TaskAdapted:
    """The published T ∘ R made to read data of M, sharing its trained parameters (no retraining).

    Learned gradient descent is built again for M; with ``policy="trained"`` it keeps the
    grad_scale of its training data model instead of 1/nll_curvature(M).  FBP is built again
    for M's geometry.  A sinogram CNN is returned as it is if M's data have its shape.
    """
    if policy not in (*POLICIES, NO_POLICY):
        raise ValueError(f"policy must be one of {(*POLICIES, NO_POLICY)}, got {policy!r}")
    R = model.R
    if isinstance(R, nets.LearnedGradientDescent):
        if policy == NO_POLICY:
            raise ValueError(f"learned gradient descent needs a policy in {POLICIES}, got {policy!r}")
        new = nets.LearnedGradientDescent(M, len(R.updates), R.n_memory, R.updates[0][0].out_channels)
        new.load_state_dict(R.state_dict())
        if policy == "trained":
            new.grad_scale = R.grad_scale
        return nets.TaskAdapted(new.to(next(R.parameters()).device).eval(), model.T)
    if policy != NO_POLICY:
        raise ValueError(f"policy {policy!r} applies to learned gradient descent only; use {NO_POLICY!r}")
    if isinstance(R, nets.FBP):
        return nets.TaskAdapted(nets.FBP(M.A, R.filter, R.frequency_scaling), model.T)
    if R is None:
        if tuple(M.A.range_shape) != tuple(model.T.data_shape):
            raise ValueError(
                f"the sinogram CNN reads data of shape {tuple(model.T.data_shape)}, this data model gives "
                f"{tuple(M.A.range_shape)}: its dense layer cannot take another number of angles"
            )
        return model
    raise ValueError(f"no rule to move a {type(R).__name__} to another data model")


def policies(model: nets.TaskAdapted) -> tuple[str, ...]:
    """The gradient-scale policies that apply to ``model``."""
    return POLICIES if isinstance(model.R, nets.LearnedGradientDescent) else (NO_POLICY,)


def _condition_seed(seed: int, condition: Condition) -> int:
    return int(np.random.SeedSequence([seed, int(condition.photons * 1000), condition.angles]).generate_state(1)[0])


@torch.no_grad()
def counts(images: torch.Tensor, condition: Condition, seed: int = 0) -> torch.Tensor:
    """Photon counts y ~ M(x) of ``condition`` for ``images`` [N, 1, 28, 28], one seeded draw."""
    M = data_model(condition)
    generator = torch.Generator().manual_seed(_condition_seed(seed, condition))
    return torch.cat([M(x, generator=generator) for x in images.split(BATCH)])


@torch.no_grad()
def per_image(
    model: nets.TaskAdapted, y: torch.Tensor, labels: torch.Tensor, M: physics.DataModel, policy: str
) -> dict[str, torch.Tensor]:
    """``correct`` [N] (bool) and ``cross_entropy`` [N] of ``model`` moved to M, on counts ``y`` ~ M(x).

    M is any MNIST-sized data model with Poisson counts (e.g. :func:`data_model`, or another
    geometry); ``policy`` as in :func:`with_data_model`.
    """
    if y.shape[0] != labels.shape[0]:
        raise ValueError(f"need one label per data sample, got {y.shape[0]} samples and {labels.shape[0]} labels")
    adapted = with_data_model(model, M, policy)
    if not isinstance(model.R, nets.LearnedGradientDescent) and model.R is not None:
        y = M.noise.log_transform(y)  # FBP reads line integrals, as in its training run
    logits = torch.cat([adapted(batch)[1] for batch in y.split(BATCH)])
    ce = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    return {"correct": logits.argmax(1) == labels, "cross_entropy": ce}


def _interval(difference: torch.Tensor, n_boot: int, seed: int) -> tuple[float, float, float]:
    """Mean of per-image ``difference`` and its paired bootstrap 95 % interval (:func:`tarlib.stats.paired_bootstrap`)."""
    b = stats.paired_bootstrap(difference.numpy(), n_boot, seed)
    return b["mean"], b["low"], b["high"]


def verdict(low: float, high: float) -> str:
    """Where an interval of (model's drop − sequential's drop) lies.  It is not a verdict of the course's rule
    (:func:`tarlib.stats.compare`): with one published model per strategy that rule gives none
    (:data:`tarlib.stats.ONE_SEED`), because another training seed could move the drop as much."""
    if high < 0:
        return "below 0: smaller drop"
    if low > 0:
        return "above 0: larger drop"
    return "contains 0"


def _label(entry: dict[str, Any]) -> str:
    if entry["recon"] == "fbp":
        return "FBP + classifier"
    if entry["recon"] == "none":
        return "sinogram CNN"
    if entry["strategy"] == "joint":
        return f"joint, C = {entry['C']:g}"
    return entry["strategy"].replace("_", "-")


def _cache_file(cache: Path, name: str, entry: dict, policy: str, condition: Condition, n: int, seed: int) -> Path:
    digest = "".join(f["sha256"][:8] for f in entry["files"].values())
    return cache / f"{name}_{policy}_{condition.photons:g}ph_{condition.angles}a_n{n}_s{seed}_{digest}.pt"


def evaluate(
    models: tuple[str, ...] = MODELS,
    doses: tuple[float, ...] = DOSES,
    angles: tuple[int, ...] = ANGLES,
    n: int | None = None,
    seed: int = 0,
    cache: str | Path | None = None,
    weights: str | Path | None = None,
    log: Callable[[str], None] = lambda message: print(message, flush=True),
) -> dict[str, Any]:
    """Per-image results of every published model, policy and condition that applies.

    Returns ``{"conditions", "entries": {(model, policy, condition): {correct, cross_entropy,
    wall_s, cpu_s}}, "labels", "weights": {file: sha256}, "n", "seed", "cost"}``; ``cost`` sums
    the seconds of every evaluation, including those a resumed run read from the cache.  With ``cache`` (a folder) each
    evaluation is saved there and reused by a rerun (keyed by the weights' SHA-256).
    """
    if REFERENCE not in models:
        raise ValueError(f"models must include the reference {REFERENCE!r}, got {models}")
    directory = Path(weights or pretrained.weights_dir())
    manifest = pretrained.manifest(directory)
    for name in models:
        if name not in manifest or manifest[name]["experiment"] != "mnist":
            mnist = sorted(k for k, v in manifest.items() if v["experiment"] == "mnist")
            raise ValueError(f"{name!r} is not a published MNIST model; choose from {mnist}")
    images, labels = data.load_mnist("test")
    n = len(images) if n is None else n
    if not 2 <= n <= len(images):
        raise ValueError(f"n must lie in [2, {len(images)}] test images, got {n}")
    images, labels = images[:n], labels[:n]
    conds = conditions(doses, angles)
    cache = Path(cache) if cache is not None else None
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
    loaded = {name: pretrained.load(name, directory=directory) for name in models}
    entries: dict[tuple[str, str, Condition], dict[str, torch.Tensor]] = {}
    for condition in conds:
        y = None
        for name, model in loaded.items():
            if not accepts(model, condition):
                continue
            for policy in policies(model):
                if condition == TRAINED and policy == "trained":  # the two policies coincide here
                    continue
                path = None if cache is None else _cache_file(cache, name, manifest[name], policy, condition, n, seed)
                if path is not None and path.is_file():
                    entries[name, policy, condition] = torch.load(path, weights_only=True)
                    continue
                start, cpu = time.perf_counter(), time.process_time()
                y = counts(images, condition, seed) if y is None else y
                result = per_image(model, y, labels, data_model(condition), policy)
                result["wall_s"] = torch.tensor(time.perf_counter() - start)
                result["cpu_s"] = torch.tensor(time.process_time() - cpu)
                entries[name, policy, condition] = result
                if path is not None:
                    torch.save(result, path)
                log(f"[robustness] {name} ({policy}) at {condition}: accuracy "
                    f"{result['correct'].float().mean():.4f} ({float(result['wall_s']):.1f} s)")
    for name, model in loaded.items():  # at the training condition both policies are the same model
        if "trained" in policies(model):
            entries[name, "trained", TRAINED] = entries[name, "rebuilt", TRAINED]
    used = {f["path"]: f["sha256"] for name in models for f in manifest[name]["files"].values()}
    computed = [r for (m, p, c), r in entries.items() if not (p == "trained" and c == TRAINED)]
    cost = {key: sum(float(r[key]) for r in computed) for key in ("wall_s", "cpu_s")}
    return {"conditions": conds, "entries": entries, "labels": {m: _label(manifest[m]) for m in models},
            "weights": dict(sorted(used.items())), "n": n, "seed": seed, "cost": cost}


def summarise(evaluation: dict[str, Any], n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Accuracies, and each model's accuracy drop minus sequential's with paired bootstrap intervals.

    The drop of a model at a condition c is its accuracy at the training condition minus its
    accuracy at c, per test image (1, 0 or −1).  A model with a gradient-scale policy is
    compared with sequential under the same policy, the others with sequential ``rebuilt``.
    ``overall`` averages the per-image difference over every shifted condition of a sweep.
    """
    entries, conds = evaluation["entries"], evaluation["conditions"]
    accuracy = [
        {"model": m, "policy": p, "photons": c.photons, "angles": c.angles,
         "accuracy": float(r["correct"].float().mean()), "cross_entropy": float(r["cross_entropy"].mean())}
        for (m, p, c), r in sorted(entries.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2]))
    ]

    def drop(m: str, p: str, c: Condition) -> torch.Tensor:
        return entries[m, p, TRAINED]["correct"].double() - entries[m, p, c]["correct"].double()

    drops, overall = [], []
    order = list(evaluation["labels"])
    for m, p in sorted({(m, p) for m, p, _ in entries if m != REFERENCE}, key=lambda mp: (order.index(mp[0]), mp[1])):
        ref = p if p in POLICIES else "rebuilt"
        sweeps: dict[str, list[torch.Tensor]] = {"dose": [], "angles": []}
        for c in conds:
            if c == TRAINED or (m, p, c) not in entries:
                continue
            diff = drop(m, p, c) - drop(REFERENCE, ref, c)
            sweeps["dose" if c.angles == TRAINED.angles else "angles"].append(diff)
            mean, lo, hi = _interval(diff, n_boot, seed)
            drops.append({"model": m, "policy": p, "reference_policy": ref, "photons": c.photons,
                          "angles": c.angles, "drop": float(drop(m, p, c).mean()),
                          "reference_drop": float(drop(REFERENCE, ref, c).mean()),
                          "difference": mean, "low": lo, "high": hi, "verdict": verdict(lo, hi)})
        for sweep, diffs in sweeps.items():
            if diffs:
                mean, lo, hi = _interval(torch.stack(diffs).mean(0), n_boot, seed)
                overall.append({"model": m, "policy": p, "reference_policy": ref, "sweep": sweep,
                                "conditions": len(diffs), "difference": mean, "low": lo, "high": hi,
                                "verdict": verdict(lo, hi)})
    return {
        "evaluation_cpu_s": round(evaluation["cost"]["cpu_s"], 1),
        "evaluation_wall_s": round(evaluation["cost"]["wall_s"], 1),
        "n_images": evaluation["n"], "noise_seed": evaluation["seed"], "bootstrap": n_boot, "bootstrap_seed": seed,
        "level": 0.95, "trained_condition": {"photons": TRAINED.photons, "angles": TRAINED.angles},
        "conditions": [{"photons": c.photons, "angles": c.angles} for c in conds],
        "labels": evaluation["labels"], "weights": evaluation["weights"],
        "accuracy": accuracy, "drop_vs_sequential": drops, "overall": overall,
    }


# ----------------------------------------------------------------------------- tables and figure


def _name(results: dict[str, Any], model: str, policy: str) -> str:
    scale = {"rebuilt": ", scale rebuilt", "trained": ", trained scale"}.get(policy, "")
    return results["labels"][model] + scale


def markdown(results: dict[str, Any]) -> str:
    """The accuracy table and the drop-difference table of ``results`` (the JSON of :func:`summarise`)."""
    conds = [Condition(c["photons"], c["angles"]) for c in results["conditions"]]
    acc = {(a["model"], a["policy"], Condition(a["photons"], a["angles"])): a["accuracy"] for a in results["accuracy"]}
    rows = sorted({(m, p) for m, p, _ in acc}, key=lambda mp: (list(results["labels"]).index(mp[0]), mp[1]))
    head = ["model"] + [f"{c.photons:g} ph, {c.angles} ang{' (trained)' if c == TRAINED else ''}" for c in conds]
    lines = [
        f"Test accuracy (%) of the published MNIST models on {results['n_images']:,} test images, without "
        "retraining, on data acquired with other doses (photons per line) and numbers of angles; "
        "'–': the model cannot read such data. Generated by `" + results["command"] + "`.",
        "",
        "| " + " | ".join(head) + " |",
        "|---" + "|---:" * len(conds) + "|",
    ]
    for m, p in rows:
        cells = [f"{100 * acc[m, p, c]:.2f}" if (m, p, c) in acc else "–" for c in conds]
        lines.append(f"| {_name(results, m, p)} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Accuracy drop (pp, training condition minus shifted condition) minus the sequential model's drop, "
        f"averaged over the shifted conditions of each sweep, with a paired bootstrap {100 * results['level']:.0f} % "
        f"interval over test images ({results['bootstrap']} resamples, seed {results['bootstrap_seed']}). "
        "Negative: the model loses less accuracy than sequential.",
        "",
        f"One published model per strategy: the course's rule gives no verdict ({stats.ONE_SEED}); the last "
        "column only says where the interval lies.",
        "",
        "| model | sweep | drop − sequential's drop (pp) | 95 % interval | interval |",
        "|---|---|---:|---|---|",
    ]
    for o in results["overall"]:
        lines.append(f"| {_name(results, o['model'], o['policy'])} | {o['sweep']} ({o['conditions']} conditions) | "
                     f"{100 * o['difference']:+.2f} | [{100 * o['low']:+.2f}, {100 * o['high']:+.2f}] | {o['verdict']} |")
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], path: str | Path | None = None) -> Figure:
    """Accuracy against dose and against angles (training condition marked), and drop differences."""
    fig, axes = plt.subplots(2, 2, figsize=(11, 8.5), gridspec_kw={"height_ratios": [3, 2]})
    rows = sorted({(a["model"], a["policy"]) for a in results["accuracy"]},
                  key=lambda mp: (list(results["labels"]).index(mp[0]), mp[1]))
    colors = {m: f"C{i}" for i, m in enumerate(results["labels"])}
    for col, (sweep, key, fixed) in enumerate((("dose", "photons", "angles"), ("angles", "angles", "photons"))):
        ax, ax_d = axes[0, col], axes[1, col]
        for m, p in rows:
            pts = sorted((a[key], a["accuracy"]) for a in results["accuracy"]
                         if (a["model"], a["policy"]) == (m, p) and a[fixed] == results["trained_condition"][fixed])
            ax.plot(*zip(*[(x, 100 * v) for x, v in pts]), "o-" if p != "trained" else "s--", color=colors[m],
                    ms=4, label=_name(results, m, p))
            diffs = sorted((d[key], d["difference"], d["low"], d["high"]) for d in results["drop_vs_sequential"]
                           if (d["model"], d["policy"]) == (m, p) and d[fixed] == results["trained_condition"][fixed])
            if diffs:
                x, mean, lo, hi = (np.array(v, dtype=float) for v in zip(*diffs))
                shift = (1.03 if p == "trained" else 0.97) if key == "photons" else (0.08 if p == "trained" else -0.08)
                x = x * shift if key == "photons" else x + shift
                ax_d.errorbar(x, 100 * mean, yerr=100 * np.stack([mean - lo, hi - mean]), fmt="o" if p != "trained"
                              else "s", color=colors[m], ms=4, capsize=2, mfc="none" if p == "trained" else None)
        for a in (ax, ax_d):
            a.axvline(results["trained_condition"][key], color="k", ls=":", lw=1)
            if key == "photons":
                a.set_xscale("log", base=2)
                a.set_xticks(sorted({c["photons"] for c in results["conditions"]}),
                             labels=[f"{c:g}" for c in sorted({c["photons"] for c in results["conditions"]})])
            a.set_xlabel("photons per line (5 angles)" if key == "photons" else "angles (60 photons per line)")
        ax_d.axhline(0, color="grey", lw=0.8)
        ax.set(ylabel="test accuracy (%)", title=f"Accuracy against {sweep}; dotted: training condition")
        ax_d.set(ylabel="drop − sequential's drop (pp)", title="paired 95 % intervals; < 0: smaller drop than sequential")
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names, fontsize=7, loc="lower center", ncol=4, bbox_to_anchor=(0.5, 0.015))
    fig.text(0.01, 0.003, "Regenerate: " + results["command"] + " (figure only: python -m tarlib.robustness "
             "--tables-only)", fontsize=7, color="grey")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


def write(results: dict[str, Any], directory: str | Path) -> list[Path]:
    """Write robustness.json, robustness.md and robustness.png into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / f"robustness.{ext}" for ext in ("json", "md", "png")]
    write_json(paths[0], results)
    atomic_write(paths[1], markdown(results).encode())
    plt.close(plot(results, paths[2]))
    return paths


def load(directory: str | Path | None = None) -> dict[str, Any]:
    """``robustness.json`` in ``directory`` (default: ``round2/`` of :func:`tarlib.records.results_dir`)."""
    path = Path(directory or records.results_dir() / "round2") / "robustness.json"
    if not path.is_file():
        raise FileNotFoundError(f"no {path}: run python -m tarlib.robustness first")
    return json.loads(path.read_text())


def stale_weights(results: dict[str, Any], weights: str | Path | None = None) -> list[str]:
    """The weights files of ``results`` whose SHA-256 differs from (or is missing in) the manifest.

    Non-empty after the published weights were re-exported: rerun ``python -m tarlib.robustness``.
    """
    published = {f["path"]: f["sha256"] for m in pretrained.manifest(weights).values() for f in m["files"].values()}
    return sorted(path for path, digest in results["weights"].items() if published.get(path) != digest)


# ----------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    """The command line of :func:`main`."""
    p = argparse.ArgumentParser(prog="python -m tarlib.robustness", description=__doc__.split("\n")[0])
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated published MNIST models")
    p.add_argument("--doses", default=",".join(map(str, DOSES)), help="photons per line (at 5 angles)")
    p.add_argument("--angles", default=",".join(map(str, ANGLES)), help="numbers of angles (at 60 photons)")
    p.add_argument("--n", type=int, default=None, help="first n test images (default: all 10,000; fast mode 300)")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise draws and of the bootstrap")
    p.add_argument("--bootstrap", type=int, default=10_000, help="bootstrap resamples (the course's rule: 10,000)")
    p.add_argument("--cache", type=Path, default=Path("runs/robustness"), help="per-evaluation cache (resume)")
    p.add_argument("--results", type=Path, default=Path("results", "round2"),
                   help="folder of robustness.json/.md/.png")
    p.add_argument("--tables-only", action="store_true", help="only regenerate .md and .png from the JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m tarlib.robustness``; returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.tables_only:
        results = load(args.results)
        for path in write(results, args.results)[1:]:
            print(f"[robustness] wrote {path}")
        return 0
    try:
        models = tuple(args.models.split(","))
        doses = tuple(float(d) for d in args.doses.split(","))
        angles = tuple(int(a) for a in args.angles.split(","))
        n = args.n if args.n is not None else tarlib.pick(None, 300)
        start = time.perf_counter()
        evaluation = evaluate(models, doses, angles, n, args.seed, args.cache)
    except ValueError as err:
        parser.error(str(err))
    results = summarise(evaluation, args.bootstrap, args.seed)
    results = {"command": shlex.join(["python", "-m", "tarlib.robustness", *argv]), "fast_mode": tarlib.fast_mode(),
               "versions": tarlib.versions(), "torch_threads": torch.get_num_threads(),
               "wall_time_s": round(time.perf_counter() - start, 1), **results}  # of this invocation (may resume)
    for path in write(results, args.results):
        print(f"[robustness] wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
