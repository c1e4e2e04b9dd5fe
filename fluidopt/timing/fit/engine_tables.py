"""Fitter: ``measured`` timings from per-operator tables measured through an engine (LLMServingSim's format).

An LLMServingSim profile folder (``profiles/<GPU>/<org>/<model>/``) holds ``meta.yaml`` and, per
tensor-parallel degree, ``tpN/dense.csv`` (``layer,tokens,time_us``: each non-attention operator
of one transformer layer by token count), ``tpN/attention.csv``
(``prefill_chunk,kv_prefill,n_decode,kv_decode,time_us``: one layer's attention for a mixed batch
of one prefill chunk on its cached prefix plus ``n`` decodes at one KV length) and
``tpN/per_sequence.csv`` (``layer,sequences,time_us``: the LM head and the sampler, once per
step).  They were measured through vLLM with a one-layer model in eager mode.

One step of the engine is composed as the engine runs it (:class:`~fluidopt.timing.measured.MeasuredTiming`):

- non-attention ``f(T)``: per decoder layer two RMSNorms (``layernorm``: input and
  post-attention), ``qkv_proj``, ``qk_norm`` (Qwen3), ``rotary_emb``, ``o_proj``,
  ``gate_up_proj``, ``act_fn``, ``down_proj``, times the model's layers, plus ``embedding`` and
  ``final_layernorm`` once; tabulated at the measured token counts (a linear spline through
  them, made non-decreasing);
- attention, times the layers: a prefill chunk ``p(c, k) = p0 + p_c c + p_ck c k + p_cc c^2 + p_k k``
  fitted to the prefill-only rows (small chunks read their cached prefix at a memory-bound
  rate, ``p_k``; large ones are compute-bound, ``p_ck``); decodes
  ``max(d0 + d_b n + d_kv n k, e0 + e_k k)`` fitted to the decode-only rows, and a second set
  of the same form for decodes that share the step with a prefill, fitted to the mixed rows less
  their measured prefill-only time (vLLM runs a mixed batch through one varlen kernel, in which
  decodes cost about twice what they cost alone: 64 decodes at 2,048 cached tokens take 620 us
  per layer alone, 1,163 us beside a 16-token chunk on the RTX 4090).  The write of new keys and
  values is part of the measured attention, so there is no separate KV-save term;
- per sequence ``g(n)``: ``lm_head + sampler`` at the measured sequence counts (vLLM computes the
  logits of every scheduled request).

With tensor parallelism the tables time one GPU's shard; the two all-reduces per layer are added
from the link's bandwidth and latency (:class:`Interconnect`, from the run's hardware
description), as a ring all-reduce of the step's ``tokens x hidden`` activations.

Not modelled: the scheduler's CPU time, CUDA graphs (the tables are eager; the run used graphs
for decode steps) and prefix caching.
"""

from __future__ import annotations

import csv
import math
import os
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from fluidopt.errors import InputError, require
from fluidopt.hardware import ModelShape, gpu_spec, model_for_engine_name
from fluidopt.timing.fit.attention import fit_decode_attention
from fluidopt.timing.fit.common import ComponentFit, component_quality
from fluidopt.timing.fit.engine_grid import grid_engine_timing
from fluidopt.timing.measured import MeasuredTiming

# Calls per decoder layer of each measured operator; once-per-step operators count 0 here.
PER_LAYER_CALLS = {
    "layernorm": 2,
    "qkv_proj": 1,
    "qk_norm": 1,
    "rotary_emb": 1,
    "o_proj": 1,
    "gate_up_proj": 1,
    "act_fn": 1,
    "down_proj": 1,
}
PER_STEP_OPERATORS = ("embedding", "final_layernorm")
PER_SEQUENCE_OPERATORS = ("lm_head", "sampler")
DENSE_COLUMNS = ("layer", "tokens", "time_us")
ATTENTION_COLUMNS = ("prefill_chunk", "kv_prefill", "n_decode", "kv_decode", "time_us")
PER_SEQUENCE_COLUMNS = ("layer", "sequences", "time_us")


@dataclass(frozen=True)
class EngineTables:
    """The tables of one profile folder at one tensor-parallel degree (times in seconds, one layer)."""

    folder: str
    gpu: str
    model: str
    engine_version: str
    tensor_parallel: int
    dense: dict[str, dict[int, float]]
    per_sequence: dict[str, dict[int, float]]
    attention: np.ndarray  # columns: prefill_chunk, kv_prefill, n_decode, kv_decode, seconds
    moe: np.ndarray | None = None  # columns: tokens, activated_experts, seconds (one MoE layer)
    moe_source: str = ""

    @property
    def model_shape(self) -> ModelShape:
        """The model's shape (layers) from its engine name."""
        return model_for_engine_name(self.model)


def _read_meta(folder: Path) -> dict[str, Any]:
    import yaml

    path = folder / "meta.yaml"
    if not path.is_file():
        raise InputError("profile folder", str(folder), "has no meta.yaml (an LLMServingSim profile folder has one)")
    try:
        meta = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InputError(str(path), "unreadable", f"is not valid YAML ({type(exc).__name__})") from None
    require(isinstance(meta, dict), str(path), type(meta).__name__, "must be a mapping")
    for key in ("model", "gpu"):
        require(key in meta, f"{path}: {key}", None, "is required")
    return meta


