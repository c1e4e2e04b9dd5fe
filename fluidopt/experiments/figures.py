"""The figures: each computed, then plotted, and saved with its data (CSV) and config (JSON).

``fluidopt figures [--quick] [--only NAME] [--out DIR] [--profile P]`` regenerates them.  The
paper's experiment figures use the A100 Llama-3-8B profile (docs/theory.md section 7) unless another
profile is given.  ``--quick`` uses small sizes (seconds per figure); the default uses the
paper's rates and more replicates and requests.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from fluidopt import __version__
from fluidopt.errors import InputError
from fluidopt.experiments.asymptotics import run_asymptotics
from fluidopt.experiments.catalog import PAPER_PROFILE
from fluidopt.experiments.evaluate import Targets, run_settings
from fluidopt.experiments.figure_output import FigureOutput
from fluidopt.experiments.rate_sweep import rate_sweep
from fluidopt.experiments.sustained import max_sustained_rate
from fluidopt.experiments.sweep import Executor, SerialExecutor
from fluidopt.fluid.stability import max_stable_scale, stability_boundary
from fluidopt.plotting import plot_stability_region
from fluidopt.profile import GPUProfile, preset_profile
from fluidopt.sim import FCFSPolicy, InitialRequests, SarathiPolicy, TraceArrivals, VLLMPolicy, WaitPolicy, simulate
from fluidopt.thresholds.nested import memory_against_segments
from fluidopt.timing.fit.vidur_csv import fit_piecewise, read_vidur_mlp_csv
from fluidopt.tomlio import SCHEMA_VERSION, write_text_atomic
from fluidopt.trace import read_trace
from fluidopt.workload import preset_workload, workload_from_trace

COMPARED = ("wait", "wait-nohold", "nested-wait", "nested-wait-nohold", "vllm", "sarathi")


@dataclass
class FigureContext:
    """Settings shared by every figure."""

    out: Path
    profile: GPUProfile
    quick: bool = False
    seed: int = 0
    executor: Executor = field(default_factory=SerialExecutor)
    shared_data: Path | None = None
    paper_timing: str = "measured"

    @property
    def replicates(self) -> int:
        """Replicates per simulated point."""
        return 1 if self.quick else 3

    @property
    def requests(self) -> int:
        """Requests per simulation."""
        return 3000 if self.quick else 20_000

    def rates(self, low: float, high: float, full_points: int) -> list[float]:
        """Rates between ``low`` and ``high`` (4 points when quick)."""
        return [float(r) for r in np.linspace(low, high, 4 if self.quick else full_points)]


def _write_csv(rows: list[dict[str, Any]]) -> str:
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    return buffer.getvalue()


def save(output: FigureOutput, ctx: FigureContext) -> list[Path]:
    """Write ``<name>.png``, ``<name>.csv`` and ``<name>.json`` (config + seed) atomically."""
    ctx.out.mkdir(parents=True, exist_ok=True)
    png = ctx.out / f"{output.name}.png"
    tmp = ctx.out / f".{output.name}.tmp.png"
    output.figure.savefig(tmp)
    plt.close(output.figure)
    os.replace(tmp, png)
    data = write_text_atomic(ctx.out / f"{output.name}.csv", _write_csv(output.rows))
    config = {
        "schema_version": SCHEMA_VERSION,
        "figure": output.name,
        "fluidopt": __version__,
        "profile": ctx.profile.name,
        "quick": ctx.quick,
        "seed": ctx.seed,
        **output.config,
    }
    meta = write_text_atomic(ctx.out / f"{output.name}.json", json.dumps(config, indent=2, default=str))
    return [png, data, meta]


def _readable_log_ticks(ax) -> None:
    """Log-axis ticks at 1, 2 and 5 per decade, labelled as plain numbers (0.5, 1, 2, 5, 10)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def _latency_figure(rows, title: str, extra: str | None = None):
    panels = 3 if extra else 2
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 3.6))
    for policy in dict.fromkeys(r["policy"] for r in rows):
        sub = [r for r in rows if r["policy"] == policy]
        rates = [r["rate_per_s"] for r in sub]
        axes[0].errorbar(
            rates,
            [r["mean_latency_s"] for r in sub],
            yerr=[r["mean_latency_ci95_s"] for r in sub],
            marker="o",
            label=policy,
            capsize=2,
        )
        axes[1].plot(rates, [r["completed_per_s"] for r in sub], marker="o", label=policy)
        if extra:
            axes[2].plot(rates, [100 * r[extra] for r in sub], marker="o", label=policy)
    all_rates = sorted({r["rate_per_s"] for r in rows})
    axes[1].plot(all_rates, all_rates, color="grey", ls="--", lw=1, label="arrival rate")
    axes[0].set(xlabel="arrival rate (requests/s)", ylabel="mean latency (s)", yscale="log")
    _readable_log_ticks(axes[0])
    axes[1].set(xlabel="arrival rate (requests/s)", ylabel="completed requests/s")
    if extra:
        axes[2].set(xlabel="arrival rate (requests/s)", ylabel="restarted requests (%)")
    axes[0].legend()
    axes[1].legend(handles=[axes[1].lines[-1]], fontsize=7)  # the dashed line: completions = arrivals
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def fig_profile_fit(ctx: FigureContext) -> FigureOutput:
    """Iteration-time fit of the profile against its measurements (or the stored fit alone)."""
    fit = ctx.profile.fit
    fig, ax = plt.subplots()
    rows: list[dict[str, Any]] = []
    tokens = np.unique(np.geomspace(1, 4096, 120).astype(int)).astype(float)
    source = str(fit.get("source", ""))
    measured = None
    if ctx.shared_data is not None and "compute/" in source:
        folder = source.split("compute/")[1].split("/mlp.csv")[0]
        path = ctx.shared_data / "profiles" / "vidur" / folder / "mlp.csv"
        if path.exists():
            layers = 80 if "70b" in folder.lower() else 32
            measured = read_vidur_mlp_csv(path, layers)
    if measured is not None:
        refit = fit_piecewise(measured)
        ax.scatter(measured.tokens, measured.time_s * 1e3, s=6, alpha=0.5, label="Vidur measurements")
        rows += [{"tokens": t, "measured_s": y} for t, y in zip(measured.tokens, measured.time_s)]
        label = f"fit (MAPE {100 * refit.mape:.1f}%, R$^2$ {refit.r2:.4f})"
    else:
        label = "stored fit (measurements not present)"
    if "floor_s" in fit:
        curve = np.maximum(fit["floor_s"], fit["intercept_s"] + fit["slope_s_per_token"] * tokens)
        ax.plot(tokens, curve * 1e3, color="C1", label=label)
        rows += [{"tokens": t, "fitted_s": y} for t, y in zip(tokens, curve)]
    else:
        curve = np.array([ctx.profile.iteration_time(0, t, t) for t in tokens])
        ax.plot(tokens, curve * 1e3, color="C1", label="profile iteration time")
        rows += [{"tokens": t, "fitted_s": y} for t, y in zip(tokens, curve)]
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="tokens in the batch",
        ylabel="non-attention time per iteration (ms)",
        title=f"{ctx.profile.name}",
    )
    ax.legend()
    return FigureOutput("profile-fit", fig, rows, {"measurements": measured is not None, "source": source})


