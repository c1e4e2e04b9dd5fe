"""The paper's experiments in the paper's setup, side by side with its published numbers.

Every figure here runs on the attention-aware A100 Meta-Llama-3-8B preset
(``a100-80gb-llama-3-8b-vidur``) with Vidur's conventions (docs/theory.md section 9), the baselines at
the paper's settings (vLLM batch cap 128 / 4,096 padded tokens; Sarathi chunk 512 / batch cap
512) and the authors' chunked WAIT settings per rate (tl and chunk size), read from
``../shared/data/paper/`` when present (docs/theory.md section 9's description otherwise).  The
published latencies are drawn as a reference series and written into the figure's CSV as rows
whose ``series`` is ``paper`` (with their source); completion-rate panels are measured.  A
companion figure sets fluid-derived chunked thresholds against tuned baselines.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from fluidopt.experiments.evaluate import Targets, evaluate
from fluidopt.experiments.figure_output import FigureOutput
from fluidopt.profile import preset_profile
from fluidopt.sim.policies import Policy, SarathiPolicy, VLLMPolicy, WaitCPPolicy
from fluidopt.thresholds.chunked import wait_cp_thresholds
from fluidopt.workload import Workload, preset_workload

VIDUR_PROFILE = "a100-80gb-llama-3-8b-vidur"
PREDICTOR_PROFILE = "a100-80gb-llama-3-8b-vidur-predictor"
PAPER_TIMINGS = {"measured": VIDUR_PROFILE, "vidur-predictor": PREDICTOR_PROFILE}
PAPER_SEED = 42
PAPER_SOURCE = "arXiv:2504.11320 authors' recorded results (shared/data/paper)"


def paper_profile_name(ctx) -> str:
    """The preset behind the paper figures under the context's timing (measured model or Vidur's predictor)."""
    return PAPER_TIMINGS[getattr(ctx, "paper_timing", "measured")]


def _named(ctx, name: str) -> str:
    """A paper figure's file name; under Vidur's predictor timing it carries the timing's name."""
    timing = getattr(ctx, "paper_timing", "measured")
    return name if timing == "measured" else f"{name}-{timing}"


def authors_wait_cp(workload: Workload, tl: int, chunk: int, *, wait_gate: bool = False, eta: float = 0.0):
    """The authors' WAIT-CP from (tl, cs) as docs/theory.md section 9 builds it.

    Segments end at the distinct output lengths; ``n_k = n_1 prod_{r<k} min(p_r + eta, 0.99)``,
    normalised so that ``sum_k stages_k n_k = tl`` (segment 1 counts its ``K = ceil(l / cs)``
    prefill stages and ``l'_1`` decode stages, as the authors count them); prefill budget
    ``ceil(n_1 K cs)``, decode budgets ``ceil(n_k x decode stages_k)``.
    """
    lengths = sorted({c.decode_tokens for c in workload.classes})
    rates = [sum(c.rate_per_s for c in workload.classes if c.decode_tokens >= d) for d in lengths]
    prompt = max(c.prefill_tokens for c in workload.classes)
    prefill_stages = math.ceil(prompt / chunk)
    relative = [1.0]
    for k in range(1, len(lengths)):
        relative.append(relative[-1] * min(rates[k] / rates[k - 1] + eta, 0.99))
    decode_stages = [lengths[0]] + [b - a for a, b in zip(lengths, lengths[1:])]
    stages = [prefill_stages + decode_stages[0], *decode_stages[1:]]
    first = tl / sum(s * r for s, r in zip(stages, relative))
    per_stage = [first * r for r in relative]
    prefill = math.ceil(first * prefill_stages * chunk - 1e-9)
    decode = tuple(max(1, math.ceil(n * s - 1e-9)) for n, s in zip(per_stage, decode_stages))
    return WaitCPPolicy(
        tl,
        chunk,
        prefill,
        prefill + sum(decode),
        decode,
        tuple(lengths),
        per_stage=tuple(per_stage),
        wait_gate=wait_gate,
    )


def read_paper(shared: Path | None, name: str) -> list[dict[str, str]]:
    """Rows of ``shared/paper/<name>.csv`` (empty when the folder is absent)."""
    if shared is None:
        return []
    path = shared / "paper" / f"{name}.csv"
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


