"""Run speed benchmarks on a base revision and on the working tree, interleaved, and print ratios.

    python benchmarks/bench_before_after.py --base HEAD~1 [--rounds 2] [bench_sim.py bench_measured.py]

The base revision is checked out into a temporary git worktree; each benchmark runs as a fresh
process with that checkout first on ``sys.path``, alternating base and working tree so that
machine noise hits both.  Lines with ``requests/s`` are collected and the medians compared.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEED = re.compile(r"^\s*(?P<name>[\w-]+)\D.*?(?P<speed>[\d,]+) requests/s")


def run(tree: Path, script: str) -> dict[str, float]:
    """Speeds printed by ``script`` (from this checkout's benchmarks/) run against ``tree``'s package."""
    path = str(ROOT / "benchmarks" / script)
    code = (
        f"import sys, runpy; sys.path.insert(0, {str(tree)!r}); sys.argv = [{script!r}]; "
        f"runpy.run_path({path!r}, run_name='__main__')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    speeds: dict[str, float] = {}
    for line in out.splitlines():
        match = SPEED.match(line)
        if match and match["name"] != "fluid":
            speeds[match["name"]] = float(match["speed"].replace(",", ""))
    return speeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base", default="HEAD")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("scripts", nargs="*", default=["bench_sim.py", "bench_measured.py"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder) / "base"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(base), args.base],
            check=True,
            capture_output=True,
        )
        try:
            for script in args.scripts:
                samples: dict[tuple[str, str], list[float]] = defaultdict(list)
                for _ in range(args.rounds):
                    for label, tree in (("base", base), ("now", ROOT)):
                        for name, speed in run(tree, script).items():
                            samples[(label, name)].append(speed)
                print(f"{script} (medians of {args.rounds} rounds, requests/s)")
                names = sorted({name for _, name in samples})
                for name in names:
                    before = statistics.median(samples[("base", name)]) if samples[("base", name)] else float("nan")
                    after = statistics.median(samples[("now", name)])
                    print(f"  {name:<14} base {before:>12,.0f}  now {after:>12,.0f}  ratio {after / before:6.3f}")
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], capture_output=True)


if __name__ == "__main__":
    main()
