"""Calibrate a roofline profile on a user's own run: four interpretable scales fitted by simulation.

A run (:class:`~fluidopt.answers.replay.VLLMRun`: arrivals, lengths, observed TTFT and E2E per
request) is replayed on the base profile with the run's own engine arguments
(:func:`~fluidopt.answers.replay.simulated_times`), and four numbers of the base's roofline timing
(:meth:`~fluidopt.timing.roofline.RooflineTiming.scaled`) are fitted so that the simulated
per-request latencies match the observed:

- ``compute``: a factor on the achieved FLOP rates (GEMMs and attention).  Prefill chunks are
  compute-bound, so it sets how long a prompt takes: TTFT.
- ``bandwidth``: a factor on the achieved byte rates (weights, KV reads).  Decode steps read the
  weights and the KV cache, so it sets the time between tokens: TPOT.
- ``step_overhead_s``: seconds added to every step: the engine's CPU work per step (scheduling,
  input preparation, output processing) that no GPU roofline sees.
- ``sequence_overhead_s``: seconds added per sequence in the step: the CPU work per request
  (its block table, sampling parameters, detokenisation), which grows with the batch.

The loss compares, per metric (TTFT, TPOT, E2E) and per window of consecutive arrivals (about
forty windows), the log-ratio of the simulated to the observed mean, under a robust ``soft_l1``
(a window hit by events the model lacks cannot pull the fit).  Windows, not single requests: under
load, a 1 % change of one scale reorders the engine's decisions and moves single latencies by tens
of percent, while a window's mean moves smoothly.  The replay has no random part (the run fixes
arrivals and lengths), so every evaluation sees the same requests: common random numbers in the
strongest form.  The cost is minimised over the scales' logarithms by Nelder-Mead
(:func:`scipy.optimize.minimize`), which needs no gradient of a replay.

The uncertainty is a sandwich estimate from finite differences at the solution, with the windows
clustered into ten blocks (the latencies of neighbours are correlated through the queue),
reported as a 95 % interval.  A scale whose logarithm has a standard error above 0.5 is not
determined by the run (as at one load, where a slower memory and a longer step overhead look the
same): by default it is held at the base's value and the rest refitted; named explicitly, it is
refused.  So is a run with fewer than 50 measured requests.  Nothing is written by this module.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy.optimize import minimize

from fluidopt.answers.replay import VLLMRun, run_policy, simulated_times, statistics
from fluidopt.errors import InputError, require
from fluidopt.profile import GPUProfile
from fluidopt.status import HasStatus

SCALES = ("compute", "bandwidth", "step_overhead_s", "sequence_overhead_s")
# The fit moves log(value / unit): factors from 1, overheads from a small start, all of order one.
UNITS = {"compute": 1.0, "bandwidth": 1.0, "step_overhead_s": 1e-3, "sequence_overhead_s": 1e-5}
BOUNDS = {
    "compute": (0.2, 5.0),
    "bandwidth": (0.2, 5.0),
    "step_overhead_s": (1e-7, 0.2),
    "sequence_overhead_s": (1e-9, 2e-3),
}
START = {"compute": 1.0, "bandwidth": 1.0, "step_overhead_s": 0.5e-3, "sequence_overhead_s": 5e-6}
SIMPLEX_STEP = {"compute": 0.3, "bandwidth": 0.3, "step_overhead_s": 2.0, "sequence_overhead_s": 2.0}
MIN_REQUESTS = 50  # fewer measured requests than this cannot separate four scales
WINDOWS = 40  # windows of consecutive arrivals per metric (at least MIN_WINDOW requests each)
MIN_WINDOW = 5
LATENCY_FLOOR_S = 1e-3  # log-ratios of latencies below a millisecond are noise
ROBUST_SCALE = 0.05  # soft_l1's scale: windows off by more than ~5 % count linearly, not squared
UNFINISHED_RESIDUAL = math.log(10.0)  # a window with a request the replay does not finish counts as 10x slow
CLUSTERS = 10  # blocks of consecutive windows for the uncertainty
MAX_SPREAD = 0.5  # a scale is determined when the standard error of its logarithm is at most this
MAX_EVALUATIONS = 300  # Nelder-Mead replays per fit
DIFF_STEP = 0.1  # finite-difference step of the uncertainty, in log units (wider than the replay's jitter)
METRICS = ("ttft", "tpot", "e2e")


@dataclass(frozen=True)
class Calibration(HasStatus):
    """A fitted profile, its scales with 95 % intervals, and its errors on the fit and held-out requests.

    ``errors`` maps a label (``fit``, ``split``, or a check run's folder) to the relative errors of
    mean TTFT, TPOT and E2E, before (``base``) and after (``fitted``) the calibration.
    """

    profile: GPUProfile
    base: str
    values: dict[str, float]
    standard_errors: dict[str, float]
    errors: dict[str, dict[str, dict[str, float]]]
    requests_fitted: int
    evaluations: int
    wall_time_s: float
    fitted_scales: tuple[str, ...] = SCALES
    status: str = "ok"
    message: str = "calibrated"

    def interval(self, name: str) -> tuple[float, float]:
        """The 95 % interval of one scale (normal on its logarithm; the value itself where it was not fitted)."""
        value, se = self.values[name], self.standard_errors[name]
        if name not in self.fitted_scales or value <= 0:
            return value, value
        spread = 1.96 * se / value
        return value * math.exp(-spread), value * math.exp(spread)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""

        def clean(value: float) -> float | None:
            return value if math.isfinite(value) else None

        return {
            "status": self.status,
            "success": self.success,
            "message": self.message,
            "base": self.base,
            "profile": self.profile.name,
            "scales": {
                name: {
                    "value": self.values[name],
                    "standard_error": clean(self.standard_errors[name]),
                    "interval_95": [clean(v) for v in self.interval(name)],
                    "fitted": name in self.fitted_scales,
                }
                for name in SCALES
            },
            "errors": {
                label: {when: {k: clean(v) for k, v in errs.items()} for when, errs in by_when.items()}
                for label, by_when in self.errors.items()
            },
            "requests_fitted": self.requests_fitted,
            "evaluations": self.evaluations,
            "wall_time_s": self.wall_time_s,
        }


def scaled_profile(base: GPUProfile, values: dict[str, float], record: dict[str, Any] | None = None) -> GPUProfile:
    """``base`` with its roofline timing scaled by ``values`` (:data:`SCALES`; missing ones neutral)."""
    timing = base.timing
    require(
        timing.kind == "roofline",
        "--profile",
        base.name,
        f"has timing kind {timing.kind!r}: calibrate scales a roofline profile's rates "
        "(start from 'roofline', or a profile written by 'fluidopt profile roofline')",
    )
    scaled = timing.scaled(  # type: ignore[attr-defined]
        compute=values.get("compute", 1.0),
        bandwidth=values.get("bandwidth", 1.0),
        step_overhead_s=values.get("step_overhead_s", 0.0),
        sequence_overhead_s=values.get("sequence_overhead_s", 0.0),
    )
    fit = dict(base.fit)
    if record is not None:
        fit["calibration"] = record
    return replace(base, timing=scaled, pieces=(), fit=fit)


def _neutral(name: str) -> float:
    return 1.0 if name in ("compute", "bandwidth") else 0.0


def _to_internal(name: str, value: float) -> float:
    return math.log(value / UNITS[name])


def _from_internal(name: str, z: float) -> float:
    return math.exp(z) * UNITS[name]


def simulated_latencies(run: VLLMRun, profile: GPUProfile, policy: Any = None) -> dict[str, np.ndarray]:
    """Per request of ``run``: simulated TTFT, TPOT and E2E on ``profile`` (NaN where unfinished)."""
    times, _ = simulated_times(run, profile, policy, series=False)
    first, done = times["first"], times["done"]
    outputs = run.output_tokens
    tpot = np.where(outputs > 1, (done - first) / np.maximum(outputs - 1, 1), np.nan)
    return {"ttft": first, "tpot": tpot, "e2e": done}


def observed_latencies(run: VLLMRun) -> dict[str, np.ndarray]:
    """The run's own TTFT, TPOT and E2E per request."""
    return {"ttft": run.ttft_s, "tpot": run.tpot_s, "e2e": run.e2e_s}


def mean_errors(simulated: dict[str, np.ndarray], observed: dict[str, np.ndarray], keep: Any = None) -> dict:
    """Relative errors of the mean TTFT, TPOT and E2E over the requests ``keep`` (default all)."""
    out = {}
    for metric in METRICS:
        sim, obs = simulated[metric], observed[metric]
        if keep is not None:
            sim, obs = sim[keep], obs[keep]
        ours, theirs = statistics(sim)["mean"], statistics(obs)["mean"]
        out[metric] = (ours - theirs) / theirs if theirs and math.isfinite(theirs) else math.nan
    return out


def window_width(observed: dict[str, np.ndarray]) -> int:
    """Requests per window: the scored requests split into about :data:`WINDOWS` windows."""
    return max(MIN_WINDOW, int(np.sum(np.isfinite(observed["e2e"]))) // WINDOWS)


def window_residuals(simulated: dict[str, np.ndarray], observed: dict[str, np.ndarray], width: int) -> np.ndarray:
    """Per metric and window of ``width`` consecutive scored requests, ``log(simulated mean / observed mean)``.

    Requests with a NaN observation are not scored.  Means over windows, not single requests: one
    request's latency jumps when a small change reorders the engine's decisions, a window's mean
    moves smoothly.
    """
    out = []
    for metric in METRICS:
        obs, sim = observed[metric], simulated[metric]
        index = np.flatnonzero(np.isfinite(obs))
        for start in range(0, index.size, width):
            window = index[start : start + width]
            if not np.all(np.isfinite(sim[window])):
                out.append(UNFINISHED_RESIDUAL)
                continue
            ours = max(float(np.mean(sim[window])), LATENCY_FLOOR_S)
            out.append(math.log(ours / max(float(np.mean(obs[window])), LATENCY_FLOOR_S)))
    return np.asarray(out)


def _clusters(observed: dict[str, np.ndarray], width: int) -> np.ndarray:
    """The cluster (block of consecutive windows) of every residual, in :func:`window_residuals`' order."""
    ids = []
    for metric in METRICS:
        windows = -(-int(np.sum(np.isfinite(observed[metric]))) // width)
        ids.append(np.minimum(np.arange(windows) * CLUSTERS // max(windows, 1), CLUSTERS - 1))
    return np.concatenate(ids)


def robust_cost(residuals: np.ndarray) -> float:
    """``sum soft_l1(r / s)``: quadratic for small residuals, linear for large ones (s = :data:`ROBUST_SCALE`)."""
    return float(np.sum(np.sqrt(1.0 + (residuals / ROBUST_SCALE) ** 2) - 1.0))


def check_enough_requests(observed: dict[str, np.ndarray], where: str) -> None:
    """Refuse a fit on too few measured requests (the error names the run and the count)."""
    measured = int(np.sum(np.isfinite(observed["ttft"]) & np.isfinite(observed["e2e"])))
    require(
        measured >= MIN_REQUESTS,
        f"{where}: requests to fit",
        measured,
        f"are too few to determine the scales (at least {MIN_REQUESTS} with measured TTFT and E2E)",
    )


def _sandwich(jacobian: np.ndarray, residuals: np.ndarray, clusters: np.ndarray) -> np.ndarray:
    """Cluster-robust covariance of the internal coordinates.

    A coordinate the residuals do not move at all (a zero Jacobian column: an overhead hidden under
    the GPU's time) gets an infinite variance and is left out of the others' estimate; where the
    rest are still collinear the covariance is NaN.
    """
    p = jacobian.shape[1]
    covariance = np.full((p, p), np.nan)
    moving = np.linalg.norm(jacobian, axis=0) > 1e-9 * max(float(np.abs(jacobian).max(initial=0.0)), 1e-300)
    covariance[np.diag_indices(p)] = np.where(moving, np.nan, np.inf)
    if not moving.any():
        return covariance
    used_jacobian = jacobian[:, moving]
    weights = 1.0 / np.sqrt(1.0 + (residuals / ROBUST_SCALE) ** 2)  # soft_l1's IRLS weights
    information = (used_jacobian * weights[:, None]).T @ used_jacobian
    if np.linalg.cond(information) > 1e12:
        return covariance
    scores = np.zeros((CLUSTERS, used_jacobian.shape[1]))
    for c in range(CLUSTERS):
        rows = clusters == c
        scores[c] = (used_jacobian[rows] * (weights[rows] * residuals[rows])[:, None]).sum(axis=0)
    used = int(np.sum(np.any(scores != 0, axis=1)))
    meat = scores.T @ scores * (used / max(used - 1, 1))
    bread = np.linalg.inv(information)
    covariance[np.ix_(moving, moving)] = bread @ meat @ bread
    return covariance


def calibrate(
    run: VLLMRun,
    base: GPUProfile,
    *,
    fit: tuple[str, ...] | None = None,
    split_at_s: float | None = None,
    checks: tuple[VLLMRun, ...] = (),
    name: str | None = None,
) -> Calibration:
    """Fit ``fit`` (a subset of :data:`SCALES`; default: as many as the run determines) of ``base`` to ``run``.

    With ``split_at_s`` the fit scores only the requests arriving before it, and the requests after
    it are the held-out check.  The whole run's arrivals are simulated in both (an early request's
    latency depends on the later arrivals that share its batches, and a forecast of the second stage
    knows its arrivals), but the held-out requests' observed latencies are never read by the fit.
    Each of ``checks`` is replayed whole on the fitted profile.

    By default all four scales are fitted, and while the run cannot separate some of them (their
    effects on the latencies are collinear) the last of those in :data:`SCALES` order is held at the
    base's value and the rest refitted; the result's ``message`` says which were held and why.  An
    explicit ``fit`` the run cannot determine, a run too small to fit and a run that determines no
    scale at all are refused (:class:`~fluidopt.errors.InputError`), module docstring.
    """
    started = time.perf_counter()
    explicit = fit is not None
    scales = tuple(fit) if fit is not None else SCALES
    unknown = [s for s in scales if s not in SCALES]
    require(not unknown and bool(scales), "--fit", ",".join(scales), f"must name some of {', '.join(SCALES)}")
    scaled_profile(base, {})  # refuses a base that is not a roofline
    scored = _fit_part(run, split_at_s)
    observed = {metric: np.where(scored, values, np.nan) for metric, values in observed_latencies(run).items()}
    check_enough_requests(observed, run.folder if split_at_s is None else f"{run.folder} before {split_at_s:g} s")
    fitted_requests = int(scored.sum())
    policy = run_policy(run)
    counter = [0]
    held: list[str] = []
    start = dict.fromkeys(SCALES, None)
    while True:
        values, standard_errors, spread = _fit_scales(run, observed, base, policy, scales, start, counter)
        undetermined = [s for s in scales if not spread[s] <= MAX_SPREAD]  # NaN (collinear) or inf (unseen)
        if not undetermined:
            break
        if explicit or len(scales) == 1:
            raise InputError(
                "--fit",
                ",".join(scales),
                f"cannot be determined from this run: {', '.join(undetermined)} "
                f"{'is' if len(undetermined) == 1 else 'are'} left open by its latencies (standard error of the "
                f"logarithm above {MAX_SPREAD:g}), as at one load or with too few distinct batches; give a run with "
                "more than one load (e.g. two rate stages)"
                + (", or fit fewer scales with --fit" if len(scales) > 1 else ""),
            )
        dropped = max(undetermined, key=lambda s: (_order(spread[s]), SCALES.index(s)))
        held.append(f"{dropped} ({_why_held(spread[dropped], standard_errors[dropped], dropped)})")
        scales = tuple(s for s in scales if s != dropped)
        start = {s: values[s] for s in scales}
    record = {
        "run": run.folder,
        "base": base.name,
        "requests": fitted_requests,
        **({"split_at_s": split_at_s} if split_at_s is not None else {}),
        **{s: values[s] for s in SCALES},
        **{f"{s}_standard_error": standard_errors[s] for s in scales},
        "held_at_base": [h.split(" ")[0] for h in held],
        "method": "fluidopt.answers.calibrate: Nelder-Mead on soft_l1 of windowed log latency ratios",
    }
    fitted = replace(
        scaled_profile(base, values, record),
        name=name or f"{base.name}-calibrated",
        description=f"{base.name} calibrated on {fitted_requests} requests of {run.folder}: "
        + ", ".join(f"{s} {_format(s, values[s])}" for s in SCALES),
    )
    message = f"fitted {', '.join(scales)} on {fitted_requests} requests"
    if held:
        message += "; held at the base's value, as this run does not determine them: " + "; ".join(held)
    return Calibration(
        fitted,
        base.name,
        values,
        standard_errors,
        _errors(run, scored, base, fitted, policy, checks),
        fitted_requests,
        counter[0],
        time.perf_counter() - started,
        scales,
        message=message,
    )


def _why_held(spread: float, standard_error: float, name: str) -> str:
    if math.isinf(spread):
        return "it does not move this run's latencies"
    if math.isnan(spread):
        return "collinear with the other scales"
    return f"standard error {_format(name, standard_error)[1:]}"


def _order(spread: float) -> float:
    """A scale's standard error for choosing which to hold: unseen first, then collinear, then the largest."""
    return math.inf if math.isinf(spread) else (1e300 if math.isnan(spread) else spread)


def _fit_part(run: VLLMRun, split_at_s: float | None) -> np.ndarray:
    """Which requests the fit scores: all, or those arriving before ``split_at_s``."""
    if split_at_s is None:
        return np.ones(run.num_requests, dtype=bool)
    require(math.isfinite(split_at_s) and split_at_s > 0, "--split-at-s", split_at_s, "must be > 0 seconds")
    before = run.arrival_s < split_at_s
    require(
        0 < int(before.sum()) < run.num_requests,
        "--split-at-s",
        split_at_s,
        f"must fall inside the run's arrivals (0 to {float(run.arrival_s[-1]):.1f} s)",
    )
    return before


def _fit_scales(
    run: VLLMRun,
    observed: dict[str, np.ndarray],
    base: GPUProfile,
    policy: Any,
    scales: tuple[str, ...],
    start: dict[str, float | None],
    counter: list[int],
) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    """One robust fit of ``scales`` to the finite ``observed``: values, standard errors, those of the logarithms."""
    width = window_width(observed)

    def values_of(z: np.ndarray) -> dict[str, float]:
        return {s: _from_internal(s, float(v)) for s, v in zip(scales, z)}

    def residuals(z: np.ndarray) -> np.ndarray:
        counter[0] += 1
        return window_residuals(simulated_latencies(run, scaled_profile(base, values_of(z)), policy), observed, width)

    lower = np.array([_to_internal(s, BOUNDS[s][0]) for s in scales])
    upper = np.array([_to_internal(s, BOUNDS[s][1]) for s in scales])
    z0 = np.array([_to_internal(s, start.get(s) or START[s]) for s in scales])
    steps = np.array([SIMPLEX_STEP[s] for s in scales])
    simplex = np.vstack([z0, z0 + np.diag(steps)])
    solution = minimize(
        lambda z: robust_cost(residuals(z)),
        z0,
        method="Nelder-Mead",
        bounds=list(zip(lower, upper)),
        options={
            "initial_simplex": np.clip(simplex, lower, upper),
            "xatol": 0.01,
            "fatol": 1e-4,
            "maxfev": MAX_EVALUATIONS,
        },
    )
    at = residuals(solution.x)
    jacobian = _raw_jacobian(residuals, solution.x, at, upper)
    covariance = _sandwich(jacobian, at, _clusters(observed, width))
    values = {s: _neutral(s) for s in SCALES} | values_of(solution.x)
    spread = dict(zip(scales, np.sqrt(np.diag(covariance)).tolist()))  # NaN where the information is singular
    standard_errors = dict.fromkeys(SCALES, 0.0)
    for s in scales:
        standard_errors[s] = float(spread[s] * values[s])
    return values, standard_errors, spread


def _raw_jacobian(residuals: Any, z: np.ndarray, at: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Forward (or, at an upper bound, backward) differences of the residuals at ``z``."""
    columns = []
    for i in range(z.size):
        step = DIFF_STEP if z[i] + DIFF_STEP <= upper[i] else -DIFF_STEP
        moved = z.copy()
        moved[i] += step
        columns.append((residuals(moved) - at) / step)
    return np.column_stack(columns)


def _errors(
    run: VLLMRun,
    scored: np.ndarray,
    base: GPUProfile,
    fitted: GPUProfile,
    policy: Any,
    checks: tuple[VLLMRun, ...],
) -> dict[str, dict[str, dict[str, float]]]:
    """Mean-latency errors before and after the fit: on the fitted requests, the held-out ones, each check."""
    errors: dict[str, dict[str, dict[str, float]]] = {"fit": {}}
    held_out = ~scored
    if held_out.any():
        errors["split"] = {}
    for when, profile in (("base", base), ("fitted", fitted)):
        whole = simulated_latencies(run, profile, policy)
        errors["fit"][when] = mean_errors(whole, observed_latencies(run), scored)
        if held_out.any():
            errors["split"][when] = mean_errors(whole, observed_latencies(run), held_out)
        for check in checks:
            sims = simulated_latencies(check, profile)
            errors.setdefault(check.folder, {})[when] = mean_errors(sims, observed_latencies(check))
    return errors


def _format(name: str, value: float) -> str:
    if name in ("compute", "bandwidth"):
        return f"x{value:.3f}"
    return f"+{value * 1e3:.3f} ms" if name == "step_overhead_s" else f"+{value * 1e6:.2f} us"


def run_on_profile(
    profile: GPUProfile,
    rates_per_s: tuple[float, ...],
    requests_per_stage: int,
    *,
    seed: int = 0,
    engine_kwargs: dict[str, Any] | None = None,
    mean_prompt_tokens: float = 600.0,
    mean_output_tokens: float = 300.0,
) -> VLLMRun:
    """A run whose "observed" latencies are the simulator's on ``profile``: a calibration with a known answer.

    Arrivals are Poisson in stages (``requests_per_stage`` at each of ``rates_per_s``, one after the
    other); prompt and output lengths are log-normal (sigma 0.8) around the given means.  The
    engine is ``vllm-v1`` with ``engine_kwargs`` (vLLM's defaults otherwise) and the profile's KV
    capacity.  A function of ``seed``.
    """
    rng = np.random.default_rng(seed)
    n = requests_per_stage * len(rates_per_s)
    gaps = np.concatenate([rng.exponential(1.0 / rate, requests_per_stage) for rate in rates_per_s])
    arrivals = np.cumsum(gaps) - gaps[0]
    prompts = np.clip(np.round(rng.lognormal(np.log(mean_prompt_tokens) - 0.32, 0.8, n)), 1, 8192).astype(np.int64)
    outputs = np.clip(np.round(rng.lognormal(np.log(mean_output_tokens) - 0.32, 0.8, n)), 1, 4096).astype(np.int64)
    block = profile.block_tokens if profile.block_tokens > 1 else 16
    kv_cache = {"num_gpu_blocks": profile.kv_capacity_tokens // block, "block_size": block}
    empty = np.full(n, np.nan)
    draft = VLLMRun(
        f"simulated on {profile.name}",
        str(profile.fit.get("model", "")),
        "simulated",
        dict(engine_kwargs or {}),
        kv_cache,
        prompts,
        outputs,
        arrivals,
        empty,
        empty,
        empty,
    )
    times = simulated_latencies(draft, profile)
    return replace(draft, ttft_s=times["ttft"], e2e_s=times["e2e"], tpot_s=times["tpot"])
