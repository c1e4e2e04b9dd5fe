"""Replay a real vLLM serving run in the simulator and compare per metric.

A run folder (LLMServingSim's layout, ``runs/<GPU>/<model>/``) holds ``vllm/meta.json`` (engine
arguments, vLLM version, where logged the KV cache), ``vllm/requests.jsonl`` (per request the
prompt and output lengths, the wall-clock arrival, and the engine's queued / scheduled / first-
and last-token times), optionally ``vllm/timeseries.csv`` (running and waiting requests once a
second) and ``llmservingsim/summary.txt`` (that simulator's replay of the same run).

The replay feeds the run's own arrival gaps and lengths to the ``vllm-v1`` policy configured
with the run's engine arguments, on a profile (:mod:`fluidopt.timing.fit.engine_tables`), and compares
TTFT, TPOT and end-to-end latency (mean, p50, p90, p99), request and output-token throughput
with what vLLM measured, as the run defines them: TTFT = first token - queued, E2E = last token
- queued, TPOT = (last - first) / (outputs - 1).
"""

from __future__ import annotations

import csv
import heapq
import json
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from fluidopt.answers.prefix_hits import prompt_hits
from fluidopt.answers.run_format import (
    ENGINE_ARGUMENTS,
    KV_CACHE_KEYS,
    is_plain_run,
    read_engine,
    read_requests_csv,
)
from fluidopt.errors import InputError, require
from fluidopt.profile import GPUProfile
from fluidopt.status import HasStatus
from fluidopt.timing.fit.engine_tables import kv_cache_record

REQUEST_FIELDS = ("input_toks", "output_toks", "arrival_time", "queued_ts", "first_token_ts", "last_token_ts")
METRICS = ("ttft", "tpot", "e2e")
STATISTICS = ("mean", "p50", "p90", "p99")


@dataclass(frozen=True)
class VLLMRun:
    """One real vLLM run: engine settings, per-request lengths and observed times (seconds)."""

    folder: str
    model: str
    engine_version: str
    engine_kwargs: dict[str, Any]
    kv_cache: dict[str, Any]
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    arrival_s: np.ndarray  # from the first arrival, wall clock
    ttft_s: np.ndarray
    e2e_s: np.ndarray
    tpot_s: np.ndarray  # NaN for one-token outputs
    timeseries: dict[str, np.ndarray] | None = field(default=None, repr=False)
    llmservingsim: dict[str, dict[str, float]] | None = None
    cached_prompt_tokens: np.ndarray | None = field(default=None, repr=False)  # measured prefix-cache hits
    prefix_group: np.ndarray | None = field(default=None, repr=False)  # conversation of each request

    @property
    def num_requests(self) -> int:
        """Requests in the run."""
        return int(self.prompt_tokens.size)

    def subset(self, keep: np.ndarray) -> VLLMRun:
        """The run restricted to the requests where ``keep`` is true (times stay from the first arrival)."""
        index = np.flatnonzero(np.asarray(keep, dtype=bool))
        require(index.size > 0, f"{self.folder}: requests kept", 0, "must be at least one")
        return replace(
            self,
            prompt_tokens=self.prompt_tokens[index],
            output_tokens=self.output_tokens[index],
            arrival_s=self.arrival_s[index],
            ttft_s=self.ttft_s[index],
            e2e_s=self.e2e_s[index],
            tpot_s=self.tpot_s[index],
            cached_prompt_tokens=None if self.cached_prompt_tokens is None else self.cached_prompt_tokens[index],
            prefix_group=None if self.prefix_group is None else self.prefix_group[index],
            timeseries=None,
            llmservingsim=None,
        )

    @property
    def kv_capacity_tokens(self) -> int | None:
        """``num_gpu_blocks x block_size`` when the run logged them."""
        blocks, size = self.kv_cache.get("num_gpu_blocks"), self.kv_cache.get("block_size")
        return int(blocks) * int(size) if blocks and size else None


