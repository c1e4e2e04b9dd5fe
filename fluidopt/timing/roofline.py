"""Timing kind ``roofline``: each operator takes the longer of its arithmetic and its memory traffic.

One step of ``T`` new tokens (``P`` prompt tokens in prefill chunks plus one per decode) for
``n`` sequences costs, on one GPU of the engine (docs/theory.md section 15):

``tau = G(W_dense, T) + G(W_head, n) + T e / B + A + M + R + n s / B + kernels x t_k + t_0 + n t_n``

- ``G(W, t) = W max(2 t / (b C), 1 / B)``: the GEMMs of ``W`` weight bytes at ``b`` bytes per
  value, for ``t`` rows (``2 W / b`` FLOPs per row at the achieved compute rate ``C``, or one read
  of the weights at the achieved bandwidth ``B``, whichever is longer).  The dense GEMMs
  (attention projections, dense MLPs, shared experts) run on every new token; the LM head only
  on each sequence's last position (vLLM computes logits for the sampled token alone).
- ``T e / B``: the memory-bound element-wise kernels (norms, activation, rotary embedding, the
  KV-cache write), ``e`` bytes per token over all layers.
- ``A = L t_a + max(a sum_i c_i (k_i + c_i / 2) / C_a, v sum_i (k_i + c_i) / B_p) + v K_d / B_d + L t_s D``:
  the attention kernels of the ``L`` layers: a floor ``t_a`` per layer; the causal prefill
  chunks (``c_i`` new tokens on ``k_i`` cached; ``a`` FLOPs per query-key pair and ``v`` KV bytes
  per token over all layers) compute-bound or bound by reading their prefix; the ``D`` decodes
  reading ``K_d`` cached tokens at ``B_d`` (``B_m`` beside a prefill: vLLM's one varlen kernel),
  plus ``t_s`` per decode per layer.
- ``M``: the mixture-of-experts layers: the experts the step's tokens reach
  (``E_loc (1 - (1 - k / E)^(f T))`` in expectation under uniform routing, ``f`` the engines
  feeding this GPU's experts in lockstep) are read once each, and their ``f T k E_loc / E``
  token-expert products computed; plus the token exchange of expert parallelism.
- ``R``: the tensor-parallel all-reduces, each ``latency + T x bytes per token / link bandwidth``.
- ``n s / B``: the sampler's reads of each sequence's logits; ``kernels x t_k``: a launch floor
  per kernel; ``t_0``: per-step overhead, plus ``n t_n`` per sequence (zero from public facts; a
  calibration on a user's run, :mod:`fluidopt.answers.calibrate`, fits both as the engine's CPU
  work per step and per request).  With ``async_scheduling = 1`` (vLLM plans the next step while
  this one runs) that CPU work overlaps the GPU's: ``tau = max(GPU terms, t_0 + n t_n)``.

The achieved rates are spec-sheet rates times efficiencies calibrated once from measured
per-operator tables (:mod:`fluidopt.timing.fit.roofline`), never from a run's latencies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

import numpy as np

from fluidopt._jit import kernel_function
from fluidopt.errors import reject_unknown_keys, require, require_finite_number
from fluidopt.timing.protocol import FluidBatch
from fluidopt.timing.surrogate import SurrogateTiming

KIND = "roofline"
# The achieved rates of the hardware (calibrated efficiencies x spec sheet) and its fixed costs.
RATE_KEYS = (
    "compute_flops_per_s",
    "bandwidth_bytes_per_s",
    "attention_flops_per_s",
    "prefill_kv_bytes_per_s",
    "decode_kv_bytes_per_s",
    "mixed_decode_kv_bytes_per_s",
    "attention_s",
    "attention_sequence_s",
    "link_bandwidth_bytes_per_s",
    "link_latency_s",
    "kernel_s",
    "step_overhead_s",
    "sequence_overhead_s",
    "async_scheduling",
)
# The work of one step on one GPU, derived from the model's shape and the parallelism.
WORK_KEYS = (
    "bytes_per_value",
    "dense_weight_bytes",
    "lm_head_weight_bytes",
    "elementwise_bytes_per_token",
    "attention_layers",
    "attention_flops_per_pair",
    "kv_bytes_per_token",
    "sampler_bytes_per_sequence",
    "kernels_per_step",
    "moe_layers",
    "experts",
    "experts_per_token",
    "local_experts",
    "expert_weight_bytes",
    "moe_token_factor",
    "allreduces_per_step",
    "allreduce_bytes_per_token",
    "exchanges_per_step",
    "exchange_bytes_per_token",
)
ITERATION_TIME_KEYS = ("rates", "work")
COMPUTE_RATES = ("compute_flops_per_s", "attention_flops_per_s")
BANDWIDTH_RATES = (
    "bandwidth_bytes_per_s",
    "prefill_kv_bytes_per_s",
    "decode_kv_bytes_per_s",
    "mixed_decode_kv_bytes_per_s",
)
N_RATES = len(RATE_KEYS)
R_C, R_B, R_CA, R_BP, R_BD, R_BM, R_ATT, R_ATT_SEQ, R_LINK, R_LAT, R_KERNEL, R_STEP, R_SEQ, R_ASYNC = range(N_RATES)
(
    W_BPV,
    W_DENSE,
    W_HEAD,
    W_ELT,
    W_ATT_LAYERS,
    W_PAIR,
    W_KV,
    W_SAMPLER,
    W_KERNELS,
    W_MOE_LAYERS,
    W_EXPERTS,
    W_TOPK,
    W_LOCAL,
    W_EXPERT,
    W_MOE_FACTOR,
    W_ALLREDUCES,
    W_AR_BYTES,
    W_EXCHANGES,
    W_X_BYTES,
) = range(N_RATES, N_RATES + len(WORK_KEYS))
# Per-profile constants of the MoE term, appended to the kernel's coefficients (computed once).
D_MISS = N_RATES + len(WORK_KEYS)  # log of the chance that one token misses a given expert
D_EXPERT_TOKEN_S = D_MISS + 1  # seconds of expert compute per routed token
D_EXPERT_READ_S = D_MISS + 2  # seconds to read one reached expert


@dataclass(frozen=True)
class RooflineTiming(SurrogateTiming):
    """A step time from operator FLOPs and bytes at achieved rates (module docstring).

    Parameters
    ----------
    rates : tuple of float
        Values of :data:`RATE_KEYS`: achieved compute and bandwidth of the GEMMs and of the
        attention kernels, the link, the launch floor per kernel and the per-step overhead.
    work : tuple of float
        Values of :data:`WORK_KEYS`: one GPU's weights, bytes and FLOPs per token, experts, and
        collective operations per step.
    fit : dict
        Provenance: the GPU, the model, the parallelism and the calibration (ignored by equality).

    """

    rates: tuple[float, ...]
    work: tuple[float, ...]
    fit: dict[str, Any] = field(default_factory=dict, compare=False)

    kind: ClassVar[str] = KIND
    exact_affine: ClassVar[bool] = False
    lp_refusal: ClassVar[str] = ""

    def __post_init__(self) -> None:
        for group, keys in (("rates", RATE_KEYS), ("work", WORK_KEYS)):
            values = tuple(getattr(self, group))
            require(len(values) == len(keys), f"iteration_time.{group}", len(values), f"needs {len(keys)} values")
            checked = []
            for key, value in zip(keys, values):
                number = require_finite_number(value, f"iteration_time.{group}.{key}")
                require(number >= 0, f"iteration_time.{group}.{key}", number, "must be >= 0")
                checked.append(number)
            object.__setattr__(self, group, tuple(checked))
        for key in RATE_KEYS[:6]:
            require(self.rate(key) > 0, f"iteration_time.rates.{key}", self.rate(key), "must be > 0")
        flag = self.rate("async_scheduling")
        require(flag in (0.0, 1.0), "iteration_time.rates.async_scheduling", flag, "must be 0 or 1")
        require(self.amount("bytes_per_value") > 0, "iteration_time.work.bytes_per_value", 0, "must be > 0")
        if self.amount("moe_layers") > 0:
            experts, top_k = self.amount("experts"), self.amount("experts_per_token")
            require(0 < top_k <= experts, "iteration_time.work.experts_per_token", top_k, f"must be in (0, {experts}]")
            local = self.amount("local_experts")
            require(0 < local <= experts, "iteration_time.work.local_experts", local, f"must be in (0, {experts}]")
        if self.amount("allreduces_per_step") + self.amount("exchanges_per_step") > 0:
            link = self.rate("link_bandwidth_bytes_per_s")
            require(link > 0, "iteration_time.rates.link_bandwidth_bytes_per_s", link, "must be > 0 with collectives")

    def rate(self, key: str) -> float:
        """One value of :data:`RATE_KEYS`."""
        return self.rates[RATE_KEYS.index(key)]

    def amount(self, key: str) -> float:
        """One value of :data:`WORK_KEYS`."""
        return self.work[WORK_KEYS.index(key)]

    def scaled(
        self,
        compute: float = 1.0,
        bandwidth: float = 1.0,
        step_overhead_s: float = 0.0,
        sequence_overhead_s: float = 0.0,
        fit: dict[str, Any] | None = None,
        async_scheduling: bool | None = None,
    ) -> RooflineTiming:
        """The timing with its compute rates times ``compute``, its byte rates times ``bandwidth``, overheads added.

        The compute rates are the GEMMs' and the attention's FLOP rates (:data:`COMPUTE_RATES`);
        the byte rates are the weights' and the KV reads' bandwidths (:data:`BANDWIDTH_RATES`); the
        link and the fixed kernel costs stay.  ``step_overhead_s`` and ``sequence_overhead_s`` are
        added to the step's and each sequence's overhead.  ``fit`` replaces the provenance;
        ``async_scheduling`` (when given) sets whether that CPU work overlaps the GPU's.
        """
        for name, value in (("compute", compute), ("bandwidth", bandwidth)):
            require(require_finite_number(value, name) > 0, name, value, "must be > 0")
        for name, value in (("step_overhead_s", step_overhead_s), ("sequence_overhead_s", sequence_overhead_s)):
            require(require_finite_number(value, name) >= 0, name, value, "must be >= 0")
        rates = list(self.rates)
        for key in COMPUTE_RATES:
            rates[RATE_KEYS.index(key)] *= compute
        for key in BANDWIDTH_RATES:
            rates[RATE_KEYS.index(key)] *= bandwidth
        rates[R_STEP] += step_overhead_s
        rates[R_SEQ] += sequence_overhead_s
        if async_scheduling is not None:
            rates[R_ASYNC] = 1.0 if async_scheduling else 0.0
        return RooflineTiming(tuple(rates), self.work, dict(self.fit if fit is None else fit))

    # ---------------------------------------------------------------- evaluation
    def prefill_terms(self, chunks: Any, cached: Any) -> np.ndarray:
        """Two terms: the chunks' causal query-key pairs ``sum c (k + c / 2)`` and KV tokens read ``sum (k + c)``."""
        c = np.asarray(chunks, dtype=float)
        k = np.asarray(cached, dtype=float)
        return np.array([float(np.sum(c * (k + c / 2))), float(np.sum(k + c))])

    def fluid_time(self, batch: FluidBatch, x: Any) -> Any:
        """The step formula on the fluid batch scaled by ``x`` (vectorised over ``x``).

        The fluid batch holds ``x (sequences - decodes)`` prefill chunks per step on average; when
        that is below one, only that share of steps carries a prefill, and only that share of the
        decodes' reads pays the mixed-batch rate (the step function's choice, averaged over steps).
        """
        x = np.asarray(x, dtype=float)
        terms = np.zeros(2)
        terms[: len(batch.terms)] = np.asarray(batch.terms, dtype=float)[:2]
        tcoef, _ = self.kernel_arrays()
        share = np.clip(x * (batch.sequences - batch.decodes), 0.0, 1.0) if batch.prefill_tokens > 0 else 0.0 * x
        result = roofline_seconds(
            tcoef,
            x * batch.tokens,
            x * batch.sequences,
            x * terms[0],
            x * terms[1],
            x * batch.decodes,
            x * batch.decode_kv,
            share,
        )
        return float(result) if np.ndim(result) == 0 else result

    def kernel_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """``(rates + work + the MoE term's constants, an empty table)``: the step reads the flat vector alone."""
        return self._kernel_arrays

    @cached_property
    def _kernel_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        derived = np.zeros(3)
        if self.amount("moe_layers") > 0:
            experts, top_k, local = (
                self.amount("experts"),
                self.amount("experts_per_token"),
                self.amount("local_experts"),
            )
            expert, bpv = self.amount("expert_weight_bytes"), self.amount("bytes_per_value")
            derived[0] = np.log1p(-top_k / experts) if top_k < experts else -1e300
            derived[1] = 2.0 * top_k * (local / experts) * expert / (bpv * self.rate("compute_flops_per_s"))
            derived[2] = expert / self.rate("bandwidth_bytes_per_s")
        return np.array([*self.rates, *self.work, *derived], dtype=float), np.zeros((1, 1))

    # ---------------------------------------------------------------------- I/O
    def to_dict(self) -> dict[str, Any]:
        """Mapping in the profile TOML schema (``[iteration_time]`` with ``kind = "roofline"``)."""
        return {"kind": KIND, "rates": dict(zip(RATE_KEYS, self.rates)), "work": dict(zip(WORK_KEYS, self.work))}

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str, fit: dict[str, Any] | None = None) -> RooflineTiming:
        """Build the model from the ``[iteration_time]`` table of a roofline profile."""
        reject_unknown_keys(data, ("kind", *ITERATION_TIME_KEYS), where)
        values = {}
        for group, keys in (("rates", RATE_KEYS), ("work", WORK_KEYS)):
            require(group in data, f"{where}.{group}", None, "is required for kind = 'roofline'")
            table = data[group]
            require(isinstance(table, dict), f"{where}.{group}", table, "must be a table")
            reject_unknown_keys(table, keys, f"{where}.{group}")
            missing = [key for key in keys if key not in table]
            require(not missing, f"{where}.{group}.{missing[0] if missing else ''}", None, "is required")
            values[group] = tuple(table[key] for key in keys)
        return cls(values["rates"], values["work"], dict(fit or {}))


