"""Forward-operator benchmark: tarlib's sparse RayTransform against ODL's (issue 3).

Times A and Aᵀ per batch (median over repeats) for

- ``tarlib CSR``      :class:`tarlib.physics.RayTransform` (sparse matrix in torch),
- ``ODL astra_cpu``   ODL's RayTransform(impl='astra_cpu') via ``OperatorModule``,
- ``ODL skimage``     ODL's RayTransform(impl='skimage') via ``OperatorModule``,

on the geometries of the paper: G1 (MNIST, 28×28, 5 angles × 25 lines, batch 64)
and G2 (brain, 128×128, 30 angles × 183 lines, batch 8), plus the time to build
the G2 matrix.  Prints a Markdown table and the speed-ups; runs in well under a
minute.  ``make bench`` runs it as ``python benchmarks/operators.py``.

The helpers :func:`median_time` and :func:`markdown_table` are meant to be
imported by other benchmarks (e.g. ``benchmarks/training.py``).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import odl.applications.tomo as tomo  # noqa: E402
from odl.contrib.torch import OperatorModule  # noqa: E402

from tarlib import physics  # noqa: E402

GEOMETRIES = {  # name: (space and geometry, batch size)
    "G1": (physics.mnist_geometry, 64),
    "G2": (physics.brain_geometry, 8),
}
IMPLEMENTATIONS = ("tarlib CSR", "ODL astra_cpu", "ODL skimage")


def median_time(fn: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    """Median wall-clock seconds of ``fn()`` over ``repeats`` calls, after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def operators(name: str, space, geometry) -> tuple[Callable, Callable]:
    """(forward, adjoint) callables on batched float32 tensors for one implementation."""
    if name == "tarlib CSR":
        A = physics.RayTransform(space, geometry)
        return A, A.adjoint
    impl = {"ODL astra_cpu": "astra_cpu", "ODL skimage": "skimage"}[name]
    R = tomo.RayTransform(space, geometry, impl=impl)
    return OperatorModule(R), OperatorModule(R.adjoint)


def benchmark_operators(repeats: int = 50, odl_repeats: int = 7) -> list[dict]:
    """One row per (geometry, implementation): median forward and adjoint seconds per batch."""
    rows = []
    for geometry_name, (make, batch) in GEOMETRIES.items():
        space, geometry = make()
        g = torch.Generator().manual_seed(0)
        x = torch.rand(batch, 1, *space.shape, generator=g)
        y = torch.rand(batch, 1, *geometry.partition.shape, generator=g)
        for name in IMPLEMENTATIONS:
            forward, adjoint = operators(name, space, geometry)
            n = repeats if name == "tarlib CSR" else odl_repeats
            with torch.no_grad():
                rows.append({
                    "geometry": geometry_name,
                    "batch": batch,
                    "implementation": name,
                    "forward_s": median_time(lambda f=forward, v=x: f(v), n),
                    "adjoint_s": median_time(lambda f=adjoint, v=y: f(v), n),
                })
    return rows


def build_time(repeats: int = 5) -> float:
    """Median seconds to build the G2 (brain) matrix, A and Aᵀ."""
    space, geometry = physics.brain_geometry()
    return median_time(lambda: physics.RayTransform(space, geometry), repeats, warmup=1)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table from a header and rows of cell strings."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def report(rows: list[dict], build_s: float) -> str:
    """Markdown report: timing table, speed-ups of tarlib CSR and the G2 build time."""
    def ms(seconds: float) -> str:
        return f"{1e3 * seconds:.3f}" if seconds < 0.01 else f"{1e3 * seconds:.1f}"

    table = markdown_table(
        ["geometry", "batch", "implementation", "forward ms", "adjoint ms", "forward + adjoint ms"],
        [[r["geometry"], str(r["batch"]), r["implementation"], ms(r["forward_s"]), ms(r["adjoint_s"]),
          ms(r["forward_s"] + r["adjoint_s"])] for r in rows],
    )
    total = {(r["geometry"], r["implementation"]): r["forward_s"] + r["adjoint_s"] for r in rows}
    speedups = markdown_table(
        ["geometry", "vs ODL astra_cpu", "vs ODL skimage", "target vs astra_cpu"],
        [[geometry,
          *(f"{total[(geometry, other)] / total[(geometry, 'tarlib CSR')]:.0f}×" for other in IMPLEMENTATIONS[1:]),
          {"G1": "≥ 100×", "G2": "≥ 20×"}[geometry]] for geometry in GEOMETRIES],
    )
    return (f"{table}\n\nSpeed-up of tarlib CSR (forward + adjoint):\n\n{speedups}\n\n"
            f"Building the G2 matrix (A and Aᵀ): {build_s:.3f} s (median)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50, help="timed calls for tarlib (ODL: 7)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print(f"# Operator benchmark\n\n{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__} with {torch.get_num_threads()} threads, "
          f"load average {os.getloadavg()[0]:.1f}, float32 inputs, median per batch\n")
    if os.getloadavg()[0] > (os.cpu_count() or 1) - 0.5 and torch.get_num_threads() > 1:
        print("Warning: the machine is busy, so multi-threaded torch timings jump by whole scheduler "
              "time slices (several ms); rerun with --threads 1 for stable numbers.\n")
    rows = benchmark_operators(args.repeats)
    print(report(rows, build_time()))


if __name__ == "__main__":
    main()
