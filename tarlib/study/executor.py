"""Executors: how the rows of a stage run, one at a time here or side by side on a Ray cluster.

- ``local`` (the default): one row at a time in this process, as ``python -m tarlib.experiments``.
- ``ray``: each row of a stage is a Ray task with ``--cpus-per-row`` CPUs and ``--gpus-per-row``
  GPUs, on a local Ray instance or on a running cluster (``--address HOST:PORT``).  Ray is an
  optional extra (``pip install "tarlib[cluster]"``), imported only here and only when used.

Either way the driver (``python -m tarlib.study``) waits for a stage's rows and then makes
the stage's choices itself, on validation data (:func:`tarlib.study.runner.run_stages`).
What keeps the rows safe on a real cluster:

- each row pins torch's threads (``--cpus-per-row``: 1 under Ray, 2 locally) and records them,
  with its host, in its JSON;
- each run folder has one writer (:mod:`tarlib.runlock`), the runs folder one driver
  (``driver-lock.json``); a second one gets one clear line;
- every worker runs the driver's code (version, git commit and a digest of the source) and can
  write the runs folder, which must be shared by all nodes: checked on every node before the
  first row and again by every row;
- a row whose worker dies is retried (:data:`MAX_RETRIES`) and resumes from its checkpoint;
- Ctrl-C cancels the running rows and keeps every checkpoint; each row logs to ``<run>/log.txt``.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import logging
import os
import secrets
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

import tarlib
from tarlib import experiments, runlock

EXECUTORS = ("local", "ray")
RAY_REQUIREMENT = "ray==2.60.0"  # the cluster extra of pyproject.toml
CONNECT_TIMEOUT_S = 30.0  # how long --address may take to answer
PROBE_TIMEOUT_S = 120.0  # how long the nodes may take to answer the check before the first row
CANCEL_WAIT_S = 30.0  # how long Ctrl-C waits for cancelled rows to stop
MAX_RETRIES = 3  # retries of a row whose worker or node died
OBJECT_STORE_BYTES = 128 * 2**20  # a local Ray instance's object store: rows pass only file names
DRIVER_LOCK = "driver-lock.json"  # in the runs folder
LOG_FILE = "log.txt"  # in each run folder


class ExecutorError(Exception):
    """Bad input, or a worker refused: one line for the person running the driver (exit status 2)."""


class RowFailed(RuntimeError):
    """A row's run failed; the message names its log and quotes the log's last line."""


@dataclass(frozen=True)
class Job:
    """One row to run: its name and its ``python -m tarlib.experiments`` arguments (with ``--out``)."""

    name: str
    argv: tuple[str, ...]

    @property
    def out(self) -> Path:
        """The run folder (``--out``), relative to the driver's working folder if the command's is."""
        return Path(self.argv[self.argv.index("--out") + 1])

    @property
    def command(self) -> str:
        return " ".join(["python -m tarlib.experiments", *self.argv])


@dataclass(frozen=True)
class Settings:
    """The executor options of the command line; :meth:`check` refuses inconsistent ones."""

    executor: str | None = None  # local (default), or ray (the default with an address)
    address: str | None = None  # HOST:PORT of a running Ray cluster's head
    cpus_per_row: int | None = None  # torch threads and Ray CPUs of a row (default 1 under Ray, 2 locally)
    gpus_per_row: float = 0.0
    workers: int | None = None  # rows side by side on a local Ray instance (default: as its CPUs allow)

    @property
    def kind(self) -> str:
        return self.executor or ("ray" if self.address else "local")

    @property
    def threads(self) -> int:
        return self.cpus_per_row or (1 if self.kind == "ray" else 2)

    def check(self) -> Settings:
        kind, problems = self.kind, []
        if kind not in EXECUTORS:
            problems.append(f"unknown executor {kind!r}: choose one of {', '.join(EXECUTORS)}")
        elif kind == "local":
            given = [o for o, v in (("--address", self.address), ("--gpus-per-row", self.gpus_per_row),
                                    ("--workers", self.workers)) if v]
            if given:
                problems.append(f"{' and '.join(given)} need(s) --executor ray (the local executor runs one row "
                                "at a time in this process; use --device cuda for a GPU)")
        if self.cpus_per_row is not None and self.cpus_per_row < 1:
            problems.append(f"--cpus-per-row must be ≥ 1, got {self.cpus_per_row}")
        if self.gpus_per_row < 0:
            problems.append(f"--gpus-per-row must be ≥ 0, got {self.gpus_per_row}")
        if self.workers is not None and (self.workers < 1 or self.address):
            problems.append("--workers (≥ 1) sets the rows side by side on a local Ray instance; a cluster's "
                            "nodes decide with --address")
        if problems:
            raise ExecutorError(problems[0])
        return self

    def device(self, device: str | None) -> str | None:
        """The ``--device`` of every row: under Ray, ``cuda`` exactly when rows get GPUs."""
        if self.kind != "ray":
            return device
        want = "cuda" if self.gpus_per_row > 0 else "cpu"
        if device is not None and device.split(":")[0] != want:
            raise ExecutorError(f"--device {device} under Ray needs {'no ' if want == 'cpu' else ''}--gpus-per-row "
                                "(Ray assigns each row its GPUs)")
        return want


# ----------------------------------------------------------------------------- one row, in this process


class _Tee(io.TextIOBase):
    def __init__(self, *streams: Any):
        self.streams = streams

    def write(self, text: str) -> int:
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()


def exit_status(argv: list[str] | tuple[str, ...]) -> int:
    """``python -m tarlib.experiments ARGV`` in this process; its exit status (argparse's included)."""
    try:
        return experiments.main(list(argv))
    except SystemExit as err:  # argparse rejected the arguments, or the run folder is locked
        return 0 if err.code is None else err.code if isinstance(err.code, int) else 1


def _last_line(path: Path) -> str:
    lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else "(empty log)"


def execute(job: Job, threads: int | None = None, console: bool = True) -> dict[str, Any]:
    """Run ``job`` here with torch pinned to ``threads`` (None: as it is), logging to ``<run>/log.txt``
    (and to the console); return its host, pid and seconds, or raise :class:`RowFailed`."""
    job.out.mkdir(parents=True, exist_ok=True)
    log_path, start, previous = job.out / LOG_FILE, time.perf_counter(), torch.get_num_threads()
    host, pid = socket.gethostname(), os.getpid()
    with open(log_path, "a", buffering=1) as log:
        log.write(f"=== {datetime.now(UTC).isoformat(timespec='seconds')} host {host}, pid {pid}, "
                  f"{threads or previous} torch threads: {job.command}\n")
        out, err = (_Tee(sys.stdout, log), _Tee(sys.stderr, log)) if console else (log, log)
        if threads is not None:
            torch.set_num_threads(threads)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                status = exit_status(job.argv)
        finally:
            torch.set_num_threads(previous)
    if status != 0:
        raise RowFailed(f"{job.name} failed (exit status {status}): {_last_line(log_path)} (log: {log_path})")
    return {"host": host, "pid": pid, "seconds": time.perf_counter() - start}


class LocalExecutor:
    """Rows one at a time in this process (``width`` 1: the runner hands it one row per stage step)."""

    width: int | None = 1

    def __init__(self, threads: int | None = None):
        self.threads = threads

    def run(self, jobs: list[Job]) -> None:
        for job in jobs:
            print(f"[reproduce] {job.name}: {job.command}", flush=True)
            execute(job, self.threads)

    def close(self) -> None:
        pass


# ----------------------------------------------------------------------------- the workers of a cluster


@functools.lru_cache(maxsize=1)
def code_identity() -> dict[str, str | None]:
    """This process's tarlib: version, git commit and a SHA-256 of its Python source (uncommitted edits count)."""
    digest = hashlib.sha256()
    root = Path(tarlib.__file__).parent
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return {"version": tarlib.__version__, "commit": experiments.git_commit(), "source": digest.hexdigest()}


def worker_problem(folder: Path, cwd: str, identity: dict[str, Any], token: str | None = None) -> str | None:
    """Why this process cannot run the driver's rows into ``folder``, or None: the driver's working
    folder ``cwd`` is missing here, the code differs from ``identity``, ``folder`` is not writable,
    or (with ``token``) it is not the driver's folder (``.probe-<token>`` is missing: not shared)."""
    host = socket.gethostname()
    if not Path(cwd).is_dir():
        return (f"the driver's working folder {cwd} does not exist on host {host}: run the driver from a folder "
                "that every node has (a shared file system)")
    mine = code_identity()
    if mine["source"] != identity["source"] or (mine["commit"] and identity["commit"]
                                               and mine["commit"] != identity["commit"]):
        return (f"the worker on host {host} runs tarlib {mine['version']} at commit {mine['commit']} (source "
                f"{str(mine['source'])[:12]}), the driver tarlib {identity['version']} at commit {identity['commit']} "
                f"(source {str(identity['source'])[:12]}): install the driver's commit on every node")
    folder = Path(cwd) / folder
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-probe-{host}-{os.getpid()}"
        probe.write_text(host)
        probe.unlink()
    except OSError as err:
        return (f"the worker on host {host} cannot write the runs folder {folder} ({err.strerror or err}): it must "
                "be on a file system that every node shares and may write")
    marker = folder / f".probe-{token}"
    if token is not None and (not marker.is_file() or marker.read_text() != token):
        return (f"the runs folder {folder} on host {host} is not the driver's (the driver's probe file is missing "
                "there): put it on a file system that every node shares")
    return None


def _probe(folder: str, cwd: str, identity: dict[str, Any], token: str) -> tuple[str, str | None]:
    """The check of one node before the first row (a Ray task): its host and its problem, if any."""
    return socket.gethostname(), worker_problem(Path(folder), cwd, identity, token)


def _ray_row(job: Job, cwd: str, threads: int, identity: dict[str, Any]) -> dict[str, Any]:
    """One row as a Ray task: check this worker, wait for the row's lock (a lost worker's goes stale), run."""
    problem = worker_problem(job.out, cwd, identity)
    if problem is not None:
        raise ExecutorError(problem)
    os.chdir(cwd)  # the row's command names files relative to the driver's folder, as it would there
    try:
        runlock.RunLock(job.out / runlock.LOCK_FILE).acquire(wait=runlock.STALE_S + 2 * runlock.HEARTBEAT_S).release()
    except runlock.LockHeld as err:
        raise RowFailed(f"{job.name}: {err}") from None
    return execute(job, threads, console=False)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ExecutorError(f"--executor ray needs Ray: pip install \"tarlib[cluster]\" (or pip install "
                            f"{RAY_REQUIREMENT}), then rerun") from None
    return ray


def _wait_for_address(address: str, timeout: float) -> None:
    """Return once something accepts TCP connections at ``address``; ExecutorError after ``timeout`` s."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ExecutorError(f"--address must be HOST:PORT (the port of `ray start --head --port PORT`), got {address!r}")
    deadline, attempts = time.monotonic() + timeout, 0
    while True:
        attempts += 1
        try:
            with socket.create_connection((host, int(port)), timeout=max(0.1, min(5.0, deadline - time.monotonic()))):
                return
        except OSError as err:
            last = err.strerror or type(err).__name__
        if time.monotonic() >= deadline:
            raise ExecutorError(f"no Ray cluster answered at {address} within {timeout:.0f} s (tried a TCP connection "
                                f"{attempts} times, last: {last}); start one there with `ray start --head --port "
                                f"{port}`, or check --address")
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))


class RayExecutor:
    """The rows of a stage side by side as Ray tasks (``width`` None: every row that can run now)."""

    width: int | None = None

    def __init__(self, settings: Settings, runs: Path):
        self.ray = ray = _import_ray()
        self.settings, self.threads, self.owned = settings, settings.threads, False
        self.cwd, self.identity = os.getcwd(), code_identity()
        quiet = {"log_to_driver": False, "logging_level": logging.WARNING}
        try:
            if settings.address:
                _wait_for_address(settings.address, CONNECT_TIMEOUT_S)
                ray.init(address=settings.address, **quiet)
                self.owned = True
            elif not ray.is_initialized():  # else: the Ray this process already joined (a notebook, the tests)
                cpus = settings.workers * settings.threads if settings.workers else None
                ray.init(address="local", num_cpus=cpus, include_dashboard=False,
                         object_store_memory=OBJECT_STORE_BYTES, **quiet)
                self.owned = True
        except ExecutorError:
            raise
        except Exception as err:
            hint = ("; a cluster with token authentication wants RAY_AUTH_MODE=token and its token (~/.ray/auth_token "
                    "or RAY_AUTH_TOKEN) here" if "auth" in str(err).lower() else "")
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise ExecutorError(f"could not join the Ray cluster at {settings.address or 'a local instance'}: "
                                f"{first}{hint}") from None
        try:
            nodes = self._nodes()
            self._probe(nodes, runs)
        except BaseException:
            self.close()
            raise
        self.task = ray.remote(_ray_row).options(num_cpus=settings.threads, num_gpus=settings.gpus_per_row,
                                                 max_retries=MAX_RETRIES, retry_exceptions=False)
        where = settings.address or "a local Ray instance"
        print(f"[ray] {where}: {len(nodes)} node(s) can take rows of {settings.threads} CPU(s)"
              f"{f' and {settings.gpus_per_row:g} GPU(s)' if settings.gpus_per_row else ''}", flush=True)

    def _nodes(self) -> list[dict[str, Any]]:
        """The live nodes that offer a row's resources; ExecutorError if none does."""
        cpus, gpus = self.settings.threads, self.settings.gpus_per_row
        nodes = [n for n in self.ray.nodes() if n.get("Alive")]
        fits = [n for n in nodes if n["Resources"].get("CPU", 0) >= cpus and n["Resources"].get("GPU", 0) >= gpus]
        if not fits:
            offers = ", ".join(f"{n['NodeManagerAddress']}: {n['Resources'].get('CPU', 0):g} CPUs, "
                               f"{n['Resources'].get('GPU', 0):g} GPUs" for n in nodes)
            raise ExecutorError(f"no node of the Ray cluster offers {cpus} CPU(s) and {gpus:g} GPU(s) per row (the "
                                f"nodes: {offers or 'none'}); lower --cpus-per-row / --gpus-per-row, or add such nodes")
        return fits

    def _probe(self, nodes: list[dict[str, Any]], runs: Path) -> None:
        """Check, on every node that can take rows, the code and that the runs folder is shared and writable."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        token = secrets.token_hex(8)
        marker = Path(self.cwd) / runs / f".probe-{token}"
        marker.write_text(token)
        try:
            probe = self.ray.remote(_probe)
            refs = [probe.options(num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
                    .remote(str(runs), self.cwd, self.identity, token) for n in nodes]
            ready, late = self.ray.wait(refs, num_returns=len(refs), timeout=PROBE_TIMEOUT_S)
            if late:
                raise ExecutorError(f"{len(late)} of {len(refs)} Ray nodes did not answer within {PROBE_TIMEOUT_S:.0f} s")
            problems = [problem for _, problem in self.ray.get(ready) if problem]
            if problems:
                raise ExecutorError(problems[0])
        finally:
            marker.unlink(missing_ok=True)

    def run(self, jobs: list[Job]) -> None:
        """Run ``jobs`` side by side; return when all have ended (RowFailed names those that failed)."""
        ray = self.ray
        names = {self.task.remote(job, self.cwd, self.threads, self.identity): job for job in jobs}
        print(f"[ray] {len(jobs)} row(s) side by side: {', '.join(j.name for j in jobs)}", flush=True)
        pending, failed = list(names), []
        try:
            while pending:
                ready, pending = ray.wait(pending, num_returns=1, timeout=1.0)
                for ref in ready:
                    job = names[ref]
                    try:
                        done = ray.get(ref)
                    except ray.exceptions.RayTaskError as err:
                        cause = getattr(err, "cause", None) or err
                        if isinstance(cause, ExecutorError):
                            self._cancel(pending)
                            raise ExecutorError(str(cause)) from None
                        failed.append(str(cause) if isinstance(cause, RowFailed) else f"{job.name}: {cause}")
                    except ray.exceptions.RayError as err:  # its worker or node died more than MAX_RETRIES times
                        failed.append(f"{job.name}: {type(err).__name__}: {(str(err).splitlines() or [''])[0]}")
                    else:
                        print(f"[ray] {job.name}: done on {done['host']} in {done['seconds']:.1f} s "
                              f"(log: {job.out / LOG_FILE})", flush=True)
        except KeyboardInterrupt:
            self._cancel(pending)
            raise
        if failed:
            raise RowFailed("; ".join(failed))

    def _cancel(self, refs: list[Any]) -> None:
        """Cancel running rows (they stop between two steps and release their locks); checkpoints stay."""
        for ref in refs:
            with contextlib.suppress(Exception):
                self.ray.cancel(ref, force=False)
        if refs:
            print(f"[ray] cancelled {len(refs)} row(s); their checkpoints stay in their run folders", flush=True)
            with contextlib.suppress(Exception):
                self.ray.wait(refs, num_returns=len(refs), timeout=CANCEL_WAIT_S)

    def close(self) -> None:
        if self.owned:
            self.ray.shutdown()
            self.owned = False


Executor = LocalExecutor | RayExecutor


@contextlib.contextmanager
def open_executor(settings: Settings, runs: Path) -> Iterator[Executor]:
    """The executor of ``settings`` for the runs folder ``runs``, holding the folder's driver lock."""
    settings.check()
    try:
        runs.mkdir(parents=True, exist_ok=True)
        lock = runlock.RunLock(runs / DRIVER_LOCK).acquire()
    except runlock.LockHeld as err:
        raise ExecutorError(f"another driver is running on the runs folder {runs} ({str(err).split(' held by ')[-1]}); "
                            "wait for it to end, or stop it") from None
    except OSError as err:
        raise ExecutorError(f"the driver cannot write the runs folder {runs}: {err.strerror or err}") from None
    try:
        executor = LocalExecutor(settings.threads) if settings.kind == "local" else RayExecutor(settings, runs)
        try:
            yield executor
        finally:
            executor.close()
    finally:
        lock.release()


# ----------------------------------------------------------------------------- --status


def status_lines(rows: list[tuple[str, bool]], runs: Path) -> list[str]:
    """``--status``: the driver, then each row (name, recorded?) as done, running or pending, then the counts."""
    now, counts, lines = time.time(), {"done": 0, "running": 0, "pending": 0}, []
    driver = runlock.read(runs / DRIVER_LOCK)
    live = driver is not None and not runlock.stale(driver, now)
    lines.append(f"driver: {'running (' + runlock.describe(driver, now) + ')' if live else 'none running'}")
    for name, done in rows:
        folder = runs / name
        holder = runlock.read(folder / runlock.LOCK_FILE)
        if done:
            state, note = "done", ""
        elif holder is not None and not runlock.stale(holder, now):
            state, note = "running", f"{runlock.describe(holder, now)}; log {folder / LOG_FILE}"
        else:
            state = "pending"
            note = ("trained, not yet recorded" if (folder / "metrics.json").is_file()
                    else "resumes from its checkpoint" if (folder / "checkpoint.pt").is_file() else "")
            if holder is not None:
                note = f"{note}; a stale lock ({runlock.describe(holder, now)}) will be broken".lstrip("; ")
        counts[state] += 1
        lines.append(f"{state:8} {name}" + (f"  ({note})" if note else ""))
    lines.append(", ".join(f"{n} {state}" for state, n in counts.items()))
    return lines
