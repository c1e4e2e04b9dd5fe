"""Figure B's policies under Vidur's execution-time predictor and under the measured model.

    python scripts/predictor_table.py [--requests 5000] [--replicates 3] [--json out.json]

Vidur's conventions, p512d20, seed 42 (the paper's), mean latency over the middle 50 % of
requests: Sarathi-512, Sarathi-508, the authors' WAIT-CP (tl 21, cs 256) and vLLM at 14, 18, 20,
22 and 23 requests/s (nominal) under both timings, the first rate (0.5 requests/s steps) at which
each stops keeping up, and the KV-save lookup against the attention rows it was built from.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

import fluidopt as fo
from fluidopt.experiments.evaluate import Targets, evaluate
from fluidopt.experiments.paper_figures import PAPER_TIMINGS, predictor_policies
from fluidopt.timing.fit.attention import read_attention_csv

RATES = (14, 18, 20, 22, 23)
SCAN = tuple(float(r) for r in np.arange(14.0, 27.01, 0.5))
SAMPLE = Path("../shared/data/profiles/vidur/a100/Meta-Llama-3-8B/attention-sample.csv")


def latencies(profile, workload, policies, rate, requests, replicates):
    configs = [(policy, {"label": label}) for label, policy in policies.items()]
    evaluations = evaluate(
        workload.with_total_rate(rate),
        profile,
        configs,
        targets=Targets(),
        replicates=replicates,
        requests=requests,
        seed=42,
        conventions="vidur",
    )
    return {label: e for label, e in zip(policies, evaluations)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--replicates", type=int, default=3)
    parser.add_argument("--json", help="also write the numbers here")
    args = parser.parse_args()
    workload = fo.preset_workload("p512d20")
    policies = predictor_policies(workload)
    out: dict = {"rates": list(RATES), "latency_s": {}, "keeps_up_until": {}}
    for timing, name in PAPER_TIMINGS.items():
        profile = fo.preset_profile(name)
        table = {label: [] for label in policies}
        for rate in RATES:
            for label, e in latencies(profile, workload, policies, rate, args.requests, args.replicates).items():
                low, high = e.interval("mean_latency_s")
                table[label].append((e.mean("mean_latency_s"), low, high, e.stable))
        out["latency_s"][timing] = table
        limit = {}
        for label, policy in policies.items():
            limit[label] = None
            for rate in SCAN:
                e = latencies(profile, workload, {label: policy}, rate, args.requests, 1)[label]
                delivered = float(np.mean([r["settings"]["delivered_rate_per_s"] for r in e.runs]))
                if not e.stable or e.mean("completed_per_s") < 0.97 * delivered:
                    limit[label] = rate
                    break
        out["keeps_up_until"][timing] = limit
        print(f"\n{timing} ({name}): mean latency (s), middle 50 %, {args.replicates} x {args.requests} requests")
        print(f"{'policy':26s}" + "".join(f"{r:>10g}/s" for r in RATES) + "   stops keeping up at")
        for label in policies:
            cells = "".join(f"{m:>10.3f}{'' if ok else 'U':1s} " for m, _, _, ok in table[label])
            stop = limit[label]
            print(f"{label:26s}{cells}   {'>' + str(SCAN[-1]) if stop is None else stop:>6}")
        for a, b in (("wait-cp (tl 21, cs 256)", "sarathi-512"), ("wait-cp (tl 21, cs 256)", "sarathi-508")):
            gains = [100 * (y[0] - x[0]) / y[0] for x, y in zip(table[a], table[b])]
            print(f"  {a} vs {b}: " + ", ".join(f"{g:+.0f} %" for g in gains) + f" (positive: {a} faster)")
    timing = fo.preset_profile(PAPER_TIMINGS["vidur-predictor"]).timing
    if SAMPLE.exists():
        rows = read_attention_csv(SAMPLE, 32)
        print("\nKV-save lookup against the attention rows it pools (ms per iteration, 32 layers)")
        print(f"{'tokens':>8s} {'lookup':>8s} {'prefill rows':>14s} {'decode rows':>12s}")
        lookup_rows = []
        for tokens in (32, 64, 256, 448, 480, 504, 508, 512, 544, 1024):
            pre = rows.prefill_save_s[rows.prefill_chunk == tokens]
            dec = rows.decode_save_s[rows.decode_batch == tokens]
            value = timing.kv_save_time(tokens)
            fmt = lambda v: f"{1e3 * v.mean():.3f} ({v.size})" if v.size else "-"  # noqa: E731
            print(f"{tokens:>8d} {1e3 * value:>8.3f} {fmt(pre):>14s} {fmt(dec):>12s}")
            lookup_rows.append(
                {
                    "tokens": tokens,
                    "lookup_s": value,
                    "prefill_rows_mean_s": float(pre.mean()) if pre.size else None,
                    "decode_rows_mean_s": float(dec.mean()) if dec.size else None,
                }
            )
        out["kv_save_lookup"] = lookup_rows
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2, default=str), encoding="utf-8")


if __name__ == "__main__":
    main()
