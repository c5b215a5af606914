"""Training strategies of section 4 and evaluation.

One entry point, :func:`train`, runs any of the strategies on a
:class:`tarlib.nets.TaskAdapted` model T ∘ R and a loader of triplets (x, y, z):

===========================  ==========================================  =======
strategy                     minimises                                   trains
===========================  ==========================================  =======
``pretrain_reconstruction``  ℓ_X(x, R(y)), eq. (4)                       R
``pretrain_task``            ℓ_D(z, T(x)) on true images, eqs. (5), (7)  T
``sequential``               ℓ_D(z, T(R(y))) with R fixed, eq. (13)      T
``end_to_end``               ℓ_D(z, T(R(y))), eq. (16), i.e. C = 0       R and T
``joint``                    (1 − C)·ℓ_D + C·ℓ_X, eqs. (18), (20)        R and T
===========================  ==========================================  =======

The loop: Adam (β = (0.9, 0.99)), learning rate decaying to 0 on a cosine
(optionally after a linear warm-up), gradient norm clipped to 1 (jointly over
all trained parameters, or separately for R and for T), mixed precision on
CUDA (bfloat16 on CPUs, opt-in), a progress bar, periodic evaluation and atomic checkpoints from which an
interrupted run resumes exactly (on CPU, bitwise the same parameters as a run
that was never interrupted).  ``balanced=True`` divides each term of eq. (18)
by a running estimate of its gradient norm on R's parameters, refreshed every
``balance_every`` steps (see :class:`tarlib.losses.JointLoss`).
"""

from __future__ import annotations

import contextlib
import io
import math
import pickle
import signal
import statistics
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from tarlib import losses, metrics
from tarlib.config import atomic_write
from tarlib.config import progress as progress_bar
from tarlib.nets import TaskAdapted

STRATEGIES = ("pretrain_reconstruction", "pretrain_task", "sequential", "end_to_end", "joint")
TASKS = ("classification", "segmentation")
CLIPS = ("joint", "separate")
Batch = tuple[Tensor, Tensor, Tensor]


def task_loss(task: str) -> Callable[[Tensor, Tensor], Tensor]:
    """ℓ_D for a task: cross-entropy (eq. (6)) or pixelwise cross-entropy over Ω (eq. (8))."""
    if task == "classification":
        return losses.cross_entropy
    if task == "segmentation":
        return losses.pixelwise_cross_entropy
    raise ValueError(f"task must be one of {TASKS}, got {task!r}")


# ----------------------------------------------------------------------------- files


@contextlib.contextmanager
def _interrupt_between_steps() -> Iterator[list[int]]:
    """While training, Ctrl-C (SIGINT) and SIGTERM only note the signal: the loop finishes its step,
    writes its checkpoint and then raises :class:`KeyboardInterrupt`, so an interrupted run loses no
    step.  A second signal acts at once.  Outside the main thread (a Ray worker) nothing changes."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def note(signum: int, frame: Any) -> None:
        received.append(signum)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if signum == signal.SIGTERM and previous[signal.SIGTERM] in (signal.SIG_DFL, None):
            signal.signal(signal.SIGTERM, signal.default_int_handler)  # a second SIGTERM: interrupt at once

    for sig in previous:
        signal.signal(sig, note)
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _atomic_save(obj: Any, path: Path) -> None:
    """torch.save through :func:`tarlib.config.atomic_write`: a crash never leaves half a file."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write(path, buffer.getvalue())


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint or weights file with ``torch.load(weights_only=True)``.

    Only tensors and plain Python types are accepted; a file that would need to
    unpickle arbitrary objects (and could run code) is refused with a ValueError.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"refusing to load {path}: it holds pickled Python objects, not only tensors and plain types "
            f"(tarlib files never do; the file is foreign or tampered with)"
        ) from err


def save_weights(module: nn.Module, path: str | Path) -> None:
    """Save only ``module.state_dict()`` (tensors): a small file fit for publishing."""
    save_state(module.state_dict(), path)


