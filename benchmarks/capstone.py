"""The capstone's step times (notebook 12) and the estimate of its full run, on 2 CPU threads.

Times 20 training steps of each kind of the capstone's rows (pre-training of the rank-16 R and of the
classifier T, sequential and joint fine-tuning; batch 64, training images), one evaluated draw of 10,000
images and a row's start, as wall time at 2 torch threads and as CPU time at 1 thread (which other load
on the machine barely changes; :func:`tarlib.study.capstone.measure_step_times`), then estimates the full run (:func:`tarlib.study.capstone.full_estimate`) against
its 45-minute budget.  Writes ``results/capstone/bench.json``, which notebook 12 reads; the GPU entry says
"not measured" unless a GPU measured it.

Run: ``python benchmarks/capstone.py`` (part of ``make bench``), from the repository root.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from tarlib.study import capstone  # noqa: E402


def main() -> int:
    times = capstone.write_bench()
    for kind, seconds in times["train"].items():
        print(f"capstone {kind}: {times['train_wall_2'][kind]:.4f} s per step at 2 threads (wall), "
              f"{times['train_cpu_1'][kind]:.4f} CPU-s at 1 thread; the estimate uses {seconds:.4f} s")
    print(f"capstone: one draw of 10,000 images {times['draw_s']:.1f} s, a row's start {times['startup_s']:.1f} s; "
          f"full run ≈ {times['estimate_s'] / 60:.0f} min on {times['device']} (budget {times['budget_s'] / 60:.0f} min, "
          f"load average {times['load'][0]:.1f} to {times['load'][1]:.1f}); wrote {capstone.RESULTS / capstone.BENCH_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
