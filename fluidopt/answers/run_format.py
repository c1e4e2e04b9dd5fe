"""A plain run format: one folder with ``requests.csv`` and ``engine.toml``, for a user's own benchmark run.

``requests.csv`` has the header ``arrival_s,input_tokens,output_tokens`` and, when measured,
``ttft_s,e2e_s`` (seconds from the request's arrival to its first and last token).
``engine.toml`` has one table ``[engine]``: ``name = "vllm"``, ``version``, ``model`` (a built-in
name or a config.json path, relative to the folder), ``gpu`` (a built-in name or a GPU TOML),
``tensor_parallel_size``, ``data_parallel_size``, ``enable_expert_parallel``, ``max_num_seqs``,
``max_num_batched_tokens``, ``long_prefill_token_threshold``, ``block_size``, ``num_gpu_blocks``
or ``gpu_memory_utilization``, ``enable_prefix_caching`` and ``cpu_offload_gb``.

Optional columns say which prompt tokens were prefix-cache hits between requests:
``cached_prompt_tokens`` (measured per request) or ``prefix_group`` (the conversation a request
continues); ``engine.toml`` may instead give vLLM's logged ``prefix_cache_hit_rate``
(:mod:`fluidopt.answers.prefix_hits`).  ``cpu_offload_gb`` is modelled on the roofline
(:func:`fluidopt.timing.fit.roofline.with_cpu_offload`).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np

from fluidopt.errors import InputError, reject_unknown_keys, require
from fluidopt.tomlio import read_toml

REQUIRED_COLUMNS = ("arrival_s", "input_tokens", "output_tokens")
MEASURED_COLUMNS = ("ttft_s", "e2e_s")
CACHE_COLUMNS = ("cached_prompt_tokens", "prefix_group")  # prefix-cache hits between requests
# The engine's arguments (as vLLM names them) and the KV-cache record, both read by replay.
ENGINE_ARGUMENTS = (
    "tensor_parallel_size",
    "data_parallel_size",
    "enable_expert_parallel",
    "max_num_seqs",
    "max_num_batched_tokens",
    "long_prefill_token_threshold",
    "cpu_offload_gb",
    "async_scheduling",
)
KV_CACHE_KEYS = (
    "num_gpu_blocks",
    "block_size",
    "gpu_memory_utilization",
    "enable_prefix_caching",
    "prefix_cache_hit_rate",
)
ENGINE_KEYS = ("name", "version", "model", "gpu", *ENGINE_ARGUMENTS, *KV_CACHE_KEYS)
WHOLE_KEYS = (
    "tensor_parallel_size",
    "data_parallel_size",
    "max_num_seqs",
    "max_num_batched_tokens",
    "long_prefill_token_threshold",
    "block_size",
    "num_gpu_blocks",
)


def is_plain_run(folder: str | Path) -> bool:
    """Whether ``folder`` is a run in the plain format (it holds ``engine.toml``)."""
    return (Path(folder) / "engine.toml").is_file()


def read_engine(folder: str | Path) -> dict[str, Any]:
    """The ``[engine]`` table of a plain run, checked (errors name the key and the file)."""
    path = Path(folder) / "engine.toml"
    return check_engine(read_toml(path), path)


def check_engine(data: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """The ``[engine]`` table of an ``engine.toml``'s contents ``data``, checked (errors name ``path`` and the key)."""
    require(isinstance(data.get("engine"), dict), f"{path}: [engine]", None, "is required")
    engine = dict(data["engine"])
    reject_unknown_keys(engine, ENGINE_KEYS, f"{path} [engine]")
    require(engine.get("name") == "vllm", f"{path}: engine.name", engine.get("name"), 'must be "vllm"')
    for key in WHOLE_KEYS:
        if key in engine:
            value = engine[key]
            minimum = 0 if key == "long_prefill_token_threshold" else 1
            require(
                isinstance(value, int) and not isinstance(value, bool) and value >= minimum,
                f"{path}: engine.{key}",
                value,
                f"must be a whole number >= {minimum}",
            )
    if "gpu_memory_utilization" in engine:
        value = engine["gpu_memory_utilization"]
        require(
            isinstance(value, (int, float)) and 0 < value <= 1,
            f"{path}: engine.gpu_memory_utilization",
            value,
            "must be in (0, 1]",
        )
    offload = engine.get("cpu_offload_gb", 0)
    require(
        isinstance(offload, (int, float)) and not isinstance(offload, bool) and 0 <= offload < 10_000,
        f"{path}: engine.cpu_offload_gb",
        offload,
        "must be a number of GiB >= 0",
    )
    if "prefix_cache_hit_rate" in engine:
        value = engine["prefix_cache_hit_rate"]
        require(
            isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1,
            f"{path}: engine.prefix_cache_hit_rate",
            value,
            "must be in [0, 1] (the share of prompt tokens vLLM found cached)",
        )
    for key in ("enable_expert_parallel", "enable_prefix_caching", "async_scheduling"):
        if key in engine:
            require(isinstance(engine[key], bool), f"{path}: engine.{key}", engine[key], "must be true or false")
    return engine


