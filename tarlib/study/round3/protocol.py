"""Round 3 of the reproduction: what ``results/round3/PROTOCOL.md`` decides.

    python -m tarlib.study --round 3 --list            # every row decided so far, its command and estimated time
    python -m tarlib.study --round 3 --runs DIR        # run the next stages (resumable), then decide

Round 3 asks how the joint-minus-sequential gap depends on the capacity of R (rank 16,
small, full) and of T (CNN, linear).  Its stages, each decided on validation data only
(``results/round3/choices.json``):

1. ``pretrain``: R_s and T_s of every level and seed s = 0, 1, 2.  The full R and the CNN
   T are round 2's, seed 0 restored from ``weights/``, seeds 1 and 2 retrained with
   round 2's recorded commands; ``rrr`` checks the rank-16 R against its closed-form
   optimum (:func:`rank16_check`) and replaces one that misses it.
2. ``lr_linear``: the linear T's learning rate, round 2's grid and rule.
3. ``best_C``: per cell, the joint grid's C with the best validation accuracy.
4. the best C's seeds 1 and 2, and the extra end-to-end seeds (cut first).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from tarlib import data, experiments, nets, physics, pretrained, training
from tarlib.config import git_blob, sha256_file, write_json
from tarlib.study import evaluation, runner
from tarlib.study.executor import Executor
from tarlib.study.registry import Row, load_choices, load_record, number
from tarlib.study.round2 import protocol as round2

PROTOCOL_FILE = Path("results/round3/PROTOCOL.md")
RESULTS = Path("results/round3")
R_LEVELS = {"rank16": "rank16", "small": "lgd_small", "full": "lgd"}  # level -> --recon
T_LEVELS = ("cnn", "linear")  # --task-net
# the protocol's 5 cells: the full × linear cell was cut before any run, to fit the budget at the measured step times
CELLS = tuple((r, t) for r in R_LEVELS for t in T_LEVELS if (r, t) != ("full", "linear"))
MU = 0.15  # round 2's choice
LR_R, LR_T_CNN = 3e-4, 1e-3  # round 2's joint choice for R; its sequential choice for the CNN
RRR_TOLERANCE, PLATEAU, L2_ALLOWANCE = 0.01, 0.01, 0.10
BUDGET_S = 10 * 3600
COMMON = ("--mu", number(MU), "--validation", "stratified", "--protocol", str(PROTOCOL_FILE))


@dataclass(frozen=True)
class Design:
    """The sizes of the round: the protocol's (:data:`FULL`), or a smoke-size one for tests and CI (:data:`FAST`)."""

    seeds: tuple[int, ...]
    cells: tuple[tuple[str, str], ...]
    c_grid: tuple[float, ...]
    lr_grid: tuple[tuple[float, int], ...]
    steps: dict[str, int]
    extra_end_to_end: tuple[str, str] = ("rank16", "cnn")  # the cell whose end-to-end row gets every seed
    no_end_to_end: tuple[tuple[str, str], ...] = ()  # cells whose end-to-end row was cut (budget)

    @property
    def restored(self) -> tuple[int, ...]:
        """Seeds whose round-2 networks come from ``weights/`` (none at smoke size: they must be built small)."""
        return (0,) if self is FULL else ()


FULL = Design(seeds=(0, 1, 2), cells=CELLS, c_grid=(0.001, 0.01, 0.1, 0.5), lr_grid=round2.LR_GRID,
              steps={"pretrain_R": 8000, "pretrain_T": 3000, "grid": 1000, "finetune": 3000},
              no_end_to_end=(("full", "cnn"),))
# smoke size: two cells that between them need every level and every stage (--fast sets the steps)
FAST = Design(seeds=(0, 1), cells=(("rank16", "linear"), ("small", "cnn")), c_grid=(0.01, 0.5),
              lr_grid=((1e-3, 0), (3e-4, 0)), steps=FULL.steps)


# ----------------------------------------------------------------------------- names and rows


def full_R(s: int) -> str:
    return round2.pretrain_R_row(MU, s).name


def cnn_T(s: int) -> str:
    return round2.pretrain_T_row(MU, s).name


def closed_form_R(s: int) -> str:
    """The run folder of the closed-form rank-16 map that replaces a pre-trained one missing the 1 % bound."""
    return f"r3_closed_form_rank16_s{s}"


