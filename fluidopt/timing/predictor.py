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
from the parametric forms of :mod:`fluidopt.timing.measured` fitted to the same rows, evaluated at
Vidur's keys; the rounding and the keys are Vidur's (:mod:`fluidopt.timing.fit.predictor` builds
the tables).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

import numpy as np

from fluidopt._jit import kernel_function
from fluidopt.errors import reject_unknown_keys, require, require_finite_number, require_whole_number
from fluidopt.timing.protocol import FluidBatch
from fluidopt.timing.surrogate import SurrogateTiming

KIND = "vidur-predictor"
PREFILL_KEYS = ("base_s", "per_chunk_token_s", "per_chunk_kv_token_s", "per_chunk_token_sq_s")
DECODE_KEYS = ("base_s", "per_sequence_s", "per_kv_token_s", "floor_base_s", "floor_per_mean_kv_token_s")
TABLE_KEYS = ("tokens", "seconds")
ITERATION_TIME_KEYS = (
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

# Layout of the coefficient vector the step function reads.
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
class VidurPredictorTiming(SurrogateTiming):
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

    kind: ClassVar[str] = KIND
    exact_affine: ClassVar[bool] = False
    lp_refusal: ClassVar[str] = (
        "Vidur's predictor timing is a step function of the batch (table lookups at rounded token counts), "
        "so it has no tangent plane for the LP; its fluid answers come from the fixed point and bisection "
        "(method auto)"
    )

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

    def prefill_terms(self, chunks: Any, cached: Any) -> np.ndarray:
        """Vidur's prefill keys: the prefills, their cached tokens rounded up to 64, their squared chunks."""
        keys = round_up(np.asarray(cached, dtype=np.int64), self.kv_granularity)
        c = np.asarray(chunks, dtype=float)
        return np.array([float(c.size), float(np.sum(keys)), float(np.sum(c * c))])

    def fluid_time(self, batch: FluidBatch, x: Any) -> Any:
        """The predictor on the scaled fluid batch, vectorised over ``x`` (lookups at the fluid counts)."""
        x = np.asarray(x, dtype=float)
        tokens = x * batch.tokens
        result = np.asarray(self.non_attention_time(tokens) + self.kv_save_time(tokens), dtype=float)
        if batch.decodes > 0:
            d0, db, dkv, e0, ek = self.decode_attention
            b = x * batch.decodes
            kv = float(round_up(int(batch.decode_kv / batch.decodes), self.kv_granularity))
            attention = np.maximum(np.maximum(d0 + db * b + dkv * b * kv, e0 + ek * kv), 0.0)
            result = result + attention * (1 + self.decode_batching_overhead * (b > 1))
        prefills, kv_keys, chunk_sq = (float(v) for v in batch.terms) if len(batch.terms) else (0.0, 0.0, 0.0)
        if prefills > 0:
            p0, pc, pck, pcc = self.prefill_attention
            c = np.round(np.sqrt(x * chunk_sq))
            k = x * kv_keys
            attention = np.maximum(p0 + pc * c + pck * c * k + pcc * c * c, 0.0)
            result = result + attention * (1 + self.prefill_batching_overhead * (x * prefills > 1))
        return float(result) if np.ndim(result) == 0 else result

    def kernel_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Coefficients and a dense ``(4, DENSE_TOKENS + 1)`` table: tokens, non-attention (rounded), save."""
        return self._kernel_arrays

    @cached_property
    def _kernel_arrays(self) -> tuple[np.ndarray, np.ndarray]:
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
        reject_unknown_keys(data, ("kind", *ITERATION_TIME_KEYS), where)
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


# ------------------------------------------------------------------ the step formula (compiled into the kernel)
@kernel_function
def step_predictor(tcoef, ttable, kv, prefill, decodes, decode_kv, sequences, n_prefill, pchunk, pcached):
    """Iteration time as Vidur's predictor composes it (module docstring).

    ``ttable`` rows 1 and 2 are dense lookups by token count (non-attention at the count rounded
    up to 8, KV save at the exact count); ``decode_kv`` sums the decodes' processed tokens.
    """
    tokens = int(prefill) + int(decodes)
    top = ttable.shape[1] - 1
    step = int(tcoef[VC_ROUND])
    rounded = (tokens + step - 1) // step * step
    tau = ttable[1, rounded if rounded < top else top] + ttable[2, tokens if tokens < top else top]
    gran = int(tcoef[VC_GRAN])
    if decodes > 0:
        kv_key = float((int(decode_kv) // int(decodes) + gran - 1) // gran * gran)
        b = float(decodes)
        linear = tcoef[VC_D0] + tcoef[VC_DB] * b + tcoef[VC_DKV] * b * kv_key
        floor = tcoef[VC_E0] + tcoef[VC_EK] * kv_key
        attention = linear if linear > floor else floor
        if attention > 0.0:
            tau += attention * (1.0 + tcoef[VC_DOVER] * (decodes > 1))
    if n_prefill > 0:
        kv_keys = 0
        chunk_sq = 0.0
        for i in range(n_prefill):
            kv_keys += (int(pcached[i]) + gran - 1) // gran * gran
            chunk_sq += float(pchunk[i]) * float(pchunk[i])
        c = float(round(math.sqrt(chunk_sq)))
        k = float(kv_keys)
        attention = tcoef[VC_P0] + tcoef[VC_PC] * c + tcoef[VC_PCK] * c * k + tcoef[VC_PCC] * c * c
        if attention > 0.0:
            tau += attention * (1.0 + tcoef[VC_POVER] * (n_prefill > 1))
    return tau


TIMING = VidurPredictorTiming
STEP = step_predictor