def _config(text: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if m := re.search(r"tl\s*=?\s*(\d+)", text):
        out["tl"] = int(m.group(1))
    if m := re.search(r"cs\s*=?\s*(\d+)", text):
        out["chunk"] = int(m.group(1))
    if "gate on" in text:
        out["gate"] = True
    return out


def _paper_rows(figure: str, rows: list[dict[str, str]], keep: Callable[[dict[str, str]], bool]) -> list[dict]:
    out = []
    for row in rows:
        if keep(row):
            out.append(
                {
                    "figure": figure,
                    "series": "paper",
                    "policy": row["policy"],
                    "rate_per_s": float(row["rate_per_s"]),
                    "requests": int(float(row["requests"])) if row.get("requests") else None,
                    "mean_latency_s": float(row["mean_latency_s"]),
                    "source": PAPER_SOURCE + (f": {row['series']}" if row.get("series") else ""),
                }
            )
    return out


def _measure(
    ctx,
    figure: str,
    workload: Workload,
    rate: float,
    policies: dict[str, Policy],
    requests: int,
    profile_name: str | None = None,
):
    """Simulate every policy at one nominal rate (common random numbers), rows with t intervals."""
    profile = preset_profile(profile_name or paper_profile_name(ctx))
    scaled = workload.with_total_rate(rate)
    configs = [(policy, {"label": label}) for label, policy in policies.items()]
    evaluations = evaluate(
        scaled,
        profile,
        configs,
        targets=Targets(),
        replicates=ctx.replicates,
        requests=requests,
        seed=ctx.seed if ctx.seed else PAPER_SEED,
        executor=ctx.executor,
        conventions="vidur",
    )
    rows = []
    for (label, policy), e in zip(policies.items(), evaluations):
        low, high = e.interval("mean_latency_s")
        rows.append(
            {
                "figure": figure,
                "series": "fluidopt",
                "policy": label,
                "rate_per_s": rate,
                "requests": requests,
                "mean_latency_s": e.mean("mean_latency_s"),
                "mean_latency_ci_low_s": low,
                "mean_latency_ci_high_s": high,
                "p99_latency_s": e.mean("p99_latency_s"),
                "completed_per_s": e.mean("completed_per_s"),
                "delivered_rate_per_s": float(np.mean([r["settings"]["delivered_rate_per_s"] for r in e.runs])),
                "stable": e.stable,
                "configuration": str(policy.to_dict()),
                "profile": profile.name,
                "timing": profile.timing_kind,
            }
        )
    return rows


def _plot(rows: list[dict], title: str, x: str = "rate_per_s", xlabel: str = "nominal rate (requests/s)"):
    fig, axes = plt.subplots(1, 2, figsize=(9.6, 3.8))
    ours = [r for r in rows if r["series"] == "fluidopt"]
    colours: dict[str, Any] = {}
    for label in dict.fromkeys(r["policy"] for r in ours):
        sub = [r for r in ours if r["policy"] == label]
        xs = [r[x] for r in sub]
        ys = np.array([r["mean_latency_s"] for r in sub])
        err = np.array([[y - r["mean_latency_ci_low_s"], r["mean_latency_ci_high_s"] - y] for y, r in zip(ys, sub)])
        line = axes[0].errorbar(xs, ys, yerr=err.T, marker="o", capsize=2, label=label)
        colours[label] = line[0].get_color()
        if x == "rate_per_s":
            axes[1].plot(xs, [r["completed_per_s"] for r in sub], marker="o", color=colours[label], label=label)
    for label in dict.fromkeys(r["policy"] for r in rows if r["series"] == "paper"):
        sub = [r for r in rows if r["series"] == "paper" and r["policy"] == label]
        axes[0].plot(
            [r[x] for r in sub],
            [r["mean_latency_s"] for r in sub],
            ls="--",
            marker="x",
            color=colours.get(label, "grey"),
            label=f"{label} (paper)",
        )
    axes[0].set(xlabel=xlabel, ylabel="mean latency, middle 50% (s)", yscale="log")
    axes[0].legend(fontsize=7)
    if x == "rate_per_s":
        delivered = sorted({(r["rate_per_s"], r["delivered_rate_per_s"]) for r in ours})
        axes[1].plot([d[0] for d in delivered], [d[1] for d in delivered], "k--", lw=1, label="delivered arrivals")
        axes[1].set(xlabel=xlabel, ylabel="completed requests/s (measured)")
        axes[1].legend(fontsize=7)
    else:
        axes[1].axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def _rates(ctx, rates: list[float]) -> list[float]:
    if not ctx.quick or len(rates) <= 3:
        return rates
    return [rates[0], rates[len(rates) // 2], rates[-1]]


def _requests(ctx, full: int) -> int:
    return min(full, 1500) if ctx.quick else full


def fig_paper_b(ctx):
    """Figure B: p512d20, WAIT-CP (tl 21, cs 256) against Sarathi and vLLM at the paper's settings."""
    workload = preset_workload("p512d20")
    paper = read_paper(ctx.shared_data, "p512d20")
    rows = _paper_rows("B", paper, lambda r: r.get("series", "").startswith("figure"))
    rates = _rates(ctx, [12, 14, 16, 18, 20, 22, 23, 24])
    policies = {"wait-cp": authors_wait_cp(workload, 21, 256), "sarathi": SarathiPolicy(), "vllm": VLLMPolicy()}
    for rate in rates:
        rows += _measure(ctx, "B", workload, rate, policies, _requests(ctx, 5000))
    fig = _plot(rows, f"Figure B setup: p512d20 on {paper_profile_name(ctx)}, Vidur conventions (dashed: paper)")
    return FigureOutput(_named(ctx, "paper-b-p512d20"), fig, rows, _config_of(ctx, workload, rates, policies, 5000))


PREDICTOR_RATES = [12, 14, 16, 18, 20, 22, 23]


def predictor_policies(workload: Workload) -> dict[str, Policy]:
    """Figure B's policies plus Sarathi with a 508-token budget (the probe of the KV-save lookup)."""
    return {
        "wait-cp (tl 21, cs 256)": authors_wait_cp(workload, 21, 256),
        "sarathi-512": SarathiPolicy(),
        "sarathi-508": SarathiPolicy(token_budget=508),
        "vllm": VLLMPolicy(),
    }


def kv_save_curves(tokens: np.ndarray) -> dict[str, np.ndarray]:
    """Per-iteration KV-save time (s) against the batch's new tokens under both paper timings.

    Vidur's predictor looks it up by the token count alone; the measured model charges what the
    batch writes, drawn for a Sarathi-like batch (20 decodes and one prefill chunk of the rest).
    """
    predictor = preset_profile(PREDICTOR_PROFILE).timing
    measured = preset_profile(VIDUR_PROFILE).timing
    chunk = np.maximum(tokens - 20, 0)
    return {
        "vidur-predictor": np.asarray(predictor.kv_save_time(tokens)),  # type: ignore[attr-defined]
        "measured": np.asarray(
            measured.prefill_kv_save_time(chunk, np.zeros_like(chunk)) + measured.decode_kv_save_time(20)  # type: ignore[attr-defined]
        ),
    }


def fig_paper_b_predictor(ctx):
    """Figure B under Vidur's predictor and the measured model, with Sarathi-508, and the KV-save lookup."""
    workload = preset_workload("p512d20")
    paper = read_paper(ctx.shared_data, "p512d20")
    rows = _paper_rows("B", paper, lambda r: r.get("series", "").startswith("figure"))
    rates = _rates(ctx, PREDICTOR_RATES)
    policies = predictor_policies(workload)
    for profile_name in PAPER_TIMINGS.values():
        for rate in rates:
            rows += _measure(ctx, "B", workload, rate, policies, _requests(ctx, 5000), profile_name)
    tokens = np.arange(256, 641, 1)
    curves = kv_save_curves(tokens)
    for timing, values in curves.items():
        rows += [
            {"figure": "B", "series": "kv-save", "timing": timing, "batch_tokens": int(t), "kv_save_ms": 1e3 * v}
            for t, v in zip(tokens, values)
        ]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    colours: dict[str, Any] = {}
    marked = False
    for timing, style in (("vidur-predictor", "-"), ("measured", ":")):
        for label in policies:
            sub = [r for r in rows if r["series"] == "fluidopt" and r["timing"] == timing and r["policy"] == label]
            ys = np.array([r["mean_latency_s"] for r in sub])
            err = np.array([[y - r["mean_latency_ci_low_s"], r["mean_latency_ci_high_s"] - y] for y, r in zip(ys, sub)])
            line = axes[0].errorbar(
                [r["rate_per_s"] for r in sub],
                ys,
                yerr=err.T,
                ls=style,
                marker="o" if timing == "vidur-predictor" else "s",
                markerfacecolor="none" if timing == "measured" else None,
                capsize=2,
                color=colours.get(label),
                label=f"{label}, {timing}",
            )
            colours.setdefault(label, line[0].get_color())
            unstable = [r for r in sub if not r["stable"]]
            if unstable:
                axes[0].plot(
                    [r["rate_per_s"] for r in unstable],
                    [r["mean_latency_s"] for r in unstable],
                    "x",
                    color="black",
                    markersize=8,
                    label=None if marked else "not keeping up",
                )
                marked = True
    ours = {"sarathi": "sarathi-512", "wait-cp": "wait-cp (tl 21, cs 256)", "vllm": "vllm"}
    for label in dict.fromkeys(r["policy"] for r in rows if r["series"] == "paper"):
        sub = [r for r in rows if r["series"] == "paper" and r["policy"] == label]
        axes[0].plot(
            [r["rate_per_s"] for r in sub],
            [r["mean_latency_s"] for r in sub],
            ls="--",
            marker="+",
            color=colours.get(ours.get(label, label), "grey"),
            label=f"{label} (paper)",
        )
    axes[0].set(xlabel="nominal rate (requests/s)", ylabel="mean latency, middle 50% (s)", yscale="log")
    axes[0].legend(fontsize=6, ncol=2)
    for timing, values in curves.items():
        axes[1].plot(
            tokens,
            1e3 * values,
            label=f"{timing}" + (" (lookup by token count)" if timing != "measured" else " (20 decodes + one chunk)"),
        )
    for mark, text, height in ((508, "WAIT-CP batches <= 508 ", 0.55), (512, " Sarathi batches = 512", 0.8)):
        axes[1].axvline(mark, color="grey", lw=0.8, ls="--")
        axes[1].annotate(
            text, (mark, axes[1].get_ylim()[1] * height), fontsize=7, ha="right" if mark == 508 else "left"
        )
    axes[1].set(xlabel="new tokens in the iteration", ylabel="KV-cache save per iteration, 32 layers (ms)")
    axes[1].legend(fontsize=7)
    fig.suptitle("Figure B under Vidur's execution-time predictor (solid) and the measured model (dotted)", fontsize=10)
    fig.tight_layout()
    config = _config_of(ctx, workload, rates, policies, 5000)
    config["profile_used"] = dict(PAPER_TIMINGS)
    return FigureOutput("paper-b-predictor", fig, rows, config)


def fig_paper_c(ctx):
    """Figure C: the two-class mix, Nested WAIT-CP at the authors' best (cs, tl) per rate."""
    workload = preset_workload("mix-p512d20-p512d50")
    paper = read_paper(ctx.shared_data, "mix-p512d20-p512d50")
    rows = _paper_rows("C", paper, lambda r: r.get("series", "").startswith("figure C"))
    chosen = {
        float(r["rate_per_s"]): _config(r.get("configuration", "")) for r in paper if r["policy"] == "nested-wait-cp"
    }
    rates = _rates(ctx, [12, 14, 16, 18, 20, 22, 23, 24])
    settings = {}
    for rate in rates:
        config = chosen.get(float(rate)) or ({"tl": 20, "chunk": 192} if rate <= 19 else {"tl": 30, "chunk": 128})
        config = config if "tl" in config else {"tl": 30, "chunk": 128}
        policies = {
            "nested-wait-cp": authors_wait_cp(workload, config["tl"], config.get("chunk", 128)),
            "sarathi": SarathiPolicy(),
            "vllm": VLLMPolicy(),
        }
        settings[rate] = config
        rows += _measure(ctx, "C", workload, rate, policies, _requests(ctx, 5000))
    fig = _plot(rows, f"Figure C setup: 0.7 p512d20 + 0.3 p512d50 on {paper_profile_name(ctx)} (dashed: paper)")
    config = _config_of(ctx, workload, rates, policies, 5000)
    config["authors_settings_per_rate"] = {str(k): v for k, v in settings.items()}
    return FigureOutput(_named(ctx, "paper-c-two-class"), fig, rows, config)


def fig_paper_e(ctx):
    """Figure E: long horizon on the two-class mix at 22/s: latency against requests simulated."""
    workload = preset_workload("mix-p512d20-p512d50")
    paper = read_paper(ctx.shared_data, "long-horizon")
    rows = _paper_rows("E", paper, lambda r: float(r["rate_per_s"]) == 22)
    counts = [2000, 5000] if ctx.quick else [2000, 5000, 10000, 20000]
    policies = {"nested-wait-cp": authors_wait_cp(workload, 30, 128), "sarathi": SarathiPolicy()}
    for count in counts:
        for row in _measure(ctx, "E", workload, 22.0, policies, count):
            rows.append(row)
    for row in rows:
        row["x_requests"] = row["requests"]
    fig = _plot(
        rows,
        "Figure E setup: mix at 22/s, latency against requests (dashed: paper)",
        x="x_requests",
        xlabel="requests simulated",
    )
    return FigureOutput(
        _named(ctx, "paper-e-long-horizon"), fig, rows, _config_of(ctx, workload, [22.0], policies, counts)
    )


def fig_paper_g(ctx):
    """Figure G: p512d1000 at 3-5 requests/s with the authors' tl (92-120), cs 128 and wait gate."""
    workload = preset_workload("p512d1000")
    paper = read_paper(ctx.shared_data, "p512d1000")
    rows = _paper_rows("G", paper, lambda r: True)
    chosen = {float(r["rate_per_s"]): _config(r.get("configuration", "")) for r in paper if r["policy"] == "wait-cp"}
    rates = _rates(ctx, [3.0, 3.5, 4.0, 4.5, 5.0])
    settings = {}
    for rate in rates:
        config = chosen.get(float(rate)) or {"tl": 92 if rate <= 3 else (110 if rate <= 3.5 else 120)}
        policies = {
            "wait-cp": authors_wait_cp(workload, config["tl"], 128, wait_gate=bool(config.get("gate"))),
            "sarathi": SarathiPolicy(),
            "vllm": VLLMPolicy(),
        }
        settings[rate] = config
        rows += _measure(ctx, "G", workload, rate, policies, _requests(ctx, 2000))
    fig = _plot(rows, f"Figure G setup: p512d1000 on {paper_profile_name(ctx)} (dashed: paper)")
    config = _config_of(ctx, workload, rates, policies, 2000)
    config["authors_settings_per_rate"] = {str(k): v for k, v in settings.items()}
    return FigureOutput(_named(ctx, "paper-g-p512d1000"), fig, rows, config)


def fig_paper_d(ctx):
    """Figure D: the lmsys-like mix; Nested WAIT-CP from the fluid model (the authors' settings were not kept)."""
    workload = preset_workload("lmsys-like")
    paper = read_paper(ctx.shared_data, "lmsys")
    rows = _paper_rows("D", paper, lambda r: r.get("series", "").startswith("figure D"))
    profile = preset_profile(paper_profile_name(ctx))
    rates = _rates(ctx, [10, 20, 30, 40, 50])
    for rate in rates:
        design = wait_cp_thresholds(
            workload.with_total_rate(rate), profile, nested=True, slack=0.3, conventions="vidur"
        )
        policies = {
            "nested-wait-cp": design.policy(),
            "sarathi-256": SarathiPolicy(token_budget=256),
            "sarathi-512": SarathiPolicy(),
            "vllm": VLLMPolicy(),
        }
        rows += _measure(ctx, "D", workload, rate, policies, _requests(ctx, 5000))
    fig = _plot(rows, "Figure D setup: lmsys-like mix (fluid-derived nested-wait-cp; dashed: paper, real LMSYS)")
    return FigureOutput(_named(ctx, "paper-d-lmsys"), fig, rows, _config_of(ctx, workload, rates, policies, 5000))


def fig_paper_k(ctx):
    """Figure K: WAIT-CP with and without the wait gate at the authors' per-rate tl and chunk."""
    workload = preset_workload("p512d20")
    paper = read_paper(ctx.shared_data, "wait-vs-nowait")
    rows = _paper_rows("K", paper, lambda r: True)
    chosen = {float(r["rate_per_s"]): (int(r["tl"]), int(r["chunk_size"])) for r in paper}
    rates = _rates(ctx, [8, 10, 12, 14, 16, 18, 20, 22])
    settings = {}
    for rate in rates:
        tl, chunk = chosen.get(float(rate), (max(4, round(rate * 0.7)), 224))
        policies = {
            "wait-cp no wait gate": authors_wait_cp(workload, tl, chunk),
            "wait-cp with wait gate": authors_wait_cp(workload, tl, chunk, wait_gate=True),
        }
        settings[rate] = {"tl": tl, "chunk": chunk}
        rows += _measure(ctx, "K", workload, rate, policies, _requests(ctx, 5000))
    fig = _plot(rows, "Figure K setup: wait gate on and off (dashed: paper)")
    config = _config_of(ctx, workload, rates, policies, 5000)
    config["authors_settings_per_rate"] = {str(k): v for k, v in settings.items()}
    return FigureOutput(_named(ctx, "paper-k-wait-gate"), fig, rows, config)


def fig_fluid_vs_tuned(ctx):
    """Fluid-derived chunked thresholds against tuned baselines at 70, 85 and 95 % of the fluid limit."""
    from fluidopt.experiments.compare import compare_policies

    fig, axes = plt.subplots(1, 2, figsize=(9.6, 3.8))
    rows: list[dict[str, Any]] = []
    for ax, (workload_name, profile_name) in zip(
        axes, (("p512d20", paper_profile_name(ctx)), ("mix-p512d20-p512d50", paper_profile_name(ctx)))
    ):
        result = compare_policies(
            preset_workload(workload_name),
            preset_profile(profile_name),
            fractions=(0.7, 0.85, 0.95),
            replicates=2 if ctx.quick else 5,
            requests=1500 if ctx.quick else 10_000,
            seed=ctx.seed,
            conventions="vidur",
            executor=ctx.executor,
        )
        plotted: list[float] = []
        for tag in ("fluid_guided", "baseline"):
            xs, ys, lows, highs = [], [], [], []
            for v in result.verdicts:
                e = getattr(v, tag)
                if e is None:
                    continue
                low, high = e.interval("mean_latency_s")
                xs.append(v.rate_per_s)
                ys.append(e.mean("mean_latency_s"))
                lows.append(ys[-1] - low)
                highs.append(high - ys[-1])
                rows.append(
                    {
                        "workload": workload_name,
                        "profile": profile_name,
                        "series": "fluidopt",
                        "role": tag,
                        "policy": e.policy.name,
                        "configuration": str(e.description),
                        "rate_per_s": v.rate_per_s,
                        "fraction_of_limit": v.fraction_of_limit,
                        "mean_latency_s": ys[-1],
                        "mean_latency_ci_low_s": low,
                        "mean_latency_ci_high_s": high,
                        "stable": e.stable,
                        "gain_s": v.gain_s,
                        "gain_ci_low_s": v.gain_interval_s[0],
                        "gain_ci_high_s": v.gain_interval_s[1],
                        "verdict": v.verdict,
                    }
                )
            label = "fluid-derived chunked WAIT" if tag == "fluid_guided" else "best tuned baseline"
            ax.errorbar(xs, ys, yerr=[lows, highs], marker="o", capsize=2, label=label)
            plotted += ys
        ax.set(xlabel="rate (requests/s)", ylabel="mean latency (s)", yscale="log", title=f"{workload_name}")
        if plotted:
            # An interval reaching 0 or below has no place on a log axis: the axis starts at half the
            # smallest mean and such a bar runs to its bottom edge (the CSV keeps the interval itself).
            ax.set_ylim(bottom=0.5 * min(plotted))
        ax.legend(fontsize=7)
    fig.suptitle(
        f"Fluid-derived (not grid-searched) chunked WAIT vs tuned baselines, {paper_profile_name(ctx)}", fontsize=10
    )
    fig.tight_layout()
    return FigureOutput(
        _named(ctx, "paper-fluid-vs-tuned"),
        fig,
        rows,
        {
            "profile": paper_profile_name(ctx),
            "conventions": "vidur",
            "fractions": [0.7, 0.85, 0.95],
            "replicates": 2 if ctx.quick else 5,
        },
    )


def _config_of(ctx, workload: Workload, rates, policies: dict[str, Policy], requests) -> dict[str, Any]:
    return {
        "workload": workload.name,
        "profile_used": paper_profile_name(ctx),
        "conventions": "vidur",
        "rates_nominal": list(rates),
        "requests": requests if not ctx.quick else _requests(ctx, requests if isinstance(requests, int) else 5000),
        "replicates": ctx.replicates,
        "seed": ctx.seed if ctx.seed else PAPER_SEED,
        "policies": {label: policy.to_dict() for label, policy in policies.items()},
        "paper_reference": PAPER_SOURCE if ctx.shared_data is not None else "absent (../shared/data not found)",
    }


PAPER_FIGURES = {
    "paper-b-p512d20": fig_paper_b,
    "paper-b-predictor": fig_paper_b_predictor,
    "paper-c-two-class": fig_paper_c,
    "paper-e-long-horizon": fig_paper_e,
    "paper-g-p512d1000": fig_paper_g,
    "paper-d-lmsys": fig_paper_d,
    "paper-k-wait-gate": fig_paper_k,
    "paper-fluid-vs-tuned": fig_fluid_vs_tuned,
}
