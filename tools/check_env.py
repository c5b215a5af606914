"""Check that this Python can run the course; print one clear line and exit 1 if not.

Used by ``binder/start`` and by the Colab cell (through ``tools/colab_setup.py``) before
anything imports tarlib, so that a wrong environment gives one line instead of a traceback.
Standard library only: it must run where torch is missing.
"""

from __future__ import annotations

import importlib.util
import sys

MIN_PYTHON = (3, 11)  # pyproject.toml: requires-python = ">=3.11"


def problem() -> str | None:
    """What keeps this interpreter from running the course, or None."""
    if sys.version_info[:2] < MIN_PYTHON:
        have = ".".join(map(str, sys.version_info[:3]))
        need = ".".join(map(str, MIN_PYTHON))
        return f"tarlib needs Python {need} or newer, but this is Python {have}: choose a newer Python (or kernel)."
    if importlib.util.find_spec("torch") is None:
        return (
            "tarlib needs PyTorch, which is not installed here: `pip install torch` "
            "(the CPU build is enough), then restart the kernel."
        )
    return None


def main() -> int:
    message = problem()
    if message:
        print(message, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
