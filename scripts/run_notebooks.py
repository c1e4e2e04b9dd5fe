"""Execute the notebooks in notebooks/: all of them, or the ones named.

    pip install -e ".[notebooks]"
    python scripts/run_notebooks.py [--quick] [--save] [NAME ...]

NAME is a notebook's file name or a prefix of it (``02`` or ``02_wait``).  ``--quick`` sets
FLUIDOPT_NOTEBOOK_QUICK=1 (the test suite's small parameters); ``--save`` writes the executed
notebooks next to the sources as ``*.executed.ipynb`` (the committed notebooks stay without
outputs).  Prints each notebook's time and stops at the first error.  The kernel's start-up notices
(a local TCP connection) are left out.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def _chosen(names: list[str]) -> list[Path]:
    """The notebooks named (file names or prefixes), all of them when none is; an unknown name is an error."""
    every = [p for p in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")) if not p.name.endswith(".executed.ipynb")]
    if not names:
        return every
    chosen = []
    for name in names:
        found = [p for p in every if p.name == name or p.stem == name or p.name.startswith(name)]
        if not found:
            known = ", ".join(p.stem for p in every)
            raise SystemExit(f"run_notebooks.py: error: no notebook {name!r}; choose from {known}")
        chosen.extend(p for p in found if p not in chosen)
    return chosen


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help="notebooks to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="small parameters (as the tests run them)")
    parser.add_argument("--save", action="store_true", help="write *.executed.ipynb beside each notebook")
    args = parser.parse_args()
    if args.quick:
        os.environ["FLUIDOPT_NOTEBOOK_QUICK"] = "1"
    os.environ.setdefault("MPLBACKEND", "Agg")
    for path in _chosen(args.names):
        notebook = nbformat.read(path, as_version=4)
        started = time.perf_counter()
        client = NotebookClient(
            notebook,
            timeout=1800,
            kernel_name="python3",
            extra_arguments=["--IPKernelApp.log_level=ERROR"],  # no TCP-without-encryption notice per run
            resources={"metadata": {"path": str(NOTEBOOKS)}},
        )
        try:
            client.execute()
        except Exception as error:  # noqa: BLE001 - report which notebook failed, then stop
            print(f"{path.name}: FAILED ({type(error).__name__}: {str(error).splitlines()[0][:200]})")
            return 1
        print(f"{path.name}: ran in {time.perf_counter() - started:.1f} s")
        if args.save:
            nbformat.write(notebook, path.with_suffix(".executed.ipynb"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
