"""Executor benchmark: what running a round's rows on Ray costs and gains on this machine.

- Ray start-up: ``ray.init`` of a local instance, then ``ray.shutdown``;
- per-row overhead of the Ray executor against the local one (target ≤ 2 s): round 0, the
  smoke round of :mod:`tarlib.study.round0` (four fast rows in two stages), through the local
  executor and through Ray with one worker, both with one torch thread per row; the overhead
  is (Ray − local) / rows, Ray's start-up left out;
- round 0 on 2 workers against 1 (wall time, Ray's start-up left out).

Every round runs in a fresh temporary folder through ``python -m tarlib.study`` (in this
process).  It prints a Markdown table and asserts nothing: on a machine shared with other
work the numbers move.  Run: ``python benchmarks/cluster.py`` (needs the cluster extra,
``pip install "tarlib[cluster]"``).
"""

from __future__ import annotations

import contextlib
import io
import os
import platform
import sys
import tempfile
import time
from importlib.util import find_spec
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from tarlib.study import cli, executor, round0  # noqa: E402

OVERHEAD_TARGET_S = 2.0  # per row, Ray against local
CPUS = 2


def timed_round(folder: Path, *options: str) -> float:
    """Seconds of round 0 into ``folder`` with the executor ``options`` (its output is kept quiet)."""
    argv = ["--round", "0", "--runs", str(folder / "runs"), "--results", str(folder), "--no-progress", *options]
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()) as out:
        status = cli.main(argv, prog="python -m tarlib.study")
    if status != 0:
        raise RuntimeError(f"round 0 failed with status {status}:\n{out.getvalue()}")
    return time.perf_counter() - start


def start_ray(workers: int) -> float:
    """Start a local Ray instance for ``workers`` rows of one CPU; its start-up seconds."""
    import ray

    start = time.perf_counter()
    ray.init(address="local", num_cpus=workers, include_dashboard=False, log_to_driver=False,
             object_store_memory=executor.OBJECT_STORE_BYTES)
    return time.perf_counter() - start


def main() -> None:
    if find_spec("ray") is None:
        print(f"# Executor benchmark\n\nskipped: Ray is not installed (pip install \"tarlib[cluster]\", {executor.RAY_REQUIREMENT})")
        return
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    rows = len(round0.rows({"lr": {"lr": round0.LRS[0]}})[0])
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="tarlib-bench-") as tmp:
        base = Path(tmp)
        local = timed_round(base / "local", "--cpus-per-row", "1")
        startup = start_ray(CPUS)
        stop = time.perf_counter()
        ray.shutdown()
        shutdown = time.perf_counter() - stop
        walls = {}
        for workers in (1, 2):
            start_ray(workers)
            try:
                walls[workers] = timed_round(base / f"ray{workers}", "--executor", "ray", "--cpus-per-row", "1")
            finally:
                ray.shutdown()
    overhead = (walls[1] - local) / rows
    print(f"# Executor benchmark\n\n{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"ray {ray.__version__}; round 0: {rows} rows in 2 stages, 1 torch thread per row; load average "
          f"{load:.1f} before, {os.getloadavg()[0]:.1f} after\n")
    print("| measurement | value |\n| --- | --- |")
    print(f"| Ray start-up, a local instance of {CPUS} CPUs (`ray.init`) | {startup:.1f} s (shutdown {shutdown:.1f} s) |")
    print(f"| round 0, local executor | {local:.1f} s |")
    print(f"| round 0, Ray, 1 worker | {walls[1]:.1f} s |")
    print(f"| per-row overhead of Ray against local (target ≤ {OVERHEAD_TARGET_S:g} s) | {overhead:+.1f} s "
          f"({'met' if overhead <= OVERHEAD_TARGET_S else 'missed'}) |")
    print(f"| round 0, Ray, 2 workers | {walls[2]:.1f} s ({walls[1] / walls[2]:.2f}× the speed of 1 worker) |")
    print("\nRound 0's rows take seconds, so each Ray worker's start (importing torch, loading MNIST) weighs as much "
          "as a row; rows of a real round take minutes to hours.  A load average above 0 means that other work "
          "shares the cores.")


if __name__ == "__main__":
    main()
