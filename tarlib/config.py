"""Run-wide switches: fast mode, seeding and the compute device.

``fast_mode()`` is the single place that decides whether the course runs at
smoke size (tests, CI, book builds) or at full size.  Everything that depends
on size asks :func:`pick`, so one environment variable, ``TARLIB_FAST``,
shrinks every notebook and experiment at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

FAST_ENV = "TARLIB_FAST"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}

T = TypeVar("T")


def fast_mode() -> bool:
    """Return True when ``TARLIB_FAST`` asks for smoke-size runs.

    Accepted values: ``1/true/yes/on`` and ``0/false/no/off`` (case-insensitive,
    unset means off).  Anything else raises, so a typo cannot silently start a
    multi-hour run.
    """
    value = os.environ.get(FAST_ENV, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(
        f"{FAST_ENV} must be one of {sorted(_TRUE | _FALSE - {''})} or unset, got {value!r}"
    )


def explain_fast_mode() -> str:
    """Three short lines for the top of every notebook: is fast mode on, and how to change it."""
    on = fast_mode()
    state = (
        f"Fast mode is ON ({FAST_ENV}=1): small data subsets and short training runs."
        if on
        else "Fast mode is OFF: full-size data and training, as in section 5 (hours on a CPU)."
    )
    other = "0" if on else "1"
    return (
        f"{state}\n"
        f"To change it: run `%env {FAST_ENV}={other}` in a cell, or set {FAST_ENV}={other} before\n"
        "starting Jupyter; then run the notebook again from the top."
    )


def pick(full: T, fast: T) -> T:
    """Return ``fast`` in fast mode and ``full`` otherwise."""
    return fast if fast_mode() else full


def default_device() -> torch.device:
    """CUDA when a GPU is visible, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def setup(seed: int = 0, device: str | torch.device | None = None) -> torch.device:
    """Seed ``random``, NumPy and torch (all devices) and return the device to use.

    ``device=None`` picks CUDA when available.  Call it at the top of every
    notebook and script so that a rerun reproduces the same numbers.
    """
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    dev = torch.device(device) if device is not None else default_device()
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {str(dev)!r} requested but torch sees no CUDA GPU")
    return dev


def versions() -> dict[str, str]:
    """Versions of Python and the packages the course depends on (for bug reports)."""
    import platform
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist in ("tarlib", "torch", "odl", "numpy", "scipy", "matplotlib", "nilearn", "ipywidgets"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    out["cuda"] = torch.version.cuda or "none (CPU build)"
    return out


def progress(iterable=None, **kwargs):
    """A ``tqdm.auto`` progress bar that honours ``TQDM_DISABLE=1`` everywhere.

    tqdm's notebook bars ignore that variable; test runs and book builds set it,
    so that no frozen widget bars end up in the book.
    """
    from tqdm.auto import tqdm

    off = os.environ.get("TQDM_DISABLE", "").strip().lower() in _TRUE
    kwargs["disable"] = kwargs.get("disable", False) or off
    return tqdm(iterable, **kwargs)


def atomic_write(target: str | Path, chunks: Iterable[bytes] | bytes, sha256: str | None = None) -> None:
    """Write ``target`` through a temporary file in the same folder, then rename it.

    If ``sha256`` is given, the bytes must have that checksum.  On any failure
    (or an interruption) the temporary file is removed, so ``target`` is either
    complete or untouched.  Used for checkpoints, results and downloads.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(chunks, bytes):
        chunks = [chunks]
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if sha256 is not None and digest.hexdigest() != sha256:
            raise ValueError(f"sha256 {digest.hexdigest()} differs from the expected {sha256}")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(target: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON with :func:`atomic_write`."""
    atomic_write(target, (json.dumps(obj, indent=2) + "\n").encode())


def sha256_file(path: str | Path) -> str:
    """SHA-256 of a file, in hex, read in blocks of 1 MiB."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def git_blob(path: str | Path) -> str:
    """The git blob id of a file's content (what ``git hash-object FILE`` prints)."""
    content = Path(path).read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()
