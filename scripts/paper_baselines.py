"""Fidelity report: vLLM, Sarathi and the authors' WAIT-CP on the Vidur preset next to the paper.

Runs p512d20 (figure B) and the two-class mix (figure C) at the paper's rates on the
attention-aware A100 Llama-3-8B preset with Vidur's conventions and the paper's baseline
settings (vLLM batch cap 128 / 4096 padded tokens; Sarathi chunk 512 / batch cap 512; WAIT-CP
with the authors' tl 21, cs 256 on p512d20), and prints and saves (CSV + PNG) our mean latency
and completion rate next to the published numbers read from ../shared/data/paper/ (when
present; nothing is copied into the project), with the ratio.  Nothing here is tuned to the
published numbers: the profile comes from the measurements alone.

    python scripts/paper_baselines.py [--requests 5000] [--out figures] [--paper ../shared/data/paper]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

import fluidopt as fo
from fluidopt.experiments.paper_figures import authors_wait_cp
from fluidopt.sim import SarathiPolicy, VLLMPolicy, simulate

PROFILE = "a100-80gb-llama-3-8b-vidur"
RATES = {"p512d20": (12, 14, 16, 18, 20, 22, 23, 24), "mix-p512d20-p512d50": (12, 14, 16, 18, 20, 22)}


def published(folder: Path, workload: str) -> dict[tuple[float, str], float]:
    """Published mean latencies (figure series only) keyed by (rate, policy)."""
    path = folder / f"{workload}.csv"
    out: dict[tuple[float, str], float] = {}
    if not path.exists():
        return out
    with path.open(newline="", encoding="utf-8") as stream:
        for row in csv.DictReader(stream):
            if str(row.get("series", "")).startswith("figure") and str(row.get("requests", "5000")) == "5000":
                out[(float(row["rate_per_s"]), row["policy"])] = float(row["mean_latency_s"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", default="figures")
    parser.add_argument("--paper", default="../shared/data/paper")
    args = parser.parse_args()
    profile = fo.preset_profile(PROFILE)
    rows = []
    for name, rates in RATES.items():
        paper = published(Path(args.paper), name)
        policies = {"vllm": VLLMPolicy(), "sarathi": SarathiPolicy()}
        if name == "p512d20":
            policies["wait-cp"] = authors_wait_cp(fo.preset_workload(name), 21, 256)
        for rate in rates:
            workload = fo.preset_workload(name).with_total_rate(rate)
            for label, policy in policies.items():
                result = simulate(workload, profile, policy, requests=args.requests, rng=args.seed, conventions="vidur")
                ours = result.mean_latency_s
                theirs = paper.get((float(rate), label), math.nan)
                rows.append(
                    {
                        "workload": name,
                        "rate_per_s": rate,
                        "policy": label,
                        "series": "fluidopt",
                        "mean_latency_s": ours,
                        "completed_per_s": result.completed_per_s,
                        "delivered_rate_per_s": result.settings["delivered_rate_per_s"],
                        "paper_mean_latency_s": theirs,
                        "ratio_ours_over_paper": ours / theirs if theirs == theirs else math.nan,
                    }
                )
                print(
                    f"{name:20s} {rate:5.1f}/s {label:8s} ours {ours:8.3f} s  paper "
                    f"{theirs:8.3f} s  ratio {rows[-1]['ratio_ours_over_paper']:.2f}  "
                    f"completed {result.completed_per_s:.2f}/s of {result.settings['delivered_rate_per_s']:.2f}"
                )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "paper-baselines.csv").open("w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    config = {
        "profile": PROFILE,
        "conventions": "vidur",
        "requests": args.requests,
        "seed": args.seed,
        "rates": RATES,
        "schema_version": 1,
    }
    (out / "paper-baselines.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    _plot(rows, out / "paper-baselines.png")
    print(f"wrote {out / 'paper-baselines.csv'}, .json, .png")


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, name in zip(axes, RATES):
        for label, colour in (("vllm", "tab:red"), ("sarathi", "tab:blue"), ("wait-cp", "tab:green")):
            sel = [r for r in rows if r["workload"] == name and r["policy"] == label]
            if not sel:
                continue
            ax.plot(
                [r["rate_per_s"] for r in sel],
                [r["mean_latency_s"] for r in sel],
                "o-",
                color=colour,
                label=f"{label} (fluidopt)",
            )
            ax.plot(
                [r["rate_per_s"] for r in sel],
                [r["paper_mean_latency_s"] for r in sel],
                "x--",
                color=colour,
                label=f"{label} (paper)",
            )
        ax.set_yscale("log")
        ax.set_xlabel("nominal rate (requests/s)")
        ax.set_ylabel("mean latency, middle 50% (s)")
        ax.set_title(f"{name}, {PROFILE}, Vidur conventions")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
