"""The experiments of section 5 from the command line.

    python -m tarlib.experiments mnist --strategy joint --C 0.5 --steps 8000 --out runs/mnist_joint_0.5
    python -m tarlib.experiments segmentation --strategy joint --C 0.1 --out runs/seg_joint_0.1
    python -m tarlib.experiments mnist --strategy sequential --fast --out runs/smoke

- ``mnist`` (section 5.1): MNIST digits, 5 angles × 25 lines, Poisson data with
  60 photons per line; R = learned gradient descent, T = the paper's classifier.
  The official 60k training images minus the last 1,000 (held out for the
  evaluations during training); test: the official 10k test set.
- ``segmentation`` (section 5.2): grey matter in 128 × 128 brain slices, 30
  angles × 183 lines, 0.1% Gaussian noise; R = learned primal-dual, T = a U-Net;
  training slices augmented by ±5 px shifts and ±10° rotations; the held-out
  brain slabs for validation and test (see :func:`tarlib.data.load_brain`).

The run directory ``--out`` receives ``checkpoint.pt`` (resumable training
state), ``R.pt`` / ``T.pt`` (weights only, for ``--init-reconstruction`` /
``--init-task`` of later runs) and ``metrics.json`` (configuration, git commit,
seed, device, host, torch threads, wall time and the test metrics).  Rerunning an
interrupted command resumes from the checkpoint; a run whose ``metrics.json`` exists
is done.  While it runs, ``lock.json`` names its host and process
(:mod:`tarlib.runlock`): a second command on the same ``--out`` is refused.
``sequential`` and ``end_to_end`` start from a pre-trained R: without
``--init-reconstruction`` it is pre-trained inside the run first (eq. (4)).
Sizes shrink with ``--fast`` or ``TARLIB_FAST=1`` (see :func:`tarlib.pick`).

Table 1 of the paper, one run per row (R and T pre-trained once, then reused)::

    E="python -m tarlib.experiments mnist"; W="--init-reconstruction runs/R/R.pt --init-task runs/T/T.pt"
    $E --strategy pretrain_reconstruction --out runs/R             # eq. (4)
    $E --strategy pretrain_task --init-reconstruction runs/R/R.pt --out runs/T
                                     # eq. (5); "true images" and "pre-training" (T ∘ R) rows
    $E --strategy sequential $W --out runs/sequential              # eq. (13)
    $E --strategy end_to_end $W --out runs/end_to_end              # eq. (16)
    $E --strategy joint --C 0.5 $W --out runs/joint_0.5            # eq. (20)
"""

from __future__ import annotations

import argparse
import itertools
import json
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import tarlib
from tarlib import data, losses, nets, physics, runlock, training
from tarlib.config import git_blob, write_json

RECONSTRUCTIONS = ("lgd", "lgd_small", "rank16", "lpd", "fbp_unet", "fbp", "adjoint", "none")
RAW_COUNTS = ("lgd", "lgd_small", "rank16", "adjoint", "none")  # MNIST reconstructions that read the counts, not their log
TASK_NETS = ("cnn", "linear")  # MNIST task networks: the paper's classifier, or logistic regression
# Defaults per experiment; the (full, fast) pairs go through tarlib.pick (or --fast).
DEFAULTS: dict[str, dict[str, Any]] = {
    "mnist": {
        "recon": "lgd",
        "steps": (8000, 300),  # section 5.1: 8000 steps of batch 64 (pre-training of R)
        "pretrain_steps": (8000, 100),
        "batch_size": (64, 32),
        "eval_every": (500, 100),
    },
    "segmentation": {
        "recon": "lpd",
        "steps": (5000, 20),  # not stated in the paper
        "pretrain_steps": (2000, 10),
        "batch_size": (8, 2),
        "eval_every": (250, 10),
    },
}
# U-Net size for the segmentation: depth 4, width 16 keeps a joint step (with the
# 10-iteration learned primal-dual, batch 8) under 1.5 s on 2 CPU cores
# (benchmarks/training.py).
UNET_DEPTH, UNET_WIDTH = 4, 16


@dataclass
class Experiment:
    """Everything a run needs: the model T ∘ R, its data and the task."""

    model: nets.TaskAdapted
    train_loader: data.TaskLoader
    pretrain_loader: data.TaskLoader
    val_batches: list
    test_batches: list
    task: str