def pre_R(level: str, s: int, choices: dict[str, Any]) -> str:
    """The row (run folder) of R_s at ``level``."""
    if level == "full":
        return full_R(s)
    if level == "rank16" and choices.get("rrr", {}).get(str(s), {}).get("replaced"):
        return closed_form_R(s)
    return f"r3_pretrain_R_{level}_s{s}"


def pre_T(level: str, s: int) -> str:
    return cnn_T(s) if level == "cnn" else f"r3_pretrain_T_linear_s{s}"


def row_name(cell: tuple[str, str], what: str, s: int) -> str:
    """``r3_<R>_<T>_<what>_s<seed>``; the full × CNN cell's sequential rows are round 2's ``r2_sequential_s<seed>``."""
    if cell == ("full", "cnn") and what == "sequential":
        return f"r2_sequential_s{s}"
    return f"r3_{cell[0]}_{cell[1]}_{what}_s{s}"


def pretrain_rows(design: Design) -> list[Row]:
    """Stage pretrain: R_s and T_s of every level; the full R and CNN T as round 2 recorded them."""
    retrained = [s for s in design.seeds if s not in design.restored]
    out = [row for s in retrained for row in (round2.pretrain_R_row(MU, s), round2.pretrain_T_row(MU, s))]
    for level in ("rank16", "small"):
        out += [Row(f"r3_pretrain_R_{level}_s{s}", "mnist",
                    ("--strategy", "pretrain_reconstruction", "--recon", R_LEVELS[level], "--clip", "separate", *COMMON),
                    seed=s, steps=design.steps["pretrain_R"], eval_every=250 if design is FULL else None)
                for s in design.seeds]
    out += [Row(pre_T("linear", s), "mnist", ("--strategy", "pretrain_task", "--task-net", "linear", "--clip", "separate",
                                              *COMMON), seed=s,
                steps=design.steps["pretrain_T"], init_reconstruction=full_R(s)) for s in design.seeds]
    return out


def grid_rows(design: Design) -> list[Row]:
    """Stage lr_linear: sequential training of the linear T_0 on the full R_0, for each (lr, warm-up)."""
    return [Row(f"r3_grid_linear_lr{number(lr)}_w{warmup}", "mnist",
                ("--strategy", "sequential", "--task-net", "linear", "--lr", number(lr), "--warmup", str(warmup),
                 "--clip", "separate", *COMMON), seed=0, steps=design.steps["grid"],
                init_reconstruction=full_R(0), init_task=pre_T("linear", 0))
            for lr, warmup in design.lr_grid]


def finetune_row(cell: tuple[str, str], strategy: str, s: int, choices: dict[str, Any], design: Design,
                 C: float | None = None) -> Row:
    """One fine-tuning row of ``cell``: the same steps, clipping and per-network learning rates in every strategy."""
    r, t = cell
    lr_T, warmup = (LR_T_CNN, 0) if t == "cnn" else (choices["lr_linear"]["lr"], choices["lr_linear"]["warmup"])
    what = strategy if C is None else f"joint_C{number(C)}"
    return Row(row_name(cell, what, s), "mnist",
               ("--strategy", strategy, *(("--C", number(C)) if C is not None else ()), "--recon", R_LEVELS[r],
                "--task-net", t, "--lr-R", number(LR_R), "--lr-T", number(lr_T), "--warmup", str(warmup),
                "--clip", "separate", *COMMON),
               seed=s, steps=design.steps["finetune"], init_reconstruction=pre_R(r, s, choices),
               init_task=pre_T(t, s))


def rows(choices: dict[str, Any], design: Design = FULL) -> tuple[list[Row], list[str]]:
    """The rows that the choices made so far determine, in the order they run, and what the others wait for."""
    out, pending = pretrain_rows(design), []
    if "lr_linear" not in choices:
        out += grid_rows(design)
        pending.append("the linear T's learning rate (stage lr_linear)")
    if "rrr" not in choices:
        pending.append("the rank-16 check against its closed form (stage pretrain)")
    cells = [c for c in design.cells if (c[1] == "cnn" or "lr_linear" in choices) and (c[0] != "rank16" or "rrr" in choices)]
    for cell in cells:  # seed 0 of every strategy first: the choice of the best C needs the grid
        out += [finetune_row(cell, "joint", 0, choices, design, C) for C in design.c_grid]
        out += [finetune_row(cell, "sequential", s, choices, design) for s in design.seeds
                if not (cell == ("full", "cnn") and design is FULL)]  # round 2's sequential rows are this cell's
        if cell not in design.no_end_to_end:
            out.append(finetune_row(cell, "end_to_end", 0, choices, design))
    for cell in cells:
        best = choices.get("best_C", {}).get("_".join(cell))
        if best is None:
            pending.append(f"the best C of {cell[0]} × {cell[1]} (stage best_C)")
            continue
        out += [finetune_row(cell, "joint", s, choices, design, best["C"]) for s in design.seeds[1:]]
    if design.extra_end_to_end in cells:  # last: the first rows the protocol cuts when the budget runs short
        out += [finetune_row(design.extra_end_to_end, "end_to_end", s, choices, design) for s in design.seeds[1:]]
    return out, [p for p in pending if p]


