"""Sweeps: one executor interface for serial runs, local processes and Dask.

A sweep maps a top-level function over tasks.  Every task has a content key (a hash of its
configuration, seed and :func:`code_fingerprint`); with a cache folder, each finished point is
written atomically as ``<key>.json`` and found again on the next run, so an interrupted sweep
resumes without recomputing and a half-written result is never read.  A corrupt entry is
recomputed with a warning naming the file.  Local worker processes end with their parent.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import warnings
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

from fluidopt.errors import InputError
from fluidopt.tomlio import SCHEMA_VERSION, write_text_atomic

_COMMAND_PROGRESS = False  # set by the command line: bars for every sweep of a long command


def show_command_progress(enabled: bool) -> None:
    """Let every sweep of this process draw its bar (the command line, on a terminal, without ``--quiet``)."""
    global _COMMAND_PROGRESS
    _COMMAND_PROGRESS = enabled


def progress_bar(iterable: Iterable[Any] | None = None, *, total: int | None = None, enabled: bool) -> Any:
    """A tqdm progress bar (a notebook widget where ipywidgets is installed, else text), or a silent one.

    Shown when asked (``enabled``) or when the command line asked for every sweep's bar
    (:func:`show_command_progress`); bars go to standard error and vanish when done.
    ``tqdm.auto`` warns at import when it runs in a notebook without ipywidgets and then falls
    back to the text bar, so it is imported only when a bar is shown, and that warning is dropped.
    """
    if _COMMAND_PROGRESS and not enabled:
        from tqdm import tqdm as text_bar

        return text_bar(iterable, total=total, desc="simulating", leave=False, file=sys.stderr)
    if not enabled:
        from tqdm import tqdm as text_bar

        return text_bar(iterable, total=total, disable=True)
    from tqdm import TqdmWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TqdmWarning)
        from tqdm.auto import tqdm as auto_bar
    return auto_bar(iterable, total=total, desc="sweep")


class Task(Protocol):
    """Anything with a stable content key."""

    def key(self) -> str:
        """A string that identifies the task's configuration and seed."""


