"""Execute every notebook in notebooks/ (the ``notebooks`` extra, also part of the test extras).

    pip install -e ".[notebooks]"
    python scripts/run_notebooks.py [--quick] [--save]

``--quick`` sets FLUIDOPT_NOTEBOOK_QUICK=1 (the test suite's small parameters); ``--save`` writes
the executed notebooks next to the sources as ``*.executed.ipynb`` (the committed notebooks stay
without outputs).  Prints each notebook's time and stops at the first error.
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small parameters (as the tests run them)")
    parser.add_argument("--save", action="store_true", help="write *.executed.ipynb beside each notebook")
    args = parser.parse_args()
    if args.quick:
        os.environ["FLUIDOPT_NOTEBOOK_QUICK"] = "1"
    os.environ.setdefault("MPLBACKEND", "Agg")
    for path in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
        if path.name.endswith(".executed.ipynb"):
            continue
        notebook = nbformat.read(path, as_version=4)
        started = time.perf_counter()
        client = NotebookClient(
            notebook, timeout=1800, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
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
