"""Training-step benchmark: seconds per joint step (eq. (20)) for the two experiments of section 5.

- MNIST joint: learned gradient descent (10 iterations, width 32) + the paper's
  classifier, batch 64, Poisson data (section 5.1);
- segmentation joint: learned primal-dual (10 iterations, width 32) + the
  default U-Net of :mod:`tarlib.experiments`, batch 8, brain slices with
  augmentation (section 5.2).

Each step is a full :func:`tarlib.training.train` step: drawing the batch (fresh
noise), forward, backward, clipping, Adam and the schedule.  Reports the median
over ``--steps`` timed steps after ``--warmup`` steps, and the targets
(≤ 0.35 s and ≤ 1.5 s on 2 CPU cores).  Run: ``python benchmarks/training.py``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from operators import markdown_table  # noqa: E402  (benchmarks/operators.py)

from tarlib import data, experiments, nets, physics, training  # noqa: E402

TARGETS_S = {"mnist": 0.35, "segmentation": 1.5}  # per step on the 2-core CPU


def mnist_setup(device: torch.device) -> tuple[nets.TaskAdapted, data.TaskLoader]:
    M = physics.mnist_data_model().to(device)
    images, labels = data.load_mnist("train")
    model = nets.TaskAdapted(nets.LearnedGradientDescent(M, n_iter=10, width=32), nets.Classifier())
    return model, data.TaskLoader(images, labels, M, batch_size=64, seed=0, device=device)


def segmentation_setup(device: torch.device) -> tuple[nets.TaskAdapted, data.TaskLoader]:
    M = physics.brain_data_model().to(device)
    train = data.load_brain("train")
    R = nets.LearnedPrimalDual(M.A, n_iter=10, width=32)
    T = nets.UNet(1, 2, depth=experiments.UNET_DEPTH, width=experiments.UNET_WIDTH)
    augment = data.RandomRigid(max_shift=5.0, max_rotation_deg=10.0)
    loader = data.TaskLoader(train.images, train.masks, M, batch_size=8, seed=0, device=device, augment=augment)
    return nets.TaskAdapted(R, T), loader


def seconds_per_step(model: nets.TaskAdapted, loader, task: str, steps: int, warmup: int, device) -> float:
    """Median wall-clock seconds between consecutive joint training steps (C = 0.5)."""
    stamps = []

    def stamp(step: int, logs: dict) -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())

    training.train(model, loader, "joint", C=0.5, steps=warmup + steps, task=task, callback=stamp, progress=False,
                   device=device)
    return statistics.median(b - a for a, b in zip(stamps[warmup - 1 :], stamps[warmup:]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="timed steps (median)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the course machine has 2 cores)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--only", choices=sorted(TARGETS_S), default=None, help="run one of the two")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"# Training-step benchmark\n\n{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__} with {torch.get_num_threads()} threads on {device}, "
          f"load average {os.getloadavg()[0]:.1f}\n")
    rows = []
    experiments_ = (("mnist", mnist_setup, "classification"), ("segmentation", segmentation_setup, "segmentation"))
    for name, setup, task in experiments_:
        if args.only not in (None, name):
            continue
        torch.manual_seed(0)
        model, loader = setup(device)
        s = seconds_per_step(model, loader, task, args.steps, args.warmup, device)
        n_R, n_T = nets.n_parameters(model.R), nets.n_parameters(model.T)
        networks = f"{type(model.R).__name__} ({n_R:,}) + {type(model.T).__name__} ({n_T:,})"
        verdict = "ok" if s <= TARGETS_S[name] else "SLOW"
        rows.append([name, networks, str(loader.batch_size), f"{s:.3f}", f"≤ {TARGETS_S[name]}", verdict])
    print(markdown_table(["experiment", "R + T (parameters)", "batch", "s / step", "target (2 CPU cores)", ""], rows))


if __name__ == "__main__":
    main()
