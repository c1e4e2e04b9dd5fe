"""Whole-process start-up times (issue 11: ``import fluidopt`` < 0.3 s, ``fluidopt equilibrium -w
toy -p toy`` < 0.6 s, a 4,000-request ``fluidopt simulate`` < 1.5 s), next to a bare numpy import.

Each command runs as a fresh process ``--runs`` times, the commands interleaved so that a burst of
load on the machine lands on all of them alike; min, median and max are printed with the
median's ratio to the target and to ``python -c "import numpy"``.  The first round is a warm-up
(it fills numba's on-disk cache and the page cache) and is not counted.

    python benchmarks/bench_startup.py [--runs 15]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

COMMANDS: dict[str, tuple[list[str], float | None]] = {
    "python -c 'import numpy'": ([sys.executable, "-c", "import numpy"], None),
    "python -c 'import fluidopt'": ([sys.executable, "-c", "import fluidopt"], 0.3),
    "fluidopt equilibrium -w toy -p toy": (
        [sys.executable, "-m", "fluidopt", "equilibrium", "-w", "toy", "-p", "toy"],
        0.6,
    ),
    "fluidopt simulate (4,000 requests)": (
        [sys.executable, "-m", "fluidopt", "simulate", "-w", "toy", "-p", "toy", "--policy", "wait"]
        + ["--requests", "4000"],
        1.5,
    ),
}


def wall_time(command: list[str]) -> float:
    """Seconds from starting ``command`` to its exit (it must succeed)."""
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="counted runs per command (default 15)")
    runs = parser.parse_args().runs
    if runs < 1:
        parser.error(f"--runs must be >= 1, got {runs}")
    for command, _ in COMMANDS.values():  # warm-up round
        wall_time(command)
    times: dict[str, list[float]] = {label: [] for label in COMMANDS}
    for _ in range(runs):
        for label, (command, _) in COMMANDS.items():
            times[label].append(wall_time(command))
    numpy_median = statistics.median(times["python -c 'import numpy'"])
    for label, (_, target) in COMMANDS.items():
        values = times[label]
        median = statistics.median(values)
        line = f"{label:<38} min {min(values):5.2f}  median {median:5.2f}  max {max(values):5.2f} s"
        line += f"  x numpy {median / numpy_median:5.1f}"
        if target is not None:
            line += f"  target {target:4.1f} s  ratio {median / target:4.2f}"
        print(line)


if __name__ == "__main__":
    main()