def fig_stability_region(ctx: FigureContext) -> FigureOutput:
    """2-class region: fluid boundary, peer closed forms and measured largest stable rates."""
    mix = preset_workload("mix-p512d20-p512d50")
    boundary = stability_boundary(mix, ctx.profile, directions=91)
    angles = np.linspace(0.15, np.pi / 2 - 0.15, 3 if ctx.quick else 5)
    policies = ("wait", "vllm") if ctx.quick else ("wait", "nested-wait", "vllm", "sarathi")
    run = run_settings(
        Targets(),
        replicates=1 if ctx.quick else 2,
        requests=2000 if ctx.quick else 10_000,
        seed=ctx.seed,
        executor=ctx.executor,
    )
    measured: dict[str, list[np.ndarray]] = {p: [] for p in policies}
    rows: list[dict[str, Any]] = [
        {"series": "fluid", "angle": a, "rate_1": r[0], "rate_2": r[1]}
        for a, r in zip(boundary.angles_rad, boundary.fluid_rates)
    ]
    for name, points in boundary.peer_rates.items():
        rows += [
            {"series": name, "angle": a, "rate_1": r[0], "rate_2": r[1]} for a, r in zip(boundary.angles_rad, points)
        ]
    for angle in angles:
        direction = np.array([math.cos(angle), math.sin(angle)])
        directed = mix.with_rates(direction)
        fluid = max_stable_scale(directed, ctx.profile).max_scale
        for policy in policies:
            found = max_sustained_rate(
                policy,
                directed.with_total_rate(1.0),
                ctx.profile,
                low=0.0,
                high=1.2 * fluid * direction.sum(),
                steps=4 if ctx.quick else 6,
                run=run,
            )
            # A rate above the fluid limit is a method error (flagged, NaN), never drawn as capacity.
            point = found.max_rate_per_s * direction / direction.sum()
            measured[policy].append(point)
            rows.append(
                {
                    "series": policy,
                    "angle": angle,
                    "rate_1": point[0],
                    "rate_2": point[1],
                    "status": found.status,
                    "flagged_rate_per_s": found.flagged_rate_per_s,
                }
            )
    fig = plot_stability_region(
        boundary, measured={k: np.array(v) for k, v in measured.items()}, title=f"{mix.name} on {ctx.profile.name}"
    )
    return FigureOutput(
        "stability-region",
        fig,
        rows,
        {
            "workload": mix.name,
            "angles": angles.tolist(),
            "policies": list(policies),
            "replicates": run.replicates,
            "requests": run.requests,
            "seed": run.seed,
        },
    )


