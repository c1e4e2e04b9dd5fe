"""Engine settings from the fluid model (vLLM V1, SGLang), checked in the simulator.

The derivation (docs/theory.md, "From thresholds to engine settings"): the chunked WAIT design
of the fluid model (:func:`~fluidopt.thresholds.chunked.wait_cp_thresholds`) fixes the in-system
cap ``tl = sum_j kappa lambda_j (K_j + d_j)``, the chunk size and the token budgets of one
iteration; they become

- vLLM V1: ``max_num_seqs`` halfway between the design's ``tl`` and ``tl`` at the memory end of
  the kappa interval (room for the fluctuations about the mean, short of a full KV cache, where
  admission stalls), ``max_num_batched_tokens`` = the design's total budget (prefill budget plus
  decode budgets; vLLM serves running decodes first),
  ``long_prefill_token_threshold`` = the design's prefill budget (one request may take a step's
  prefill share, never its decode share; the design's chunk size as the cap split every prompt
  over more steps and cost 1-15 % of mean latency in the simulator);
- SGLang, whose steps are prefill batches or decode batches, not both: ``max_running_requests``
  from the fluid model of that alternating pipeline (:func:`sglang_running_cap`: ``B`` decoding
  requests keep up when ``B (1 - sum_j lambda_j p_j) / tau_d(B) >= sum_j lambda_j (l'_j - 1)``,
  ``p_j`` the time of class j's chunked prefill steps, ``tau_d(B)`` a decode step of ``B``; the cap
  keeps the pipeline's utilisation halfway between 1 and its best within C, as the chunked design
  does); ``chunked_prefill_size`` and ``max_prefill_tokens`` stay SGLang's defaults, since its
  prefill steps carry no decodes and whole prompts in one step amortise the step's fixed cost
  (chunks of the WAIT-CP design's 256 tokens doubled the latency in the simulator); and
  ``schedule_conservativeness`` from the Nested
  WAIT safety buffer (:func:`~fluidopt.thresholds.nested.nested_wait_thresholds`): SGLang holds
  back ``new_token_ratio x`` the running requests' remaining ``max_new_tokens``; the ratio that
  holds back the buffer and carry-over memory Nested WAIT requires beyond its base,
  ``r = (M_carry + M_buffer) / R``, with ``R = sum_j kappa lambda_j m_j (m_j + 1) / 2`` the
  remaining output the fluid equilibrium's residents hold, is ``0.7 c``.

The setting handed out is the best one validated: the fluid-derived one, the engine's defaults
and a grid over the same knobs are simulated on common seeds, the best stable one meeting the
SLO is re-run on fresh seeds against the defaults (paired 95 % interval of the mean-latency
gain), and it is labelled with where it came from.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

from fluidopt.answers.capacity import max_sustained_rate
from fluidopt.answers.engine_defaults import engine_defaults_for
from fluidopt.answers.slo import slo_floor
from fluidopt.errors import InputError, require
from fluidopt.experiments.evaluate import Evaluation, evaluate_run
from fluidopt.experiments.runs import RunSettings, Targets
from fluidopt.fluid.stability import max_stable_scale
from fluidopt.profile import GPUProfile
from fluidopt.status import HasStatus
from fluidopt.workload import Workload

ENGINES = ("vllm", "sglang")
INIT_RATIO = 0.7  # SGLang's default_init_new_token_ratio
CONSERVATIVENESS_RANGE = (0.05, 10.0)


@dataclass(frozen=True)
class Derivation:
    """One engine setting and the fluid quantity it comes from."""

    knob: str
    value: Any
    source: str


def fluid_settings(engine: str, workload: Workload, profile: GPUProfile) -> tuple[dict[str, Any], list[Derivation]]:
    """The engine's knobs derived from the fluid model (module docstring), with their sources."""
    from fluidopt.thresholds.chunked import wait_cp_thresholds

    require(engine in ENGINES, "--engine", engine, f"must be one of {', '.join(ENGINES)}")
    design = wait_cp_thresholds(workload, profile, conventions="fluidopt")
    decodes = sum(design.decode_budgets)
    rows: list[Derivation] = []
    if engine == "vllm":
        # max_num_seqs: halfway between the in-system count tl of the design and tl at the memory
        # end of the kappa interval (where the KV cache is exactly full): room for the
        # fluctuations about the mean without admitting into a full cache (at the memory end
        # admission stalls on free blocks, as at kappa = dT* the pipeline is critically loaded).
        # max_num_batched_tokens: the design's budget per iteration (prefill plus decode budgets);
        # vLLM serves running decodes first, so more running requests take it from the prefill.
        widest = wait_cp_thresholds(workload, profile, conventions="fluidopt", kappa=design.interval[1])
        seqs = int(math.ceil((design.tl + max(widest.tl, design.tl)) / 2))
        budget = int(math.ceil(design.total_budget_tokens / 8) * 8)
        knobs: dict[str, Any] = {
            "max_num_seqs": seqs,
            "max_num_batched_tokens": budget,
            "long_prefill_token_threshold": min(int(math.ceil(design.prefill_budget_tokens / 8) * 8), budget),
        }
        rows += [
            Derivation(
                "max_num_seqs",
                seqs,
                f"halfway between tl = sum_j kappa lambda_j (K_j + d_j) = {design.tl} at kappa = {design.kappa:.4g} s "
                f"and {widest.tl} at the memory end {design.interval[1]:.4g} s",
            ),
            Derivation(
                "max_num_batched_tokens",
                budget,
                f"prefill budget {design.prefill_budget_tokens} + decode budget {decodes} tokens per iteration "
                "(rounded up to 8)",
            ),
            Derivation(
                "long_prefill_token_threshold",
                knobs["long_prefill_token_threshold"],
                f"prefill budget {design.prefill_budget_tokens} tokens per iteration (rounded up to 8): one request "
                "takes at most the step's prefill share",
            ),
        ]
        return knobs, rows
    ratio, why = _reserve_ratio(workload, profile, design.kappa)
    raw = ratio / INIT_RATIO
    conservativeness = round(min(max(raw, CONSERVATIVENESS_RANGE[0]), CONSERVATIVENESS_RANGE[1]), 3)
    if conservativeness != round(raw, 3):
        why += f"; c = r / 0.7 = {raw:.3g}, held to SGLang's range [{CONSERVATIVENESS_RANGE[0]:g}, "
        why += f"{CONSERVATIVENESS_RANGE[1]:g}]: {conservativeness:g}"
    else:
        why += f"; c = r / 0.7 = {conservativeness:g}"
    defaults = engine_defaults_for("sglang", profile)
    chunk_size = defaults.knobs["chunked_prefill_size"]
    prefill_tokens = defaults.knobs["max_prefill_tokens"]
    cap, cap_why = sglang_running_cap(workload, profile, chunk_size)
    knobs = {
        "max_running_requests": cap,
        "chunked_prefill_size": chunk_size,
        "max_prefill_tokens": prefill_tokens,
        "schedule_conservativeness": conservativeness,
    }
    rows += [
        Derivation("max_running_requests", cap, cap_why),
        Derivation(
            "chunked_prefill_size",
            chunk_size,
            f"SGLang's default on this GPU ({defaults.rule}): its prefill steps carry no decodes, so the chunked "
            "design's budget does not apply",
        ),
        Derivation("max_prefill_tokens", prefill_tokens, "SGLang's default (as above)"),
        Derivation("schedule_conservativeness", conservativeness, why),
    ]
    return knobs, rows


