"""Wall time of the default (non-quick) asymptotic experiment (issue target: < 10 minutes on 2 cores).

python benchmarks/bench_asymptotics.py
"""

from __future__ import annotations

import time

from fluidopt.experiments.asymptotics import run_asymptotics
from fluidopt.experiments.sweep import ProcessExecutor


def main() -> None:
    start = time.perf_counter()
    result = run_asymptotics(quick=False, executor=ProcessExecutor())
    elapsed = time.perf_counter() - start
    print(f"default asymptotics: {elapsed:.1f} s (target 600 s, ratio {elapsed / 600:.2f})")
    for name, scaling in result["scaling"].items():
        gap, latency = scaling.gap_slope, scaling.latency_slope
        print(
            f"{name:<16} gap slope {gap.estimate:+.3f} [{gap.low:+.3f}, {gap.high:+.3f}] (theory {gap.theory})  "
            f"latency slope {latency.estimate:+.3f} [{latency.low:+.3f}, {latency.high:+.3f}] "
            f"(theory {latency.theory})  overflow {scaling.overflow.mean():.3f}"
        )
    print("sample-path distances:", result["sample_paths"].distances.round(3).tolist())


if __name__ == "__main__":
    main()
