"""Speed of the fluid core (issue: equilibrium LP with 10,000 classes < 2 s; 2-class boundary
with 200 directions < 5 s).  Prints the measured times and their ratio to the targets.

    python benchmarks/bench_fluid.py
"""

from __future__ import annotations

import time

import numpy as np

from fluidopt import RequestClass, Workload, equilibrium_closed_form, equilibrium_lp, preset_profile, preset_workload
from fluidopt.fluid import max_stable_scale, stability_boundary


def timed(label: str, target_s: float, func, repeats: int = 3) -> float:
    func()  # warm-up: imports, cvxpy canonicalisation caches
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    best = min(times)
    print(f"{label:<55} best {best:7.3f} s  target {target_s:5.1f} s  ratio {best / target_s:5.2f}")
    return best


def many_classes(count: int) -> Workload:
    rng = np.random.default_rng(2504_11320)
    classes = tuple(
        RequestClass(f"c{j}", int(rng.integers(16, 2048)), int(rng.integers(1, 1024)), float(rng.uniform(0, 1e-3)))
        for j in range(count)
    )
    return Workload("many", classes)


def main() -> None:
    profile = preset_profile("a100-80gb-llama-3-8b")
    workload = many_classes(10_000)
    lp = equilibrium_lp(workload, profile)
    closed = equilibrium_closed_form(workload, profile)
    assert lp.stable and abs(lp.iteration_time_s / closed.iteration_time_s - 1) < 1e-6
    timed("equilibrium LP, 10,000 classes (HiGHS)", 2.0, lambda: equilibrium_lp(workload, profile))
    timed("max stable scale LP, 10,000 classes", 2.0, lambda: max_stable_scale(workload, profile, method="lp"))
    mix = preset_workload("mix-p512d20-p512d50")
    timed("2-class boundary, 200 directions (LP)", 5.0, lambda: stability_boundary(mix, profile, directions=200))
    timed(
        "2-class boundary, 200 directions (closed form)",
        5.0,
        lambda: stability_boundary(mix, profile, directions=200, method="closed-form"),
    )


if __name__ == "__main__":
    main()
