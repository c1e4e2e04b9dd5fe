"""Vidur's execution-time predictor, reproduced as lookups that can be explained (timing kind ``vidur-predictor``).

The paper's figures were simulated in Vidur (microsoft/vidur), whose
``SklearnExecutionTimePredictor`` (``vidur/execution_time_predictor/sklearn_execution_time_predictor.py``)
learns one random forest per operator from profiling rows, tabulates its predictions on a grid,
and composes an iteration from table lookups (``vidur/entities/execution_time.py``,
``ExecutionTime.model_time``: layers x (attention + MLP + norms + add), in ms).  The rules kept
here, each with the Vidur function it follows:

- **Non-attention kernels** (``_get_attention_layer_pre_proj_execution_time`` and its siblings
  for post-proj, rope, MLP up / down / activation, both norms and add): looked up at
  ``batch._total_num_tokens_rounded``, the batch's new tokens rounded up to a multiple of 8.
  fluidopt's lookup is the mean of ``mlp.csv``'s medians at the nearest profiled token count.
- **KV-cache save** (``_get_attention_kv_cache_save_execution_time``): looked up at the *exact*
  token count ``sum(batch.num_tokens)`` (Vidur's code says it does not round here), in one table
  learned from the attention rows of prefills and decodes together, keyed
  ``num_tokens = max(prefill_chunk_size, batch_size)`` (``_get_attention_df_with_derived_features``).
  A prefill row of chunk c and a decode row of batch B = c share one key although a prefill
  writes c tokens per request and a decode one, so at a token count where both kinds of rows
  exist the table holds their mean, and at one where only decode rows exist a nearly free save.
  fluidopt's lookup: the mean of the profiling grid's rows at the nearest grid token count (ties
  to the lower one, as a tree's split at the midpoint sends them), prefill and decode rows pooled
  (:func:`pooled_kv_save_table`).
- **Decode attention** (``_get_attention_decode_execution_time``, ``_get_batch_decode_attention_params``):
  keyed by the decode batch size ``B`` and ``int(mean(num_processed_tokens))`` rounded *up* to
  the prediction granularity (64), times ``1 + 0.1`` when ``B > 1`` (the batching overhead of
  GQA models).
- **Prefill attention** (``_get_attention_prefill_execution_time``, ``_get_batch_prefill_attention_params``):
  keyed by ``sum_i ceil64(k_i)`` (cached tokens of each prefilling request, rounded up) and
  ``round(sqrt(sum_i c_i^2))^2``, times ``1 + 0.1`` when more than one request prefills.
- **No CPU overhead** (``skip_cpu_overhead_modeling``), no tensor or pipeline parallelism.

The two attention tables are 2-D grids that the shared rows do not cover, so their values come
from the parametric forms of :mod:`fluidopt.timing` fitted to the same rows, evaluated at
Vidur's keys; the rounding and the keys are Vidur's.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from fluidopt.errors import InputError, reject_unknown_keys, require, require_finite_number, require_whole_number

if TYPE_CHECKING:
    from fluidopt.fitting import ComponentFit
    from fluidopt.hardware import GPUSpec, ModelShape
    from fluidopt.profile import GPUProfile

KIND = "vidur-predictor"
PREFILL_KEYS = ("base_s", "per_chunk_token_s", "per_chunk_kv_token_s", "per_chunk_token_sq_s")
DECODE_KEYS = ("base_s", "per_sequence_s", "per_kv_token_s", "floor_base_s", "floor_per_mean_kv_token_s")
TABLE_KEYS = ("tokens", "seconds")
PREDICTOR_KEYS = (
    "kind",
    "layers",
    "non_attention",
    "kv_cache_save",
    "prefill_attention",
    "decode_attention",
    "token_rounding",
    "kv_granularity",
    "prefill_batching_overhead",
    "decode_batching_overhead",
)
DENSE_TOKENS = 32_768  # the kernel's lookup tables cover 0..DENSE_TOKENS tokens per iteration

# Layout of the coefficient vector the kernel reads in this mode (fluidopt.sim.kernel).
VC_P0, VC_PC, VC_PCK, VC_PCC = 0, 1, 2, 3
VC_D0, VC_DB, VC_DKV, VC_E0, VC_EK = 4, 5, 6, 7, 8
VC_ROUND, VC_GRAN, VC_POVER, VC_DOVER = 9, 10, 11, 12
N_VIDUR_COEF = 13


def nearest_lookup(tokens: Any, keys: np.ndarray, values: np.ndarray) -> Any:
    """The value at the nearest key (ties go to the lower key, as a tree split at the midpoint)."""
    x = np.asarray(tokens, dtype=float)
    upper = np.clip(np.searchsorted(keys, x, side="left"), 0, keys.size - 1)
    lower = np.clip(upper - 1, 0, keys.size - 1)
    pick = np.where(np.abs(x - keys[lower]) <= np.abs(keys[upper] - x), lower, upper)
    result = values[pick]
    return float(result) if np.ndim(result) == 0 else result


def round_up(value: Any, step: int) -> Any:
    """``ceil(value / step) * step`` on whole numbers (Vidur's ``(v + step - 1) // step * step``)."""
    v = np.asarray(value, dtype=np.int64)
    result = (v + step - 1) // step * step
    return int(result) if np.ndim(result) == 0 else result


@dataclass(frozen=True)
class VidurPredictorTiming:
    """Iteration time as Vidur's predictor composes it (module docstring).

    Parameters
    ----------
    layers : int
        Transformer layers the per-layer lookups were multiplied by.
    compute_tokens, compute_s : tuple of float
        Profiled token counts and the non-attention time of one iteration there (seconds).
    save_tokens, save_s : tuple of float
        Token counts of the pooled KV-save table and the save time of one iteration there.
    prefill_attention : tuple of float
        ``(p0, p_c, p_ck, p_cc)``: prefill attention at Vidur's key ``(k, c)``, seconds per iteration.
    decode_attention : tuple of float
        ``(d0, d_b, d_kv, e0, e_k)``: decode attention ``max(d0 + d_b B + d_kv B k, e0 + e_k k)``.
    token_rounding, kv_granularity : int
        Vidur's rounding of the token count (8) and of KV lengths (64).
    prefill_batching_overhead, decode_batching_overhead : float
        Vidur's attention batching overheads (0.1 each for GQA models).
    fit : dict
        Provenance and the error of each lookup against its rows (ignored by equality).

    """

    layers: int
    compute_tokens: tuple[float, ...]
    compute_s: tuple[float, ...]
    save_tokens: tuple[float, ...]
    save_s: tuple[float, ...]
    prefill_attention: tuple[float, float, float, float]
    decode_attention: tuple[float, float, float, float, float]
    token_rounding: int = 8
    kv_granularity: int = 64
    prefill_batching_overhead: float = 0.1
    decode_batching_overhead: float = 0.1
    fit: dict[str, Any] = field(default_factory=dict, compare=False)

    kind = KIND

    def __post_init__(self) -> None:
        where = "iteration_time"
        object.__setattr__(self, "layers", require_whole_number(self.layers, f"{where}.layers", 1))
        for keys_name, values_name, table in (
            ("compute_tokens", "compute_s", "non_attention"),
            ("save_tokens", "save_s", "kv_cache_save"),
        ):
            keys = tuple(float(require_finite_number(v, f"{where}.{table}.tokens")) for v in getattr(self, keys_name))
            values = tuple(
                float(require_finite_number(v, f"{where}.{table}.seconds")) for v in getattr(self, values_name)
            )
            require(len(keys) >= 2, f"{where}.{table}.tokens", len(keys), "needs at least two token counts")
            require(len(values) == len(keys), f"{where}.{table}.seconds", len(values), f"needs {len(keys)} values")
            require(
                all(b > a for a, b in zip(keys, keys[1:])) and keys[0] >= 0,
                f"{where}.{table}.tokens",
                list(keys[:6]),
                "must be >= 0 and strictly increasing",
            )
            require(min(values) >= 0, f"{where}.{table}.seconds", min(values), "must be >= 0")
            object.__setattr__(self, keys_name, keys)
            object.__setattr__(self, values_name, values)
        require(self.compute_s[0] > 0, f"{where}.non_attention.seconds", self.compute_s[0], "must be > 0")
        prefill = tuple(float(require_finite_number(v, f"{where}.prefill_attention")) for v in self.prefill_attention)
        decode = tuple(float(require_finite_number(v, f"{where}.decode_attention")) for v in self.decode_attention)
        require(len(prefill) == 4, f"{where}.prefill_attention", list(prefill), "needs 4 coefficients")
        require(len(decode) == 5, f"{where}.decode_attention", list(decode), "needs 5 coefficients")
        object.__setattr__(self, "prefill_attention", prefill)
        object.__setattr__(self, "decode_attention", decode)
        for name in ("token_rounding", "kv_granularity"):
            object.__setattr__(self, name, require_whole_number(getattr(self, name), f"{where}.{name}", 1))
        for name in ("prefill_batching_overhead", "decode_batching_overhead"):
            value = require_finite_number(getattr(self, name), f"{where}.{name}")
            require(0 <= value <= 10, f"{where}.{name}", value, "must be in [0, 10]")
            object.__setattr__(self, name, float(value))

    # ---------------------------------------------------------------- lookups
    def non_attention_time(self, tokens: Any) -> Any:
        """Non-attention kernels at the token count rounded up to ``token_rounding`` (0 tokens: 0 s)."""
        t = np.asarray(tokens, dtype=float)
        rounded = np.ceil(t / self.token_rounding) * self.token_rounding
        value = np.where(t > 0, nearest_lookup(rounded, np.asarray(self.compute_tokens), np.asarray(self.compute_s)), 0)
        return float(value) if np.ndim(value) == 0 else value

    def kv_save_time(self, tokens: Any) -> Any:
        """KV-cache save of an iteration that processes ``tokens`` new tokens (exact count, pooled table)."""
        t = np.asarray(tokens, dtype=float)
        value = np.where(t > 0, nearest_lookup(t, np.asarray(self.save_tokens), np.asarray(self.save_s)), 0.0)
        return float(value) if np.ndim(value) == 0 else value

    def decode_attention_time(self, batch: int, mean_processed: float) -> float:
        """Decode attention of ``B`` requests whose processed tokens average ``mean_processed``."""
        if batch <= 0:
            return 0.0
        d0, db, dkv, e0, ek = self.decode_attention
        kv = float(round_up(int(mean_processed), self.kv_granularity))
        value = max(d0 + db * batch + dkv * batch * kv, e0 + ek * kv, 0.0)
        return value * (1.0 + self.decode_batching_overhead * (batch > 1))

    def prefill_attention_time(self, chunks: Any, cached: Any) -> float:
        """Prefill attention of the prefilling requests of one batch, keyed as Vidur keys it."""
        c = np.asarray(chunks, dtype=float)
        if c.size == 0:
            return 0.0
        k = float(np.sum(round_up(np.asarray(cached, dtype=np.int64), self.kv_granularity)))
        chunk = float(round(math.sqrt(float(np.sum(c * c)))))
        p0, pc, pck, pcc = self.prefill_attention
        value = max(p0 + pc * chunk + pck * chunk * k + pcc * chunk * chunk, 0.0)
        return value * (1.0 + self.prefill_batching_overhead * (c.size > 1))

    def batch_time(self, chunks: Any = (), cached: Any = (), decode_cached: Any = ()) -> float:
        """Iteration time of one concrete batch.

        Parameters
        ----------
        chunks, cached : sequences of int
            For each prefilling request: new tokens this iteration and tokens already processed.
        decode_cached : sequence of int
            For each decoding request: tokens already processed (Vidur's ``num_processed_tokens``).

        """
        chunks = np.asarray(chunks, dtype=float)
        decode = np.asarray(decode_cached, dtype=float)
        tokens = float(chunks.sum()) + decode.size
        total = float(self.non_attention_time(tokens)) + float(self.kv_save_time(tokens))
        total += self.prefill_attention_time(chunks, cached)
        if decode.size:
            total += self.decode_attention_time(decode.size, float(decode.mean()))
        return total

    # ------------------------------------------------------------ simulator
    def kernel_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Coefficients and a dense ``(4, DENSE_TOKENS + 1)`` table: tokens, non-attention (rounded), save."""
        coef = np.zeros(N_VIDUR_COEF)
        coef[VC_P0 : VC_PCC + 1] = self.prefill_attention
        coef[VC_D0 : VC_EK + 1] = self.decode_attention
        coef[VC_ROUND] = self.token_rounding
        coef[VC_GRAN] = self.kv_granularity
        coef[VC_POVER] = self.prefill_batching_overhead
        coef[VC_DOVER] = self.decode_batching_overhead
        tokens = np.arange(DENSE_TOKENS + 1, dtype=float)
        table = np.vstack([tokens, self.non_attention_time(tokens), self.kv_save_time(tokens), np.zeros_like(tokens)])
        return coef, np.ascontiguousarray(table)

    # ---------------------------------------------------------------- I/O
    def to_dict(self) -> dict[str, Any]:
        """Mapping in the profile TOML schema (``[iteration_time]`` with ``kind = "vidur-predictor"``)."""
        return {
            "kind": KIND,
            "layers": self.layers,
            "non_attention": {"tokens": list(self.compute_tokens), "seconds": list(self.compute_s)},
            "kv_cache_save": {"tokens": list(self.save_tokens), "seconds": list(self.save_s)},
            "prefill_attention": dict(zip(PREFILL_KEYS, self.prefill_attention)),
            "decode_attention": dict(zip(DECODE_KEYS, self.decode_attention)),
            "token_rounding": self.token_rounding,
            "kv_granularity": self.kv_granularity,
            "prefill_batching_overhead": self.prefill_batching_overhead,
            "decode_batching_overhead": self.decode_batching_overhead,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str, fit: dict[str, Any] | None = None) -> VidurPredictorTiming:
        """Build the predictor from the ``[iteration_time]`` table of a profile."""
        reject_unknown_keys(data, PREDICTOR_KEYS, where)
        for key in ("layers", "non_attention", "kv_cache_save", "prefill_attention", "decode_attention"):
            require(key in data, f"{where}.{key}", None, f"is required for kind = {KIND!r}")
        tables = {}
        for name in ("non_attention", "kv_cache_save"):
            table = data[name]
            require(isinstance(table, dict), f"{where}.{name}", table, "must be a table with tokens and seconds")
            reject_unknown_keys(table, TABLE_KEYS, f"{where}.{name}")
            for key in TABLE_KEYS:
                require(isinstance(table.get(key), list), f"{where}.{name}.{key}", table.get(key), "must be an array")
            tables[name] = (tuple(table["tokens"]), tuple(table["seconds"]))
        coefficients = {}
        for name, keys in (("prefill_attention", PREFILL_KEYS), ("decode_attention", DECODE_KEYS)):
            raw = data[name]
            require(isinstance(raw, dict), f"{where}.{name}", raw, "must be a table")
            reject_unknown_keys(raw, keys, f"{where}.{name}")
            for key in keys:
                require(key in raw, f"{where}.{name}.{key}", None, "is required")
            coefficients[name] = tuple(raw[key] for key in keys)
        return cls(
            layers=data["layers"],
            compute_tokens=tables["non_attention"][0],
            compute_s=tables["non_attention"][1],
            save_tokens=tables["kv_cache_save"][0],
            save_s=tables["kv_cache_save"][1],
            prefill_attention=coefficients["prefill_attention"],  # type: ignore[arg-type]
            decode_attention=coefficients["decode_attention"],  # type: ignore[arg-type]
            token_rounding=data.get("token_rounding", 8),
            kv_granularity=data.get("kv_granularity", 64),
            prefill_batching_overhead=data.get("prefill_batching_overhead", 0.1),
            decode_batching_overhead=data.get("decode_batching_overhead", 0.1),
            fit=dict(fit or {}),
        )


# ------------------------------------------------------------------ building from measurements
def vidur_attention_grid(max_kv: int = 16_384) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of Vidur's attention profiling grid as the shared sample's README describes it.

    Returns ``(prefill_chunk, prefill_kv, decode_batch)`` for the chunked-prefill rows (chunks
    64..128 step 16, 128..1024 step 32, 1024..4096 step 64, then step 128; cached
    ``0, c, 2c, ...`` below ``max_kv``), the full-prefill rows (chunks 32..1024 step 32,
    1024..4096 step 64, then step 128; nothing cached) and, for decodes, one row per batch size
    (1..128, then 136..512 step 8) and decode KV length (32..1024 step 32, 1088..4096 step 64,
    then step 256 up to ``max_kv``): the batch column is repeated once per KV length.  The grid
    is a reading of the profile's row order, not Vidur's profiler run again: the full file has
    about 27,000 rows, this grid 25,242.
    """
    chunk_sizes = np.unique(
        np.concatenate(
            [
                np.arange(64, 129, 16),
                np.arange(128, 1025, 32),
                np.arange(1024, 4097, 64),
                np.arange(4096 + 128, max_kv + 1, 128),
            ]
        )
    )
    prefill_chunk, prefill_kv = [], []
    for c in chunk_sizes:
        kv = np.arange(0, max_kv, c)
        prefill_chunk.append(np.full(kv.size, c))
        prefill_kv.append(kv)
    full = np.unique(
        np.concatenate([np.arange(32, 1025, 32), np.arange(1024, 4097, 64), np.arange(4096 + 128, max_kv + 1, 128)])
    )
    prefill_chunk.append(full)
    prefill_kv.append(np.zeros(full.size, dtype=int))
    batches = np.concatenate([np.arange(1, 129), np.arange(136, 513, 8)])
    kv_lengths = np.unique(
        np.concatenate([np.arange(32, 1025, 32), np.arange(1024, 4097, 64), np.arange(4096 + 256, max_kv + 1, 256)])
    )
    return (
        np.concatenate(prefill_chunk).astype(float),
        np.concatenate(prefill_kv).astype(float),
        np.tile(batches, kv_lengths.size).astype(float),
    )


def pooled_kv_save_table(
    prefill_chunk: np.ndarray, prefill_save_s: np.ndarray, decode_batch: np.ndarray, decode_save_s: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Vidur's KV-save table: the mean save of all rows at each key ``max(chunk, batch)``, both kinds pooled."""
    keys = np.concatenate([np.asarray(prefill_chunk, float), np.asarray(decode_batch, float)])
    values = np.concatenate([np.asarray(prefill_save_s, float), np.asarray(decode_save_s, float)])
    tokens, inverse = np.unique(keys, return_inverse=True)
    sums = np.bincount(inverse, weights=values)
    counts = np.bincount(inverse)
    return tokens, sums / counts


def _mean_by_key(keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    unique, inverse = np.unique(np.asarray(keys, float), return_inverse=True)
    return unique, np.bincount(inverse, weights=np.asarray(values, float)) / np.bincount(inverse)


def fit_vidur_predictor_profile(
    mlp_path: str | os.PathLike[str],
    attention_path: str | os.PathLike[str],
    gpu: GPUSpec,
    model: ModelShape,
    name: str,
    *,
    pooling: str = "auto",
    memory_margin: float = 0.1,
    block_tokens: int = 16,
    max_request_tokens: int = 4096,
    source: str | None = None,
) -> tuple[GPUProfile, dict[str, ComponentFit]]:
    """A ``vidur-predictor`` GPU profile from Vidur-format ``mlp.csv`` and attention rows.

    Parameters
    ----------
    mlp_path, attention_path : path
        Vidur's ``mlp.csv`` and ``attention.csv`` (or the shared sample format).
    gpu, model : GPUSpec, ModelShape
        For the layer count and Vidur's KV-capacity planner.
    name : str
        Profile name.
    pooling : {"auto", "rows", "grid"}
        How the KV-save table is pooled: ``rows`` averages the file's own rows (a complete Vidur
        profile), ``grid`` the rows of Vidur's profiling grid (:func:`vidur_attention_grid`) with
        each row's save time from the measured model fitted to the file (a sample of the grid:
        the shared file holds 401 of about 27,000 rows).  ``auto``: ``grid`` for the sample
        format, ``rows`` for Vidur's.

    Returns
    -------
    (GPUProfile, dict)
        The profile and, per lookup, its error against the rows it came from.

    Raises
    ------
    fluidopt.errors.InputError
        When the attention file lacks the prefill or the decode rows a table needs (names the file).

    """
    from pathlib import Path

    from fluidopt.fitting import _quality, fit_measured_timing, read_attention_csv, read_vidur_mlp_csv
    from fluidopt.hardware import vidur_kv_capacity_tokens
    from fluidopt.profile import GPUProfile

    if pooling not in ("auto", "rows", "grid"):
        raise InputError("pooling", pooling, "must be one of auto, rows, grid")
    mlp = read_vidur_mlp_csv(mlp_path, model.layers)
    attention = read_attention_csv(attention_path, model.layers)
    file_name = Path(attention.source).name
    missing = [
        label
        for label, count in (
            ("prefill rows (regime P or F, or is_prefill = True)", attention.prefill_s.size),
            ("decode rows (regime D, or is_prefill = False)", attention.decode_s.size),
        )
        if count < 5
    ]
    if missing:
        raise InputError(
            f"{file_name}: attention rows",
            f"{attention.prefill_s.size} prefill, {attention.decode_s.size} decode",
            f"the predictor's KV-save table pools both kinds; missing {' and '.join(missing)} (at least 5 each)",
        )
    measured, _ = fit_measured_timing(mlp, attention, model.layers)
    with Path(attention.source).open(encoding="utf-8") as stream:
        sample_format = "regime" in stream.readline()
    mode = ("grid" if sample_format else "rows") if pooling == "auto" else pooling
    if mode == "grid":
        grid_chunk, grid_kv, grid_batch = vidur_attention_grid()
        prefill_save = measured.prefill_kv_save_time(grid_chunk, grid_kv)
        decode_save = measured.decode_kv_save_time(grid_batch)
        save_tokens, save_s = pooled_kv_save_table(grid_chunk, prefill_save, grid_batch, decode_save)
    else:
        save_tokens, save_s = pooled_kv_save_table(
            attention.prefill_chunk, attention.prefill_save_s, attention.decode_batch, attention.decode_save_s
        )
    compute_tokens, compute_s = _mean_by_key(mlp.tokens, mlp.time_s)
    timing = VidurPredictorTiming(
        layers=model.layers,
        compute_tokens=tuple(compute_tokens),
        compute_s=tuple(compute_s),
        save_tokens=tuple(save_tokens),
        save_s=tuple(save_s),
        prefill_attention=measured.prefill_attention,
        decode_attention=measured.decode_attention,
    )
    pre_ok = attention.prefill_s > 0
    dec_ok = attention.decode_s > 0
    quality = {
        "non_attention": _quality(
            "non_attention",
            "nearest profiled count at tokens rounded up to 8",
            timing.non_attention_time(mlp.tokens),
            mlp.time_s,
        ),
        "kv_save_prefill_rows": _quality(
            "kv_save_prefill_rows",
            f"pooled table ({mode}) at the chunk",
            timing.kv_save_time(attention.prefill_chunk),
            attention.prefill_save_s,
        ),
        "kv_save_decode_rows": _quality(
            "kv_save_decode_rows",
            f"pooled table ({mode}) at the batch",
            timing.kv_save_time(attention.decode_batch),
            attention.decode_save_s,
        ),
        "prefill_attention": _quality(
            "prefill_attention",
            "p(c, ceil64(k)), one request",
            np.array(
                [
                    timing.prefill_attention_time([c], [k])
                    for c, k in zip(attention.prefill_chunk[pre_ok], attention.prefill_kv[pre_ok])
                ]
            ),
            attention.prefill_s[pre_ok],
        ),
        "decode_attention": _quality(
            "decode_attention",
            "d(B, ceil64(k)) x 1.1 for B > 1",
            np.array(
                [
                    timing.decode_attention_time(int(b), k)
                    for b, k in zip(attention.decode_batch[dec_ok], attention.decode_kv[dec_ok])
                ]
            ),
            attention.decode_s[dec_ok],
        ),
    }
    capacity = vidur_kv_capacity_tokens(
        gpu, model, memory_margin=memory_margin, block_tokens=block_tokens, max_request_tokens=max_request_tokens
    )
    origin = source or f"{Path(mlp_path).as_posix()} + {Path(attention_path).as_posix()}"
    description = (
        f"{model.name} on {gpu.name}, iteration time as Vidur's execution-time predictor composes it "
        f"(docs/theory.md section 13): {model.layers} layers x (non-attention at tokens rounded up to 8 + "
        f"KV-cache save from one table pooling prefill and decode rows by max(chunk, batch) + prefill and "
        f"decode attention at Vidur's rounded keys x 1.1 batching overhead), no CPU overhead; from {origin} "
        f"(Vidur is MIT-licensed), KV-save table pooled over the {mode}. KV capacity from Vidur's planner: "
        f"margin {memory_margin:g}, {block_tokens}-token blocks, whole {max_request_tokens}-token requests."
    )
    fit_info: dict[str, Any] = {
        "source": origin,
        "gpu": gpu.name,
        "model": model.name,
        "pooling": mode,
        "memory_margin": memory_margin,
        "max_request_tokens": max_request_tokens,
        "components": {k: q.to_dict() for k, q in quality.items()},
    }
    timing = replace(timing, fit={k: q.to_dict() for k, q in quality.items()})
    profile = GPUProfile(name, capacity, (), description, fit_info, timing, block_tokens)  # type: ignore[arg-type]
    return profile, quality
