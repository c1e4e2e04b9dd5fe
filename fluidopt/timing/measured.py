"""Measured iteration-time model composed from per-operator timings, the way Vidur composes them.

One iteration of a batch costs (docs/theory.md, measured timing; all numbers per iteration,
i.e. already multiplied by the number of transformer layers):

``tau = f(T) + sum_{prefilling i} (c_i r(k_i + c_i) + p(c_i, k_i)) + [B > 0] (s_d(B) + d(B, KV / B)) + g(n)``

- ``T`` new tokens in the batch (prefill chunk tokens ``P`` plus one per decode ``B``);
  ``f(T)`` the non-attention kernels (matmuls, norms, activations of every layer),
  *piecewise-linear* in ``T`` on fixed knots (a least-squares linear spline: the measurements
  are flat up to the weight-read knee, then linear with steps no low-order polynomial follows).
- ``sum_i c_i r(k_i + c_i)`` the KV-cache save of the prompt tokens: each chunk writes ``c_i``
  tokens at a per-token rate ``r`` that grows with the cache position reached (0.30 us per
  token per layer up to about 600 tokens, 0.53 us beyond 2,500 on the A100 Llama-3-8B
  measurements), piecewise-linear on the same knots; ``s_d(B) = s0 + s1 B`` is the save of
  the decode tokens.  They are kept apart because the
  measurements are: a 64-token prefill chunk writes its cache in 0.019 ms per layer, a decode
  batch of 64 in 0.003 ms.  (Vidur looks the save up by the batch's token count alone with a
  model learned on both kinds of rows, so in Vidur small mixed batches pay little for it;
  docs/theory.md section 10.  Fitting them apart follows the measurements instead.)
- ``p(c, k) = p0 + p_c c + p_ck c k + p_cc c^2`` for a prefilling request with a chunk of ``c``
  new tokens on top of ``k`` cached ones: the FlashAttention work is ``c (k + c / 2)``
  query-key pairs, plus a per-call overhead and a per-token read.
- ``d(B, kbar) = max(d0 + d_b B + d_kv B kbar, e0 + e_k kbar)`` for a decode batch of ``B``
  requests with ``kbar`` cached tokens on average (Vidur's lookup key): memory-bound reading of
  ``B kbar`` cached tokens, with a floor set by one long sequence.
- ``g(n)`` once-per-step costs of the ``n`` sequences in the batch (the LM head and sampler,
  which vLLM runs for every scheduled request), a linear spline; zero in Vidur's composition,
  measured in the engine tables of :mod:`fluidopt.engine_tables`.

Every coefficient is fitted from measurements (:mod:`fluidopt.timing.fit`); this module only
evaluates the model: one step formula (:func:`step_measured`, compiled into the simulator and
called from Python by :meth:`MeasuredTiming.batch_time`) and its fluid form
(:meth:`MeasuredTiming.fluid_time`, vectorised over the scale of the fluid batch).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

import numpy as np

from fluidopt._jit import kernel_function
from fluidopt.errors import reject_unknown_keys, require, require_finite_number, require_whole_number
from fluidopt.timing.protocol import FluidBatch
from fluidopt.timing.surrogate import SurrogateTiming
from fluidopt.timing.values import coefficients, number_tuple

PREFILL_KEYS = ("base_s", "per_chunk_token_s", "per_chunk_kv_token_s", "per_chunk_token_sq_s")
DECODE_KEYS = ("base_s", "per_sequence_s", "per_kv_token_s", "floor_base_s", "floor_per_mean_kv_token_s")
DECODE_SAVE_KEYS = ("base_s", "per_sequence_s")
MIXED_KEYS = ("prefill_per_cached_token_s", "decode_attention")
ITERATION_TIME_KEYS = ("layers", "tokens", "prefill_attention", "decode_attention", "decode_kv_save", "mixed_batch")
TOKENS_KEYS = ("knots", "non_attention_s", "prefill_kv_save_s_per_token", "per_sequence_s")

KIND = "measured"
# Layout of the flat coefficient vector the step function reads; rows of its table: knots, f, r, g.
TC_P0, TC_PC, TC_PCK, TC_PCC = 0, 1, 2, 3
TC_D0, TC_DB, TC_DKV, TC_E0, TC_EK = 4, 5, 6, 7, 8
TC_S0, TC_S1 = 9, 10
TC_PK = 11  # prefill attention per cached token, independent of the chunk (memory-bound reads)
TC_M0, TC_MB, TC_MKV, TC_ME0, TC_MEK = 12, 13, 14, 15, 16  # decode attention inside a batch with a prefill
N_TIMING_COEF = 17


@dataclass(frozen=True)
class MeasuredTiming(SurrogateTiming):
    """An iteration-time model composed from measured operator timings (module docstring).

    Parameters
    ----------
    layers : int
        Transformer layers the per-layer measurements were multiplied by (provenance only).
    knots_tokens : tuple of float
        Increasing token counts where ``g`` is tabulated (at least two).
    non_attention_s : tuple of float
        Non-attention kernels per iteration at the knots, as a function of new tokens (seconds).
    prefill_kv_save_s_per_token : tuple of float
        KV-cache save per prompt token at the knots, as a function of the cache position reached.
    prefill_attention : tuple of float
        ``(p0, p_c, p_ck, p_cc)`` in seconds per iteration per prefilling request.
    decode_attention : tuple of float
        ``(d0, d_b, d_kv, e0, e_k)`` in seconds per iteration.
    decode_kv_save : tuple of float
        ``(s0, s1)``: KV-cache save of a decode batch of ``B`` requests is ``s0 + s1 B``.
    per_sequence_s : tuple of float, optional
        Once-per-step costs that grow with the sequences in the batch (LM head, sampler), at the
        knots read as sequence counts (default none: Vidur's composition leaves them out).
    prefill_per_cached_token_s : float, optional
        A chunk-independent term ``p_k k`` of prefill attention (default 0): small chunks read
        their cached prefix at a memory-bound rate.
    mixed_decode_attention : tuple of float, optional
        ``(d0, d_b, d_kv, e0, e_k)`` of the decodes of a batch that also prefills (default: as
        ``decode_attention``).  vLLM runs such a batch through one varlen attention kernel in
        which decodes cost about twice what they cost alone.
    fit : dict
        Fit quality per component and provenance (ignored by equality).

    """

    layers: int
    knots_tokens: tuple[float, ...]
    non_attention_s: tuple[float, ...]
    prefill_kv_save_s_per_token: tuple[float, ...]
    prefill_attention: tuple[float, float, float, float]
    decode_attention: tuple[float, float, float, float, float]
    decode_kv_save: tuple[float, float]
    fit: dict[str, Any] = field(default_factory=dict, compare=False)
    per_sequence_s: tuple[float, ...] = ()
    prefill_per_cached_token_s: float = 0.0
    mixed_decode_attention: tuple[float, ...] = ()

    kind: ClassVar[str] = KIND
    exact_affine: ClassVar[bool] = False
    lp_refusal: ClassVar[str] = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", require_whole_number(self.layers, "iteration_time.layers", 1))
        knots = number_tuple(self.knots_tokens, "iteration_time.tokens.knots")
        require(len(knots) >= 2, "iteration_time.tokens.knots", list(knots), "needs at least two knots")
        require(
            all(b > a for a, b in zip(knots, knots[1:])) and knots[0] >= 0,
            "iteration_time.tokens.knots",
            list(knots),
            "must be >= 0 and strictly increasing",
        )
        object.__setattr__(self, "knots_tokens", knots)
        for name in ("non_attention_s", "prefill_kv_save_s_per_token"):
            values = number_tuple(getattr(self, name), f"iteration_time.tokens.{name}")
            require(
                len(values) == len(knots),
                f"iteration_time.tokens.{name}",
                len(values),
                f"needs one value per knot ({len(knots)})",
            )
            require(min(values) >= 0, f"iteration_time.tokens.{name}", min(values), "must be >= 0")
            require(
                all(b >= a - 1e-12 * max(values) for a, b in zip(values, values[1:])),
                f"iteration_time.tokens.{name}",
                list(values),
                "must not decrease with tokens (non-monotone times)",
            )
            object.__setattr__(self, name, values)
        per_sequence = number_tuple(self.per_sequence_s or (0.0,) * len(knots), "iteration_time.tokens.per_sequence_s")
        require(
            len(per_sequence) == len(knots),
            "iteration_time.tokens.per_sequence_s",
            len(per_sequence),
            f"needs one value per knot ({len(knots)})",
        )
        require(min(per_sequence) >= 0, "iteration_time.tokens.per_sequence_s", min(per_sequence), "must be >= 0")
        object.__setattr__(self, "per_sequence_s", per_sequence)
        prefill = number_tuple(self.prefill_attention, "iteration_time.prefill_attention")
        require(len(prefill) == 4, "iteration_time.prefill_attention", list(prefill), "needs 4 coefficients")
        decode = number_tuple(self.decode_attention, "iteration_time.decode_attention")
        require(len(decode) == 5, "iteration_time.decode_attention", list(decode), "needs 5 coefficients")
        save = number_tuple(self.decode_kv_save, "iteration_time.decode_kv_save")
        require(len(save) == 2, "iteration_time.decode_kv_save", list(save), "needs 2 coefficients")
        require(save[1] >= 0, "iteration_time.decode_kv_save.per_sequence_s", save[1], "must be >= 0")
        object.__setattr__(self, "prefill_attention", prefill)
        object.__setattr__(self, "decode_attention", decode)
        pk = require_finite_number(
            self.prefill_per_cached_token_s, "iteration_time.mixed_batch.prefill_per_cached_token_s"
        )
        require(pk >= 0, "iteration_time.mixed_batch.prefill_per_cached_token_s", pk, "must be >= 0")
        object.__setattr__(self, "prefill_per_cached_token_s", pk)
        mixed = number_tuple(self.mixed_decode_attention or decode, "iteration_time.mixed_batch.decode_attention")
        require(len(mixed) == 5, "iteration_time.mixed_batch.decode_attention", list(mixed), "needs 5 coefficients")
        for index, key in ((1, "per_sequence_s"), (2, "per_kv_token_s"), (4, "floor_per_mean_kv_token_s")):
            require(
                mixed[index] >= 0, f"iteration_time.mixed_batch.decode_attention.{key}", mixed[index], "must be >= 0"
            )
        object.__setattr__(self, "mixed_decode_attention", mixed)
        object.__setattr__(self, "decode_kv_save", save)
        first = self.non_attention_s[0]
        require(first > 0, "iteration_time.tokens.non_attention_s", first, "must be > 0 at the first knot")
        for index, key in ((1, "per_chunk_token_s"), (2, "per_chunk_kv_token_s"), (3, "per_chunk_token_sq_s")):
            require(prefill[index] >= 0, f"iteration_time.prefill_attention.{key}", prefill[index], "must be >= 0")
        for index, key in ((1, "per_sequence_s"), (2, "per_kv_token_s"), (4, "floor_per_mean_kv_token_s")):
            require(decode[index] >= 0, f"iteration_time.decode_attention.{key}", decode[index], "must be >= 0")

    # ---------------------------------------------------------------- evaluation
    def non_attention_time(self, tokens: Any) -> Any:
        """``f(T)``: non-attention kernels for ``T`` new tokens (linear beyond the last knot)."""
        return _interp_extrapolate(tokens, self.knots_tokens, np.asarray(self.non_attention_s))

    def per_sequence_time(self, sequences: Any) -> Any:
        """Once-per-step costs of ``B`` sequences (LM head, sampler); 0 for none."""
        b = np.asarray(sequences, dtype=float)
        value = np.where(b > 0, _interp_extrapolate(b, self.knots_tokens, np.asarray(self.per_sequence_s)), 0.0)
        return float(value) if np.ndim(value) == 0 else value

    def prefill_kv_save_time(self, chunk: Any, cached: Any) -> Any:
        """KV-cache save of a chunk of ``c`` prompt tokens written after ``k`` cached ones: ``c r(k + c)``."""
        c = np.asarray(chunk, dtype=float)
        k = np.asarray(cached, dtype=float)
        rate = _interp_extrapolate(k + c, self.knots_tokens, np.asarray(self.prefill_kv_save_s_per_token))
        return c * np.maximum(rate, 0.0)

    def decode_kv_save_time(self, batch: Any) -> Any:
        """``s_d(B) = s0 + s1 B`` for a decode batch of ``B`` requests (0 for none)."""
        b = np.asarray(batch, dtype=float)
        value = np.where(b > 0, np.maximum(self.decode_kv_save[0] + self.decode_kv_save[1] * b, 0.0), 0.0)
        return float(value) if np.ndim(value) == 0 else value

    def prefill_attention_time(self, chunk: Any, cached: Any) -> Any:
        """``p(c, k)`` for one prefilling request (seconds per iteration, all layers)."""
        p0, pc, pck, pcc = self.prefill_attention
        c = np.asarray(chunk, dtype=float)
        k = np.asarray(cached, dtype=float)
        return np.maximum(p0 + pc * c + pck * c * k + pcc * c * c + self.prefill_per_cached_token_s * k, 0.0)

    def decode_attention_time(self, batch: Any, kv_total: Any, mixed: bool = False) -> Any:
        """``d(B, KV / B)`` for ``B`` decoding requests reading ``KV`` cached tokens in all.

        ``mixed``: the decodes share the step with a prefill (:attr:`mixed_decode_attention`).
        """
        d0, db, dkv, e0, ek = self.mixed_decode_attention if mixed else self.decode_attention
        b = np.asarray(batch, dtype=float)
        kv = np.asarray(kv_total, dtype=float)
        mean_kv = np.divide(kv, b, out=np.zeros_like(kv * b), where=b > 0)
        value = np.maximum(d0 + db * b + dkv * kv, e0 + ek * mean_kv)
        return np.where(b > 0, np.maximum(value, 0.0), 0.0)

    def prefill_terms(self, chunks: Any, cached: Any) -> np.ndarray:
        """One term: the prefill attention and KV save of the chunks, in seconds."""
        return np.array(
            [
                float(
                    np.sum(self.prefill_attention_time(chunks, cached))
                    + np.sum(self.prefill_kv_save_time(chunks, cached))
                )
            ]
        )

    def fluid_time(self, batch: FluidBatch, x: Any) -> Any:
        """``f(x T) + x * prefill terms + g(x n) + decode save and attention`` of the scaled fluid batch."""
        x = np.asarray(x, dtype=float)
        extra = float(batch.terms[0]) if len(batch.terms) else 0.0
        result = self.non_attention_time(x * batch.tokens) + x * extra + self.per_sequence_time(x * batch.sequences)
        if batch.decodes > 0:
            # The floor reads the fluid batch's mean cached tokens, which does not scale with x.
            s0, s1 = self.decode_kv_save
            d0, db, dkv, e0, ek = self.mixed_decode_attention if batch.prefill_tokens > 0 else self.decode_attention
            b = x * batch.decodes
            save = np.maximum(s0 + s1 * b, 0.0)
            attention = np.maximum(d0 + db * b + dkv * x * batch.decode_kv, e0 + ek * batch.decode_kv / batch.decodes)
            result = result + save + np.maximum(attention, 0.0)
        return float(result) if np.ndim(result) == 0 else result

    def kernel_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Flat arrays for the step function: coefficients and the ``(4, knots)`` table (knots, f, r, g)."""
        return self._kernel_arrays

    @cached_property
    def _kernel_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        coef = np.zeros(N_TIMING_COEF)
        coef[TC_P0 : TC_PCC + 1] = self.prefill_attention
        coef[TC_D0 : TC_EK + 1] = self.decode_attention
        coef[TC_S0 : TC_S1 + 1] = self.decode_kv_save
        coef[TC_PK] = self.prefill_per_cached_token_s
        coef[TC_M0 : TC_MEK + 1] = self.mixed_decode_attention
        table = np.vstack(
            [
                np.asarray(self.knots_tokens),
                np.asarray(self.non_attention_s),
                np.asarray(self.prefill_kv_save_s_per_token),
                np.asarray(self.per_sequence_s),
            ]
        )
        return coef, np.ascontiguousarray(table)

    # ---------------------------------------------------------------------- I/O
    def to_dict(self) -> dict[str, Any]:
        """Mapping in the profile TOML schema (``[iteration_time]`` with ``kind = "measured"``)."""
        return {
            "kind": "measured",
            "layers": self.layers,
            "tokens": {
                "knots": list(self.knots_tokens),
                "non_attention_s": list(self.non_attention_s),
                "prefill_kv_save_s_per_token": list(self.prefill_kv_save_s_per_token),
                **({"per_sequence_s": list(self.per_sequence_s)} if any(self.per_sequence_s) else {}),
            },
            "prefill_attention": dict(zip(PREFILL_KEYS, self.prefill_attention)),
            "decode_attention": dict(zip(DECODE_KEYS, self.decode_attention)),
            "decode_kv_save": dict(zip(DECODE_SAVE_KEYS, self.decode_kv_save)),
            **(
                {
                    "mixed_batch": {
                        "prefill_per_cached_token_s": self.prefill_per_cached_token_s,
                        "decode_attention": dict(zip(DECODE_KEYS, self.mixed_decode_attention)),
                    }
                }
                if self.prefill_per_cached_token_s or self.mixed_decode_attention != self.decode_attention
                else {}
            ),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str, fit: dict[str, Any] | None = None) -> MeasuredTiming:
        """Build the model from the ``[iteration_time]`` table of a measured profile."""
        reject_unknown_keys(data, ("kind", *ITERATION_TIME_KEYS), where)
        for key in ("layers", "tokens", "prefill_attention", "decode_attention", "decode_kv_save"):
            require(key in data, f"{where}.{key}", None, "is required for kind = 'measured'")
        tokens = data["tokens"]
        require(isinstance(tokens, dict), f"{where}.tokens", tokens, "must be a table")
        reject_unknown_keys(tokens, TOKENS_KEYS, f"{where}.tokens")
        for key in TOKENS_KEYS[:3]:
            require(key in tokens, f"{where}.tokens.{key}", None, "is required")
        prefill = coefficients(data["prefill_attention"], PREFILL_KEYS, f"{where}.prefill_attention")
        decode = coefficients(data["decode_attention"], DECODE_KEYS, f"{where}.decode_attention")
        save = coefficients(data["decode_kv_save"], DECODE_SAVE_KEYS, f"{where}.decode_kv_save")
        mixed_batch = data.get("mixed_batch", {})
        require(isinstance(mixed_batch, dict), f"{where}.mixed_batch", mixed_batch, "must be a table")
        reject_unknown_keys(mixed_batch, MIXED_KEYS, f"{where}.mixed_batch")
        mixed_decode: tuple[float, ...] = ()
        if "decode_attention" in mixed_batch:
            mixed_decode = coefficients(
                mixed_batch["decode_attention"], DECODE_KEYS, f"{where}.mixed_batch.decode_attention"
            )
        return cls(
            layers=data["layers"],
            knots_tokens=number_tuple(tokens["knots"], f"{where}.tokens.knots"),
            non_attention_s=number_tuple(tokens["non_attention_s"], f"{where}.tokens.non_attention_s"),
            prefill_kv_save_s_per_token=number_tuple(
                tokens["prefill_kv_save_s_per_token"], f"{where}.tokens.prefill_kv_save_s_per_token"
            ),
            prefill_attention=prefill,  # type: ignore[arg-type]
            decode_attention=decode,  # type: ignore[arg-type]
            decode_kv_save=save,  # type: ignore[arg-type]
            fit=dict(fit or {}),
            per_sequence_s=number_tuple(tokens.get("per_sequence_s", ()), f"{where}.tokens.per_sequence_s"),
            prefill_per_cached_token_s=mixed_batch.get("prefill_per_cached_token_s", 0.0),
            mixed_decode_attention=mixed_decode,
        )


def _interp_extrapolate(x: Any, knots: tuple[float, ...], values: np.ndarray) -> Any:
    """Piecewise-linear interpolation, constant below the first knot, linear beyond the last."""
    xs = np.asarray(knots, dtype=float)
    arr = np.asarray(x, dtype=float)
    inside = np.interp(arr, xs, values)
    slope = (values[-1] - values[-2]) / (xs[-1] - xs[-2])
    result = np.where(arr > xs[-1], values[-1] + slope * (arr - xs[-1]), inside)
    return float(result) if np.ndim(result) == 0 else result


# ------------------------------------------------------------------ the step formula (compiled into the kernel)
@kernel_function
def interp_row(table, row, x):
    """Piecewise-linear ``table[row]`` at ``x`` over knots ``table[0]``: flat below, linear beyond the last knot."""
    knots = table.shape[1]
    if x <= table[0, 0]:
        return table[row, 0]
    if x >= table[0, knots - 1]:
        slope = (table[row, knots - 1] - table[row, knots - 2]) / (table[0, knots - 1] - table[0, knots - 2])
        return table[row, knots - 1] + slope * (x - table[0, knots - 1])
    lo = 0
    hi = knots - 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if table[0, mid] <= x:
            lo = mid
        else:
            hi = mid
    w = (x - table[0, lo]) / (table[0, hi] - table[0, lo])
    return table[row, lo] * (1.0 - w) + table[row, hi] * w


@kernel_function
def prefill_chunk_time(tcoef, ttable, chunk, cached):
    """Prefill attention ``p(c, k)`` plus the KV save ``c r(k + c)`` of one chunk."""
    c = float(chunk)
    k = float(cached)
    attention = tcoef[TC_P0] + tcoef[TC_PC] * c + tcoef[TC_PCK] * c * k + tcoef[TC_PCC] * c * c + tcoef[TC_PK] * k
    rate = interp_row(ttable, 2, k + c)
    return (attention if attention > 0.0 else 0.0) + c * (rate if rate > 0.0 else 0.0)


@kernel_function
def step_measured(tcoef, ttable, kv, prefill, decodes, decode_kv, sequences, n_prefill, pchunk, pcached):
    """One step of the measured model (module docstring): ``f(T) + prefills + decode save and attention + g(n)``."""
    tau = interp_row(ttable, 1, float(prefill + decodes)) + interp_row(ttable, 3, float(sequences))
    for i in range(n_prefill):
        tau += prefill_chunk_time(tcoef, ttable, pchunk[i], pcached[i])
    if decodes > 0:
        b = float(decodes)
        save = tcoef[TC_S0] + tcoef[TC_S1] * b
        tau += save if save > 0.0 else 0.0
        # Decodes sharing the step with a prefill use the mixed-batch coefficients (TC_M0..).
        at = TC_M0 if n_prefill > 0 else TC_D0
        linear = tcoef[at] + tcoef[at + 1] * b + tcoef[at + 2] * float(decode_kv)
        floor = tcoef[at + 3] + tcoef[at + 4] * float(decode_kv) / b
        attention = linear if linear > floor else floor
        tau += attention if attention > 0.0 else 0.0
    return tau


TIMING = MeasuredTiming
STEP = step_measured
