"""Speed of ``fluidopt profile calibrate``: a 10,000-request run with two rate stages, fitted from scratch.

Target (issue 25): the fit takes < 60 s on 2 cores for a 10,000-request run.  The run is
simulated on the H100 Llama-3-8B roofline with known scales (compute x0.8, bandwidth x1.15, 3 ms
per step, 20 us per sequence), so the benchmark also prints how close the fit comes on the second
stage, held out.

    python benchmarks/bench_calibrate.py [--requests 10000]
"""

from __future__ import annotations

import argparse
import time

from fluidopt.answers.calibrate import calibrate, run_on_profile, scaled_profile
from fluidopt.profile import load_profile

TRUTH = {"compute": 0.8, "bandwidth": 1.15, "step_overhead_s": 0.003, "sequence_overhead_s": 2e-5}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=10_000)
    args = parser.parse_args()
    base = load_profile("h100-80gb-llama-3-8b-tp1-roofline")
    half = args.requests // 2
    run = run_on_profile(scaled_profile(base, TRUTH), (8.0, 14.0), half, seed=1)
    started = time.perf_counter()
    result = calibrate(run, base, split_at_s=float(run.arrival_s[half]))
    wall = time.perf_counter() - started
    print(f"{run.num_requests} requests, fit on {result.requests_fitted}: {wall:.1f} s, {result.evaluations} replays")
    print(f"  {result.message}")
    for name in TRUTH:
        low, high = result.interval(name)
        print(f"  {name:20s} truth {TRUTH[name]:.4g}  fitted {result.values[name]:.4g}  95 % [{low:.4g}, {high:.4g}]")
    for label in ("fit", "split"):
        errors = result.errors[label]["fitted"]
        print(f"  {label:5s} mean error " + ", ".join(f"{m} {100 * e:+.1f}%" for m, e in errors.items()))
    print(f"target < 60 s: {'met' if wall < 60 else 'MISSED'} ({wall / 60:.2f} of the budget)")


if __name__ == "__main__":
    main()