def _rows(path: Path, columns: tuple[str, ...]) -> list[dict[str, str]]:
    if not path.is_file():
        raise InputError("profile table", str(path), "is missing")
    try:
        with path.open(newline="", encoding="utf-8") as stream:
            reader = csv.DictReader(stream)
            header = tuple(reader.fieldnames or ())
            missing = [c for c in columns if c not in header]
            if missing:
                raise InputError(str(path), ",".join(header), f"lacks the column(s) {', '.join(missing)}")
            rows = list(reader)
    except UnicodeDecodeError:
        raise InputError(str(path), "not UTF-8", "must be a UTF-8 CSV file") from None
    require(len(rows) > 0, str(path), 0, "has no rows")
    return rows


def _value(row: dict[str, str], column: str, path: Path, line: int, *, whole: bool = False) -> float:
    raw = row.get(column)
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InputError(f"{path.name} row {line} column {column}", raw, "must be a number") from None
    if not math.isfinite(value) or value < 0 or (whole and value != int(value)):
        kind = "a whole number >= 0" if whole else "a finite number >= 0"
        raise InputError(f"{path.name} row {line} column {column}", raw, f"must be {kind}")
    return value


def _by_operator(path: Path, key_column: str) -> dict[str, dict[int, float]]:
    table: dict[str, dict[int, float]] = defaultdict(dict)
    for line, row in enumerate(_rows(path, ("layer", key_column, "time_us")), start=2):
        count = int(_value(row, key_column, path, line, whole=True))
        require(count >= 1, f"{path.name} row {line} column {key_column}", count, "must be >= 1")
        table[row["layer"]][count] = 1e-6 * _value(row, "time_us", path, line)
    grids = {op: tuple(sorted(values)) for op, values in table.items()}
    reference = max(grids.values(), key=len)
    for op, grid in grids.items():
        if grid != reference:
            hole = sorted(set(reference) - set(grid))
            raise InputError(f"{path.name}: {op}", f"{len(grid)} rows", f"has holes in the grid (no row at {hole[:5]})")
    return dict(table)


def read_llmservingsim_profile(
    folder: str | os.PathLike[str], tensor_parallel: int | None = None, *, expert_parallel: bool = False
) -> EngineTables:
    """Read an LLMServingSim profile folder (``meta.yaml`` and ``tpN/*.csv``).

    ``tensor_parallel`` picks ``tpN`` (default: the only one, or 1).  With ``expert_parallel``
    the MoE table is ``tp1/moe.csv`` (each GPU holds whole experts).  Missing files or columns,
    rows that are not numbers, holes in a table's grid and a ``tpN`` the folder lacks are input
    errors naming the file.
    """
    root = Path(folder)
    require(root.is_dir(), "profile folder", str(root), "is not a folder")
    meta = _read_meta(root)
    available = sorted(int(p.name[2:]) for p in root.glob("tp*") if p.is_dir() and p.name[2:].isdigit())
    require(len(available) > 0, "profile folder", str(root), "has no tpN/ tables")
    tp = tensor_parallel if tensor_parallel is not None else (available[0] if len(available) == 1 else 1)
    if tp not in available:
        raise InputError("--tp", tp, f"the tables have tensor-parallel degrees {available} only")
    tables = root / f"tp{tp}"
    dense = _by_operator(tables / "dense.csv", "tokens")
    unknown = sorted(set(dense) - set(PER_LAYER_CALLS) - set(PER_STEP_OPERATORS))
    if unknown:
        raise InputError(f"{tables / 'dense.csv'}: layer", unknown[0], "is not an operator fluidopt knows how to count")
    per_sequence = _by_operator(tables / "per_sequence.csv", "sequences")
    path = tables / "attention.csv"
    values = np.array(
        [
            [_value(row, c, path, line, whole=c != "time_us") for c in ATTENTION_COLUMNS]
            for line, row in enumerate(_rows(path, ATTENTION_COLUMNS), start=2)
        ]
    )
    values[:, 4] *= 1e-6
    _check_attention_grid(values, path)
    moe, moe_source = _read_moe(root, 1 if expert_parallel else tp)
    if expert_parallel and moe is not None:
        moe_source += " (whole experts: expert parallelism)"
    return EngineTables(
        str(root),
        str(meta.get("hardware", meta["gpu"])),
        str(meta["model"]),
        str(meta.get("vllm_version", "unknown")),
        tp,
        dense,
        per_sequence,
        values,
        moe,
        moe_source,
    )


MOE_COLUMNS = ("tokens", "activated_experts", "time_us")