def _seed(seed: int, purpose: str) -> int:
    """An independent seed for each use of randomness in a run (training, test noise, ...)."""
    key = ("train", "pretrain", "val", "test").index(purpose)
    return int(np.random.SeedSequence([seed, key]).generate_state(1)[0] & 0x7FFF_FFFF)


def _size(args: argparse.Namespace, full: Any, fast: Any) -> Any:
    """``fast`` under ``--fast`` or ``TARLIB_FAST=1`` (see :func:`parse_args`), else ``full``."""
    return fast if args.fast else full


def _n_val(args: argparse.Namespace) -> int:
    """MNIST training images held out for validation (the last ones of the training set)."""
    return _size(args, 1000, 200)


# class-stratified MNIST validation (round 2): (images in the split, first ones used for checks while training)
VALIDATION = {False: (10_000, 2_000), True: (1_000, 200)}
EVAL_BATCH = {"mnist": 500, "segmentation": 13}  # images per batch of the validation and test data
TASKS = {"mnist": "classification", "segmentation": "segmentation"}  # the task of each experiment


def fixed_batches(images: torch.Tensor, targets: torch.Tensor, M: physics.DataModel, batch_size: int, seed: int,
                  device: str | torch.device) -> list:
    """Evaluation data with one fixed noise draw, so every evaluation sees the same y."""
    loader = data.TaskLoader(images, targets, M, batch_size, seed, device=device, shuffle=False, drop_last=False)
    return list(loader)


def data_model(experiment: str, recon: str | None = None, mu: float | None = None) -> physics.DataModel:
    """The data model M (operator and noise, eqs. (1)-(2)) that ``experiment``'s ``recon`` reads.

    MNIST: Poisson counts with attenuation scale ``mu`` (default
    :data:`tarlib.physics.MNIST_MU`); learned gradient descent, the rank-16 map (which
    takes their log itself), the back-projection (``adjoint``, which linearises them itself)
    and the sinogram CNN read the raw counts, the other reconstructions their log (line
    integrals).
    Segmentation: the brain geometry with 0.1 % Gaussian noise.
    """
    if experiment not in DEFAULTS:
        raise ValueError(f"experiment must be one of {sorted(DEFAULTS)}, got {experiment!r}")
    recon = recon or DEFAULTS[experiment]["recon"]
    if recon not in RECONSTRUCTIONS:
        raise ValueError(f"recon must be one of {RECONSTRUCTIONS}, got {recon!r}")
    if experiment != "mnist":
        if mu is not None:
            raise ValueError(f"mu applies to the mnist experiment only, not {experiment!r}")
        return physics.brain_data_model()
    return physics.mnist_data_model(mu=physics.MNIST_MU if mu is None else mu, log_data=recon not in RAW_COUNTS)