def read_requests_csv(folder: str | Path) -> dict[str, np.ndarray]:
    """The columns of a plain run's ``requests.csv``, rows in arrival order (errors name the row and column)."""
    path = Path(folder) / "requests.csv"
    if not path.is_file():
        raise InputError("run folder", str(folder), "has no requests.csv")
    with path.open(newline="", encoding="utf-8") as stream:
        reader = csv.DictReader(stream)
        header = tuple(reader.fieldnames or ())
        rows = list(reader)
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    require(not missing, f"{path}: columns", ",".join(header), f"lack {', '.join(missing)}")
    unknown = sorted(set(header) - set(REQUIRED_COLUMNS) - set(MEASURED_COLUMNS) - set(CACHE_COLUMNS))
    require(not unknown, f"{path}: column", ",".join(unknown), "is not a column of the plain run format")
    require(len(rows) > 0, str(path), 0, "has no requests")
    columns = [c for c in (*REQUIRED_COLUMNS, *MEASURED_COLUMNS, CACHE_COLUMNS[0]) if c in header]
    values = {c: np.empty(len(rows)) for c in columns}
    for line, row in enumerate(rows, start=2):
        for c in columns:
            try:
                number = float(row[c])
            except (TypeError, ValueError):
                raise InputError(f"{path.name} row {line} column {c}", row[c], "must be a number") from None
            whole = c in ("input_tokens", "output_tokens", "cached_prompt_tokens")
            least = 1 if c in ("input_tokens", "output_tokens") else 0
            ok = math.isfinite(number) and number >= least and (not whole or number == int(number))
            require(
                ok,
                f"{path.name} row {line} column {c}",
                row[c],
                "must be " + (f"a whole number >= {least}" if whole else "a finite number >= 0"),
            )
            values[c][line - 2] = number
    if "ttft_s" in values and "e2e_s" in values:
        bad = np.flatnonzero(values["e2e_s"] < values["ttft_s"])
        require(not bad.size, f"{path.name} row {int(bad[0]) + 2 if bad.size else 0}", "e2e_s", "must be >= ttft_s")
    if "cached_prompt_tokens" in values:
        bad = np.flatnonzero(values["cached_prompt_tokens"] > values["input_tokens"])
        require(
            not bad.size,
            f"{path.name} row {int(bad[0]) + 2 if bad.size else 0} column cached_prompt_tokens",
            float(values["cached_prompt_tokens"][bad[0]]) if bad.size else 0.0,
            "must be at most input_tokens",
        )
    if "prefix_group" in header:
        groups = [row["prefix_group"] or "" for row in rows]
        empty = [i for i, g in enumerate(groups) if not g.strip()]
        require(not empty, f"{path.name} row {empty[0] + 2 if empty else 0} column prefix_group", "", "is empty")
        values["prefix_group"] = np.array(groups, dtype=object)
    back = np.flatnonzero(np.diff(values["arrival_s"]) < 0)
    require(
        not back.size,
        f"{path.name} row {int(back[0]) + 3 if back.size else 0} column arrival_s",
        float(values["arrival_s"][back[0] + 1]) if back.size else 0.0,
        "goes back in time: rows must be in arrival order (arrival_s non-decreasing)",
    )
    return values


