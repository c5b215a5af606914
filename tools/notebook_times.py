"""How long each notebook takes: CI's check of the fast-mode budgets, and the syllabus's record.

    python tools/notebook_times.py check [BUILD_JSON] [--committed book/notebook_times.json]
    python tools/notebook_times.py write [--fast BUILD_JSON] [--full]          (`make times`)

``check`` (CI, ``.ci/run``) reads the times of a book build (``_build/notebook_times.json``, written by
book/_ext/tarlib_book.py, which is where CI executes every notebook) and fails (exit status 1)

- when a notebook takes over 2 minutes or all of them over 10 minutes (the course's fast-mode rule), or
- when a notebook took more than 50 % longer than the time committed in ``book/notebook_times.json``
  (or has no committed time): a notebook that became slower must be made fast again, or its new time
  committed with ``make times``.  Differences under ``SLACK_S`` seconds never fail: a kernel's start
  alone varies by a few seconds, which is half of the fastest notebooks' time.

``write`` records times in ``book/notebook_times.json``, with the date, commit and machine of each
measurement: the fast-mode times of a book build (``--fast``), and, with ``--full``, the time of one
run of every notebook at full size (``TARLIB_FAST=0``, executed here with nbclient, one after the other).
The syllabus page of the book (book/syllabus.md) is generated from that file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "_build" / "notebook_times.json"
COMMITTED = ROOT / "book" / "notebook_times.json"
TOTAL_BUDGET_S = 600
EACH_BUDGET_S = 120
SLOWER_FACTOR = 1.5
SLACK_S = 5.0


def report(times: dict[str, float]) -> str:
    """A table of ``times`` (notebook -> seconds), their sum and the verdict against the budgets."""
    width = max(map(len, times), default=10)
    lines = [f"{name:<{width}}  {s:7.1f} s{'   OVER 2 min' if s > EACH_BUDGET_S else ''}" for name, s in times.items()]
    total = sum(times.values())
    verdict = "within" if total <= TOTAL_BUDGET_S else "OVER"
    label = f"sum of {len(times)} notebook" + ("" if len(times) == 1 else "s")
    lines.append(f"{label:<{width}}  {total:7.1f} s   ({verdict} the {TOTAL_BUDGET_S} s budget)")
    return "\n".join(lines)


def over_budget(times: dict[str, float]) -> list[str]:
    """One message per budget that ``times`` (notebook -> seconds) exceeds: each notebook over
    :data:`EACH_BUDGET_S`, then their sum if it is over :data:`TOTAL_BUDGET_S`; empty within both."""
    messages = [f"{name} took {s:.1f} s, over the budget of {EACH_BUDGET_S} s per notebook"
                for name, s in times.items() if s > EACH_BUDGET_S]
    total = sum(times.values())
    if total > TOTAL_BUDGET_S:
        messages.append(f"all {len(times)} notebooks took {total:.1f} s, over the budget of {TOTAL_BUDGET_S} s in all")
    return messages


def slower_than_committed(times: dict[str, float], committed: dict[str, float]) -> list[str]:
    """One message per notebook of ``times`` that took over :data:`SLOWER_FACTOR` times its committed
    fast-mode time (and over :data:`SLACK_S` seconds more), or has none; empty when every notebook is within."""
    messages = []
    for name, s in times.items():
        if name not in committed:
            messages.append(f"{name} has no committed fast-mode time in book/notebook_times.json: run `make times`")
        elif s > SLOWER_FACTOR * committed[name] and s - committed[name] > SLACK_S:
            messages.append(f"{name} took {s:.1f} s, {s / committed[name]:.2f} times its committed "
                            f"{committed[name]:.1f} s (at most {SLOWER_FACTOR:g} times): make it fast again, or "
                            "commit its new time with `make times`")
    return messages


def build_times(path: Path) -> dict[str, float]:
    """Notebook name (``00_getting_started``) -> seconds, from a book build's times file."""
    if not path.is_file():
        raise FileNotFoundError(f"no {path}: the book build executed no notebook (run `make book`)")
    data = json.loads(path.read_text())
    return {Path(name).name: entry["seconds"] for name, entry in data["notebooks"].items()}


def committed_times(path: Path = COMMITTED, mode: str = "fast") -> dict[str, float]:
    """Notebook name -> seconds of the ``mode`` ("fast" or "full") measurement in ``path``; empty without it."""
    if not path.is_file():
        return {}
    return dict(json.loads(path.read_text()).get(mode, {}).get("notebooks", {}))


def check(build: Path, committed: Path) -> int:
    """Print the build's times; 0 within the budgets and the committed times, 1 otherwise."""
    try:
        times = build_times(build)
    except FileNotFoundError as err:
        print(err, file=sys.stderr)
        return 1
    print(f"notebook run times in fast mode ({build}):")
    print(report(times))
    messages = over_budget(times) + slower_than_committed(times, committed_times(committed))
    for message in messages:
        print(f"notebook time check failed: {message}", file=sys.stderr)
    return 1 if messages else 0


def _stamp() -> dict[str, str]:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return {"date": datetime.now(UTC).strftime("%Y-%m-%d"), "commit": commit.stdout.strip() or "unknown",
            "machine": f"{os.cpu_count()} CPU cores ({platform.machine()}), no GPU used"}


def run_full(notebooks: list[Path]) -> dict[str, float]:
    """Seconds of one full-size run (``TARLIB_FAST=0``) of each notebook, executed in its folder."""
    import nbformat
    from nbclient import NotebookClient

    os.environ.update(TARLIB_FAST="0", TQDM_DISABLE="1")
    seconds = {}
    for path in notebooks:
        print(f"{path.stem}: running at full size ...", flush=True)
        start = time.perf_counter()
        NotebookClient(nbformat.read(path, as_version=4), timeout=None, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
        seconds[path.stem] = round(time.perf_counter() - start, 1)
        print(f"{path.stem}: {seconds[path.stem]:.1f} s", flush=True)
    return seconds


def write(build: Path | None, full: bool, out: Path = COMMITTED) -> dict:
    """Update ``out`` with the fast-mode times of ``build`` and (``full``) a full-size run of every notebook."""
    record = json.loads(out.read_text()) if out.is_file() else {}
    if build is not None:
        record["fast"] = {**_stamp(), "source": "a book build (`make book`, fast mode)",
                          "notebooks": build_times(build)}
    if full:
        notebooks = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
        record["full"] = {**_stamp(), "source": "one run of each notebook with TARLIB_FAST=0 (nbclient)",
                          "notebooks": run_full(notebooks)}
    out.write_text(json.dumps(record, indent=2) + "\n")
    return record


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="tools/notebook_times.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("check", help="CI: the budgets and the committed times")
    c.add_argument("build", nargs="?", type=Path, default=BUILD)
    c.add_argument("--committed", type=Path, default=COMMITTED)
    w = sub.add_parser("write", help="record times in book/notebook_times.json")
    w.add_argument("--fast", type=Path, help="a book build's times file (e.g. _build/notebook_times.json)")
    w.add_argument("--full", action="store_true", help="run every notebook once at full size (long)")
    args = parser.parse_args(argv)
    if args.command == "check":
        return check(args.build, args.committed)
    if args.fast is None and not args.full:
        parser.error("write: give --fast BUILD_JSON, --full or both")
    record = write(args.fast, args.full)
    for mode in ("fast", "full"):
        if mode in record:
            print(f"{mode} mode ({record[mode]['date']}, {record[mode]['commit']}):")
            print("\n".join(f"  {name:<45} {s:8.1f} s" for name, s in record[mode]["notebooks"].items()))
    print(f"wrote {COMMITTED.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