def evaluation_plan(name: str) -> dict[str, list[int]]:
    """Pre-trained R: validation draw 0 (its L2).  Pre-trained T: the test draws (and the true images).
    Grid rows: validation draw 0.  Fine-tuning rows: the 3 validation and the 5 test draws."""
    if name.startswith(("r3_pretrain_R_", "r2_pretrain_R_", "r3_grid_")):
        return {"val": [0]}
    if name.startswith(("r3_pretrain_T_", "r2_pretrain_T_")):
        return {"test": list(range(evaluation.TEST_DRAWS))}
    return {"val": list(range(evaluation.VAL_DRAWS)), "test": list(range(evaluation.TEST_DRAWS))}


# ----------------------------------------------------------------------------- the stages


def restore_round2(runs: Path, design: Design, weights: Path | None = None) -> list[Path]:
    """Seed 0's full R and CNN T from ``weights/`` (round 2's published files, checked against the manifest)
    into the run folders that round 3's rows start from; return the files written."""
    entry = pretrained.manifest(weights)["mnist_pretrain_T"]
    directory = Path(weights or pretrained.weights_dir())
    written = []
    for s in design.restored:
        for part, row in (("R", full_R(s)), ("T", cnn_T(s))):
            source, target = directory / entry["files"][part]["path"], runs / row / f"{part}.pt"
            if sha256_file(source) != entry["files"][part]["sha256"]:
                raise ValueError(f"{source} does not match its SHA-256 in the manifest: restore weights/ first")
            if not target.is_file():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)
                written.append(target)
    return written


RESTORED_FILE = "restored_evaluation.json"


def evaluate_restored(runs: Path, results: Path, design: Design = FULL) -> dict[str, Any]:
    """Validation draw 0 of each restored full R_s, as :func:`evaluation_plan` asks of every pre-trained R (round
    2's record of it has no validation draws): its L2 loss, with the sitting's start and commit, in
    ``results/restored_evaluation.json``; return that file's content.  Evaluated ones are kept."""
    path = results / RESTORED_FILE
    done = json.loads(path.read_text()) if path.is_file() else {}
    for s in design.restored:
        name = full_R(s)
        if name in done:
            continue
        start, tick = datetime.now(UTC).isoformat(timespec="seconds"), time.perf_counter()
        model, M = experiments.build_model("mnist", "lgd", mu=MU)
        training.load_weights(model.R, runs / name / "R.pt")
        l2 = val_l2(model, M)
        done[name] = {"val": [{"l2": l2}], "seconds": round(time.perf_counter() - tick, 2), "start_utc": start,
                      "head": experiments.git_commit(), "protocol_blob": git_blob(PROTOCOL_FILE)}
        results.mkdir(parents=True, exist_ok=True)
        write_json(path, done)
    return done


def pretrained_val_l2(results: Path, level: str, s: int, choices: dict[str, Any]) -> float | None:
    """R_s's L2 loss on validation draw 0: from its round-3 record, or for a restored R from
    :func:`evaluate_restored`'s file; None if not evaluated."""
    name = pre_R(level, s, choices)
    record = load_record(results, name)
    if record is not None and record.get("evaluation", {}).get("val"):
        return float(record["evaluation"]["val"][0]["l2"])
    path = results / RESTORED_FILE
    restored = json.loads(path.read_text()).get(name) if path.is_file() else None
    return None if restored is None else float(restored["val"][0]["l2"])


def val_l2(model: nets.TaskAdapted, M: physics.DataModel, n: int | None = None) -> float:
    """The L2 loss of ``model``'s R on validation draw 0 (its first ``n`` images; all by default)."""
    images, labels = data.load_mnist("train")
    val = data.mnist_validation_split(labels)[1]
    batches = experiments.fixed_batches(images[val][:n], labels[val][:n], M, experiments.EVAL_BATCH["mnist"],
                                        evaluation.draw_seed("val", 0), "cpu")
    return training.evaluate(model.eval(), batches)["l2"]


