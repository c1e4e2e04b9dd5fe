"""Importers: a user's benchmark output turned into a plain run (:mod:`fluidopt.answers.run_format`).

Two sources carry per-request timing:

- **``vllm bench serve --save-result --save-detailed``** JSON.  vLLM's benchmark client
  (``vllm/benchmarks/serve.py``) saves per request, in send order, ``input_lens``,
  ``output_lens``, ``ttfts`` and ``itls`` (seconds, measured from the moment the client sent the
  request), ``errors``, and in recent versions ``start_times`` (the send times).  E2E is
  ``ttft + sum(itls)``.  Arrivals come from ``start_times`` when saved.  Without them they are
  reconstructed only where the client's own rule fixes them: ``request_rate = inf`` sends every
  request at once, or, with ``max_concurrency`` ``C``, each request when the earliest of the
  ``C`` running ones completes (the client's semaphore, first come first served).  A finite rate
  without ``start_times`` is refused: those gaps were drawn at random and are not in the file.
  Failed requests are left out (their count is reported).
- **Any CSV**, with a column mapping ``plain=theirs[:unit]`` for each plain column (units ``s``,
  ``ms``, ``us``); absolute arrival times (epoch seconds) are shifted to start at 0.

The engine's arguments are not in either file: the user gives an ``engine.toml``, checked as the
plain format checks it.
"""

from __future__ import annotations

import csv
import heapq
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from fluidopt.answers.run_format import MEASURED_COLUMNS, REQUIRED_COLUMNS, check_engine, write_plain_folder
from fluidopt.errors import InputError, require
from fluidopt.tomlio import read_toml

FORMATS = ("vllm-bench", "csv")
UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6}
BENCH_FIELDS = ("input_lens", "output_lens", "ttfts", "itls")


def read_vllm_bench(path: str | Path) -> tuple[dict[str, np.ndarray], str]:
    """The plain columns of a ``vllm bench serve`` detailed result (module docstring), and a note on what was done."""
    source = Path(path)
    require(source.is_file(), "vllm bench result", str(source), "is not a file")
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(str(source), "unreadable", f"is not valid JSON ({type(exc).__name__})") from None
    require(isinstance(data, dict), str(source), type(data).__name__, "must be a JSON object")
    missing = [key for key in BENCH_FIELDS if not isinstance(data.get(key), list)]
    require(
        not missing,
        f"{source}: per-request field",
        ",".join(missing),
        "is missing: rerun vllm bench serve with --save-result --save-detailed",
    )
    n = len(data["ttfts"])
    for key in (*BENCH_FIELDS, "errors", "start_times"):
        if key in data and data[key] is not None:
            require(len(data[key]) == n, f"{source}: {key}", len(data[key]), f"must list {n} requests like ttfts")
    errors = data.get("errors") or [""] * n
    ok = np.array([not err for err in errors], dtype=bool)
    require(bool(ok.any()), f"{source}: errors", int((~ok).sum()), "every request failed")
    ttft = _numbers(data["ttfts"], f"{source}: ttfts", ok)
    itl_sums = np.array([_itl_sum(v, f"{source}: itls[{i}]") if ok[i] else 0.0 for i, v in enumerate(data["itls"])])
    e2e = ttft + itl_sums
    arrival, how = _bench_arrivals(data, e2e, ok, source)
    columns = {
        "arrival_s": arrival,
        "input_tokens": _numbers(data["input_lens"], f"{source}: input_lens", ok),
        "output_tokens": _numbers(data["output_lens"], f"{source}: output_lens", ok),
        "ttft_s": ttft,
        "e2e_s": e2e,
    }
    columns = {key: values[ok] for key, values in columns.items()}
    for key in ("input_tokens", "output_tokens"):
        bad = np.flatnonzero(columns[key] < 1)
        require(not bad.size, f"{source}: {key} of request {int(bad[0]) if bad.size else 0}", 0, "must be >= 1")
    note = f"{int(ok.sum())} requests ({how})"
    if not ok.all():
        note += f"; {int((~ok).sum())} failed requests left out"
    return columns, note


def _numbers(values: list[Any], where: str, ok: np.ndarray) -> np.ndarray:
    out = np.zeros(len(values))
    for i, value in enumerate(values):
        if not ok[i]:
            continue
        good = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
        require(good, f"{where}[{i}]", value, "must be a finite number >= 0")
        out[i] = float(value)
    return out


def _itl_sum(values: Any, where: str) -> float:
    require(isinstance(values, list), where, type(values).__name__, "must be a list of seconds")
    return float(_numbers(values, where, np.ones(len(values), dtype=bool)).sum())


def _bench_arrivals(data: dict[str, Any], e2e: np.ndarray, ok: np.ndarray, source: Path) -> tuple[np.ndarray, str]:
    """Send times from ``start_times``, or the client's rule where it fixes them (module docstring)."""
    starts = data.get("start_times")
    if starts is not None:
        times = _numbers(starts, f"{source}: start_times", ok)
        return times - times[ok].min(), "arrivals from start_times"
    rate = data.get("request_rate", "inf")
    unbounded = rate in ("inf", None) or (isinstance(rate, (int, float)) and math.isinf(rate))
    require(
        unbounded,
        f"{source}: request_rate",
        rate,
        "drew its arrival gaps at random and the file has no start_times to say when each request was sent: "
        "rerun with a vLLM whose bench saves start_times, or with --request-rate inf (optionally --max-concurrency)",
    )
    limit = data.get("max_concurrency")
    if limit is None:
        return np.zeros(e2e.size), "all sent at once: request_rate inf"
    require(isinstance(limit, int) and limit >= 1, f"{source}: max_concurrency", limit, "must be a whole number >= 1")
    arrival = np.zeros(e2e.size)
    running: list[float] = []  # completion times of the requests holding the client's slots
    for i in range(e2e.size):
        if len(running) >= limit:
            arrival[i] = heapq.heappop(running)
        heapq.heappush(running, arrival[i] + (e2e[i] if ok[i] else 0.0))
    return arrival, f"sent as slots free: max_concurrency {limit}"


