"""Training-step benchmark: seconds per joint step (eq. (20)) for the two experiments of section 5.

- MNIST joint: learned gradient descent (10 iterations, width 32) + the paper's
  classifier, batch 64, Poisson data (section 5.1);
- segmentation joint: learned primal-dual (10 iterations, width 32) + the
  default U-Net of :mod:`tarlib.experiments`, batch 8, brain slices with
  augmentation (section 5.2).

Each step is a full :func:`tarlib.training.train` step: drawing the batch (fresh
noise), forward, backward, clipping, Adam and the schedule.  Reports the median
over ``--steps`` timed steps after ``--warmup`` steps, and the targets
(≤ 0.35 s and ≤ 1.5 s on 2 CPU cores).

Two more measurements say how far the step could go:

- the arithmetic of one step (forward and backward, counted by
  ``torch.utils.flop_counter``) divided by its time, against the floating-point rate
  of a large float32 matrix product on the same threads (what the cores can do);
- segmentation inference, T(R(y)) for one 128² slice at batch 1 (target ≤ 50 ms on 2 cores).

Run: ``python benchmarks/training.py``.
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

from operators import markdown_table, median_time  # noqa: E402  (benchmarks/operators.py)

from tarlib import data, experiments, nets, physics, training  # noqa: E402

TARGETS_S = {"mnist": 0.35, "segmentation": 1.5}  # per step on the 2-core CPU
INFERENCE_TARGET_MS = 50.0  # segmentation, one 128² slice at batch 1 on 2 CPU cores


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


def seconds_per_step(model: nets.TaskAdapted, loader, task: str, steps: int, warmup: int, device,
                     amp: bool | None = None) -> tuple[float, list[float]]:
    """Median wall-clock seconds between consecutive joint training steps (C = 0.5), and the losses."""
    stamps, losses = [], []

    def stamp(step: int, logs: dict) -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())
        losses.append(logs["loss"])

    training.train(model, loader, "joint", C=0.5, steps=warmup + steps, task=task, callback=stamp, progress=False,
                   device=device, amp=amp)
    return statistics.median(b - a for a, b in zip(stamps[warmup - 1 :], stamps[warmup:])), losses


def gflop_per_step(model: nets.TaskAdapted, loader, task: str) -> float:
    """Floating-point operations (in 10⁹) of one joint step's forward and backward pass (C = 0.5)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        terms = training.loss_terms(model, next(iter(loader)), task)
        (0.5 * terms["task"] + 0.5 * terms["reconstruction"]).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / 1e9


def matmul_gflops(device: torch.device, n: int = 2048, repeats: int = 5) -> float:
    """The float32 rate (10⁹ operations per second) of an n × n matrix product: the cores' practical peak."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)

    def product() -> None:
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()

    return 2 * n**3 / median_time(product, repeats) / 1e9


def inference_ms(device: torch.device) -> float:
    """Milliseconds of T(R(y)) for one segmentation slice at batch 1 (full-size networks, eval mode)."""
    model, loader = segmentation_setup(device)
    y = next(iter(loader))[1][:1]
    model.eval()
    with torch.no_grad():
        return 1000 * median_time(lambda: model(y), repeats=10)


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
    rows, mixed = [], []
    peak = matmul_gflops(device)
    experiments_ = (("mnist", mnist_setup, "classification"), ("segmentation", segmentation_setup, "segmentation"))
    for name, setup, task in experiments_:
        if args.only not in (None, name):
            continue
        torch.manual_seed(0)
        model, loader = setup(device)
        s, losses = seconds_per_step(model, loader, task, args.steps, args.warmup, device)
        gflop = gflop_per_step(model, loader, task)
        if device.type == "cpu":  # the opt-in bfloat16 autocast, from the same seed
            torch.manual_seed(0)
            s_bf16, losses_bf16 = seconds_per_step(*setup(device), task, args.steps, args.warmup, device, amp=True)
            drift = max(abs(a - b) / abs(a) for a, b in zip(losses, losses_bf16))
            mixed.append(f"{name}: {s_bf16:.3f} s / step with bfloat16 autocast (amp=True), {s / s_bf16:.2f}× "
                         f"float32; largest relative loss difference over the {len(losses)} seeded steps: {drift:.1e}")
        n_R, n_T = nets.n_parameters(model.R), nets.n_parameters(model.T)
        networks = f"{type(model.R).__name__} ({n_R:,}) + {type(model.T).__name__} ({n_T:,})"
        verdict = "ok" if s <= TARGETS_S[name] else "SLOW"
        rows.append([name, networks, str(loader.batch_size), f"{s:.3f}", f"≤ {TARGETS_S[name]}", verdict,
                     f"{gflop:.1f}", f"{gflop / s:.0f} ({100 * gflop / s / peak:.0f} %)"])
    print(markdown_table(["experiment", "R + T (parameters)", "batch", "s / step", "target (2 CPU cores)", "",
                          "GFLOP / step", "GFLOP/s (of the matmul rate)"], rows))
    print(f"\nfloat32 matrix product ({torch.get_num_threads()} threads): {peak:.0f} GFLOP/s")
    print("".join(f"\n{line}" for line in mixed))
    if args.only in (None, "segmentation"):
        ms = inference_ms(device)
        verdict = "ok" if ms <= INFERENCE_TARGET_MS else "SLOW"
        print(f"segmentation inference, T(R(y)) for one 128² slice at batch 1: {ms:.1f} ms "
              f"(target ≤ {INFERENCE_TARGET_MS:g} ms on 2 CPU cores: {verdict})")


if __name__ == "__main__":
    main()
