"""Request traces in Vidur's CSV format.

A trace has one row per request with columns ``num_prefill_tokens`` and
``num_decode_tokens`` and, optionally, ``arrived_at`` (seconds).  The traces shipped with the
Vidur project (Azure LLM inference trace 2023, arXiv summarisation) use this format.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fluidopt.errors import InputError

REQUIRED_COLUMNS = ("num_prefill_tokens", "num_decode_tokens")


@dataclass(frozen=True)
class Trace:
    """Per-request token counts and optional arrival times read from a CSV file.

    Attributes
    ----------
    name : str
        File stem of the trace.
    prefill_tokens, decode_tokens : numpy.ndarray
        Integer arrays, one entry per request, both >= 1.
    arrival_times_s : numpy.ndarray or None
        Non-decreasing arrival times shifted to start at 0, or None when the file has none.
    cached_tokens : numpy.ndarray or None
        Per request, prompt tokens already in the engine's prefix cache when it arrives (a
        replayed run's hits; the ``vllm-v1`` policy skips their prefill), or None for none.

    """

    name: str
    prefill_tokens: np.ndarray
    decode_tokens: np.ndarray
    arrival_times_s: np.ndarray | None
    cached_tokens: np.ndarray | None = None

    @property
    def num_requests(self) -> int:
        """Number of requests in the trace."""
        return int(self.prefill_tokens.size)

    @property
    def mean_rate_per_s(self) -> float | None:
        """Mean arrival rate over the trace's span, or None without arrival times."""
        if self.arrival_times_s is None or self.num_requests < 2:
            return None
        span = float(self.arrival_times_s[-1] - self.arrival_times_s[0])
        if span <= 0:
            return None
        return (self.num_requests - 1) / span


def read_trace(path: str | os.PathLike[str]) -> Trace:
    """Read a Vidur-format trace CSV.

    Raises
    ------
    InputError
        When the file cannot be read, a required column is missing, a value is not a
        positive whole number, or arrival times decrease; the message names the line and column.

    """
    path = Path(path)
    try:
        stream = path.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise InputError("path", str(path), f"cannot be read ({exc.strerror})") from None
    with stream:
        reader = csv.DictReader(stream)
        columns = reader.fieldnames or []
        for column in REQUIRED_COLUMNS:
            if column not in columns:
                raise InputError(f"{path.name}: columns", columns, f"must include {column!r}")
        has_arrivals = "arrived_at" in columns
        prefill: list[int] = []
        decode: list[int] = []
        arrivals: list[float] = []
        for line_number, row in enumerate(reader, start=2):
            prefill.append(_positive_int(row, "num_prefill_tokens", path, line_number))
            decode.append(_positive_int(row, "num_decode_tokens", path, line_number))
            if has_arrivals:
                arrivals.append(_arrival(row, path, line_number))
    if not prefill:
        raise InputError(f"{path.name}: rows", 0, "a trace must contain at least one request")
    arrival_array = None
    if has_arrivals:
        arrival_array = np.asarray(arrivals, dtype=float)
        steps = np.diff(arrival_array)
        if np.any(steps < 0):
            bad = int(np.argmax(steps < 0)) + 3
            raise InputError(
                f"{path.name}:{bad}: arrived_at", arrival_array[bad - 2], "arrival times must not decrease"
            )
        arrival_array = arrival_array - arrival_array[0]
    return Trace(
        name=path.stem,
        prefill_tokens=np.asarray(prefill, dtype=np.int64),
        decode_tokens=np.asarray(decode, dtype=np.int64),
        arrival_times_s=arrival_array,
    )


def _positive_int(row: dict[str, str | None], column: str, path: Path, line: int) -> int:
    raw = row.get(column)
    field = f"{path.name}:{line}: {column}"
    try:
        number = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InputError(field, raw, "must be a whole number") from None
    if not np.isfinite(number) or number != int(number):
        raise InputError(field, raw, "must be a finite whole number")
    if number < 1:
        raise InputError(field, raw, "must be >= 1")
    return int(number)


def _arrival(row: dict[str, str | None], path: Path, line: int) -> float:
    raw = row.get("arrived_at")
    field = f"{path.name}:{line}: arrived_at"
    try:
        number = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InputError(field, raw, "must be a number of seconds") from None
    if not np.isfinite(number) or number < 0:
        raise InputError(field, raw, "must be a finite number of seconds >= 0")
    return number