def _comparison(
    ctx: FigureContext,
    name: str,
    workload_name: str,
    low: float,
    high: float,
    points: int,
    policies=COMPARED,
    extra: str | None = None,
    title: str | None = None,
) -> FigureOutput:
    workload = preset_workload(workload_name)
    rates = ctx.rates(low, high, points)
    rows = rate_sweep(
        workload,
        ctx.profile,
        policies,
        rates,
        replicates=ctx.replicates,
        requests=ctx.requests,
        seed=ctx.seed,
        executor=ctx.executor,
    )
    fig = _latency_figure(rows, title or f"{workload_name} on {ctx.profile.name}", extra)
    return FigureOutput(
        name,
        fig,
        rows,
        {
            "workload": workload_name,
            "rates": rates,
            "policies": list(policies),
            "replicates": ctx.replicates,
            "requests": ctx.requests,
        },
    )


def fig_p512d20(ctx: FigureContext) -> FigureOutput:
    """The paper's single-class figure: latency and completion rate against rate."""
    return _comparison(ctx, "p512d20", "p512d20", 12, 24, 13, ("wait", "wait-nohold", "vllm", "sarathi", "fcfs"))


def fig_two_class(ctx: FigureContext) -> FigureOutput:
    """0.7 x p512d20 + 0.3 x p512d50 with Nested WAIT."""
    return _comparison(ctx, "two-class", "mix-p512d20-p512d50", 12, 24, 13)


def fig_long_decode(ctx: FigureContext) -> FigureOutput:
    """p512d1000 with restart rates."""
    return _comparison(
        ctx, "long-decode", "p512d1000", 0.5, 5.0, 10, ("wait", "vllm", "sarathi", "fcfs"), extra="restart_fraction"
    )


def fig_wait_vs_nowait(ctx: FigureContext) -> FigureOutput:
    """WAIT against its no-wait ablation."""
    return _comparison(ctx, "wait-vs-nowait", "p512d20", 12, 24, 13, ("wait", "wait-nohold", "wait-nowait"))