# ------------------------------------------------------------------ the step formula (compiled into the kernel)
@kernel_function
def gemm_seconds(weight_bytes, rows, bytes_per_value, flops_per_s, bytes_per_s):
    """``W max(2 rows / (b C), 1 / B)``: GEMMs over ``W`` weight bytes for ``rows`` rows (arrays or floats)."""
    return weight_bytes * np.maximum(2.0 * rows / (bytes_per_value * flops_per_s), 1.0 / bytes_per_s)


@kernel_function
def moe_seconds(tcoef, tokens):
    """The MoE layers: reached experts read once, their token-expert products computed, plus the exchange."""
    routed = tcoef[W_MOE_FACTOR] * tokens
    reached = tcoef[W_LOCAL] * (1.0 - np.exp(routed * tcoef[D_MISS]))
    layer = np.maximum(routed * tcoef[D_EXPERT_TOKEN_S], reached * tcoef[D_EXPERT_READ_S])
    if tcoef[W_EXCHANGES] > 0.0:
        return tcoef[W_MOE_LAYERS] * layer + tcoef[W_EXCHANGES] * (
            tcoef[R_LAT] + tokens * tcoef[W_X_BYTES] / tcoef[R_LINK]
        )
    return tcoef[W_MOE_LAYERS] * layer