def _read_moe(root: Path, tp: int) -> tuple[np.ndarray | None, str]:
    """One MoE layer's measured time by tokens and experts reached (``tpN/moe.csv``), or None for a dense model.

    Without a table at this tensor-parallel degree the ``tp1`` table is used divided by the degree:
    vLLM's fused MoE splits every expert's width over the group, so each GPU reads and multiplies
    ``1 / TP`` of every reached expert (an assumption, said in the profile's provenance).
    """
    path = root / f"tp{tp}" / "moe.csv"
    scale, source = 1.0, f"tp{tp}/moe.csv"
    if not path.is_file() and tp > 1 and (root / "tp1" / "moe.csv").is_file():
        path, scale, source = root / "tp1" / "moe.csv", 1.0 / tp, f"tp1/moe.csv / {tp} (no tp{tp} table measured)"
    if not path.is_file():
        return None, ""
    values = np.array(
        [
            [_value(row, c, path, line, whole=c != "time_us") for c in MOE_COLUMNS]
            for line, row in enumerate(_rows(path, MOE_COLUMNS), start=2)
        ]
    )
    require(values.shape[0] >= 2, f"{path.name}: rows", values.shape[0], "need at least 2")
    require(bool(np.all(values[:, 2] > 0)), f"{path.name}: time_us", float(values[:, 2].min()), "must be > 0")
    values[:, 2] *= 1e-6 * scale
    return values, source


def expected_experts(tokens: Any, experts: int, per_token: int) -> Any:
    """Distinct experts ``T`` tokens reach, each choosing ``k`` of ``E`` uniformly: ``E (1 - (1 - k / E)^T)``."""
    t = np.asarray(tokens, dtype=float)
    return experts * (1.0 - (1.0 - per_token / experts) ** t)


def moe_layer_seconds(table: np.ndarray, tokens: Any, experts: int, per_token: int) -> np.ndarray:
    """One MoE layer's time at ``T`` tokens: the table at the experts they reach (:func:`expected_experts`)."""
    t = np.atleast_1d(np.asarray(tokens, dtype=float))
    return moe_table_seconds(table, t, expected_experts(t, experts, per_token))


def moe_table_seconds(table: np.ndarray, tokens: Any, reached: Any) -> np.ndarray:
    """``moe.csv`` at ``tokens`` tokens reaching ``reached`` experts.

    Linear in the experts reached at each measured token count (clamped to the counts measured
    there), then linear in tokens between measured counts and beyond the last two.
    """
    grid = np.unique(table[:, 0])
    t = np.atleast_1d(np.asarray(tokens, dtype=float))
    reach = np.broadcast_to(np.asarray(reached, dtype=float), t.shape)

    def at(count: float, experts: float) -> float:
        rows = table[table[:, 0] == count]
        rows = rows[np.argsort(rows[:, 1])]
        return float(np.interp(experts, rows[:, 1], rows[:, 2]))

    out = np.empty(t.size)
    for i, (count, experts) in enumerate(zip(t, reach)):
        upper = int(np.clip(np.searchsorted(grid, count), 1, grid.size - 1))
        low, high = grid[upper - 1], grid[upper]
        w = (count - low) / (high - low)
        out[i] = (1 - w) * at(low, experts) + w * at(high, experts) if count >= grid[0] else at(grid[0], experts)
    return out


@dataclass(frozen=True)
class Parallelism:
    """How a vLLM deployment splits a model: ``tensor`` GPUs per engine, ``data`` engines, ``expert`` on/off.

    With ``--enable-expert-parallel`` the routed experts are spread, whole, over the
    ``tensor x data`` GPUs of all engines, the engines step together (a MoE layer is a collective
    over all of them), and each MoE layer gathers the group's tokens to their experts and scatters
    the results back.
    """

    tensor: int = 1
    data: int = 1
    expert: bool = False

    def __post_init__(self) -> None:
        for key in ("tensor", "data"):
            value = getattr(self, key)
            require(isinstance(value, int) and value >= 1, f"{key}_parallel", value, "must be a whole number >= 1")

    @property
    def expert_group(self) -> int:
        """GPUs the experts are spread over (1 without expert parallelism)."""
        return self.tensor * self.data if self.expert else 1


def expert_parallel_moe_seconds(
    table: np.ndarray, tokens: Any, shape: ModelShape, parallel: Parallelism, interconnect: Interconnect | None
) -> np.ndarray:
    """One MoE layer per GPU under expert parallelism, at ``T`` tokens in each engine's step.

    The engines step in lockstep with like batches (an assumption: vLLM's load balancer keeps
    them even), so a layer routes ``data x T`` tokens.  Each GPU holds ``E / G`` whole experts
    (``G = tensor x data``), receives ``data x T x k / G`` token-expert pairs, the work of
    ``data x T / G`` tokens in the whole-expert table (``tp1/moe.csv``), and reaches its share
    ``E (1 - (1 - k / E)^(data T)) / G`` of the experts.  The tokens travel as vLLM's default
    exchange (``allgather_reducescatter``) moves them: an all-gather of the engines' tokens over
    the data-parallel group and a reduce-scatter of the results, each a ring collective of
    ``latency + (data - 1) x T x hidden x bytes / bw`` (none with one engine: the tensor-parallel
    all-reduce already combines the experts' outputs).
    """
    group = parallel.expert_group
    t = np.atleast_1d(np.asarray(tokens, dtype=float))
    routed = parallel.data * t
    local = routed / group
    reached = expected_experts(routed, shape.experts, shape.experts_per_token) / group
    compute = moe_table_seconds(table, local, reached)
    if parallel.data == 1:
        return compute
    require(
        interconnect is not None,
        "interconnect",
        None,
        "expert parallelism needs the link between the GPUs (a run's config.json, or --gpu)",
    )
    assert interconnect is not None
    size = (parallel.data - 1) * t * shape.hidden * shape.bytes_per_value
    return compute + 2 * (interconnect.latency_s + size / interconnect.bandwidth_bytes_per_s)