def fig_lmsys(ctx: FigureContext) -> FigureOutput:
    """The lmsys-like mix, and the Azure conversation trace when ../shared/data is present."""
    limit = max_stable_scale(preset_workload("lmsys-like"), ctx.profile).max_rate_per_s
    output = _comparison(
        ctx,
        "lmsys",
        "lmsys-like",
        0.4 * limit,
        0.95 * limit,
        8,
        ("wait", "wait-nohold", "nested-wait", "vllm", "sarathi"),
    )
    if ctx.shared_data is not None and (ctx.shared_data / "traces" / "splitwise_conv.csv").exists():
        trace = read_trace(ctx.shared_data / "traces" / "splitwise_conv.csv")
        workload = workload_from_trace(trace)
        for policy in (VLLMPolicy(), SarathiPolicy()):
            result = simulate(
                workload,
                ctx.profile,
                policy,
                requests=min(trace.num_requests, ctx.requests),
                arrivals=TraceArrivals(trace),
                rng=ctx.seed,
            )
            output.rows.append(
                {
                    "policy": f"{policy.name} (Azure conv trace)",
                    "rate_per_s": workload.total_rate_per_s,
                    "mean_latency_s": result.mean_latency_s,
                    "completed_per_s": result.completed_per_s,
                    "mean_latency_ci95_s": 0.0,
                }
            )
            output.figure.axes[0].scatter(
                [workload.total_rate_per_s],
                [result.mean_latency_s],
                marker="*",
                s=80,
                label=f"{policy.name}, Azure conv trace",
            )
        output.figure.axes[0].legend()
        output.config["trace"] = "splitwise_conv.csv (Azure LLM inference trace 2023, CC-BY 4.0)"
    return output


def fig_long_horizon(ctx: FigureContext) -> FigureOutput:
    """Latency against the number of requests near the stability boundary."""
    workload = preset_workload("mix-p512d20-p512d50")
    limit = max_stable_scale(workload, ctx.profile).max_rate_per_s
    counts = [2000, 5000, 10000] if ctx.quick else [2000, 5000, 10000, 15000, 20000]
    rows = []
    fig, ax = plt.subplots()
    for fraction in (0.8, 0.85):
        rate = fraction * limit
        for policy in ("nested-wait", "sarathi"):
            latencies = []
            for count in counts:
                row = rate_sweep(
                    workload,
                    ctx.profile,
                    [policy],
                    [rate],
                    replicates=ctx.replicates,
                    requests=count,
                    seed=ctx.seed,
                    executor=ctx.executor,
                )[0]
                latencies.append(row["mean_latency_s"])
                rows.append(
                    {"policy": policy, "rate_per_s": rate, "requests": count, "mean_latency_s": row["mean_latency_s"]}
                )
            ax.plot(counts, latencies, marker="o", label=f"{policy} at {rate:.1f}/s")
    ax.set(xlabel="requests simulated", ylabel="mean latency (s)", title=f"long horizon on {ctx.profile.name}")
    ax.legend()
    return FigureOutput(
        "long-horizon",
        fig,
        rows,
        {"workload": workload.name, "counts": counts, "fractions_of_fluid_limit": [0.8, 0.85]},
    )