def content_key(data: Any) -> str:
    """SHA-256 of the canonical JSON of ``data``."""
    text = json.dumps(data, sort_keys=True, default=_jsonable, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


FINGERPRINTED_LIBRARIES = ("numpy", "scipy", "numba", "cvxpy", "highspy", "sympy")


@cache
def code_fingerprint() -> str:
    """Hash of fluidopt's source files and the versions of the libraries results depend on.

    Part of every cached task's key, so that changed code or an upgraded library never reuses
    results computed by the old one.
    """
    digest = hashlib.sha256()
    root = Path(__file__).resolve().parents[1]
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    for name in FINGERPRINTED_LIBRARIES:
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            version = "absent"
        digest.update(f"{name}={version}".encode())
    return digest.hexdigest()[:16]


def _die_with_parent() -> None:
    """Worker initialiser: end this process when the parent dies, even by SIGKILL (Linux)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except OSError:  # pragma: no cover - no libc
        return
    if os.getppid() == 1:  # the parent is already gone
        os._exit(1)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return str(value)


class Executor(Protocol):
    """Maps a function over items, in order."""

    name: str

    def map(self, func: Callable[[Any], Any], items: Sequence[Any], progress: bool) -> list[Any]:
        """Results of ``func(item)`` for every item, in the items' order."""


@dataclass
class SerialExecutor:
    """Run in this process."""

    name: str = "serial"

    def map(self, func: Callable[[Any], Any], items: Sequence[Any], progress: bool = False) -> list[Any]:
        """Apply ``func`` to each item in turn."""
        return [func(item) for item in progress_bar(items, enabled=progress)]


@dataclass
class ProcessExecutor:
    """Run on local worker processes (default: all cores)."""

    workers: int | None = None
    name: str = "processes"

    def map(self, func: Callable[[Any], Any], items: Sequence[Any], progress: bool = False) -> list[Any]:
        """Apply ``func`` on a process pool, keeping the order."""
        if len(items) <= 1:
            return [func(item) for item in items]
        workers = min(self.workers or os.cpu_count() or 1, len(items))
        with ProcessPoolExecutor(max_workers=workers, initializer=_die_with_parent) as pool:
            return list(progress_bar(pool.map(func, items), total=len(items), enabled=progress))


SCHEDULER_TIMEOUT_S = 10.0  # how long to wait for a Dask scheduler before saying it cannot be reached


@dataclass
class DaskExecutor:
    """Run on a Dask distributed cluster: an existing scheduler address, or a client you pass."""

    address: str | None = None
    client: Any = None
    name: str = "dask"
    _owned: Any = field(default=None, repr=False)

    def map(self, func: Callable[[Any], Any], items: Sequence[Any], progress: bool = False) -> list[Any]:
        """Submit every item and gather the results in order."""
        from dask.distributed import Client, as_completed

        client = self.client
        if client is None:
            if self.address:
                try:
                    client = Client(self.address, timeout=SCHEDULER_TIMEOUT_S)
                except (OSError, TimeoutError) as error:
                    raise InputError(
                        "--scheduler",
                        self.address,
                        f"cannot be reached within {SCHEDULER_TIMEOUT_S:g} s ({type(error).__name__})",
                    ) from None
            else:
                client = Client(processes=False)
            self._owned = client
        try:
            futures = client.map(func, list(items), pure=False)
            with progress_bar(total=len(futures), enabled=progress) as bar:
                for _ in as_completed(futures):
                    bar.update()
            return client.gather(futures)
        finally:
            if self._owned is not None:
                self._owned.close()
                self._owned = None


def make_executor(kind: str = "processes", *, scheduler: str | None = None, workers: int | None = None) -> Executor:
    """``serial``, ``processes`` (default) or ``dask`` (with ``scheduler`` address)."""
    if scheduler:
        return DaskExecutor(address=scheduler)
    if kind == "serial":
        return SerialExecutor()
    if kind == "processes":
        return ProcessExecutor(workers)
    if kind == "dask":
        return DaskExecutor()
    raise InputError("executor", kind, "must be serial, processes or dask")


@dataclass(frozen=True)
class SweepResult:
    """Results in task order, and which keys were computed or read from the cache."""

    values: list[Any]
    computed: tuple[str, ...]
    cached: tuple[str, ...]


def run_sweep(
    func: Callable[[Any], Any],
    tasks: Iterable[Task],
    *,
    executor: Executor | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = False,
) -> SweepResult:
    """Map ``func`` over ``tasks`` with ``executor``, caching JSON-serialisable results per task key."""
    tasks = list(tasks)
    executor = executor or SerialExecutor()
    keys = [task.key() for task in tasks]
    values: dict[str, Any] = {}
    cache = Path(cache_dir) if cache_dir is not None else None
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        for key in keys:
            path = cache / f"{key}.json"
            if path.exists():
                try:
                    entry = json.loads(path.read_text(encoding="utf-8"))
                    if isinstance(entry, dict):
                        entry.pop("schema_version", None)
                    values[key] = entry
                except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                    warnings.warn(f"cache entry {path} is unreadable ({exc}); recomputing it", stacklevel=2)
    cached = tuple(k for k in dict.fromkeys(keys) if k in values)
    todo = [task for task, key in zip(tasks, keys) if key not in values]
    unique: dict[str, Task] = {}
    for task in todo:
        unique.setdefault(task.key(), task)
    results = executor.map(func, list(unique.values()), progress)
    for key, value in zip(unique, results):
        values[key] = value
        if cache is not None:
            entry = {"schema_version": SCHEMA_VERSION, **value} if isinstance(value, dict) else value
            write_text_atomic(cache / f"{key}.json", json.dumps(entry, default=_jsonable))
    return SweepResult([values[k] for k in keys], tuple(unique), cached)