def _check_attention_grid(values: np.ndarray, path: Path) -> None:
    """Prefill-only and decode-only rows must each cover their grid (no holes)."""
    prefill = values[(values[:, 0] > 0) & (values[:, 2] == 0)]
    decode = values[(values[:, 0] == 0) & (values[:, 2] > 0)]
    require(prefill.shape[0] >= 4, f"{path.name}: prefill-only rows", prefill.shape[0], "need at least 4")
    require(decode.shape[0] >= 5, f"{path.name}: decode-only rows", decode.shape[0], "need at least 5")
    for rows, (a, b), what in ((decode, (2, 3), "decode (n_decode x kv_decode)"),):
        cells = {(int(r[a]), int(r[b])) for r in rows}
        first = sorted({c[0] for c in cells})
        second = sorted({c[1] for c in cells})
        holes = [(x, y) for x in first for y in second if (x, y) not in cells]
        if holes:
            raise InputError(f"{path.name}: {what} grid", f"{len(cells)} cells", f"has holes, e.g. at {holes[0]}")
    chunks = sorted({int(r[0]) for r in prefill})
    for chunk in chunks:
        require(
            any(int(r[0]) == chunk and r[1] == 0 for r in prefill),
            f"{path.name}: prefill chunk {chunk}",
            "no kv_prefill = 0 row",
            "has a hole in the grid",
        )


def _spline_values(grid: dict[int, float], knots: np.ndarray) -> np.ndarray:
    xs = np.array(sorted(grid), dtype=float)
    ys = np.array([grid[int(x)] for x in xs])
    values = np.interp(knots, xs, ys)
    beyond = knots > xs[-1]
    if beyond.any() and xs.size >= 2:
        slope = (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])
        values[beyond] = ys[-1] + slope * (knots[beyond] - xs[-1])
    return values


def fit_prefill_chunk_attention(chunk: np.ndarray, cached: np.ndarray, seconds: np.ndarray) -> tuple[float, ...]:
    """``(p0, p_c, p_ck, p_cc, p_k)`` of ``p0 + p_c c + p_ck c k + p_cc c^2 + p_k k`` (relative least squares)."""
    from scipy.optimize import lsq_linear

    design = np.column_stack([np.ones_like(chunk), chunk, chunk * cached, chunk * chunk, cached])
    scale = 1.0 / seconds
    norms = np.maximum(np.abs(design).max(axis=0), 1e-12)
    bounds = ([-np.inf, 0, 0, 0, 0], [np.inf] * 5)
    solution = lsq_linear(design * scale[:, None] / norms, seconds * scale, bounds=bounds)
    return tuple(float(v) for v in solution.x / norms)


@dataclass(frozen=True)
class Interconnect:
    """The link between tensor-parallel GPUs: bandwidth (bytes/s) and latency (s) of one transfer.

    From a run's hardware description (LLMServingSim's ``config.json``: ``link_bw`` in GB/s,
    ``link_latency`` in ns).
    """

    bandwidth_bytes_per_s: float
    latency_s: float
    source: str = ""

    def allreduce_s(self, tokens: np.ndarray, hidden: int, gpus: int, bytes_per_value: int = 2) -> np.ndarray:
        """One ring all-reduce of ``tokens x hidden`` values over ``gpus``: ``latency + 2 (n-1)/n bytes / bw``."""
        size = np.asarray(tokens, dtype=float) * hidden * bytes_per_value
        return self.latency_s + 2.0 * (gpus - 1) / gpus * size / self.bandwidth_bytes_per_s


def read_interconnect(run_folder: str | os.PathLike[str]) -> Interconnect | None:
    """The interconnect of a run folder's ``config.json`` (None when it has none)."""
    path = Path(run_folder) / "config.json"
    if not path.is_file():
        return None
    import json

    try:
        config = json.loads(path.read_text(encoding="utf-8"))
        bandwidth, latency = float(config["link_bw"]), float(config["link_latency"])
    except (ValueError, KeyError, TypeError, json.JSONDecodeError):
        raise InputError(str(path), "link_bw / link_latency", "must hold numbers (GB/s, ns)") from None
    require(bandwidth > 0 and latency >= 0, str(path), (bandwidth, latency), "needs link_bw > 0 and latency >= 0")
    return Interconnect(bandwidth * 1e9, latency * 1e-9, f"{path.parent.name}/config.json")