def save_state(state: dict[str, Tensor], path: str | Path) -> None:
    """Save a state dict (e.g. a float16 copy of one) as a weights file for :func:`load_weights`."""
    _atomic_save(dict(state), Path(path))


def load_weights(module: nn.Module, path: str | Path) -> nn.Module:
    """Load a file written by :func:`save_weights` into ``module`` (strict key match)."""
    state = load_checkpoint(path)
    if "model" in state and "optimizer" in state:
        raise ValueError(f"{path} is a training checkpoint, not a weights file; use R.pt / T.pt written next to it")
    module.load_state_dict(state)
    return module


# ----------------------------------------------------------------------------- batches


class _BatchStream:
    """An endless stream of batches from a finite loader, with a position that can be saved.

    A resumable loader (one with ``state_dict``/``load_state_dict``, like
    :class:`tarlib.data.TaskLoader`) saves its own epoch, position and random
    state.  For any other iterable (e.g. a list of batches) the number of batches
    taken in the current pass is saved and replayed on resume.
    """

    def __init__(self, loader: Iterable[Batch]):
        self.loader = loader
        self.resumable = hasattr(loader, "state_dict") and hasattr(loader, "load_state_dict")
        self.position = 0
        self._batches = iter(loader)

    def __next__(self) -> Batch:
        try:
            batch = next(self._batches)
        except StopIteration:  # start the next pass (epoch)
            self.position = 0
            self._batches = iter(self.loader)
            batch = next(self._batches)
        self.position += 1
        return batch

    def state_dict(self) -> dict[str, Any]:
        return {"loader": self.loader.state_dict()} if self.resumable else {"position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.resumable:
            self.loader.load_state_dict(state["loader"])
            self._batches = iter(self.loader)
        else:
            self._batches = iter(self.loader)
            for _ in range(state["position"]):
                next(self._batches)
            self.position = state["position"]


# ----------------------------------------------------------------------------- one step


def _forward(
    model: TaskAdapted, strategy: str, loss: losses.JointLoss, batch: Batch
) -> tuple[Tensor, dict[str, Tensor]]:
    """The loss of one batch under a strategy (see the module docstring)."""
    x, y, z = batch
    if strategy == "pretrain_reconstruction":
        return loss(model.R(y), None, x, z)
    if strategy == "pretrain_task":
        return loss(None, model.T(x), x, z)
    if strategy == "sequential":
        with torch.no_grad():
            x_hat = model.R(y)
        return loss(x_hat, model.T(x_hat), x, z)
    x_hat, logits = model(y)
    return loss(x_hat, logits, x, z)


def _setup_strategy(
    model: TaskAdapted, strategy: str, C: float | None, task: str, balanced: bool = False
) -> tuple[list[nn.Module], losses.JointLoss]:
    """Which networks are trained, and the loss (always eq. (18) with the right C)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    if strategy == "joint":
        if C is None:
            raise ValueError("strategy='joint' needs C in [0, 1] (eq. (18))")
    elif strategy == "end_to_end":
        if C not in (None, 0, 0.0):
            raise ValueError(f"strategy='end_to_end' is C = 0 (eq. (16)); got C={C}; use strategy='joint'")
        C = 0.0
    elif C is not None:
        raise ValueError(f"C only applies to strategy='joint' (and 'end_to_end', C = 0), not {strategy!r}")
    else:
        C = 1.0 if strategy == "pretrain_reconstruction" else 0.0
    needs_R = strategy in ("pretrain_reconstruction", "sequential") or (strategy == "joint" and C > 0)
    if needs_R and model.R is None:
        raise ValueError(f"strategy={strategy!r} with C={C} needs a reconstruction network, but model.R is None")
    trained = {
        "pretrain_reconstruction": [model.R],
        "pretrain_task": [model.T],
        "sequential": [model.T],
    }.get(strategy, [m for m in (model.R, model.T) if m is not None])
    if balanced and strategy != "joint":
        raise ValueError(f"balanced=True applies to strategy='joint' only, not {strategy!r}")
    return trained, losses.JointLoss(C, task_loss(task), balanced=balanced)


def _learning_rates(model: TaskAdapted, trained: list[nn.Module], lr: float | Mapping[str, float]) -> list[float]:
    """The initial learning rate of each trained network, from one rate or a mapping ``{"R": …, "T": …}``."""
    if isinstance(lr, Mapping):
        names = {id(model.R): "R", id(model.T): "T"}
        needed = [names[id(m)] for m in trained]
        if set(lr) - {"R", "T"} or set(needed) - set(lr):
            raise ValueError(f"lr as a mapping needs the keys {needed} (of 'R', 'T'), got {sorted(lr)}")
        rates = [float(lr[n]) for n in needed]
    else:
        rates = [float(lr)] * len(trained)
    if not all(r > 0 for r in rates):
        raise ValueError(f"learning rates must be > 0, got {lr}")
    return rates


def loss_terms(model: TaskAdapted, batch: Batch, task: str = "classification") -> dict[str, Tensor]:
    """ℓ_D (``"task"``) and ℓ_X (``"reconstruction"``) of one batch (x, y, z), attached to the graph."""
    if model.R is None:
        raise ValueError("the model has no reconstruction network R: ℓ_X is undefined")
    x, y, z = batch
    x_hat, logits = model(y)
    return losses.JointLoss(0.5, task_loss(task)).terms(x_hat, logits, x, z)


def gradient_balance(
    model: TaskAdapted, batches: Iterable[Batch], task: str = "classification", C: float | None = None
) -> dict[str, float]:
    """‖∇_θ ℓ_D‖ and ‖∇_θ ℓ_X‖ on R's parameters θ, averaged over ``batches``.

    Returns ``g_task``, ``g_reconstruction`` and their ratio; with ``C`` also the
    task's share of R's gradient under eq. (18), :func:`tarlib.losses.task_share`.
    This measures which term really drives R, whatever the weights C and 1 − C say.
    The model's modes are left as they were (evaluate in the mode you care about).
    """
    params = list(model.R.parameters())
    sums = {"task": 0.0, "reconstruction": 0.0}
    n = 0
    for batch in batches:
        norms = losses.gradient_norms(loss_terms(model, batch, task), params)
        for key in sums:
            sums[key] += norms[key]
        n += 1
    if n == 0:
        raise ValueError("gradient_balance got no batches")
    g_task, g_rec = sums["task"] / n, sums["reconstruction"] / n
    out = {"g_task": g_task, "g_reconstruction": g_rec, "ratio": g_task / g_rec}
    if C is not None:
        out["task_share"] = losses.task_share(C, g_task, g_rec)
    return out


def _set_modes(model: TaskAdapted, trained: list[nn.Module]) -> None:
    """Trained networks in train mode, frozen ones in eval mode (batch norm statistics untouched)."""
    model.eval()
    for m in trained:
        m.train()


def _amp_dtype(device: torch.device) -> torch.dtype:
    """bfloat16 on CPUs and on GPUs that support it, else float16 (which needs gradient scaling)."""
    if device.type == "cpu" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def _autocast(device: torch.device, amp: bool) -> torch.autocast:
    """Mixed precision for the forward pass when ``amp``; a disabled context otherwise."""
    return torch.autocast(device_type=device.type, dtype=_amp_dtype(device), enabled=amp)


def _resolve_device(model: nn.Module, device: str | torch.device | None, amp: bool | None) -> tuple[torch.device, bool]:
    device = torch.device(device) if device is not None else next(model.parameters()).device
    if amp is None:
        amp = device.type == "cuda"
    if amp and device.type not in ("cuda", "cpu"):
        raise ValueError(f"mixed precision runs on CUDA or (bfloat16, opt-in) on the CPU, got device {device}")
    return device, amp


# ----------------------------------------------------------------------------- the loop


def train(
    model: TaskAdapted,
    loader: Iterable[Batch],
    strategy: str,
    C: float | None = None,
    steps: int = 1000,
    lr: float | Mapping[str, float] = 1e-3,
    *,
    task: str = "classification",
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 500,
    eval_loader: Iterable[Batch] | None = None,
    eval_every: int | None = None,
    max_steps_this_call: int | None = None,
    stop_at: int | None = None,
    warmup: int = 0,
    clip: str = "separate",
    balanced: bool = False,
    balance_every: int = 20,
    callback: Callable[[int, dict[str, float]], None] | None = None,
    device: str | torch.device | None = None,
    amp: bool | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train ``model`` with a strategy of section 4 for ``steps`` optimiser steps.

    ``loader`` yields batches (x, y, z) and is cycled through as often as needed.
    ``C`` is required for ``joint`` (eq. (18)); the other strategies fix it.
    ``task`` picks ℓ_D: ``"classification"`` (eq. (6)) or ``"segmentation"`` (eq. (8)).

    With ``checkpoint`` (a file path) the full state (networks, optimiser,
    schedule, loader position, random state, history) is written atomically every
    ``checkpoint_every`` steps and at the end; if the file exists, training
    resumes from it.  Ctrl-C or SIGTERM stops training after the current step, which is
    checkpointed, with :class:`KeyboardInterrupt`.  ``max_steps_this_call`` stops early (after a checkpoint), as
    if the run had been killed.  ``callback(step, logs)`` runs after every step.
    ``stop_at`` stops at that step (a later call with a larger one continues the
    same run: the first 2,000 steps of an 8,000-step schedule).
    ``eval_loader`` is evaluated every ``eval_every`` steps.  ``amp`` (default:
    on for CUDA) runs the forward pass under autocast.  On a CPU ``amp=True`` opts
    in to bfloat16 autocast: on the course machine an MNIST step is about 1.6× faster,
    but the losses drift from float32 (relative 5e-4 after 10 steps), so the
    protocol's runs keep float32 (``make bench`` measures both).

    ``lr`` is Adam's initial learning rate, one for every trained network, or one per
    network as ``{"R": lr_R, "T": lr_T}`` (each network is its own parameter group).
    ``warmup`` steps of linear warm-up precede the cosine decay (the rate at step
    t is lr·min(1, (t + 1)/warmup)·(1 + cos(π t/steps))/2).  ``clip="joint"``
    clips the norm of all trained parameters' gradient to 1; ``"separate"`` clips
    R's and T's gradients to 1 each, so that a large ℓ_X gradient on R cannot shrink
    T's step; it is the default since v0.3.0 (notebook 04 shows the pitfall of
    ``"joint"``, which rounds 1 and 2 used wherever they name no clipping).  ``balanced`` (joint only) balances the two terms of eq. (18) by
    their gradient norms on R, measured every ``balance_every`` steps.

    Returns ``{"step", "finished", "history", "loss_state"}`` (the balanced loss's
    gradient-norm estimates, empty otherwise); ``history`` holds the logged
    training losses (every step, keys ``loss``, ``task``, ``reconstruction``,
    ``lr``) and the evaluations (``eval``: a list of metric dicts with their step).
    """
    if steps < 1:
        raise ValueError(f"steps must be ≥ 1, got {steps}")
    if checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be ≥ 1, got {checkpoint_every}")
    if not 0 <= warmup < steps:
        raise ValueError(f"warmup must lie in [0, steps) = [0, {steps}), got {warmup}")
    if clip not in CLIPS:
        raise ValueError(f"clip must be one of {CLIPS}, got {clip!r}")
    if balance_every < 1:
        raise ValueError(f"balance_every must be ≥ 1, got {balance_every}")
    trained, loss = _setup_strategy(model, strategy, C, task, balanced)
    rates = _learning_rates(model, trained, lr)
    device, amp = _resolve_device(model, device, amp)
    model.to(device)
    groups = [list(m.parameters()) for m in trained] if clip == "separate" else [
        [p for m in trained for p in m.parameters()]]
    optimizer = torch.optim.Adam([{"params": list(m.parameters()), "lr": r} for m, r in zip(trained, rates)],
                                 betas=(0.9, 0.99))

    def rate(t: int) -> float:
        return min(1.0, (t + 1) / warmup if warmup else 1.0) * 0.5 * (1.0 + math.cos(math.pi * t / steps))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, rate)
    scaler = torch.amp.GradScaler(device.type, enabled=amp and _amp_dtype(device) == torch.float16)
    batches = _BatchStream(loader)
    history: dict[str, Any] = {"step": [], "loss": [], "task": [], "reconstruction": [], "lr": [], "eval": []}
    step = 0

    path = Path(checkpoint) if checkpoint is not None else None
    config = {"strategy": strategy, "C": loss.C, "steps": steps, "lr": dict(lr) if isinstance(lr, Mapping) else lr,
              "task": task, "warmup": warmup, "clip": clip, "balanced": balanced, "balance_every": balance_every if balanced else None}
    if path is not None and path.exists():
        state = load_checkpoint(path)
        if state["config"] != config:
            raise ValueError(f"checkpoint {path} was written for {state['config']}, not for {config}")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        scaler.load_state_dict(state["scaler"])
        batches.load_state_dict(state["batches"])
        loss.load_state_dict(state["loss"])
        torch.set_rng_state(state["torch_rng"])
        history, step = state["history"], state["step"]

    def save() -> None:
        if path is not None:
            _atomic_save(
                {
                    "config": config,
                    "step": step,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "schedule": schedule.state_dict(),
                    "scaler": scaler.state_dict(),
                    "batches": batches.state_dict(),
                    "loss": loss.state_dict(),
                    "torch_rng": torch.get_rng_state(),
                    "history": history,
                },
                path,
            )

    _set_modes(model, trained)
    stop = min(steps, stop_at if stop_at is not None else steps)
    if max_steps_this_call is not None:
        stop = min(stop, step + max_steps_this_call)
    bar = progress_bar(total=steps, initial=step, desc=strategy, disable=not progress, dynamic_ncols=True)
    running: dict[str, float] = {}
    with _interrupt_between_steps() as interrupted:
        while step < stop and not interrupted:
            x, y, z = (t.to(device, non_blocking=True) for t in next(batches))
            if balanced and step % balance_every == 0:
                with _autocast(device, amp):
                    loss.update_scales(losses.gradient_norms(loss_terms(model, (x, y, z), task), model.R.parameters()))
            with _autocast(device, amp):
                total, parts = _forward(model, strategy, loss, (x, y, z))
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(total).backward()
            scaler.unscale_(optimizer)
            for group in groups:
                torch.nn.utils.clip_grad_norm_(group, max_norm=1.0)
            scaler.step(optimizer)
            scaler.update()
            schedule.step()
            step += 1

            logs = {"loss": total.item(), **{k: v.item() for k, v in parts.items()}, "lr": schedule.get_last_lr()[0]}
            history["step"].append(step)
            for key in ("loss", "task", "reconstruction", "lr"):
                history[key].append(logs.get(key, math.nan))
            for key in ("task", "reconstruction"):
                if key in logs:
                    running[key] = logs[key] if key not in running else 0.9 * running[key] + 0.1 * logs[key]
            if eval_loader is not None and eval_every and (step % eval_every == 0 or step == steps):
                result = evaluate(model, eval_loader, task, true_images=strategy == "pretrain_task", device=device, amp=amp)
                history["eval"].append({"step": step, **result})
                _set_modes(model, trained)
                running.update({f"eval_{k}": v for k, v in result.items() if k in ("accuracy", "dice", "psnr")})
            if step % checkpoint_every == 0 or step == stop:
                save()
            if callback is not None:
                callback(step, logs)
            bar.set_postfix({k: f"{v:.4g}" for k, v in running.items()}, refresh=False)
            bar.update(1)
    bar.close()
    if interrupted:
        save()
        raise KeyboardInterrupt(f"training stopped by signal {interrupted[0]} after step {step}"
                                + (f"; checkpoint {path}" if path is not None else ""))
    model.eval()
    return {"step": step, "finished": step >= steps, "history": history, "loss_state": loss.state_dict()}