def _load_json(path: Path) -> Any:
    if not path.is_file():
        raise InputError("run folder", str(path.parent.parent), f"has no {path.parent.name}/{path.name}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(str(path), "unreadable", f"is not valid JSON ({type(exc).__name__})") from None


def _read_requests(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise InputError("run folder", str(path.parent.parent), "has no vllm/requests.jsonl")
    columns: dict[str, list[float]] = {key: [] for key in REQUEST_FIELDS}
    for line_number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise InputError(f"{path.name} line {line_number}", line[:40], "is not a JSON object") from None
        for key in REQUEST_FIELDS:
            if key not in row or row[key] is None:
                raise InputError(f"{path.name} line {line_number}", key, "is missing")
            value = row[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise InputError(f"{path.name} line {line_number} {key}", value, "must be a finite number")
            if value < 0:
                raise InputError(f"{path.name} line {line_number} {key}", value, "must be >= 0 (a time or a count)")
            columns[key].append(float(value))
    require(len(columns["input_toks"]) > 0, str(path), 0, "has no requests")
    out = {key: np.asarray(values) for key, values in columns.items()}
    for key in ("input_toks", "output_toks"):
        require(bool(np.all(out[key] >= 1)), f"{path.name}: {key}", float(out[key].min()), "must be >= 1")
    bad = np.flatnonzero((out["first_token_ts"] < out["queued_ts"]) | (out["last_token_ts"] < out["first_token_ts"]))
    if bad.size:
        raise InputError(f"{path.name} line {int(bad[0]) + 1}", "token times", "must satisfy queued <= first <= last")
    return out


def _read_timeseries(path: Path) -> dict[str, np.ndarray] | None:
    if not path.is_file():
        return None
    with path.open(newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    if not rows or not {"t", "running", "waiting"} <= set(rows[0]):
        return None
    return {key: np.array([float(r[key]) for r in rows]) for key in rows[0] if key}


def _read_llmservingsim_summary(path: Path) -> dict[str, dict[str, float]] | None:
    """``{metric: {statistic: seconds}}`` of LLMServingSim's ``summary.txt`` (its Sim column, ms)."""
    if not path.is_file():
        return None
    names = {"TTFT": "ttft", "TPOT": "tpot", "Latency": "e2e"}
    stats = {"Mean": "mean", "Median": "p50", "P90": "p90", "P99": "p99"}
    out: dict[str, dict[str, float]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[0] in names and parts[1] in stats:
            try:
                out.setdefault(names[parts[0]], {})[stats[parts[1]]] = float(parts[3]) / 1e3
            except ValueError:
                continue
    return out or None


def read_plain_run(folder: str | Path) -> VLLMRun:
    """A run in the plain format (:mod:`fluidopt.answers.run_format`); replay needs its measured columns."""
    root = Path(folder)
    engine = read_engine(root)
    columns = read_requests_csv(root)
    for key in ("ttft_s", "e2e_s"):
        require(key in columns, f"{root}/requests.csv: column", key, "is needed to compare a replay with the run")
    outputs = columns["output_tokens"].astype(np.int64)
    ttft, e2e = columns["ttft_s"], columns["e2e_s"]
    kwargs = {key: engine[key] for key in ("model", *ENGINE_ARGUMENTS) if key in engine}
    kv_cache = {key: engine[key] for key in KV_CACHE_KEYS if key in engine}
    return VLLMRun(
        str(root),
        str(engine.get("model", "")),
        str(engine.get("version", "unknown")),
        kwargs,
        kv_cache,
        columns["input_tokens"].astype(np.int64),
        outputs,
        columns["arrival_s"] - columns["arrival_s"][0],
        ttft,
        e2e,
        np.where(outputs > 1, (e2e - ttft) / np.maximum(outputs - 1, 1), np.nan),
        cached_prompt_tokens=columns["cached_prompt_tokens"].astype(np.int64)
        if "cached_prompt_tokens" in columns
        else None,
        prefix_group=columns.get("prefix_group"),
    )


def read_vllm_run(folder: str | Path) -> VLLMRun:
    """Read a run folder (module docstring) or a plain-format run; a missing file or field is an input error."""
    root = Path(folder)
    require(root.is_dir(), "run folder", str(root), "is not a folder")
    if is_plain_run(root):
        return read_plain_run(root)
    meta = _load_json(root / "vllm" / "meta.json")
    require(isinstance(meta, dict) and "engine_kwargs" in meta, f"{root}/vllm/meta.json", "engine_kwargs", "is missing")
    requests = _read_requests(root / "vllm" / "requests.jsonl")
    order = np.argsort(requests["arrival_time"], kind="stable")
    requests = {key: values[order] for key, values in requests.items()}
    outputs = requests["output_toks"]
    ttft = requests["first_token_ts"] - requests["queued_ts"]
    e2e = requests["last_token_ts"] - requests["queued_ts"]
    tpot = np.where(outputs > 1, (e2e - ttft) / np.maximum(outputs - 1, 1), np.nan)
    kwargs = dict(meta["engine_kwargs"])
    resolved = (meta.get("resolved_config") or {}).get("scheduler_config") or {}
    if kwargs.get("async_scheduling") is None and isinstance(resolved.get("async_scheduling"), bool):
        kwargs["async_scheduling"] = resolved["async_scheduling"]  # what the engine ran with
    return VLLMRun(
        str(root),
        str(meta.get("model", meta["engine_kwargs"].get("model", ""))),
        str(meta.get("vllm_version", "unknown")),
        kwargs,
        kv_cache_record(meta, f"{root}/vllm/meta.json"),
        requests["input_toks"].astype(np.int64),
        outputs.astype(np.int64),
        requests["arrival_time"] - requests["arrival_time"][0],
        ttft,
        e2e,
        tpot,
        _read_timeseries(root / "vllm" / "timeseries.csv"),
        _read_llmservingsim_summary(root / "llmservingsim" / "summary.txt"),
    )


def statistics(values: np.ndarray) -> dict[str, float]:
    """Mean and the 50th / 90th / 99th percentiles of the finite values (NaN when there are none)."""
    data = np.asarray(values, dtype=float)
    data = data[np.isfinite(data)]
    if data.size == 0:
        return dict.fromkeys(STATISTICS, math.nan)
    return {
        "mean": float(data.mean()),
        "p50": float(np.percentile(data, 50)),
        "p90": float(np.percentile(data, 90)),
        "p99": float(np.percentile(data, 99)),
    }


@dataclass(frozen=True)
class ReplayResult(HasStatus):
    """Simulated against observed metrics of one run.

    ``rows`` hold, per metric and statistic, the observed value, fluidopt's and its relative
    error, and LLMServingSim's where its summary is in the folder.  ``status`` is ``ok`` or the
    simulation's own status (e.g. ``overflow``).
    """

    run: VLLMRun
    profile: str
    policy: dict[str, Any]
    rows: list[dict[str, Any]]
    per_request: dict[str, np.ndarray] = field(repr=False)
    series: dict[str, np.ndarray] | None = field(repr=False)
    preemptions: int
    wall_time_s: float
    status: str = "ok"
    message: str = "replayed"
    steps: int = 0  # engine steps, summed over the data-parallel engines

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (rows and settings; the per-request table goes to the CSV)."""

        def clean(value: Any) -> Any:
            return None if isinstance(value, float) and not math.isfinite(value) else value

        return {
            "status": self.status,
            "success": self.success,
            "message": self.message,
            "run": self.run.folder,
            "model": self.run.model,
            "engine_version": self.run.engine_version,
            "requests": self.run.num_requests,
            "profile": self.profile,
            "policy": self.policy,
            "preemptions": self.preemptions,
            "steps": self.steps,
            "wall_time_s": self.wall_time_s,
            "metrics": [{k: clean(v) for k, v in row.items()} for row in self.rows],
        }


def run_policy(run: VLLMRun) -> Any:
    """The ``vllm-v1`` policy with the run's engine arguments (vLLM's defaults where it logged none)."""
    from fluidopt.sim import VLLMV1Policy

    kwargs = run.engine_kwargs
    options: dict[str, Any] = {}
    for key in ("max_num_seqs", "max_num_batched_tokens", "long_prefill_token_threshold"):
        if kwargs.get(key) is not None:
            options[key] = int(kwargs[key])
    if run.kv_cache.get("block_size"):
        options["block_size"] = int(run.kv_cache["block_size"])
    caching = run.kv_cache.get("enable_prefix_caching", kwargs.get("enable_prefix_caching"))
    if caching is not None:
        options["enable_prefix_caching"] = bool(caching)
    options["async_scheduling"] = async_scheduling(run)
    return VLLMV1Policy(**options)


def async_scheduling(run: VLLMRun) -> bool:
    """Whether the run's vLLM scheduled asynchronously (:func:`~fluidopt.timing.fit.roofline.vllm_async_scheduling`)."""
    from fluidopt.timing.fit.roofline import vllm_async_scheduling

    return vllm_async_scheduling({"engine_kwargs": run.engine_kwargs, "vllm_version": run.engine_version})


def data_parallel_size(run: VLLMRun) -> int:
    """The run's data-parallel engines (``data_parallel_size``, 1 where not logged)."""
    value = run.engine_kwargs.get("data_parallel_size")
    if value is None:
        return 1
    ok = isinstance(value, int | float) and not isinstance(value, bool) and float(value).is_integer() and value >= 1
    require(ok, f"{run.folder}/vllm/meta.json: engine_kwargs.data_parallel_size", value, "must be a whole number >= 1")
    return int(value)


def least_loaded_engines(arrival_s: np.ndarray, latency_s: np.ndarray, engines: int) -> np.ndarray:
    """Each request's engine under vLLM's data-parallel front end: the one with the fewest requests in it.

    A request sent to an engine at its arrival stays there (waiting or running) for
    ``latency_s``; ties go to the lowest index, so equal latencies give a round robin.
    """
    require(engines >= 1, "engines", engines, "must be >= 1")
    inside: list[list[float]] = [[] for _ in range(engines)]  # per engine, a min-heap of leaving times
    chosen = np.empty(arrival_s.size, dtype=np.int64)
    for i, (arrival, latency) in enumerate(zip(arrival_s, latency_s)):
        for ends in inside:
            while ends and ends[0] <= arrival:
                heapq.heappop(ends)
        engine = min(range(engines), key=lambda e: len(inside[e]))
        heapq.heappush(inside[engine], float(arrival + latency))
        chosen[i] = engine
    return chosen


def _simulate_engines(
    run: VLLMRun, profile: GPUProfile, policy: Any, engine_of: np.ndarray, series: bool = True
) -> tuple[dict[str, np.ndarray], list[Any]]:
    """Simulate each data-parallel engine on its share of the run; per-request times in run order."""
    from fluidopt.sim import TraceArrivals, simulate
    from fluidopt.trace import Trace
    from fluidopt.workload import workload_from_trace

    first = np.full(run.num_requests, np.nan)
    done = np.full(run.num_requests, np.nan)
    block = int(run.kv_cache.get("block_size") or 16)
    hits = prompt_hits(run, profile.kv_capacity_tokens, block)
    results = []
    for engine in range(int(engine_of.max()) + 1):
        index = np.flatnonzero(engine_of == engine)
        if index.size == 0:
            continue
        trace = Trace(
            f"replay-engine-{engine}",
            run.prompt_tokens[index],
            run.output_tokens[index],
            run.arrival_s[index],
            None if hits is None else hits[index],
        )
        arrivals = run.arrival_s[index]
        span = float(arrivals[-1] - arrivals[0]) if index.size > 1 else 1.0
        workload = workload_from_trace(trace, bins=1, rate_per_s=max(index.size - 1, 1) / max(span, 1e-9))
        result = simulate(
            workload,
            profile,
            policy,
            requests=int(index.size),
            arrivals=TraceArrivals(trace, bins=1),
            drain=True,
            warmup_s=0.0,
            record_requests=True,
            record_series=series,
        )
        records = result.requests or {}
        ids = index[records["id"].astype(int)]
        first[ids] = records["first_token_s"] - records["arrival_s"]
        done[ids] = records["completion_s"] - records["arrival_s"]
        results.append(result)
    return {"first": first, "done": done}, results


def simulated_times(
    run: VLLMRun, profile: GPUProfile, policy: Any = None, *, series: bool = True
) -> tuple[dict[str, np.ndarray], list[Any]]:
    """Each request's simulated first-token and completion times after its arrival (``first``, ``done``).

    The run's engine arguments configure ``policy`` (default :func:`run_policy`); a run with
    ``data_parallel_size`` ``D > 1`` is simulated as ``D`` engines behind vLLM's least-loaded front
    end (:func:`replay`).  Unfinished requests are NaN.  Also returns each engine's simulation result.
    """
    policy = policy or run_policy(run)
    engines = data_parallel_size(run)
    engine_of = np.arange(run.num_requests) % engines
    times, results = _simulate_engines(run, profile, policy, engine_of, series)
    if engines > 1:
        latency = np.nan_to_num(times["done"], nan=float(np.nanmax(times["done"], initial=0.0)))
        engine_of = least_loaded_engines(run.arrival_s, latency, engines)
        times, results = _simulate_engines(run, profile, policy, engine_of, series)
    return times, results


def summed_series(series: list[dict[str, np.ndarray] | None]) -> dict[str, np.ndarray] | None:
    """Running and waiting requests of several engines added up at every step start of any of them.

    Between its steps an engine holds the counts of its last step (none before its first).
    """
    logs = [s for s in series if s is not None and s["start_s"].size]
    if not logs:
        return None
    grid = np.unique(np.concatenate([log["start_s"] for log in logs]))
    total = {"start_s": grid, "running": np.zeros(grid.size), "waiting": np.zeros(grid.size)}
    for log in logs:
        last = np.searchsorted(log["start_s"], grid, side="right") - 1
        for key in ("running", "waiting"):
            total[key] += np.where(last >= 0, np.asarray(log[key], dtype=float)[np.maximum(last, 0)], 0.0)
    return total


def replay(run: VLLMRun, profile: GPUProfile) -> ReplayResult:
    """Simulate ``run`` on ``profile`` with its own arrivals and compare (module docstring).

    A run with ``data_parallel_size`` ``D > 1`` is replayed as ``D`` engines, each on ``profile``,
    behind vLLM's least-loaded front end (:func:`least_loaded_engines`): requests are first dealt
    round robin, then routed by the requests in each engine as that first replay timed them.
    """
    started = time.perf_counter()
    profiled = str(profile.fit.get("model", "")) if profile.fit else ""
    if profiled and run.model and profiled.lower() != run.model.lower():
        raise InputError("--profile", profile.name, f"was measured for {profiled}, the run served {run.model}")
    policy = run_policy(run)
    engines = data_parallel_size(run)
    times, results = simulated_times(run, profile, policy)
    finished = np.isfinite(times["done"])
    ids = np.flatnonzero(finished)
    first, done = times["first"][ids], times["done"][ids]
    outputs = run.output_tokens[ids]
    completion = run.arrival_s[ids] + done
    simulated = {
        "ttft": first,
        "e2e": done,
        "tpot": np.where(outputs > 1, (done - first) / np.maximum(outputs - 1, 1), np.nan),
    }
    observed = {"ttft": run.ttft_s, "e2e": run.e2e_s, "tpot": run.tpot_s}
    rows = []
    for metric in METRICS:
        ours, theirs = statistics(simulated[metric]), statistics(observed[metric])
        other = (run.llmservingsim or {}).get(metric, {})
        for stat in STATISTICS:
            rows.append(_row(metric, stat, theirs[stat], ours[stat], other.get(stat)))
    span_observed = float(np.max(run.arrival_s + run.e2e_s))
    span_simulated = float(np.max(completion)) if completion.size else math.nan
    rows.append(
        _row(
            "requests_per_s",
            "overall",
            run.num_requests / span_observed,
            int(ids.size) / span_simulated,
            None,
        )
    )
    rows.append(
        _row(
            "output_tokens_per_s",
            "overall",
            float(run.output_tokens.sum()) / span_observed,
            float(outputs.sum()) / span_simulated,
            None,
        )
    )
    per_request = {
        "request": ids,
        "prompt_tokens": run.prompt_tokens[ids],
        "output_tokens": outputs,
        "arrival_s": run.arrival_s[ids],
        **{f"observed_{m}_s": observed[m][ids] for m in METRICS},
        **{f"simulated_{m}_s": simulated[m] for m in METRICS},
    }
    failed = next((r for r in results if r.status != "ok"), None)
    on = f" on {engines} data-parallel engines" if engines > 1 else ""
    return ReplayResult(
        run,
        profile.name,
        {**policy.to_dict(), "data_parallel_engines": engines},
        rows,
        per_request,
        results[0].series if engines == 1 else summed_series([r.series for r in results]),
        sum(r.evictions for r in results),
        time.perf_counter() - started,
        failed.status if failed else "ok",
        failed.message if failed else f"replayed {run.num_requests} requests{on}",
        sum(r.iterations for r in results),
    )


def _row(metric: str, statistic: str, observed: float, ours: float, other: float | None) -> dict[str, Any]:
    def error(value: float | None) -> float:
        if value is None or not math.isfinite(value) or not math.isfinite(observed) or observed == 0:
            return math.nan
        return (value - observed) / observed

    return {
        "metric": metric,
        "statistic": statistic,
        "observed": observed,
        "fluidopt": ours,
        "fluidopt_error": error(ours),
        "llmservingsim": other if other is not None else math.nan,
        "llmservingsim_error": error(other),
    }


def write_replay(result: ReplayResult, folder: str | Path) -> list[Path]:
    """Write ``requests.csv``, ``summary.json`` and ``replay.png`` into ``folder`` (atomically each)."""
    from fluidopt.tomlio import write_text_atomic

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    columns = list(result.per_request)
    lines = [",".join(columns)]
    for i in range(result.per_request["request"].size):
        lines.append(",".join(_cell(result.per_request[c][i]) for c in columns))
    paths = [out / "requests.csv", out / "summary.json", out / "replay.png"]
    write_text_atomic(paths[0], "\n".join(lines) + "\n")
    write_text_atomic(paths[1], json.dumps(result.to_dict(), indent=2) + "\n")
    figure = plot_replay(result)
    temporary = paths[2].with_suffix(".tmp.png")
    figure.savefig(temporary, dpi=120)
    temporary.replace(paths[2])
    import matplotlib.pyplot as plt

    plt.close(figure)
    return paths


def _cell(value: Any) -> str:
    if isinstance(value, (float, np.floating)):
        return "" if not math.isfinite(float(value)) else f"{float(value):.6g}"
    return str(value)


def plot_replay(result: ReplayResult) -> Any:
    """Observed vs simulated CDFs of TTFT and E2E, and running / waiting requests over time."""
    import matplotlib.pyplot as plt

    from fluidopt.plotting import style

    with style():
        fig, axes = plt.subplots(1, 3, figsize=(13.0, 3.8), layout="constrained")
        _draw_replay(result, axes)
    return fig


def _draw_replay(result: ReplayResult, axes: Any) -> None:
    for ax, metric, label in ((axes[0], "ttft", "TTFT (s)"), (axes[1], "e2e", "end-to-end latency (s)")):
        for source, style in (("observed", "-"), ("simulated", "--")):
            values = np.sort(result.per_request[f"{source}_{metric}_s"])
            values = values[np.isfinite(values)]
            name = "vLLM (observed)" if source == "observed" else f"fluidopt ({result.profile})"
            ax.plot(values, np.arange(1, values.size + 1) / max(values.size, 1), style, label=name)
        ax.set_xlabel(label)
        ax.set_ylabel("fraction of requests")
        ax.legend(loc="lower right", fontsize=8)
    ax = axes[2]
    if result.run.timeseries is not None:
        ts = result.run.timeseries
        ax.plot(ts["t"], ts["running"], "-", label="running (vLLM)")
        ax.plot(ts["t"], ts["waiting"], "-", label="waiting (vLLM)")
    if result.series is not None:
        start = result.series["start_s"]
        ax.plot(start, result.series["running"], "--", label="running (fluidopt)")
        ax.plot(start, result.series["waiting"], "--", label="waiting (fluidopt)")
    ax.set_xlabel("time since the first arrival (s)")
    ax.set_ylabel("requests")
    ax.legend(loc="upper right", fontsize=8)
    axes[0].figure.suptitle(
        f"replay of {Path(result.run.folder).parent.name}/{Path(result.run.folder).name}: {result.run.model}, "
        f"vLLM {result.run.engine_version}"
    )