def _layer_operators_seconds(
    tables: EngineTables,
    tokens: np.ndarray,
    layers: int,
    parallel: Parallelism | None = None,
    interconnect: Interconnect | None = None,
) -> np.ndarray:
    """The non-attention operators of a step at each token count: each operator x its calls x the layers.

    A mixture-of-experts model adds its MoE layers' expert computation (:func:`moe_layer_seconds`,
    or :func:`expert_parallel_moe_seconds` with its token exchange under expert parallelism).
    """
    total = np.zeros(tokens.size)
    for op, grid in tables.dense.items():
        calls = layers * PER_LAYER_CALLS[op] if op in PER_LAYER_CALLS else 1
        total += calls * np.array([grid[int(t)] for t in tokens])
    shape = tables.model_shape
    if shape.is_moe:
        require(
            tables.moe is not None,
            f"{Path(tables.folder).name}: moe.csv",
            None,
            f"is needed: {shape.name} is a mixture-of-experts model",
        )
        assert tables.moe is not None
        if parallel is not None and parallel.expert:
            moe = expert_parallel_moe_seconds(tables.moe, tokens, shape, parallel, interconnect)
        else:
            moe = moe_layer_seconds(tables.moe, tokens, shape.experts, shape.experts_per_token)
        total = total + shape.moe_layers * moe
    return total


def _moe_provenance(tables: EngineTables, parallel: Parallelism | None) -> dict[str, str]:
    """How the MoE layers were timed, for the profile's provenance."""
    shape = tables.model_shape
    rule = f"E (1 - (1 - k / E)^T) with E = {shape.experts}, k = {shape.experts_per_token} (uniform routing)"
    if parallel is not None and parallel.expert:
        group = parallel.expert_group
        model = (
            f"{shape.moe_layers} MoE layers x moe.csv at {parallel.data} T / {group} tokens reaching 1 / {group} of "
            f"{rule.replace('^T', f'^({parallel.data} T)')}, engines in lockstep, plus an all-gather and a "
            f"reduce-scatter of the tokens over the {parallel.data} engines (vLLM's allgather_reducescatter)"
        )
    else:
        model = f"{shape.moe_layers} MoE layers x moe.csv at the experts T tokens reach, {rule}"
    return {"source": tables.moe_source, "model": model}


def fit_engine_timing(
    tables: EngineTables,
    layers: int | None = None,
    interconnect: Interconnect | None = None,
    parallel: Parallelism | None = None,
) -> tuple[MeasuredTiming, dict[str, ComponentFit]]:
    """Compose one step's time from the tables (module docstring) and report each component's error.

    Returns the timing model and, per component, the error of the composed model against the
    table rows it came from: ``non_attention`` and ``per_sequence`` (the spline through the
    measured points: exact but for the monotone envelope), ``prefill_attention`` and
    ``decode_attention`` (the parametric fits) and ``mixed_attention`` (prefill plus decode
    against the mixed rows, a check of additivity, not fitted).
    """
    layers = int(layers if layers is not None else tables.model_shape.layers)
    require(layers >= 1, "layers", layers, "must be >= 1")
    tokens = np.array(sorted(next(iter(tables.dense.values()))), dtype=float)
    sequences = np.array(sorted(next(iter(tables.per_sequence.values()))), dtype=float)
    knots = np.unique(np.concatenate([tokens, sequences, [2 * tokens.max()]]))
    knots = knots[knots <= max(tokens.max(), sequences.max())]
    dense_sum = _layer_operators_seconds(tables, tokens, layers, parallel, interconnect)
    shape = tables.model_shape
    non_attention = np.maximum.accumulate(_spline_values(dict(zip(tokens.astype(int), dense_sum)), knots))
    communication = np.zeros(knots.size)
    if tables.tensor_parallel > 1:
        require(
            interconnect is not None,
            "interconnect",
            None,
            f"tensor parallel {tables.tensor_parallel} needs the link between the GPUs (a run's config.json, or --gpu)",
        )
        assert interconnect is not None
        # Two all-reduces per decoder layer (after o_proj and after down_proj), on the step's tokens.
        communication = 2 * layers * interconnect.allreduce_s(knots, shape.hidden, tables.tensor_parallel)
        non_attention = non_attention + communication
    seq_sum = np.zeros(sequences.size)
    for op in tables.per_sequence:
        seq_sum += np.array([tables.per_sequence[op][int(n)] for n in sequences])
    per_sequence = np.maximum.accumulate(_spline_values(dict(zip(sequences.astype(int), seq_sum)), knots))

    rows = tables.attention
    prefill = rows[(rows[:, 0] > 0) & (rows[:, 2] == 0)]
    decode = rows[(rows[:, 0] == 0) & (rows[:, 2] > 0)]
    mixed = rows[(rows[:, 0] > 0) & (rows[:, 2] > 0)]
    p = fit_prefill_chunk_attention(prefill[:, 0], prefill[:, 1], layers * prefill[:, 4])
    d = fit_decode_attention(decode[:, 2], decode[:, 3], layers * decode[:, 4])
    # Decodes beside a prefill: the mixed rows less their measured prefill-only time, summarised by
    # the median per (n_decode, kv_decode) cell (over chunks and prefixes), then fitted in the same form.
    alone = {(int(r[0]), int(r[1])): r[4] for r in prefill}
    beside: dict[tuple[int, int], list[float]] = defaultdict(list)
    for r in mixed:
        key = (int(r[0]), int(r[1]))
        if key in alone:
            beside[(int(r[2]), int(r[3]))].append(r[4] - alone[key])
    cells = np.array([(n, k, float(np.median(v))) for (n, k), v in sorted(beside.items())])
    cells = cells[cells[:, 2] > 0] if cells.size else cells
    require(cells.shape[0] >= 5, f"{Path(tables.folder).name}: mixed attention cells", cells.shape[0], "need 5")
    dm = fit_decode_attention(cells[:, 0], cells[:, 1], layers * cells[:, 2])
    timing = MeasuredTiming(
        layers=layers,
        knots_tokens=tuple(float(k) for k in knots),
        non_attention_s=tuple(float(v) for v in non_attention),
        prefill_kv_save_s_per_token=(0.0,) * knots.size,
        prefill_attention=p[:4],  # type: ignore[arg-type]
        decode_attention=d,  # type: ignore[arg-type]
        decode_kv_save=(0.0, 0.0),
        per_sequence_s=tuple(float(v) for v in per_sequence),
        prefill_per_cached_token_s=p[4],
        mixed_decode_attention=dm,
    )
    quality = {
        "non_attention": component_quality(
            "non_attention",
            f"sum of operators x calls, spline on {knots.size} knots",
            timing.non_attention_time(tokens) - np.interp(tokens, knots, communication),
            dense_sum,
        ),
        "per_sequence": component_quality(
            "per_sequence", "lm_head + sampler, spline", timing.per_sequence_time(sequences), seq_sum
        ),
        "prefill_attention": component_quality(
            "prefill_attention",
            "p0 + p_c c + p_ck c k + p_cc c^2 + p_k k",
            timing.prefill_attention_time(prefill[:, 0], prefill[:, 1]),
            layers * prefill[:, 4],
        ),
        "decode_attention": component_quality(
            "decode_attention",
            "max(d0 + d_b n + d_kv n k, e0 + e_k k)",
            timing.decode_attention_time(decode[:, 2], decode[:, 2] * decode[:, 3]),
            layers * decode[:, 4],
        ),
    }
    if mixed.shape[0]:
        predicted = timing.prefill_attention_time(mixed[:, 0], mixed[:, 1]) + timing.decode_attention_time(
            mixed[:, 2], mixed[:, 2] * mixed[:, 3], mixed=True
        )
        quality["mixed_attention"] = component_quality(
            "mixed_attention", "p(c, k) + mixed-batch decode form", predicted, layers * mixed[:, 4]
        )
    fit = {
        "source": "LLMServingSim per-operator tables measured through vLLM (CASYS Lab at KAIST, MIT licence)",
        "folder": Path(tables.folder).name,
        "engine_version": tables.engine_version,
        "tensor_parallel": tables.tensor_parallel,
        "model": tables.model,
        "components": {name: q.to_dict() for name, q in quality.items()},
        **({"moe": _moe_provenance(tables, parallel)} if tables.moe is not None and shape.is_moe else {}),
        **(
            {
                "interconnect": {
                    "bandwidth_bytes_per_s": interconnect.bandwidth_bytes_per_s,
                    "latency_s": interconnect.latency_s,
                    "source": interconnect.source,
                    "model": "2 ring all-reduces of tokens x hidden per layer"
                    if tables.tensor_parallel > 1
                    else "no all-reduce (tensor parallel 1)",
                }
            }
            if interconnect is not None and (tables.tensor_parallel > 1 or (parallel and parallel.expert_group > 1))
            else {}
        ),
    }
    return (
        MeasuredTiming(
            timing.layers,
            timing.knots_tokens,
            timing.non_attention_s,
            timing.prefill_kv_save_s_per_token,
            timing.prefill_attention,
            timing.decode_attention,
            timing.decode_kv_save,
            fit,
            timing.per_sequence_s,
            timing.prefill_per_cached_token_s,
            timing.mixed_decode_attention,
        ),
        quality,
    )