def plain_run_profile(folder: str | Path, tables: str | None = None, *, gpu: str | None = None) -> Any:
    """The profile of a plain run's engine: the roofline from ``engine.toml`` alone, or ``tables`` composed.

    The GPU is ``gpu`` or the engine's ``gpu``; the model its ``model`` (a config.json path is read
    relative to the folder); tensor, data and expert parallelism its engine arguments; the KV
    capacity ``num_gpu_blocks x block_size`` when given, else vLLM's memory rule with its
    ``gpu_memory_utilization``.
    """
    from fluidopt.hardware import MODELS, gpu_spec, model_for_engine_name
    from fluidopt.model_config import resolve_model
    from fluidopt.timing.fit.engine_tables import profile_for_run
    from fluidopt.timing.fit.roofline import engine_roofline_profile, vllm_async_scheduling

    root = Path(folder)
    engine = read_engine(root)
    name = gpu or engine.get("gpu")
    require(name is not None, f"{root}/engine.toml: engine.gpu", None, "is needed (or give --gpu)")
    model_spec = str(engine.get("model", ""))
    require(bool(model_spec), f"{root}/engine.toml: engine.model", None, "is needed")
    if model_spec.endswith(".json") and not Path(model_spec).is_absolute():
        model_spec = str(root / model_spec)
    model = resolve_model(model_spec) if model_spec.endswith(".json") or model_spec in MODELS else None
    model = model or model_for_engine_name(model_spec)
    engine_args = {key: engine[key] for key in ENGINE_ARGUMENTS if key in engine}
    kv_cache = {key: engine[key] for key in KV_CACHE_KEYS if key in engine}
    engine_args["async_scheduling"] = vllm_async_scheduling(
        {"engine_kwargs": engine_args, "vllm_version": engine.get("version", "")}
    )
    if tables is None:
        return engine_roofline_profile(gpu_spec(str(name)), model, engine_args, kv_cache, str(engine["model"]))
    require(
        not engine_args.get("cpu_offload_gb"),
        f"{root}/engine.toml: engine.cpu_offload_gb",
        engine_args.get("cpu_offload_gb"),
        "is modelled on the roofline (-p roofline): measured tables hold no host-link time",
    )
    profile, _ = profile_for_run(
        tables,
        tensor_parallel=int(engine_args.get("tensor_parallel_size", 1)),
        data_parallel=int(engine_args.get("data_parallel_size", 1)),
        expert_parallel=bool(engine_args.get("enable_expert_parallel", False)),
        gpu=str(name),
    )
    blocks = kv_cache.get("num_gpu_blocks")
    return profile.with_capacity(int(blocks) * int(kv_cache.get("block_size", 16))) if blocks else profile


def write_plain_run(run: Any, folder: str | Path, *, gpu: str | None = None) -> Path:
    """Write a run (:class:`~fluidopt.answers.replay.VLLMRun`) in the plain format; ``gpu`` names its GPU.

    Refuses a folder that already holds a run.  Times are written with 9 digits after the point.
    """
    engine: dict[str, Any] = {"name": "vllm", "version": run.engine_version, "model": run.model}
    if gpu:
        engine["gpu"] = gpu
    for key in ENGINE_ARGUMENTS:
        if run.engine_kwargs.get(key) is not None:
            engine[key] = run.engine_kwargs[key]
    for key in KV_CACHE_KEYS:
        if run.kv_cache.get(key) is not None:
            engine[key] = run.kv_cache[key]
    columns = {
        "arrival_s": run.arrival_s,
        "input_tokens": run.prompt_tokens,
        "output_tokens": run.output_tokens,
        "ttft_s": run.ttft_s,
        "e2e_s": run.e2e_s,
    }
    return write_plain_folder(folder, columns, engine)


def write_plain_folder(folder: str | Path, columns: dict[str, np.ndarray], engine: dict[str, Any]) -> Path:
    """Write ``requests.csv`` (the plain columns present in ``columns``) and ``engine.toml`` into ``folder``.

    Refuses a folder that already holds a run; times get 9 digits after the point.  Both files'
    text is made before either is written, each atomically.
    """
    from fluidopt.tomlio import dumps_toml, write_text_atomic

    root = Path(folder)
    for name in ("requests.csv", "engine.toml"):
        require(not (root / name).exists(), "output folder", str(root), f"already holds {name}")
    names = [c for c in (*REQUIRED_COLUMNS, *MEASURED_COLUMNS) if c in columns]
    lines = [",".join(names)]
    for i in range(len(columns["arrival_s"])):
        cells = []
        for name in names:
            value = columns[name][i]
            cells.append(str(int(value)) if name in ("input_tokens", "output_tokens") else f"{float(value):.9f}")
        lines.append(",".join(cells))
    engine_text = dumps_toml({"engine": engine})
    root.mkdir(parents=True, exist_ok=True)
    write_text_atomic(root / "requests.csv", "\n".join(lines) + "\n")
    write_text_atomic(root / "engine.toml", engine_text)
    return root