@kernel_function
def attention_seconds(tcoef, prefill_pairs, prefill_reads, decodes, decode_kv, mixed_share):
    """The attention kernels of a step: a floor per layer, the prefills' pairs or prefix reads, the decodes' reads.

    Decodes that share the step with a prefill read their KV at the mixed-batch rate (vLLM runs
    both through one varlen kernel, in which the decodes' reads are several times slower).
    ``mixed_share`` is 1 for such a step and 0 for a decode-only one; the fluid form passes the
    share of steps that carry a prefill.
    """
    prefill = np.maximum(prefill_pairs * tcoef[W_PAIR] / tcoef[R_CA], prefill_reads * tcoef[W_KV] / tcoef[R_BP])
    per_byte = mixed_share / tcoef[R_BM] + (1.0 - mixed_share) / tcoef[R_BD]
    decode = decode_kv * tcoef[W_KV] * per_byte + decodes * tcoef[W_ATT_LAYERS] * tcoef[R_ATT_SEQ]
    return tcoef[W_ATT_LAYERS] * tcoef[R_ATT] + prefill + decode


@kernel_function
def roofline_seconds(tcoef, tokens, sequences, prefill_pairs, prefill_reads, decodes, decode_kv, mixed_share):
    """One step from its aggregates (module docstring); every argument but ``tcoef`` may be an array."""
    tau = gemm_seconds(tcoef[W_DENSE], tokens, tcoef[W_BPV], tcoef[R_C], tcoef[R_B])
    tau = tau + gemm_seconds(tcoef[W_HEAD], sequences, tcoef[W_BPV], tcoef[R_C], tcoef[R_B])
    tau = tau + (tokens * tcoef[W_ELT] + sequences * tcoef[W_SAMPLER]) / tcoef[R_B]
    tau = tau + attention_seconds(tcoef, prefill_pairs, prefill_reads, decodes, decode_kv, mixed_share)
    if tcoef[W_MOE_LAYERS] > 0.0:
        tau = tau + moe_seconds(tcoef, tokens)
    if tcoef[W_ALLREDUCES] > 0.0:
        tau = tau + tcoef[W_ALLREDUCES] * (tcoef[R_LAT] + tokens * tcoef[W_AR_BYTES] / tcoef[R_LINK])
    tau = tau + tcoef[W_KERNELS] * tcoef[R_KERNEL]
    cpu = tcoef[R_STEP] + sequences * tcoef[R_SEQ]
    if tcoef[R_ASYNC] > 0.0:  # asynchronous scheduling: the CPU's work hides under the GPU's
        return np.maximum(tau, cpu)
    return tau + cpu


@kernel_function
def step_roofline(tcoef, ttable, kv, prefill, decodes, decode_kv, sequences, n_prefill, pchunk, pcached):
    """One step of the roofline model: the prefills' pairs and reads summed, then :func:`roofline_seconds`."""
    pairs = 0.0
    reads = 0.0
    for i in range(n_prefill):
        c = float(pchunk[i])
        k = float(pcached[i])
        pairs += c * (k + 0.5 * c)
        reads += k + c
    share = 1.0 if n_prefill > 0 else 0.0
    return roofline_seconds(
        tcoef, float(prefill + decodes), float(sequences), pairs, reads, float(decodes), float(decode_kv), share
    )


TIMING = RooflineTiming
STEP = step_roofline