def fig_nested_memory(ctx: FigureContext) -> FigureOutput:
    """Nested WAIT required memory decomposed against the number of segments L."""
    workload = preset_workload("lmsys-like")
    profile = preset_profile("paper-linear")
    settings = [(30.0, 600.0, 0.01), (50.0, 600.0, 0.01), (50.0, 36000.0, 1e-4)]
    fig, axes = plt.subplots(1, len(settings), figsize=(4.2 * len(settings), 3.6), sharey=True)
    rows = []
    for ax, (rate, horizon, delta) in zip(axes, settings):
        curve = memory_against_segments(workload.with_total_rate(rate), profile, horizon_s=horizon, delta=delta)
        designs = {L: d for L, d in curve.items() if d is not None}
        levels = list(designs)
        parts = {
            "base": [designs[L].memory_base_tokens for L in levels],
            "carry-over": [designs[L].memory_carry_over_tokens for L in levels],
            "buffer": [designs[L].memory_buffer_tokens for L in levels],
        }
        bottom = np.zeros(len(levels))
        for label, values in parts.items():
            ax.bar(levels, values, bottom=bottom, label=label)
            bottom += np.array(values)
        ax.axhline(profile.kv_capacity_tokens, color="k", ls="--", lw=1, label="C")
        ax.set(xlabel="segments L", title=f"rate {rate:g}/s, T {horizon:g} s, delta {delta:g}")
        for L in curve:
            design = curve[L]
            rows.append(
                {
                    "rate_per_s": rate,
                    "horizon_s": horizon,
                    "delta": delta,
                    "segments": L,
                    "feasible": design is not None,
                    "memory_base_tokens": design.memory_base_tokens if design else math.nan,
                    "memory_carry_over_tokens": design.memory_carry_over_tokens if design else math.nan,
                    "memory_buffer_tokens": design.memory_buffer_tokens if design else math.nan,
                    "memory_required_tokens": design.memory_required_tokens if design else math.inf,
                }
            )
    axes[0].set_ylabel("required KV memory (tokens)")
    axes[0].legend()
    fig.tight_layout()
    return FigureOutput(
        "nested-memory",
        fig,
        rows,
        {"workload": workload.name, "profile_used": profile.name, "settings": settings, "cut_method": "optimal"},
    )


def fig_asymptotics(ctx: FigureContext) -> FigureOutput:
    """Fitted asymptotic rates from the scaling experiment, and scaled sample paths."""
    result = run_asymptotics(quick=ctx.quick, seed=ctx.seed, executor=ctx.executor)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    rows = []
    for name, scaling in result["scaling"].items():
        x = scaling.scaled_horizons
        gap = np.nanmean(scaling.gaps, axis=1)
        latency = np.nanmean(scaling.latencies, axis=1)
        axes[0].loglog(x, gap, marker="o", label=f"{name} (slope {scaling.gap_slope.estimate:+.2f})")
        axes[1].loglog(x, latency, marker="o", label=f"{name} (slope {scaling.latency_slope.estimate:+.2f})")
        rows += [
            {
                "experiment": name,
                "zeta": z,
                "zeta_T": xi,
                "mean_gap": g,
                "mean_latency_service_units": lat,
                "gap_slope": scaling.gap_slope.estimate,
                "gap_slope_low": scaling.gap_slope.low,
                "gap_slope_high": scaling.gap_slope.high,
                "latency_slope": scaling.latency_slope.estimate,
            }
            for z, xi, g, lat in zip(scaling.zetas, x, gap, latency)
        ]
    axes[0].set(xlabel="zeta T", ylabel="throughput gap", title="gap to the benchmark")
    axes[1].set(xlabel="zeta T", ylabel="mean latency (service units)", title="latency")
    paths = result["sample_paths"]
    for zeta, t, q in zip(paths.zetas, paths.times_s, paths.scaled_queues):
        axes[2].plot(t, q, lw=0.8, label=f"zeta {zeta:g}")
    axes[2].plot(paths.fluid_times_s, paths.fluid_queue, color="k", lw=2, label="fluid ODE")
    axes[2].set(xlabel="time (s)", ylabel="queue / zeta", title="scaled sample paths (overload)")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.tight_layout()
    return FigureOutput(
        "asymptotics", fig, rows, {"settings": result["settings"], "sample_path_distances": paths.distances.tolist()}
    )