def closed_form(s: int, fast: bool = False) -> tuple[nets.LowRankLinear, float]:
    """The rank-16 map that minimises the L2 loss on the training images (noise draw of seed ``s``,
    :func:`tarlib.nets.reduced_rank_regression`), and its L2 loss on validation draw 0."""
    _, M = experiments.build_model("mnist", "rank16", mu=MU)
    R = nets.LowRankLinear(M, rank=16)
    images, labels = data.load_mnist("train")
    x_train = images[data.mnist_validation_split(labels)[0]][: 2000 if fast else None]
    features = R.features(M(x_train, generator=torch.Generator().manual_seed(s)))
    R.set_affine(*nets.reduced_rank_regression(features, x_train.flatten(1), rank=16))
    return R, val_l2(nets.TaskAdapted(R, nets.LinearClassifier()), M, 500 if fast else None)


def rank16_check(runs: Path, results: Path, fast: bool = False, seeds: tuple[int, ...] = FULL.seeds) -> dict | None:
    """Each rank-16 R_s's validation L2 against the closed-form optimum; one more than 1 % above it is
    replaced by the closed form (written to ``runs/r3_closed_form_rank16_s<s>/R.pt``).  None until every
    R_s is evaluated."""
    records = {s: load_record(results, f"r3_pretrain_R_rank16_s{s}") for s in seeds}
    if None in records.values():
        return None
    check = {}
    for s, record in records.items():
        trained, tick = record["evaluation"]["val"][0]["l2"], time.perf_counter()
        R, optimum = closed_form(s, fast)
        replaced = trained > (1 + RRR_TOLERANCE) * optimum
        if replaced:
            (runs / closed_form_R(s)).mkdir(parents=True, exist_ok=True)
            training.save_weights(R, runs / closed_form_R(s) / "R.pt")
        check[str(s)] = {"trained_l2": trained, "closed_form_l2": optimum, "ratio": trained / optimum,
                         "replaced": bool(replaced), "seconds": round(time.perf_counter() - tick, 2)}
    return check


def decide(choices: dict[str, Any], runs: Path, results: Path, design: Design = FULL) -> dict[str, Any]:
    """Make every choice of the protocol whose validation evidence is complete; return the new choices."""
    choices = dict(choices)
    if "rrr" not in choices and (check := rank16_check(runs, results, design is FAST, design.seeds)) is not None:
        choices["rrr"] = check
    if "lr_linear" not in choices:
        accuracy = {k: round2.val_accuracy(results, f"r3_grid_linear_lr{number(k[0])}_w{k[1]}", 1)
                    for k in design.lr_grid}
        if None not in accuracy.values():
            choices["lr_linear"] = round2.choose_lr(accuracy, design.lr_grid)
    best = dict(choices.get("best_C", {}))
    for cell in design.cells:
        if "_".join(cell) in best or (cell[1] == "linear" and "lr_linear" not in choices):
            continue
        if cell[0] == "rank16" and "rrr" not in choices:
            continue
        accuracy = {C: round2.val_accuracy(results, row_name(cell, f"joint_C{number(C)}", 0), evaluation.VAL_DRAWS)
                    for C in design.c_grid}
        if None not in accuracy.values():
            best["_".join(cell)] = round2.choose_best_C(accuracy)
    if best:
        choices["best_C"] = best
    return choices


def run(runs: Path, results: Path = RESULTS, fast: bool = False, extra: tuple[str, ...] = (),
        executor: Executor | None = None) -> dict[str, Any]:
    """Run the protocol's stages as far as they go (resumable) with ``executor`` (default: the local one,
    a row at a time; :mod:`tarlib.study.executor`); return the choices made."""
    design = FAST if fast else FULL
    restore_round2(runs, design)
    evaluate_restored(runs, results, design)

    def evaluate(row: Row, choices: dict[str, Any]) -> None:
        evaluation.evaluate_row(row.name, runs, results, evaluation_plan(row.name))

    return runner.run_stages(lambda choices: rows(choices, design)[0],
                             lambda choices: decide(choices, runs, results, design), evaluate, runs, results, fast, extra,
                             executor)


# ----------------------------------------------------------------------------- time