def build_model(
    experiment: str, recon: str | None = None, fast: bool = False, mu: float | None = None, norm: str = "batch",
    task_net: str = "cnn",
) -> tuple[nets.TaskAdapted, physics.DataModel]:
    """T ∘ R of ``experiment`` with the sizes of a full run (or of ``--fast``), and its data model M.

    Every run of this module and :func:`tarlib.pretrained.load` build their networks here,
    so published weights always fit.  ``recon`` defaults to lgd (mnist) or lpd (segmentation).
    ``mu`` (mnist only) is the attenuation scale of the Poisson data model (default
    :data:`tarlib.physics.MNIST_MU`).  ``norm`` is the segmentation U-Net's normalisation.
    ``task_net`` (mnist only) is the paper's classifier (``cnn``) or logistic regression
    (``linear``).  Restricted reconstructions (round 3): ``lgd_small``, learned gradient
    descent with one update network for its 3 iterations (width 16); ``rank16``, an
    affine map of rank 16 from the log data.  Without parameters: ``fbp``, filtered
    back-projection, and ``adjoint``, the back-projection of the counts, an affine function of
    the sufficient statistic Aᵀy (:class:`tarlib.nets.Backprojection`).
    """
    if task_net not in TASK_NETS or (task_net != "cnn" and (experiment != "mnist" or recon == "none")):
        raise ValueError(f"task_net must be one of {TASK_NETS} (linear: mnist with a reconstruction), got {task_net!r}")
    M = data_model(experiment, recon, mu)  # checks experiment, recon and mu
    recon = recon or DEFAULTS[experiment]["recon"]
    iters, width = (3, 8) if fast else (10, 32)
    R: nn.Module | None = {
        "lgd": lambda: nets.LearnedGradientDescent(M, n_iter=iters, width=width),
        "lgd_small": lambda: nets.LearnedGradientDescent(M, n_iter=3, width=16, shared=True),
        "rank16": lambda: nets.LowRankLinear(M, rank=16),
        "lpd": lambda: nets.LearnedPrimalDual(M.A, n_iter=iters, width=width),
        "fbp_unet": lambda: nets.FBPUNet(M.A, nets.UNet(1, 1, depth=2, width=4 if fast else 32)),
        "fbp": lambda: nets.FBP(M.A),
        "adjoint": lambda: nets.Backprojection(M.A, M.noise.photons_per_line, M.noise.mu),
        "none": lambda: None,
    }[recon]()
    if experiment == "mnist":
        T: nn.Module = (nets.SinogramClassifier(M.A.range_shape) if R is None
                        else nets.Classifier() if task_net == "cnn" else nets.LinearClassifier())
    else:
        T = nets.UNet(1, 2, depth=2 if fast else UNET_DEPTH, width=4 if fast else UNET_WIDTH, norm=norm)
    return nets.TaskAdapted(R, T), M


def test_batches(
    experiment: str, M: physics.DataModel, seed: int, n: int | None = None, device: str | torch.device = "cpu"
) -> list:
    """The first ``n`` (default all) test images of ``experiment`` with the noise draw of a run with ``seed``."""
    if experiment == "mnist":
        images, targets = data.load_mnist("test")
    else:
        test = data.load_brain("test")
        images, targets = test.images, test.masks
    n = len(images) if n is None else n
    if not 1 <= n <= len(images):
        raise ValueError(f"n must lie in [1, {len(images)}] (test images of {experiment}), got {n}")
    return fixed_batches(images[:n], targets[:n], M, EVAL_BATCH[experiment], _seed(seed, "test"), device)


def mnist_experiment(args: argparse.Namespace, device: torch.device) -> Experiment:
    """Section 5.1: MNIST classification from Poisson data (5 angles, 60 photons per line)."""
    model, M = build_model("mnist", args.recon, args.fast, args.mu, task_net=args.task_net)
    M.to(device)
    if args.data is not None:
        train_images, train_labels = data.load_idx(args.data, "train")
        test_images, test_labels = data.load_idx(args.data, "test")
    else:
        train_images, train_labels = data.load_mnist("train")
        test_images, test_labels = data.load_mnist("test")
    n_test = _size(args, len(test_images), 500)
    if args.validation == "stratified":
        # protocol of round 2: train on the rest, check during training on the first n_check of val
        train_idx, val_idx = data.mnist_validation_split(train_labels, *VALIDATION[args.fast])
        val_idx = val_idx[: VALIDATION[args.fast][1]]
    else:  # round 1: the last images of the training set
        n_val = _n_val(args)
        train_idx, val_idx = torch.arange(len(train_labels) - n_val), torch.arange(len(train_labels) - n_val, len(train_labels))
    images, labels = train_images[train_idx], train_labels[train_idx]

    def loader(purpose: str) -> data.TaskLoader:
        return data.TaskLoader(images, labels, M, args.batch_size, _seed(args.seed, purpose), device=device)

    batch, val_seed, test_seed = EVAL_BATCH["mnist"], _seed(args.seed, "val"), _seed(args.seed, "test")
    return Experiment(
        model=model,
        train_loader=loader("train"),
        pretrain_loader=loader("pretrain"),
        val_batches=fixed_batches(train_images[val_idx], train_labels[val_idx], M, batch, val_seed, device),
        test_batches=fixed_batches(test_images[:n_test], test_labels[:n_test], M, batch, test_seed, device),
        task=TASKS["mnist"],
    )