def seconds_per_step(model: TaskAdapted, loader: Iterable[Batch], strategy: str, steps: int = 20, warmup: int = 3,
                     C: float | None = None, lr: float | Mapping[str, float] = 1e-3) -> tuple[float, float]:
    """Median CPU seconds (this process's, every thread counted) and wall seconds of one :func:`train` step of
    ``strategy``, over ``steps`` timed steps after ``warmup`` untimed ones (``model`` is trained by them).
    ``C`` defaults to 0.5 for ``joint`` (a step costs the same for every C)."""
    if steps < 1 or warmup < 1:
        raise ValueError(f"need steps ≥ 1 and warmup ≥ 1, got {steps}, {warmup}")
    stamps: list[tuple[float, float]] = []
    train(model, loader, strategy, C=0.5 if C is None and strategy == "joint" else C, steps=steps + warmup, lr=lr,
          progress=False, callback=lambda step, logs: stamps.append((time.process_time(), time.perf_counter())))
    pairs = list(zip(stamps[warmup - 1:], stamps[warmup:]))
    return (float(statistics.median(b[0] - a[0] for a, b in pairs)),
            float(statistics.median(b[1] - a[1] for a, b in pairs)))


# ----------------------------------------------------------------------------- evaluation


EVAL_CHUNK = 128  # images per forward pass in evaluate(): 2,000 MNIST images took 4.6 s in chunks of 128, 8.4 s in one of 500