def parse_column_map(text: str) -> dict[str, tuple[str, float]]:
    """``plain=theirs[:unit],...`` as ``{plain: (their column, seconds per unit)}`` (errors name the entry)."""
    mapping: dict[str, tuple[str, float]] = {}
    for entry in (part.strip() for part in text.split(",") if part.strip()):
        plain, sep, theirs = entry.partition("=")
        require(bool(sep) and bool(theirs), "--columns", entry, "must read plain=theirs or plain=theirs:unit")
        known = (*REQUIRED_COLUMNS, *MEASURED_COLUMNS)
        require(plain in known, "--columns", plain, f"must be one of {', '.join(known)}")
        name, _, unit = theirs.partition(":")
        unit = unit or "s"
        require(unit in UNITS, "--columns", entry, f"unit must be one of {', '.join(UNITS)}")
        require(plain.endswith("_s") or unit == "s", "--columns", entry, "token counts take no unit")
        mapping[plain] = (name, UNITS[unit])
    missing = [c for c in REQUIRED_COLUMNS if c not in mapping]
    require(not missing, "--columns", text, f"must map {', '.join(missing)}")
    return mapping


def read_mapped_csv(path: str | Path, mapping: dict[str, tuple[str, float]]) -> dict[str, np.ndarray]:
    """The plain columns of any CSV under ``mapping`` (:func:`parse_column_map`); arrivals shifted to start at 0."""
    source = Path(path)
    require(source.is_file(), "CSV", str(source), "is not a file")
    with source.open(newline="", encoding="utf-8") as stream:
        reader = csv.DictReader(stream)
        header = tuple(reader.fieldnames or ())
        rows = list(reader)
    absent = [theirs for theirs, _ in mapping.values() if theirs not in header]
    require(not absent, f"{source}: columns", ",".join(header), f"lack {', '.join(absent)}")
    require(len(rows) > 0, str(source), 0, "has no requests")
    columns = {}
    for plain, (theirs, scale) in mapping.items():
        values = np.empty(len(rows))
        for line, row in enumerate(rows, start=2):
            try:
                values[line - 2] = float(row[theirs]) * scale
            except (TypeError, ValueError):
                raise InputError(f"{source.name} row {line} column {theirs}", row[theirs], "must be a number") from None
        columns[plain] = values
    columns["arrival_s"] = columns["arrival_s"] - columns["arrival_s"].min()
    return columns


def check_columns(values: dict[str, np.ndarray], where: str) -> None:
    """The plain format's rules on imported columns (errors name the source, the request and the column)."""
    for name, column in values.items():
        whole = name in ("input_tokens", "output_tokens")
        good = np.isfinite(column) & (column >= (1 if whole else 0))
        if whole:
            good &= column == np.round(column)
        bad = np.flatnonzero(~good)
        require(
            not bad.size,
            f"{where}: request {int(bad[0]) + 1 if bad.size else 0} {name}",
            float(column[bad[0]]) if bad.size else 0,
            "must be " + ("a whole number >= 1" if whole else "a finite number >= 0"),
        )
    if "ttft_s" in values and "e2e_s" in values:
        bad = np.flatnonzero(values["e2e_s"] < values["ttft_s"])
        require(not bad.size, f"{where}: request {int(bad[0]) + 1 if bad.size else 0}", "e2e_s", "must be >= ttft_s")


def import_run(
    source: str | Path,
    source_format: str,
    engine_toml: str | Path,
    out: str | Path,
    columns: str | None = None,
) -> tuple[Path, str]:
    """Convert ``source`` (a ``vllm-bench`` JSON, or a ``csv`` read with ``columns``) and ``engine_toml`` to ``out``.

    The written run is read back as :func:`~fluidopt.answers.replay.read_vllm_run` reads it (so
    every check of the plain format applies); on any error nothing stays at ``out``.
    """
    from fluidopt.answers.run_format import read_requests_csv

    require(source_format in FORMATS, "--format", source_format, f"must be one of {', '.join(FORMATS)}")
    engine = check_engine(read_toml(engine_toml), engine_toml)
    if source_format == "vllm-bench":
        require(columns is None, "--columns", columns, "applies to --format csv")
        values, note = read_vllm_bench(source)
    else:
        require(columns is not None, "--columns", None, "is needed with --format csv (plain=theirs[:unit],...)")
        values = read_mapped_csv(source, parse_column_map(str(columns)))
        note = f"{len(values['arrival_s'])} requests"
    order = np.argsort(values["arrival_s"], kind="stable")  # the plain format lists requests by arrival
    values = {key: column[order] for key, column in values.items()}
    check_columns(values, str(source))
    root = Path(out)
    existed = root.exists()
    written = write_plain_folder(root, values, engine)
    try:
        read_requests_csv(written)
    except InputError:
        for name in ("requests.csv", "engine.toml"):
            (written / name).unlink(missing_ok=True)
        if not existed:
            written.rmdir()
        raise
    return written, note
