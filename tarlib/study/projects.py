"""Reference solutions of notebook 11's five mini-projects, and the command that records their answers.

    python -m tarlib.study --projects            # all five at full size: 10,000 test digits, 10,000 resamples
    python -m tarlib.study --projects --fast     # smoke size (seconds), e.g. for a test

Each project has one function that does what its *Goal* asks and what its *Check* demands,
on the published models of ``weights/`` (no retraining), and returns a plain dict of the numbers
a student should report.  Comparisons of two published models follow the course's rule
(:func:`tarlib.stats.compare`): with one trained model per strategy the rule gives no verdict
(:data:`tarlib.stats.ONE_SEED`), however narrow the interval over digits; the interval only says
where the difference of these two models lies.  :func:`run_all` runs the five and :func:`write`
records them in ``results/projects/answers.json`` (with the command, commit, date, version and
seconds per project) and ``answers.md``, the table :func:`markdown` makes of that JSON.
"""

from __future__ import annotations

import datetime
import json
import math
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import odl
import odl.applications.tomo as tomo
import torch

import tarlib
from tarlib import analysis, data, decisions, experiments, losses, physics, pretrained, records, stats
from tarlib.config import atomic_write, write_json
from tarlib.study import robustness
from tarlib.study.robustness import TRAINED, Condition

PAIR = ("mnist_sequential", "mnist_joint_C0.5")  # the two published strategies every project compares
FULL = {"n": 10_000, "n_resamples": 10_000, "n_train": 10_000, "batch": 64, "seg_batch": 2}  # --projects
FAST = {"n": 200, "n_resamples": 200, "n_train": 500, "batch": 16, "seg_batch": 1}  # --projects --fast, and the test
TITLES = {"A": "Limited-angle tomography", "B": "The balance point of C", "C": "A scalar task: the ink of a digit",
          "D": "A changed image distribution through an IDX folder", "E": "Calibration at other doses"}
COMMAND = "python -m tarlib.study --projects"