def step_kind(row: Row) -> str:
    """What a row's step costs depend on: ``<strategy>/<recon>/<task net>`` (the task net only where T trains or runs)."""
    args = dict(zip(row.args[::2], row.args[1::2]))
    strategy = {"end_to_end": "joint"}.get(args["--strategy"], args["--strategy"])
    if strategy == "pretrain_task":
        return f"pretrain_task/-/{args.get('--task-net', 'cnn')}"
    recon = args.get("--recon", "lgd")
    return f"{strategy}/{recon}/{'-' if strategy == 'pretrain_reconstruction' else args.get('--task-net', 'cnn')}"


def measure_step_times(steps: int = 50, warmup: int = 5) -> dict[str, Any]:
    """Seconds per training step of every kind of row (:func:`step_kind`), timed over ``steps`` steps on
    training images after ``warmup`` untimed ones, and seconds per evaluated draw (10,000 training images).
    Uses no validation or test data, so it may run before the protocol is committed."""
    start = time.perf_counter()
    images, labels = data.load_mnist("train")
    tick = time.perf_counter()  # what every row pays before its first step: imports, MNIST, the operator
    subprocess.run([sys.executable, "-c", "from tarlib import data, experiments; data.load_mnist('train'); "
                    "data.load_mnist('test'); experiments.build_model('mnist', 'lgd')"], check=True)
    out: dict[str, Any] = {"steps": steps, "threads": torch.get_num_threads(), "train": {}, "draw": {},
                           "startup_s": time.perf_counter() - tick}
    kinds = sorted({step_kind(r) for r in every_row()})
    for kind in kinds:
        strategy, recon, task_net = kind.split("/")
        model, M = experiments.build_model("mnist", "lgd" if recon == "-" else recon, mu=MU,
                                           task_net="cnn" if task_net == "-" else task_net)
        loader = data.TaskLoader(images, labels, M, batch_size=64, seed=0)
        out["train"][kind] = training.seconds_per_step(model, loader, strategy, steps, warmup)[1]
        print(f"[round 3] {kind}: {out['train'][kind]:.3f} s per step", flush=True)
        if strategy in ("joint", "sequential"):  # one evaluated draw of T ∘ R on 10,000 images
            tick = time.perf_counter()
            training.evaluate(model.eval(), experiments.fixed_batches(images[:10_000], labels[:10_000], M, 500, 0, "cpu"))
            out["draw"][f"{recon}/{task_net}"] = time.perf_counter() - tick
    out["wall_time_s"] = round(time.perf_counter() - start, 2)
    return out


def every_row(design: Design = FULL) -> list[Row]:
    """Every row the round can run, whatever its choices turn out to be (for timing and estimates only)."""
    choices = {"rrr": {}, "lr_linear": {"lr": 1e-3, "warmup": 0},
               "best_C": {"_".join(c): {"C": 0.01} for c in design.cells}}
    return grid_rows(design) + rows(choices, design)[0]


def estimate(row: Row, times: dict[str, Any]) -> float:
    """Estimated seconds of a row: its start, its steps at the measured step time, its checks on the
    2,000-image check set while training, and its evaluated draws of 10,000 images."""
    kind = step_kind(row)
    draws = sum(len(v) for v in evaluation_plan(row.name).values())
    strategy, recon, task_net = kind.split("/")
    per_draw = times["draw"].get(f"{recon if recon != '-' else 'lgd'}/{task_net if task_net != '-' else 'cnn'}", 0.0)
    steps = row.steps or 0
    checks = steps // (row.eval_every or max(1, steps // 5)) if steps else 0
    return times.get("startup_s", 0.0) + steps * times["train"][kind] + (draws + 0.2 * checks) * per_draw


def listing(runs: Path, results: Path = RESULTS, fast: bool = False, extra: tuple[str, ...] = ()) -> tuple[list[str], list[str]]:
    """``row: command`` of every row the choices so far determine, with its estimated seconds
    (``results/round3/step_times.json``), a total against the budget, and what the others wait for."""
    design = FAST if fast else FULL
    found, pending = rows(load_choices(results), design)
    times_file = results / "step_times.json"
    times = json.loads(times_file.read_text()) if times_file.is_file() else None
    lines = [f"{r.name}: {r.command(runs, fast, extra)}"
             + (f"   [≈ {estimate(r, times):.0f} s]" if times and not fast else "") for r in found]
    if times and not fast:
        every = every_row(FULL)
        total = sum(estimate(r, times) for r in every)
        lines.append(f"estimate for all {len(every)} rows of the round: {total / 3600:.2f} h "
                     f"({100 * total / BUDGET_S:.0f} % of the {BUDGET_S / 3600:.0f}-hour budget)")
    return lines, pending
