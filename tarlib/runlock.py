"""One writer per run folder: a lock file with its holder's host, pid, start and heartbeat.

``python -m tarlib.experiments`` holds ``<out>/lock.json`` while it runs, and the study's
driver holds ``<runs>/driver-lock.json`` (:mod:`tarlib.study.executor`), so that two
processes never write the same run, even on different machines of a cluster that share
the folder.  A second writer gets :class:`LockHeld`, which says who holds the lock.

The holder rewrites its heartbeat every :data:`HEARTBEAT_S` seconds.  A lock is broken
only when its holder is certainly gone: on the same host (and process namespace) its
process no longer exists; elsewhere its heartbeat is older than :data:`STALE_S` seconds
(by the clocks, or, while waiting with ``acquire(wait=...)``, by watching it not change
for that long, which does not trust another machine's clock).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tarlib.config import write_json

HEARTBEAT_S = 5.0  # seconds between two heartbeats of a holder
STALE_S = 60.0  # a heartbeat older than this (and no process to ask) marks a lock as abandoned
LOCK_FILE = "lock.json"  # the lock of a run folder


class LockHeld(RuntimeError):
    """Another process holds the lock (its message says who, since when, and its last heartbeat)."""


def _pid_namespace() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def _alive(pid: int) -> bool:
    """Whether process ``pid`` of this host runs (a zombie, killed but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def read(path: str | Path) -> dict[str, Any] | None:
    """The holder recorded in lock file ``path``, or None when there is none (or it is being rewritten)."""
    try:
        info = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and "heartbeat" in info else None


def local_holder(info: dict[str, Any]) -> bool:
    """Whether the holder ``info`` is a process of this host that this process can see."""
    return info.get("host") == socket.gethostname() and info.get("pidns") == _pid_namespace()


def stale(info: dict[str, Any], now: float | None = None) -> bool:
    """Whether the holder ``info`` is gone: its process has ended (this host), or its heartbeat is old (elsewhere)."""
    if local_holder(info):
        return not _alive(int(info["pid"]))
    return (time.time() if now is None else now) - float(info["heartbeat"]) > STALE_S


def describe(info: dict[str, Any], now: float | None = None) -> str:
    """``host h, pid p, since 2026-12-03T14:00:00+00:00, heartbeat 3 s ago``."""
    age = (time.time() if now is None else now) - float(info["heartbeat"])
    return f"host {info.get('host')}, pid {info.get('pid')}, since {info.get('start_utc')}, heartbeat {age:.0f} s ago"


class RunLock:
    """An exclusive lock file, kept alive by a heartbeat thread; a context manager.

    ``acquire(wait=0)`` raises :class:`LockHeld` at once if a live holder has the lock;
    with ``wait`` > 0 it waits that many seconds for the holder to finish or go stale.
    """

    def __init__(self, path: str | Path, heartbeat: float | None = None):
        self.path = Path(path)
        self.heartbeat = HEARTBEAT_S if heartbeat is None else heartbeat
        self.token = secrets.token_hex(8)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start = datetime.now(UTC).isoformat(timespec="seconds")

    def _content(self) -> bytes:
        now = time.time()
        return (json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "pidns": _pid_namespace(),
                            "start_utc": self._start, "heartbeat": now, "token": self.token,
                            "heartbeat_utc": datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds")}) + "\n").encode()

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as out:
            out.write(self._content())
        return True

    def _break(self) -> bool:
        """Replace an abandoned lock by ours; True if ours is the one that stayed."""
        write_json(self.path, json.loads(self._content()))
        time.sleep(0.05)  # another breaker that replaced it at the same moment wins or loses here
        return (read(self.path) or {}).get("token") == self.token

    def acquire(self, wait: float = 0.0) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + wait
        seen: tuple[float, float] | None = None  # (heartbeat seen, local time it was first seen)
        while True:
            if self._create():
                break
            info = read(self.path)
            if info is None:  # removed or being written right now: look again
                time.sleep(0.05)
                continue
            if seen is None or seen[0] != info["heartbeat"]:
                seen = (info["heartbeat"], time.monotonic())
            unchanged = time.monotonic() - seen[1] > STALE_S
            if (stale(info) or unchanged) and self._break():
                break
            if time.monotonic() >= deadline:
                raise LockHeld(f"{self.path} is held by {describe(info)}")
            time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat {self.path}", daemon=True)
        self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat):
            if (read(self.path) or {}).get("token") != self.token:
                return  # broken by another process (we were taken for gone): stop claiming it
            write_json(self.path, json.loads(self._content()))

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if (read(self.path) or {}).get("token") == self.token:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
