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

import matplotlib.pyplot as plt

from fluidopt.experiments.evaluate import UNFINISHED_FRACTION
from fluidopt.experiments.figures import make_figures
from fluidopt.plotting import use_style

QUICK = os.environ.get("FLUIDOPT_NOTEBOOK_QUICK", "0") == "1"
use_style()
out = Path(tempfile.mkdtemp())
written = make_figures(out, quick=True, only=["p512d20", "two-class", "memory-cascade"])
print({k: [p.name for p in v] for k, v in written.items()})

# %%
# %% [markdown]
# The p512d20 figure redrawn from its CSV: mean latency against rate for each policy, points
# that left more than 2 % of their requests unfinished (overloaded) marked with a cross.

# %%
with open(out / "p512d20.csv") as stream:
    rows = list(csv.DictReader(stream))
fig, ax = plt.subplots()
for policy in dict.fromkeys(row["policy"] for row in rows):
    mine = [row for row in rows if row["policy"] == policy]
    rates = [float(row["rate_per_s"]) for row in mine]
    line = ax.plot(rates, [float(row["mean_latency_s"]) for row in mine], marker="o", label=policy)[0]
    over = [row for row in mine if float(row["unfinished_fraction"]) > UNFINISHED_FRACTION]
    if over:
        ax.plot(
            [float(r["rate_per_s"]) for r in over],
            [float(r["mean_latency_s"]) for r in over],
            "x",
            color=line.get_color(),
            markersize=10,
            label=f"{policy}: overloaded",
        )
ax.set_xlabel("arrival rate (requests/s)")
ax.set_ylabel("mean latency (s)")
ax.set_yscale("log")
ax.set_title("p512d20 (quick size)")
ax.legend(fontsize="small")
plt.show()