def segmentation_experiment(args: argparse.Namespace, device: torch.device) -> Experiment:
    """Section 5.2: grey-matter segmentation of brain slices from 0.1%-noise data (30 angles)."""
    model, M = build_model("segmentation", args.recon, args.fast, norm=args.unet_norm)
    M.to(device)
    train, val = data.load_brain("train"), data.load_brain("val")
    augment = data.RandomRigid(max_shift=5.0, max_rotation_deg=10.0)

    def loader(purpose: str) -> data.TaskLoader:
        seed = _seed(args.seed, purpose)
        return data.TaskLoader(train.images, train.masks, M, args.batch_size, seed, device=device, augment=augment)

    batch = EVAL_BATCH["segmentation"]
    return Experiment(
        model=model,
        train_loader=loader("train"),
        pretrain_loader=loader("pretrain"),
        val_batches=fixed_batches(val.images, val.masks, M, batch, _seed(args.seed, "val"), device),
        test_batches=test_batches("segmentation", M, args.seed, device=device),
        task=TASKS["segmentation"],
    )


# ----------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    """The command line of :func:`main`."""
    p = argparse.ArgumentParser(
        prog="python -m tarlib.experiments",
        description="Train and evaluate a task-adapted reconstruction (section 5 of Adler et al. 2022).",
    )
    p.add_argument("experiment", choices=sorted(DEFAULTS), help="mnist (section 5.1) or segmentation (section 5.2)")
    p.add_argument("--strategy", choices=training.STRATEGIES, default="joint", help="training strategy (section 4)")
    p.add_argument(
        "--C", type=float, default=None, help="weight of ℓ_X in eq. (18), 0 ≤ C ≤ 1 (joint only; default 0.5)"
    )
    p.add_argument("--out", type=Path, required=True, help="run directory (created; resumed if it holds a checkpoint)")
    p.add_argument("--steps", type=int, default=None, help="training steps (default: 8000 mnist, 5000 segmentation)")
    p.add_argument("--pretrain-steps", type=int, default=None, help="steps to pre-train R when needed and not given")
    p.add_argument("--batch-size", type=int, default=None, help="default: 64 mnist, 8 segmentation")
    p.add_argument("--lr", type=float, default=1e-3, help="initial learning rate of Adam (cosine decay to 0)")
    p.add_argument("--lr-R", type=float, default=None, help="R's own initial learning rate (default: --lr)")
    p.add_argument("--lr-T", type=float, default=None, help="T's own initial learning rate (default: --lr)")
    p.add_argument("--warmup", type=int, default=0, help="steps of linear learning-rate warm-up before the cosine")
    p.add_argument("--clip", choices=training.CLIPS, default="separate",
                   help="clip the gradient norm of R and T together (joint) or of each network (separate) to 1")
    p.add_argument("--balanced", action="store_true",
                   help="joint only: divide ℓ_D and ℓ_X by their gradient norms on R, so C is ℓ_X's share of R's gradient")
    p.add_argument("--mu", type=float, default=None,
                   help=f"mnist only: attenuation scale of the Poisson data model (default {physics.MNIST_MU})")
    p.add_argument("--validation", choices=("last", "stratified"), default="last",
                   help="mnist only: validation = the last training images (round 1) or a class-stratified split")
    p.add_argument("--unet-norm", choices=nets.NORMS, default="batch",
                   help="segmentation only: the U-Net's normalisation (group norm keeps no running statistics)")
    p.add_argument("--stop-at", type=int, default=None,
                   help="stop at this step (checkpoint + partial.json); rerun without it to finish the same run")
    p.add_argument("--protocol", type=Path, default=None, help="the protocol file this run follows (its git blob is recorded)")
    p.add_argument("--recon", choices=RECONSTRUCTIONS, default=None, help="R: default lgd (mnist), lpd (segmentation)")
    p.add_argument("--task-net", choices=TASK_NETS, default="cnn",
                   help="mnist only: T is the paper's classifier (cnn) or logistic regression on the image (linear)")
    p.add_argument("--init-reconstruction", type=Path, default=None, help="weights file R.pt of an earlier run")
    p.add_argument("--init-task", type=Path, default=None, help="weights file T.pt of an earlier run")
    p.add_argument("--data", type=Path, default=None, help="mnist only: an IDX folder (MNIST layout) to use instead")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    p.add_argument("--eval-every", type=int, default=None, help="evaluate on the validation data every N steps")
    p.add_argument("--checkpoint-every", type=int, default=None,
                   help="write the resumable checkpoint every N steps (default: 500, or 100 with --fast)")
    p.add_argument("--fast", action="store_true", help="smoke-size run (as TARLIB_FAST=1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse and check the arguments; bad ones exit with status 2 and a message."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.fast = args.fast or tarlib.fast_mode()
    defaults = DEFAULTS[args.experiment]
    args.recon = args.recon or defaults["recon"]
    for name in ("steps", "pretrain_steps", "batch_size", "eval_every"):
        if getattr(args, name) is None:
            setattr(args, name, _size(args, *defaults[name]))
    if args.strategy == "joint" and args.C is None:
        args.C = 0.5
    device = args.device or "cpu"
    problems = [
        (args.C is not None and args.strategy != "joint", f"--C applies to --strategy joint only, not {args.strategy}"),
        (args.C is not None and not 0.0 <= args.C <= 1.0, f"--C must lie in [0, 1] (eq. (18)), got {args.C}"),
        (args.steps < 1, f"--steps must be ≥ 1, got {args.steps}"),
        (args.pretrain_steps < 1, f"--pretrain-steps must be ≥ 1, got {args.pretrain_steps}"),
        (args.batch_size < 1, f"--batch-size must be ≥ 1, got {args.batch_size}"),
        (not args.lr > 0, f"--lr must be > 0, got {args.lr}"),
        (not all(r is None or r > 0 for r in (args.lr_R, args.lr_T)), f"--lr-R and --lr-T must be > 0, got "
                                                                        f"{args.lr_R} and {args.lr_T}"),
        (args.task_net != "cnn" and (args.experiment != "mnist" or args.recon == "none"),
         "--task-net linear is for mnist with a reconstruction"),
        (not 0 <= args.warmup < args.steps, f"--warmup must lie in [0, --steps), got {args.warmup}"),
        (args.balanced and args.strategy != "joint", "--balanced applies to --strategy joint only"),
        (args.balanced and not 0 < (args.C or 0) < 1, "--balanced needs 0 < --C < 1"),
        (args.mu is not None and args.experiment != "mnist", "--mu applies to the mnist experiment only"),
        (args.mu is not None and not (args.mu or 0) > 0, f"--mu must be > 0, got {args.mu}"),
        (args.validation != "last" and args.experiment != "mnist", "--validation applies to the mnist experiment only"),
        (args.unet_norm != "batch" and args.experiment != "segmentation", "--unet-norm applies to segmentation only"),
        (args.stop_at is not None and not 1 <= (args.stop_at or 0) <= args.steps,
         f"--stop-at must lie in [1, --steps], got {args.stop_at}"),
        (args.protocol is not None and not Path(args.protocol or "").is_file(), f"--protocol {args.protocol} is no file"),
        (args.seed < 0, f"--seed must be ≥ 0, got {args.seed}"),
        (args.eval_every < 0, f"--eval-every must be ≥ 0, got {args.eval_every}"),
        (args.checkpoint_every is not None and (args.checkpoint_every or 0) < 1,
         f"--checkpoint-every must be ≥ 1, got {args.checkpoint_every}"),
        (args.data is not None and args.experiment != "mnist", "--data applies to the mnist experiment only"),
        (args.data is not None and not Path(args.data).is_dir(), f"--data {args.data} is not a folder"),
        (args.recon in ("none", "rank16", "adjoint") and args.experiment != "mnist", f"--recon {args.recon} is for mnist only"),
        (args.recon == "none" and args.strategy != "end_to_end", "--recon none trains only with --strategy end_to_end"),
        (args.recon in ("fbp", "adjoint") and args.strategy == "pretrain_reconstruction",
         f"--recon {args.recon} has no parameters to train"),
        (device.split(":")[0] not in ("cpu", "cuda"), f"--device must be cpu or cuda, got {args.device}"),
        (device.startswith("cuda") and not torch.cuda.is_available(), "--device cuda, but torch sees no GPU"),
    ]
    for path in (args.init_reconstruction, args.init_task):
        problems.append((path is not None and not path.is_file(), f"weights file {path} does not exist"))
    for bad, message in problems:
        if bad:
            parser.error(message)
    if args.experiment == "mnist" and args.mu is None:
        args.mu = physics.MNIST_MU  # recorded in the run's config, so that its μ never depends on a default
    if args.data is not None:
        try:
            n_train = len(data.load_idx(args.data, "train").labels)
            data.load_idx(args.data, "test")
        except (FileNotFoundError, ValueError) as err:
            parser.error(f"--data {args.data}: {err}")
        if n_train < _n_val(args) + args.batch_size:
            parser.error(f"--data {args.data}: {n_train} training images are too few ({_n_val(args)} are held out)")
    return args


def _config(args: argparse.Namespace) -> dict[str, Any]:
    """The settings that define a run (a rerun into the same --out must use the same)."""
    skip = {"out", "device", "no_progress", "eval_every", "stop_at", "protocol", "checkpoint_every"}
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in sorted(vars(args).items()) if k not in skip}


