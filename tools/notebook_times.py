"""Print how long each notebook took in fast mode, their sum, and the CI budget; fail over budget.

    python tools/notebook_times.py [_build/notebook_times.json]

The JSON file is written by the book build (book/_ext/tarlib_book.py), which is where CI
executes every notebook.  The budget: all notebooks together within 10 minutes on two
CPU cores, each within 2 minutes (the course's fast-mode rule).  Over either budget, the
command names each notebook over 2 minutes with its time (and the sum, if that is over),
and exits with status 1, which fails CI (``.ci/run``).  Timings vary with the machine's
load; the budgets leave room for that.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOTAL_BUDGET_S = 600
EACH_BUDGET_S = 120


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


def main(argv: list[str]) -> int:
    """Print the report of the book build's times; 0 within both budgets, 1 over either or without the file."""
    path = Path(argv[0]) if argv else ROOT / "_build" / "notebook_times.json"
    if not path.is_file():
        print(f"no {path}: the book build executed no notebook", file=sys.stderr)
        return 1
    data = json.loads(path.read_text())
    times = {name: entry["seconds"] for name, entry in data["notebooks"].items()}
    print(f"notebook run times in fast mode ({data['source']}):")
    print(report(times))
    messages = over_budget(times)
    for message in messages:
        print(f"notebook time budget exceeded: {message}", file=sys.stderr)
    return 1 if messages else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