def fig_memory_cascade(ctx: FigureContext) -> FigureOutput:
    """Resident memory over time: the FCFS eviction cascade against WAIT (toy, C = M*)."""
    workload, profile = preset_workload("toy"), preset_profile("toy")
    start = [InitialRequests(0, 0, 6), InitialRequests(0, 1, 3)]
    fig, ax = plt.subplots()
    rows = []
    for policy, initial in ((FCFSPolicy(), start), (WaitPolicy((4,)), ())):
        result = simulate(
            workload, profile, policy, horizon_s=60, rng=ctx.seed, record_series=True, warmup_s=0, initial=initial
        )
        series = result.series
        assert series is not None  # record_series=True
        ax.step(
            series["start_s"],
            series["memory_tokens"],
            where="post",
            label=f"{policy.name}: {result.completed_per_s:.2f} completed/s, {result.evictions} evictions",
        )
        rows += [
            {"policy": policy.name, "start_s": s, "memory_tokens": m, "completions": c}
            for s, m, c in zip(series["start_s"], series["memory_tokens"], series["completions"])
        ]
    ax.axhline(profile.kv_capacity_tokens, color="k", ls="--", lw=1, label="C = M* = 12")
    ax.set(xlabel="time (s)", ylabel="resident KV tokens", title="toy at rate 4: FCFS eviction cascade vs WAIT")
    ax.legend()
    return FigureOutput("memory-cascade", fig, rows, {"workload": "toy", "profile_used": "toy", "horizon_s": 60})


FIGURES: dict[str, Callable[[FigureContext], FigureOutput]] = {
    "profile-fit": fig_profile_fit,
    "stability-region": fig_stability_region,
    "p512d20": fig_p512d20,
    "two-class": fig_two_class,
    "long-decode": fig_long_decode,
    "long-horizon": fig_long_horizon,
    "lmsys": fig_lmsys,
    "nested-memory": fig_nested_memory,
    "wait-vs-nowait": fig_wait_vs_nowait,
    "asymptotics": fig_asymptotics,
    "memory-cascade": fig_memory_cascade,
}


def make_figures(
    out: str | os.PathLike[str] = "figures",
    *,
    quick: bool = False,
    only: list[str] | None = None,
    profile: str | GPUProfile = PAPER_PROFILE,
    seed: int = 0,
    executor: Executor | None = None,
    shared_data: str | os.PathLike[str] | None = None,
    timing: str = "measured",
) -> dict[str, list[Path]]:
    """Regenerate the figures (all, or ``only`` these names) into ``out``.

    ``timing`` selects the iteration time of the paper-* figures: ``measured`` (the attention-aware
    preset) or ``vidur-predictor`` (Vidur's execution-time predictor, docs/theory.md section 13).
    Under the predictor only the paper-* figures are drawn (by default all of them), each saved as
    ``<name>-vidur-predictor``.
    """
    from fluidopt.experiments.paper_figures import PAPER_FIGURES, PAPER_TIMINGS

    if timing not in PAPER_TIMINGS:
        raise InputError("--timing", timing, f"must be one of {', '.join(PAPER_TIMINGS)}")
    paper_names = [n for n in PAPER_FIGURES if n != "paper-b-predictor"]
    names = (list(FIGURES) if timing == "measured" else paper_names) if not only else only
    for name in names:
        if name not in FIGURES:
            raise InputError("--only", name, f"unknown figure; choose from {', '.join(FIGURES)}")
        if timing != "measured" and name not in PAPER_FIGURES:
            raise InputError("--only", name, f"--timing {timing} applies to the paper-* figures only")
    profile = preset_profile(profile) if isinstance(profile, str) else profile
    data = Path(shared_data) if shared_data is not None else None
    ctx = FigureContext(
        Path(out),
        profile,
        quick,
        seed,
        executor or SerialExecutor(),
        data if data is not None and data.is_dir() else None,
        timing,
    )
    from fluidopt.plotting import style

    with style():  # the figures' style stays inside this call (no global matplotlib state changes)
        return {name: save(FIGURES[name](ctx), ctx) for name in names}


def _register_paper_figures() -> None:
    """Add the paper-setup figures (:mod:`fluidopt.experiments.paper_figures`) to :data:`FIGURES`."""
    from fluidopt.experiments.paper_figures import PAPER_FIGURES

    FIGURES.update(PAPER_FIGURES)


_register_paper_figures()