@torch.no_grad()
def evaluate(
    model: TaskAdapted,
    loader: Iterable[Batch],
    task: str = "classification",
    *,
    true_images: bool = False,
    device: str | torch.device | None = None,
    amp: bool | None = None,
    predictions: list[Tensor] | None = None,
) -> dict[str, float]:
    """Mean metrics of T ∘ R over all samples of ``loader``; leaves the model in eval mode.

    classification: ``accuracy``, ``cross_entropy`` (eq. (6));
    segmentation: ``dice``, ``iou``, ``cross_entropy`` (eq. (8), integrated over Ω);
    and for the reconstruction x̂ = R(y): ``l2`` (Σ_pixels (x − x̂)², Table 1's
    L2-loss), ``psnr`` and ``ssim`` (data range 1).  With ``true_images=True`` the
    task network is applied to the true images x instead (the "classification on
    true images" row of Table 1) and no reconstruction metrics are reported.
    A list passed as ``predictions`` receives each batch's decisions (the arg max
    over classes), for paired comparisons of models image by image.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    device, amp = _resolve_device(model, device, amp)
    model.eval()
    sums: dict[str, float] = {}
    n = 0
    for batch in loader:
        x, y, z = (t.to(device) for t in batch)
        with _autocast(device, amp):  # in chunks: on a CPU, large batches run slower per image
            if true_images:
                x_hat, logits = None, torch.cat([model.T(c) for c in x.split(EVAL_CHUNK)])
            else:
                outputs = [model(c) for c in y.split(EVAL_CHUNK)]  # (x̂, d); x̂ is None for a T that reads y
                x_hat = None if outputs[0][0] is None else torch.cat([x for x, _ in outputs])
                logits = torch.cat([d for _, d in outputs])
        values = {}
        if predictions is not None:
            predictions.append(logits.argmax(1).cpu())
        if task == "classification":
            values["accuracy"] = metrics.accuracy(logits, z)
            values["cross_entropy"] = metrics.cross_entropy(logits, z)
        else:
            values["dice"] = metrics.dice(logits, z)
            values["iou"] = metrics.iou(logits, z)
            values["cross_entropy"] = metrics.pixelwise_cross_entropy(logits, z)
        if x_hat is not None:
            values["l2"] = metrics.l2_error(x_hat, x)
            values["psnr"] = metrics.psnr(x_hat, x)
            values["ssim"] = metrics.ssim(x_hat, x)
        for key, v in values.items():
            sums[key] = sums.get(key, 0.0) + v.double().sum().item()
        n += x.shape[0]
    if n == 0:
        raise ValueError("evaluate got an empty loader")
    return {key: total / n for key, total in sums.items()} | {"n": n}