def activation_peak_bytes(model: ModelShape, tensor_parallel: int, max_num_batched_tokens: int) -> float:
    """An estimate of vLLM's profiled activation peak: the largest live tensors of one forward pass.

    At ``max_num_batched_tokens`` tokens, 2 bytes per value: the residual stream, its norm, the
    attention output and the QKV projection (about four hidden-sized rows per token), the gated
    MLP's up projection (``2 x ffn / tp``) and the logits (a 128k-entry vocabulary / tp for the
    models here).  vLLM measures this in a profiling run; fluidopt has no such run, so this is an
    estimate, checked against the one logged capacity (README, "How close to a real engine").
    """
    vocab = model.vocab or (128_256 if model.name.startswith("llama-3") else 151_936)
    width = model.ffn_hidden or model.experts_per_token * model.expert_ffn_hidden  # MoE: the routed experts
    per_token = 4 * model.hidden + (2 * width + vocab) / tensor_parallel
    return float(max_num_batched_tokens * per_token * model.bytes_per_value)


def vllm_kv_capacity_tokens(
    model: ModelShape,
    gpu_memory_bytes: float,
    *,
    tensor_parallel: int = 1,
    gpu_memory_utilization: float = 0.9,
    max_num_batched_tokens: int = 2048,
    block_size: int = 16,
    expert_group: int = 1,
) -> int:
    """VLLM's KV capacity rule per GPU: ``memory x utilization - weights / tp - activation peak``, in whole blocks.

    The bytes per token of one GPU hold its share of the KV heads (``kv_heads / tp``).  With
    expert parallelism over ``expert_group`` GPUs the routed experts are split over that group
    instead (:meth:`~fluidopt.hardware.ModelShape.weight_bytes_per_gpu`).
    """
    free = gpu_memory_bytes * gpu_memory_utilization
    free -= model.weight_bytes_per_gpu(tensor_parallel, expert_group)
    free -= activation_peak_bytes(model, tensor_parallel, max_num_batched_tokens)
    per_token = model.kv_bytes_per_token / tensor_parallel
    blocks = int(free // (per_token * block_size))
    require(blocks > 0, "kv_capacity_tokens", blocks * block_size, "vLLM's memory rule leaves no room for the KV cache")
    return blocks * block_size


def engine_profile(
    tables: EngineTables,
    *,
    interconnect: Interconnect | None = None,
    name: str | None = None,
    kv_capacity_tokens: int | None = None,
    kv_capacity_source: str = "",
    parallel: Parallelism | None = None,
    attention: str = "grid",
) -> tuple[Any, dict[str, ComponentFit]]:
    """A :class:`~fluidopt.profile.GPUProfile` of one engine from engine tables, with provenance.

    ``kv_capacity_tokens`` is the engine's KV capacity (from a run's log, or
    :func:`vllm_kv_capacity_tokens`); ``kv_capacity_source`` says which.  ``parallel`` (data and
    expert parallelism) changes the MoE layers' time (:func:`expert_parallel_moe_seconds`).
    ``attention``: ``"grid"`` (default) keeps the measured attention grid (timing kind
    ``engine-grid``); ``"fit"`` fits the ``measured`` kind's parametric forms to it (a profile
    that carries fitted coefficients, not the table).
    """
    from fluidopt.profile import GPUProfile

    if kv_capacity_tokens is None:
        raise InputError("kv_capacity_tokens", None, "is required (a run's log or vLLM's rule)")
    parallel = parallel or Parallelism(tables.tensor_parallel)
    require(
        parallel.tensor == tables.tensor_parallel,
        "tensor_parallel",
        parallel.tensor,
        f"the tables are tp{tables.tensor_parallel}",
    )
    require(attention in ("grid", "fit"), "attention", attention, "must be grid or fit")
    timing: Any
    timing, quality = fit_engine_timing(tables, interconnect=interconnect, parallel=parallel)
    if attention == "grid":
        timing, quality = grid_engine_timing(tables, timing, quality)
    shape = tables.model_shape
    suffix = (f"-dp{parallel.data}" if parallel.data > 1 else "") + ("-ep" if parallel.expert else "")
    label = name or f"{tables.gpu.lower()}-{shape.name}-tp{tables.tensor_parallel}{suffix}-vllm"
    fit = {
        **timing.fit,
        "gpu": tables.gpu,
        "kv_capacity_source": kv_capacity_source,
        "parallel": {"tensor": parallel.tensor, "data": parallel.data, "expert": parallel.expert},
    }
    where = f"tensor parallel {tables.tensor_parallel}"
    if parallel.data > 1:
        where += f", one of {parallel.data} data-parallel engines"
    if parallel.expert:
        where += f", experts spread over {parallel.expert_group} GPUs"
    description = (
        f"{tables.model} on {tables.gpu} ({where}): per-operator tables "
        f"measured through vLLM {tables.engine_version} (LLMServingSim), composed as the engine runs a step "
        f"(fluidopt.timing.fit.engine_tables); KV capacity {kv_capacity_tokens} tokens ({kv_capacity_source})"
    )
    profile = GPUProfile(
        label, int(kv_capacity_tokens), description=description, fit=fit, timing=timing, block_tokens=16
    )
    return profile, quality


def _run_hardware(run_folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(meta.json, config.json instance)`` of a run folder (empty mappings when absent)."""
    import json

    meta: dict[str, Any] = {}
    instance: dict[str, Any] = {}
    path = run_folder / "vllm" / "meta.json"
    if path.is_file():
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise InputError(str(path), "unreadable", "is not valid JSON") from None
    path = run_folder / "config.json"
    if path.is_file():
        try:
            instance = json.loads(path.read_text(encoding="utf-8"))["nodes"][0]["instances"][0]
        except (json.JSONDecodeError, KeyError, IndexError, TypeError):
            instance = {}
    return meta, instance


def kv_cache_record(meta: Any, where: str) -> dict[str, Any]:
    """A run's logged KV-cache record (``meta.json``'s ``kv_cache``), its block counts checked.

    ``num_gpu_blocks`` and ``block_size`` must be whole numbers >= 1 where given: a zero or negative
    count is a broken log, not a reason to fall back to the memory rule in silence.
    """
    record = (meta.get("kv_cache") if isinstance(meta, dict) else None) or {}
    require(isinstance(record, dict), f"{where}: kv_cache", record, "must be a table")
    for key in ("num_gpu_blocks", "block_size"):
        value = record.get(key)
        if value is None:
            continue
        ok = isinstance(value, int | float) and not isinstance(value, bool) and float(value).is_integer()
        require(ok and value >= 1, f"{where}: kv_cache.{key}", value, "must be a whole number >= 1 (as vLLM logs it)")
    return record


def profile_for_run(
    tables_folder: str | os.PathLike[str],
    run_folder: str | os.PathLike[str] | None = None,
    *,
    tensor_parallel: int | None = None,
    gpu_memory_bytes: float | None = None,
    name: str | None = None,
    data_parallel: int | None = None,
    expert_parallel: bool | None = None,
    gpu: str | None = None,
    attention: str = "grid",
) -> tuple[Any, dict[str, ComponentFit]]:
    """The engine-table profile of one engine of a run, sized as the engine sized its KV cache.

    ``attention`` as in :func:`engine_profile`.

    KV capacity: the run's logged ``num_gpu_blocks x block_size`` when present, otherwise vLLM's
    memory rule (:func:`vllm_kv_capacity_tokens`) with the GPU memory of the run's hardware record
    (``device_total_memory_bytes``, else ``config.json``'s ``mem_size`` in GB) or
    ``gpu_memory_bytes``, and the run's ``gpu_memory_utilization`` and ``max_num_batched_tokens``.
    Tensor, data and expert parallelism default to the run's engine arguments
    (``tensor_parallel_size``, ``data_parallel_size``, ``enable_expert_parallel``), and the
    interconnect to the run's ``config.json``, else to ``gpu``'s spec sheet
    (:func:`~fluidopt.hardware.gpu_spec`: a built-in name or a TOML file), whose memory also
    stands in for ``gpu_memory_bytes``.
    """
    run = Path(run_folder) if run_folder is not None else None
    meta, instance = _run_hardware(run) if run is not None else ({}, {})
    spec = gpu_spec(gpu) if gpu is not None else None
    if gpu_memory_bytes is None and spec is not None:
        gpu_memory_bytes = spec.hbm_gib * 2**30
    kwargs = meta.get("engine_kwargs", {}) if isinstance(meta, dict) else {}
    tp = tensor_parallel if tensor_parallel is not None else kwargs.get("tensor_parallel_size")
    dp = data_parallel if data_parallel is not None else kwargs.get("data_parallel_size")
    dp = 1 if dp is None else dp
    ep = bool(expert_parallel if expert_parallel is not None else kwargs.get("enable_expert_parallel"))
    tables = read_llmservingsim_profile(tables_folder, int(tp) if tp is not None else None, expert_parallel=ep)
    parallel = Parallelism(tables.tensor_parallel, dp, ep and tables.model_shape.is_moe)  # checks dp
    if run is not None and meta.get("model") and str(meta["model"]).lower() != tables.model.lower():
        raise InputError("run", str(run), f"served {meta['model']}; the tables were measured for {tables.model}")
    kv_cache = kv_cache_record(meta, f"{run}/vllm/meta.json") if run is not None else {}
    if kv_cache.get("num_gpu_blocks") and kv_cache.get("block_size"):
        capacity = int(kv_cache["num_gpu_blocks"]) * int(kv_cache["block_size"])
        source = f"num_gpu_blocks {kv_cache['num_gpu_blocks']} x block_size {kv_cache['block_size']} (logged by vLLM)"
    else:
        memory = gpu_memory_bytes
        where = "given"
        if memory is None and (meta.get("hardware") or {}).get("device_total_memory_bytes"):
            memory, where = float(meta["hardware"]["device_total_memory_bytes"]), "the run's hardware record"
        if memory is None and (instance.get("npu_mem") or {}).get("mem_size"):
            memory, where = float(instance["npu_mem"]["mem_size"]) * 1e9, "config.json mem_size (GB)"
        require(memory is not None, "gpu memory", None, "is needed for vLLM's memory rule: give --gpu-memory-gb")
        assert memory is not None
        utilization = float(kv_cache.get("gpu_memory_utilization") or 0.9)
        tokens = int(kwargs.get("max_num_batched_tokens") or 2048)
        capacity = vllm_kv_capacity_tokens(
            tables.model_shape,
            memory,
            tensor_parallel=tables.tensor_parallel,
            gpu_memory_utilization=utilization,
            max_num_batched_tokens=tokens,
            expert_group=parallel.expert_group,
        )
        split = (
            f"experts / {parallel.expert_group}, the rest / {parallel.tensor}"
            if parallel.expert
            else tables.tensor_parallel
        )
        source = (
            f"vLLM's memory rule, estimated: {memory / 1e9:.4g} GB ({where}) x {utilization:g} - weights / "
            f"{split} - activation peak at {tokens} tokens"
        )
    interconnect = read_interconnect(run) if run is not None else None
    if interconnect is None and spec is not None and spec.link_bandwidth_bytes_per_s > 0:
        interconnect = Interconnect(
            spec.link_bandwidth_bytes_per_s, spec.link_latency_s, f"{spec.name} spec sheet ({spec.link}, peak)"
        )
    profile, quality = engine_profile(
        tables,
        interconnect=interconnect,
        name=name,
        kv_capacity_tokens=capacity,
        kv_capacity_source=source,
        parallel=parallel,
        attention=attention,
    )
    hardware = meta.get("hardware") or {}
    device_memory = hardware.get("device_total_memory_bytes") or (
        float((instance.get("npu_mem") or {}).get("mem_size", 0)) * 1e9 or gpu_memory_bytes
    )
    gpu_name = str(hardware.get("device_name") or tables.gpu)
    return replace(
        profile, gpu=gpu_name, gpu_memory_gib=round(float(device_memory) / 2**30, 2) if device_memory else None
    ), quality