def sglang_running_cap(workload: Workload, profile: GPUProfile, chunk: int) -> tuple[int, str]:
    """Running requests SGLang needs to keep up, from the fluid model of its alternating steps (module docstring)."""
    from scipy.optimize import brentq

    def step(chunks: list[int], cached: list[int], decodes: list[float]) -> float:
        return float(profile.batch_time(chunks, cached, decodes))

    prefill_share = 0.0
    decode_need = 0.0
    kv_mass = 0.0
    for c in workload.classes:
        starts = list(range(0, c.prefill_tokens, chunk))
        prefill_share += c.rate_per_s * sum(step([min(chunk, c.prefill_tokens - s)], [s], []) for s in starts)
        decode_need += c.rate_per_s * max(c.decode_tokens - 1, 0)
        kv_mass += c.rate_per_s * max(c.decode_tokens - 1, 0) * (c.prefill_tokens + c.decode_tokens / 2)
    mean_kv = kv_mass / decode_need if decode_need > 0 else float(workload.prefill.mean())

    def throughput(b: float) -> float:
        n = max(int(round(b)), 1)
        return n * (1.0 - prefill_share) / step([], [], [mean_kv] * n)

    if prefill_share >= 1.0 or decode_need == 0:
        return max(1, math.ceil(workload.total_rate_per_s)), "no decode pipeline to size (prefill-bound load)"
    most = max(1, int(profile.kv_capacity_tokens // max(mean_kv, 1.0)))
    best = decode_need / throughput(most)
    target = (1.0 + best) / 2.0 if best < 1.0 else 1.0
    if throughput(most) * target < decode_need:
        return most, f"C / mean KV per request = {most} (the pipeline cannot reach its margin within C)"
    b = (
        brentq(lambda x: throughput(x) * target - decode_need, 1.0, float(most))
        if throughput(1) * target < decode_need
        else 1.0
    )
    cap = max(1, math.ceil(b))
    return cap, (
        f"B with B (1 - {prefill_share:.3f}) / tau_d(B) = {decode_need:.4g} tokens/s / {target:.3f} (utilisation "
        f"halfway between 1 and {best:.3f} at C)"
    )


def _reserve_ratio(workload: Workload, profile: GPUProfile, kappa: float) -> tuple[float, str]:
    """SGLang's reservation ratio that holds back Nested WAIT's memory beyond its base."""
    from fluidopt.thresholds.nested import nested_wait_thresholds

    caps = [c.max_new_tokens or c.decode_tokens for c in workload.classes]
    remaining = sum(c.rate_per_s * kappa * m * (m + 1) / 2 for c, m in zip(workload.classes, caps))
    try:
        nested = nested_wait_thresholds(workload, profile)
    except InputError as error:
        return INIT_RATIO, f"SGLang's default (no Nested WAIT design: {error.reason})"
    extra = nested.memory_carry_over_tokens + nested.memory_buffer_tokens
    ratio = extra / remaining if remaining > 0 else INIT_RATIO
    return ratio, (
        f"r = (carry-over {nested.memory_carry_over_tokens:.4g} + buffer {nested.memory_buffer_tokens:.4g}) / "
        f"remaining output {remaining:.4g} tokens = {ratio:.3g}"
    )


def engine_policy(engine: str, knobs: dict[str, Any]) -> Any:
    """The simulated scheduler of ``engine`` with ``knobs`` (vLLM's / SGLang's names)."""
    from fluidopt.sim.policies import ENGINE_POLICIES, make_policy

    return make_policy(ENGINE_POLICIES[engine], **knobs)


def engine_defaults(engine: str, profile: GPUProfile) -> dict[str, Any]:
    """The engine's own defaults on ``profile``'s GPU, as knobs (:mod:`fluidopt.answers.engine_defaults`)."""
    return dict(engine_defaults_for(engine, profile).knobs)


def command_line(engine: str, knobs: dict[str, Any], model: str = "MODEL") -> str:
    """A ready command line for the engine with these settings."""
    # A knob at 0 means "the engine's own default" (SGLang derives max_running_requests): no flag.
    flags = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in knobs.items() if k in _ENGINE_FLAGS[engine] and v != 0)
    if engine == "vllm":
        return f"vllm serve {model} {flags}"
    return f"python -m sglang.launch_server --model-path {model} {flags}"


_ENGINE_FLAGS = {
    "vllm": ("max_num_seqs", "max_num_batched_tokens", "long_prefill_token_threshold"),
    "sglang": ("max_running_requests", "chunked_prefill_size", "max_prefill_tokens", "schedule_conservativeness"),
}


@dataclass(frozen=True)
class Recommendation(HasStatus):
    """The validated engine setting, where it came from, and how it compares.

    ``status``: ``ok``; ``no-configuration`` when no setting meets the SLO at the rate
    (``max_rate_*`` then say where one does); ``unstable`` when the rate is above the fluid limit.
    """

    engine: str
    workload: str
    profile: str
    rate_per_s: float
    fluid_max_rate_per_s: float
    targets: Targets
    derivation: tuple[Derivation, ...]
    fluid_knobs: dict[str, Any]
    knobs: dict[str, Any]
    source: str
    evaluations: dict[str, Evaluation | None] = field(repr=False)
    gain_s: float
    gain_interval_s: tuple[float, float]
    max_rate_recommended_per_s: float
    max_rate_default_per_s: float
    compute_time_s: float
    grid_time_s: float
    status: str = "ok"
    message: str = ""
    defaults_rule: str = ""

    def command(self, model: str = "MODEL") -> str:
        """The engine's command line with the recommended settings."""
        return command_line(self.engine, self.knobs, model)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""

        def summary(e: Evaluation | None) -> dict[str, Any] | None:
            if e is None:
                return None
            return {
                "stable": e.stable,
                "meets_targets": e.meets,
                "mean_latency_s": e.mean("mean_latency_s"),
                "mean_latency_ci_s": list(e.interval("mean_latency_s")),
                "p99_latency_s": e.mean("p99_latency_s"),
                "p99_ttft_s": e.mean("p99_ttft_s"),
                "p99_tpot_s": e.mean("p99_tpot_s"),
                "preemptions": e.mean("evictions"),
                "settings": e.description,
            }

        return {
            "status": self.status,
            "success": self.success,
            "message": self.message,
            "engine": self.engine,
            "workload": self.workload,
            "profile": self.profile,
            "rate_per_s": self.rate_per_s,
            "fluid_max_rate_per_s": self.fluid_max_rate_per_s,
            "targets": self.targets.describe(),
            "recommended": self.knobs,
            "source": self.source,
            "command": self.command(),
            "fluid_derived": self.fluid_knobs,
            "derivation": [{"knob": d.knob, "value": d.value, "from": d.source} for d in self.derivation],
            "evaluations": {k: summary(v) for k, v in self.evaluations.items()},
            "gain_vs_default_s": self.gain_s,
            "gain_vs_default_ci_s": list(self.gain_interval_s),
            "max_rate_recommended_per_s": self.max_rate_recommended_per_s,
            "max_rate_default_per_s": self.max_rate_default_per_s,
            "engine_defaults": self.defaults_rule,
            "compute_time_s": self.compute_time_s,
            "grid_time_s": self.grid_time_s,
        }


def _score(e: Evaluation) -> tuple[bool, bool, float]:
    return (not e.meets, not e.stable, e.mean("mean_latency_s"))


def recommend(
    engine: str,
    workload: Workload,
    profile: GPUProfile,
    *,
    targets: Targets | None = None,
    replicates: int = 3,
    requests: int = 3000,
    seed: int = 0,
    rate_steps: int = 5,
) -> Recommendation:
    """Derive, validate and recommend the engine's settings at the workload's rate (module docstring)."""
    started = time.perf_counter()
    require(engine in ENGINES, "--engine", engine, f"must be one of {', '.join(ENGINES)}")
    targets = targets or Targets()
    run = RunSettings(targets, replicates, requests, seed)
    limit = max_stable_scale(workload, profile).max_rate_per_s
    rate = workload.total_rate_per_s
    floor = slo_floor(workload, profile, targets)
    empty: dict[str, Evaluation | None] = {}
    if floor is not None:
        return _without_setting(
            engine,
            workload,
            profile,
            targets,
            limit,
            started,
            "no-configuration",
            f"no setting can meet the SLO at any rate: {floor}",
        )
    if not rate < limit:
        best = _largest_rate(engine, workload, profile, run, limit, rate_steps)
        return _without_setting(
            engine,
            workload,
            profile,
            targets,
            limit,
            started,
            "unstable",
            f"rate {rate:.4g} requests/s is above the fluid limit {limit:.4g}: no setting is stable"
            + (f"; the largest rate meeting the SLO is about {best:.4g} requests/s" if best > 0 else ""),
            best,
        )
    del empty
    fluid_knobs, derivation = fluid_settings(engine, workload, profile)
    defaults_info = engine_defaults_for(engine, profile)
    defaults = dict(defaults_info.knobs)
    candidates: list[tuple[Any, dict[str, Any]]] = [
        (engine_policy(engine, fluid_knobs), {"source": "fluid-derived", **fluid_knobs}),
        (engine_policy(engine, defaults), {"source": "engine defaults", **defaults}),
    ]
    derived_time = time.perf_counter() - started
    grid_started = time.perf_counter()
    from fluidopt.sim.policies import ENGINE_POLICIES, policy_spec

    spec = policy_spec(ENGINE_POLICIES[engine])
    # The grid varies its knobs from the engine's defaults on this GPU (the rest stay the defaults).
    grid = []
    for _, setting in spec.grid() if spec.grid else []:
        knobs_here = {**defaults, **setting}
        grid.append((engine_policy(engine, knobs_here), {"source": "grid", **knobs_here}))
    evaluated = evaluate_run(workload, profile, candidates + grid, run)
    grid_time = time.perf_counter() - grid_started
    fluid_eval, default_eval = evaluated[0], evaluated[1]
    grid_best = min(evaluated[2:], key=_score) if len(evaluated) > 2 else None
    chosen = min(evaluated, key=_score)
    source = chosen.description["source"]
    notes: list[str] = []
    if source == "grid" and fluid_eval.meets and grid_best is not None:
        notes.append("the grid's setting beat the fluid-derived one on common seeds")
    knobs = {k: v for k, v in chosen.description.items() if k != "source"}
    # Fresh seeds, paired with the defaults: the verdict's interval.
    fresh = evaluate_run(
        workload,
        profile,
        [(chosen.policy, chosen.description), (default_eval.policy, default_eval.description)],
        run.with_seed(seed + 1_000_003),
    )
    from fluidopt.experiments.compare import paired_gain

    gain, interval = paired_gain(fresh[1], fresh[0])
    max_rec = _max_rate(engine, knobs, workload, profile, run, limit, rate_steps)
    max_def = _max_rate(engine, defaults, workload, profile, run, limit, rate_steps)
    recommended_fresh = fresh[0]
    if not source.startswith("engine defaults") and max_rec < max_def:
        # The handing-out rule (docs/theory.md section 12): never a setting that holds less load
        # under the SLO than the engine's own defaults.
        notes.append(
            f"the best candidate ({source}) meets the SLO up to {max_rec:.4g} requests/s, below the defaults' "
            f"{max_def:.4g}: the defaults are handed out"
        )
        source, knobs, recommended_fresh = "engine defaults", dict(defaults), fresh[1]
        gain, interval, max_rec = 0.0, (0.0, 0.0), max_def
    elif not source.startswith("engine defaults") and interval[0] <= 0 <= interval[1]:
        notes.append("not significantly faster than the defaults at this rate (the 95 % interval of the gain spans 0)")
    status, message = "ok", f"{source} setting, validated on {replicates} fresh replicates"
    if notes:
        message += "; " + "; ".join(notes)
    if not recommended_fresh.meets:
        best = _largest_rate(engine, workload, profile, run, limit, rate_steps)
        status = "no-configuration"
        message = f"no setting meets {targets.describe()} at {rate:.4g} requests/s" + (
            f"; the largest rate at which one does is about {best:.4g} requests/s" if best > 0 else ""
        )
    return Recommendation(
        engine,
        workload.name,
        profile.name,
        rate,
        limit,
        targets,
        tuple(derivation),
        fluid_knobs,
        knobs,
        source,
        {
            "fluid-derived": fluid_eval,
            "engine defaults": default_eval,
            "grid best": grid_best,
            "recommended (fresh seeds)": recommended_fresh,
            "engine defaults (fresh seeds)": fresh[1],
        },
        gain,
        interval,
        max_rec,
        max_def,
        derived_time,
        grid_time,
        status,
        message,
        defaults_info.rule,
    )


def _max_rate(
    engine: str,
    knobs: dict[str, Any],
    workload: Workload,
    profile: GPUProfile,
    run: RunSettings,
    limit: float,
    steps: int,
) -> float:
    """Largest rate at which these fixed settings stay stable and meet the SLO (bisection below the limit)."""
    policy = engine_policy(engine, knobs)
    found = max_sustained_rate(
        engine,
        workload.with_total_rate(1.0),
        profile,
        low=0.0,
        high=limit,
        steps=steps,
        run=run,
        configs=lambda name, w, p: [(policy, {"source": "fixed", **knobs})],
    )
    return found.max_rate_per_s if math.isfinite(found.max_rate_per_s) else 0.0


def _largest_rate(
    engine: str, workload: Workload, profile: GPUProfile, run: RunSettings, limit: float, steps: int
) -> float:
    """Largest rate at which some setting (fluid-derived at that rate, or the defaults) meets the SLO."""

    def configs(name: str, scaled: Workload, p: GPUProfile) -> list[tuple[Any, dict[str, Any]]]:
        defaults = engine_defaults(engine, p)
        out: list[tuple[Any, dict[str, Any]]] = [(engine_policy(engine, defaults), {"source": "engine defaults"})]
        try:
            knobs, _ = fluid_settings(engine, scaled, p)
            out.append((engine_policy(engine, knobs), {"source": "fluid-derived", **knobs}))
        except InputError:
            pass
        return out

    found = max_sustained_rate(
        engine, workload.with_total_rate(1.0), profile, low=0.0, high=limit, steps=steps, run=run, configs=configs
    )
    return found.max_rate_per_s if math.isfinite(found.max_rate_per_s) else 0.0


def _without_setting(
    engine: str,
    workload: Workload,
    profile: GPUProfile,
    targets: Targets,
    limit: float,
    started: float,
    status: str,
    message: str,
    best: float = 0.0,
) -> Recommendation:
    return Recommendation(
        engine,
        workload.name,
        profile.name,
        workload.total_rate_per_s,
        limit,
        targets,
        (),
        {},
        {},
        "none",
        {},
        math.nan,
        (math.nan, math.nan),
        best,
        math.nan,
        time.perf_counter() - started,
        0.0,
        status,
        message,
    )
