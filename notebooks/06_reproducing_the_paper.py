# %% [markdown]
# # Reproducing the paper's figures
#
# `fluidopt figures` regenerates every figure with its data (CSV) and config (JSON); the paper's
# experiment figures use the A100 Llama-3-8B profile (the one behind the paper's single- and
# two-class figures).  Here a few of them at quick sizes.

# %%
import csv
import os
import tempfile
from pathlib import Path

from fluidopt.experiments.figures import make_figures

QUICK = os.environ.get("FLUIDOPT_NOTEBOOK_QUICK", "0") == "1"
out = Path(tempfile.mkdtemp())
written = make_figures(out, quick=True, only=["p512d20", "two-class", "memory-cascade"])
print({k: [p.name for p in v] for k, v in written.items()})

# %%
with open(out / "p512d20.csv") as stream:
    for row in csv.DictReader(stream):
        print(row["policy"], row["rate_per_s"], row["mean_latency_s"])