def _digits(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` MNIST test digits and their labels."""
    test = data.load_mnist("test")
    if not 2 <= n <= len(test.images):
        raise ValueError(f"n must lie in [2, {len(test.images)}] test digits, got {n}")
    return test.images[:n], test.labels[:n]


def _bar(items: Any, project: str) -> Any:
    """A progress bar over one project's steps (off under ``TQDM_DISABLE=1``)."""
    return tarlib.progress(list(items), desc=f"project {project}", leave=False)


def _compared(drop: dict[str, torch.Tensor], n_resamples: int) -> dict[str, Any]:
    """Joint's per-digit drop minus sequential's under the course's rule: mean, 95 % interval, verdict."""
    v = stats.compare(drop[PAIR[1]].double().numpy(), drop[PAIR[0]].double().numpy(), n_resamples)
    return {"mean": v.mean, "low": v.low, "high": v.high, "interval": robustness.verdict(v.low, v.high),
            "verdict": v.describe("joint", "sequential")}


def limited_angles(n: int, n_resamples: int = 10_000, seed: int = 0) -> dict[str, Any]:
    """Project A: accuracy of sequential (eq. (13)) and joint (eq. (18), C = 0.5) training on 5 angles over [0, π/2).

    Both models are moved to the limited-angle data model (scale rebuilt, section 7) and read the same
    seeded counts; the drop of each digit is its correctness on [0, π) minus on [0, π/2).
    """
    x, z = _digits(n)
    space, full_geometry = physics.mnist_geometry()
    limited = tomo.Parallel2dGeometry(odl.uniform_partition(0, np.pi / 2, 5), full_geometry.det_partition)
    M = physics.DataModel(physics.RayTransform(space, limited), physics.PoissonTransmission(60, robustness.trained_mu()))
    y_limited = M(x, generator=torch.Generator().manual_seed(seed))
    y_full = robustness.counts(x, TRAINED, seed)
    accuracy, drop = {}, {}
    for name in _bar(PAIR, "A"):
        model = pretrained.load(name)
        full = robustness.per_image(model, y_full, z, robustness.data_model(TRAINED), "rebuilt")["correct"]
        short = robustness.per_image(model, y_limited, z, M, "rebuilt")["correct"]
        accuracy[name] = {"[0, pi)": full.double().mean().item(), "[0, pi/2)": short.double().mean().item()}
        drop[name] = full.double() - short.double()
    return {"n": n, "accuracy": accuracy, "joint drop - sequential drop": _compared(drop, n_resamples)}


def balance_point(n_batches: int = 5, batch: int = 64, seg_batch: int = 2, seed: int = 0) -> dict[str, Any]:
    """Project B: the C at which ℓ_D and ℓ_X of eq. (18) pull equally hard on R_θ, on ``n_batches`` batches.

    For each batch, C* = g_D / (g_D + g_X) with g = ‖∇_θ ℓ‖ (:func:`tarlib.analysis.loss_scales`); the
    task's share of R's gradient at C* (:func:`losses.task_share`) is 1/2 by construction.  Done
    for the published MNIST joint model and for the segmentation one (``seg_batch`` slices per batch),
    next to the C that round 2 chose on validation data.
    """
    if n_batches < 2 or batch < 1 or seg_batch < 1:
        raise ValueError(f"need n_batches ≥ 2 and batches of ≥ 1 image, got {n_batches}, {batch}, {seg_batch}")
    out: dict[str, Any] = {}
    chosen = records.choices()
    for experiment, name, size, best in _bar((("mnist", "mnist_joint_C0.5", batch, chosen["best_C"]["C"]),
                                             ("segmentation", "seg_joint_C0.5", seg_batch, chosen["seg_best_C"]["C"])),
                                            "B"):
        model, M = pretrained.load(name), pretrained.data_model(name)
        x, y, z = (torch.cat(t) for t in zip(*experiments.test_batches(experiment, M, seed, n_batches * size)))
        scales = [analysis.loss_scales(model, (x[i:i + size], y[i:i + size], z[i:i + size]), experiments.TASKS[experiment])
                  for i in range(0, n_batches * size, size)]
        C = [s["C_balance"] for s in scales]
        share = [losses.task_share(s["C_balance"], s["g_D"], s["g_X"]) for s in scales]
        out[name] = {"C_balance per batch": C, "median": float(np.median(C)), "max / min": max(C) / min(C),
                     "stable (max / min <= 2)": max(C) / min(C) <= 2,
                     "task share at C_balance": max(share, key=lambda s: abs(s - 0.5)),
                     "C chosen on validation (round 2)": best}
    return out


def ink(n: int, n_resamples: int = 10_000, n_train: int = 10_000, seed: int = 0) -> dict[str, Any]:
    """Project C: three estimators of the ink Σ_p x_p of a digit from the same counts y (section 3.3's regression).

    - closed form: log counts estimate the line integrals Ax; each angle's sum over the detector
      (times the detector cell) is the integral of the image, averaged over the angles;
    - the ink of the published sequential reconstruction R(y);
    - a linear regression head on the log data, fitted by least squares on ``n_train`` training digits
      (the exact minimiser of the squared error ℓ_D over linear heads: no seed, no learning rate).

    Reports each relative RMS error and, per digit, the paired interval of the difference of squared errors.
    """
    x, _ = _digits(n)
    train = data.load_mnist("train").images[:n_train]
    M_log = physics.mnist_data_model(mu=robustness.trained_mu(), log_data=True)
    ds = float(physics.mnist_geometry()[1].det_partition.cell_sides[0])

    def features(images: torch.Tensor, draw: int) -> torch.Tensor:  # the log data, flattened, and a constant
        y_log = M_log.noise.log_transform(robustness.counts(images, TRAINED, draw))
        return torch.cat([y_log.flatten(1), torch.ones(len(images), 1)], dim=1).double()

    y = robustness.counts(x, TRAINED, seed)
    head = torch.linalg.lstsq(features(train, seed + 1), train.sum(dim=(1, 2, 3)).double()[:, None]).solution
    with torch.no_grad():
        from_R = pretrained.load(PAIR[0]).R(y).sum(dim=(1, 2, 3))
    truth = x.sum(dim=(1, 2, 3)).double()
    estimates = {"closed form from the data": (M_log.noise.log_transform(y).sum(dim=-1) * ds).mean(dim=(1, 2)),
                 "sum of R(y), sequential": from_R, "linear head, least squares": features(x, seed) @ head[:, 0]}
    error = {k: (e.double() - truth).pow(2) for k, e in _bar(estimates.items(), "C")}
    out: dict[str, Any] = {"n": n, "n_train": n_train,
                           "relative RMS error": {k: e.mean().sqrt().item() / truth.mean().item() for k, e in error.items()}}
    closed = error["closed form from the data"].numpy()
    for k in ("sum of R(y), sequential", "linear head, least squares"):
        b = stats.paired_bootstrap(error[k].numpy() - closed, n_resamples, seed)
        where = "below 0: closer than the closed form" if b["high"] < 0 else "above 0: further than the closed form" \
            if b["low"] > 0 else "contains 0"
        out[f"squared error: {k} - closed form"] = {"mean": b["mean"], "low": b["low"], "high": b["high"], "interval": where}
    return out


def rotated_digits(n: int, n_resamples: int = 10_000, degrees: float = 20.0, seed: int = 0) -> dict[str, Any]:
    """Project D: accuracy of sequential and joint training on test digits rotated by ``degrees``, through IDX.

    The rotated digits are written as an MNIST-layout IDX folder (:func:`tarlib.data.write_idx`) and read
    back; IDX stores 8 bits, so the round trip must change no pixel by more than half a grey level.
    The drop of each digit is its correctness on the digit minus on the rotated one, same noise seed.
    """
    x, z = _digits(n)
    rotated = data.rigid_transform(x, torch.full((n,), degrees), torch.zeros(n, 2)).clamp(0, 1)
    with tempfile.TemporaryDirectory(prefix="rotated_mnist_") as folder:
        data.write_idx(folder, "test", rotated, z)
        back = data.load_idx(folder, "test")
    y_full, y_rotated = robustness.counts(x, TRAINED, seed), robustness.counts(back.images, TRAINED, seed)
    M = robustness.data_model(TRAINED)
    accuracy, drop = {}, {}
    for name in _bar(PAIR, "D"):
        model = pretrained.load(name)
        full = robustness.per_image(model, y_full, z, M, "rebuilt")["correct"].double()
        turned = robustness.per_image(model, y_rotated, back.labels, M, "rebuilt")["correct"].double()
        accuracy[name] = {"digits": full.mean().item(), f"rotated by {degrees:g} degrees": turned.mean().item()}
        drop[name] = full - turned
    return {"n": n, "IDX round trip: largest change (grey levels)": 255 * (back.images - rotated).abs().max().item(),
            "IDX round trip: labels kept": torch.equal(back.labels, z), "accuracy": accuracy,
            "joint drop - sequential drop": _compared(drop, n_resamples)}


def _ece_bootstrap(logits: dict[str, torch.Tensor], z: torch.Tensor, n_resamples: int, seed: int) -> dict[str, np.ndarray]:
    """ECE of each model's decisions on ``n_resamples`` resamples of the digits, the same resamples for every model."""
    rng, n = np.random.default_rng(seed), len(z)
    samples = {k: np.empty(n_resamples) for k in logits}
    for r in range(n_resamples):
        index = torch.from_numpy(rng.integers(0, n, n))
        for k, lg in logits.items():
            samples[k][r] = decisions.expected_calibration_error(decisions.probabilities(lg[index]), z[index])
    return samples


def calibration(n: int, n_resamples: int = 10_000, doses: tuple[float, ...] = robustness.DOSES,
                seed: int = 0) -> dict[str, Any]:
    """Project E: expected calibration error (10 bins) of sequential and joint training at other doses, 5 angles.

    Each model is moved to the dose (scale rebuilt) and reads the same seeded counts as in
    ``results/round2/robustness.json``.  ECEs get bootstrap intervals over digits, and joint minus
    sequential a paired one; at all 10,000 digits the mean cross-entropy must equal that file's.
    """
    x, z = _digits(n)
    record = robustness.load()  # results/round2/robustness.json
    recorded = {(r["model"], r["photons"]): r["cross_entropy"] for r in record["accuracy"]
                if r["policy"] == "rebuilt" and r["angles"] == TRAINED.angles}
    out: dict[str, Any] = {"n": n}
    models = {name: pretrained.load(name) for name in PAIR}
    for photons in _bar(doses, "E"):
        condition, logits, row = Condition(photons, TRAINED.angles), {}, {}
        y = robustness.counts(x, condition, seed)
        for name, model in models.items():
            moved = robustness.with_data_model(model, robustness.data_model(condition), "rebuilt")
            with torch.no_grad():
                logits[name] = torch.cat([moved(batch)[1] for batch in y.split(robustness.BATCH)])
            ce = torch.nn.functional.cross_entropy(logits[name], z).item()
            row[name] = {"ECE": decisions.expected_calibration_error(decisions.probabilities(logits[name]), z),
                         "mean cross-entropy": ce}
            if n == record["n_images"] and (name, photons) in recorded:
                row[name]["cross-entropy as recorded"] = math.isclose(ce, recorded[name, photons], abs_tol=1e-4)
        samples = _ece_bootstrap(logits, z, n_resamples, seed)
        for name in PAIR:
            row[name]["ECE 95% interval"] = list(stats.interval(samples[name]))
        low, high = stats.interval(samples[PAIR[1]] - samples[PAIR[0]])
        row["ECE joint - sequential"] = {"mean": row[PAIR[1]]["ECE"] - row[PAIR[0]]["ECE"], "low": low, "high": high,
                                         "verdict": stats.ONE_SEED}
        out[f"{photons:g} photons"] = row
    return out


def run_all(fast: bool = False) -> dict[str, Any]:
    """All five reference solutions at full size (:data:`FULL`) or smoke size (:data:`FAST`), with provenance."""
    size = FAST if fast else FULL
    n, n_resamples = size["n"], size["n_resamples"]
    solve: dict[str, Callable[[], dict[str, Any]]] = {
        "A": lambda: limited_angles(n, n_resamples), "B": lambda: balance_point(5, size["batch"], size["seg_batch"]),
        "C": lambda: ink(n, n_resamples, size["n_train"]), "D": lambda: rotated_digits(n, n_resamples),
        "E": lambda: calibration(n, n_resamples)}
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                                cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    out: dict[str, Any] = {"command": COMMAND + (" --fast" if fast else ""), "fast": fast, "sizes": size,
                           "commit": commit, "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
                           "tarlib": tarlib.__version__, "torch_threads": torch.get_num_threads(), "projects": {}}
    for key, function in solve.items():
        start = time.perf_counter()
        answers = function()
        out["projects"][key] = {"title": TITLES[key], "wall_s": round(time.perf_counter() - start, 1), "answers": answers}
    return out


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):
        return "[" + ", ".join(_value(u) for u in v) + "]"
    return str(v)


def rows(answers: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """A project's answers as (quantity, value) pairs, nested keys joined by a slash, floats to 4 significant digits."""
    out = []
    for k, v in answers.items():
        out += rows(v, f"{prefix}{k} / ") if isinstance(v, dict) else [(f"{prefix}{k}", _value(v))]
    return out


def lines(answers: dict[str, Any]) -> list[str]:
    """A project's answers as ``quantity: value`` lines (:func:`rows`), as the notebook prints them."""
    return [f"{k}: {v}" for k, v in rows(answers)]


def markdown(record: dict[str, Any]) -> str:
    """``answers.md``: one table per project, generated from ``answers.json`` (:func:`run_all`'s record)."""
    size = "smoke size (fast mode)" if record["fast"] else "full size"
    parts = [f"# Notebook 11's projects: reference answers at {size}", "",
             f"Generated by `{record['command']}` at commit `{record['commit'][:12]}`, {record['date']}, "
             f"tarlib {record['tarlib']}, {record['torch_threads']} torch threads. Sizes: "
             + ", ".join(f"{k} = {v}" for k, v in record["sizes"].items()) + ". Every comparison of two published "
             f"models (one per strategy) gets no verdict under the course's rule ({stats.ONE_SEED}): its interval "
             "runs over digits only."]
    for key, project in record["projects"].items():
        parts += ["", f"## Project {key} · {project['title']} ({project['wall_s']} s)", "", "| quantity | value |",
                  "|---|---|"]
        parts += [f"| {k} | {v} |" for k, v in rows(project["answers"])]
    return "\n".join(parts) + "\n"


def write(record: dict[str, Any], out: str | Path) -> list[Path]:
    """Write ``answers.json`` and ``answers.md`` into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "answers.json", record)
    atomic_write(out / "answers.md", markdown(record).encode())
    return [out / "answers.json", out / "answers.md"]


def committed(results: str | Path | None = None) -> dict[str, Any] | None:
    """The recorded full-size answers (``results/projects/answers.json``), or None while there are none."""
    path = Path(results or records.results_dir()) / "projects" / "answers.json"
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    return None if record["fast"] else record


def full_size(project: str, results: str | Path | None = None) -> str:
    """What the committed full-size run found for ``project`` ("A" to "E") and the command that made it."""
    if project not in TITLES:
        raise ValueError(f"project must be one of {sorted(TITLES)}, got {project!r}")
    record = committed(results)
    if record is None:
        return f"Full-size run pending: no full-size results/projects/answers.json yet (its command: {COMMAND})."
    head = f"{record['command']} (commit {record['commit'][:12]}, {record['date']}):"
    return "\n".join([head, *lines(record["projects"][project]["answers"])])