def git_commit() -> str | None:
    """The git commit (``HEAD``) of the checkout that holds this tarlib, or None outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _record_sitting(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Append this sitting (UTC start, git HEAD, the protocol's blob) to ``--out``/sittings.json; return all.

    Written when the sitting starts, so that the order of protocol and runs can be checked."""
    path = args.out / "sittings.json"
    sittings = json.loads(path.read_text()) if path.is_file() else []
    sittings.append({"start_utc": datetime.now(UTC).isoformat(timespec="seconds"), "head": git_commit(),
                     "protocol_blob": None if args.protocol is None else git_blob(args.protocol)})
    write_json(path, sittings)
    return sittings


def _check_out(args: argparse.Namespace) -> str | None:
    """A problem with reusing ``--out`` (another run's settings), or None; records the settings."""
    config, config_file = _config(args), args.out / "config.json"
    # options added after a run started count as their defaults (the run could not have set them)
    defaults = vars(build_parser().parse_args([args.experiment, "--out", str(args.out)]))
    stored = json.loads(config_file.read_text()) if config_file.exists() else config
    stored = {k: stored.get(k, defaults[k]) for k in config}
    if stored != config:
        return f"{args.out} holds a run with other settings ({config_file}); rerun it unchanged or choose another --out"
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(config_file, config)
    return None


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run one experiment into ``args.out`` and return what is written to metrics.json."""
    out: Path = args.out
    # wall time of earlier sittings of this run (saved at every checkpoint), so that an interrupted
    # and resumed run reports all the time it cost
    clock_file = out / "elapsed.json"
    earlier = json.loads(clock_file.read_text())["seconds"] if clock_file.is_file() else 0.0
    start = time.perf_counter()

    def elapsed() -> float:
        return round(earlier + time.perf_counter() - start, 2)

    sittings = _record_sitting(args)
    device = tarlib.setup(args.seed, args.device)
    build = mnist_experiment if args.experiment == "mnist" else segmentation_experiment
    exp = build(args, device)
    model = exp.model.to(device)
    notes = []
    if args.init_reconstruction is not None:
        training.load_weights(model.R, args.init_reconstruction)
    if args.init_task is not None:
        training.load_weights(model.T, args.init_task)
    progress = not args.no_progress

    R_learns = model.R is not None and nets.n_parameters(model.R) > 0
    if args.strategy in ("sequential", "end_to_end") and R_learns and args.init_reconstruction is None:
        pretrained = out / "pretrained_R.pt"
        message = f"no --init-reconstruction: pre-training R for {args.pretrain_steps} steps on ℓ_X first (eq. (4))"
        print(message, flush=True)
        notes.append(message)
        if not pretrained.exists():
            training.train(
                model, exp.pretrain_loader, "pretrain_reconstruction", steps=args.pretrain_steps, lr=args.lr,
                task=exp.task, checkpoint=out / "pretrain_checkpoint.pt", progress=progress,
            )
            training.save_weights(model.R, pretrained)
        training.load_weights(model.R, pretrained)

    lr = args.lr if args.lr_R is None and args.lr_T is None else {
        "R": args.lr if args.lr_R is None else args.lr_R, "T": args.lr if args.lr_T is None else args.lr_T}
    result = training.train(
        model, exp.train_loader, args.strategy, C=args.C, steps=args.steps, lr=lr, task=exp.task,
        checkpoint=out / "checkpoint.pt", checkpoint_every=(every := args.checkpoint_every or _size(args, 500, 100)),
        callback=lambda step, _: write_json(clock_file, {"seconds": elapsed()}) if step % every == 0 else None,
        eval_loader=exp.val_batches, eval_every=args.eval_every, progress=progress, stop_at=args.stop_at,
        warmup=args.warmup, clip=args.clip, balanced=args.balanced,
    )
    protocol = None if args.protocol is None else {"path": str(args.protocol), "blob": git_blob(args.protocol)}
    if not result["finished"]:  # --stop-at: the run continues later from its checkpoint
        partial = {"step": result["step"], "config": _config(args), "protocol": protocol, "sittings": sittings,
                   "validation": result["history"]["eval"], "wall_time_s": elapsed()}
        write_json(out / "partial.json", partial)
        write_json(clock_file, {"seconds": partial["wall_time_s"]})
        return partial
    if R_learns and args.strategy != "pretrain_task":
        training.save_weights(model.R, out / "R.pt")
    if args.strategy != "pretrain_reconstruction":
        training.save_weights(model.T, out / "T.pt")

    metrics: dict[str, dict[str, float]] = {}
    if args.strategy == "pretrain_task":
        metrics["test_true_images"] = training.evaluate(model, exp.test_batches, exp.task, true_images=True)
    if args.strategy != "pretrain_task" or args.init_reconstruction is not None:
        metrics["test"] = training.evaluate(model, exp.test_batches, exp.task)
    if args.strategy == "pretrain_reconstruction":
        metrics["test"] = {k: v for k, v in metrics["test"].items() if k in ("l2", "psnr", "ssim", "n")}
    balance = None
    if R_learns and args.strategy in ("sequential", "end_to_end", "joint"):
        # which term drives R at the end of training: 4 fresh training batches, networks in eval mode
        model.eval()
        batches = list(itertools.islice(iter(exp.train_loader), 4))
        balance = training.gradient_balance(model, batches, exp.task, C=args.C if args.strategy == "joint" else None)
        if result["loss_state"]:  # balanced loss: the weights of eq. (18) were divided by these scales
            scales = balance["loss_scales"] = result["loss_state"]
            balance["task_share"] = losses.task_share(
                args.C, balance["g_task"] / scales["task"], balance["g_reconstruction"] / scales["reconstruction"])
    summary = {
        "experiment": args.experiment,
        "strategy": args.strategy,
        "C": args.C,
        "config": _config(args),
        "seed": args.seed,
        "device": str(device),
        "host": socket.gethostname(),
        "threads": torch.get_num_threads(),  # torch's intra-op threads (the study's executors pin them per row)
        "git_commit": git_commit(),
        "versions": tarlib.versions(),
        "wall_time_s": elapsed(),
        "n_parameters": {"R": nets.n_parameters(model.R) if R_learns else 0, "T": nets.n_parameters(model.T)},
        "final_train_loss": result["history"]["loss"][-1] if result["history"]["loss"] else None,
        "validation": result["history"]["eval"],
        "gradient_balance": balance,
        "protocol": protocol,
        "sittings": sittings,
        "notes": notes,
        "metrics": metrics,
    }
    write_json(out / "metrics.json", summary)
    return summary


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m tarlib.experiments``; returns the exit status."""
    args = parse_args(argv)
    try:  # one writer per run folder, on any machine that shares it (tarlib.runlock)
        with runlock.RunLock(args.out / runlock.LOCK_FILE):
            return _main(args)
    except runlock.LockHeld as err:
        build_parser().error(f"{args.out} is being written by another process: {err}")


def _main(args: argparse.Namespace) -> int:
    problem = _check_out(args)
    if problem is not None:
        build_parser().error(problem)
    done = args.out / "metrics.json"
    if done.exists():
        print(f"{done} exists: this run is done. Its test metrics:")
        print(json.dumps(json.loads(done.read_text())["metrics"], indent=2))
        return 0
    summary = run(args)
    if "metrics" not in summary:
        print(f"stopped at step {summary['step']} of {args.steps} ({args.out / 'partial.json'}); "
              "rerun the same command without --stop-at to finish")
        return 0
    print(json.dumps(summary["metrics"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
