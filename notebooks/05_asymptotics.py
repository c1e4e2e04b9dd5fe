# %% [markdown]
# # Asymptotics: the theory's rates in simulation
#
# Scale `lambda -> zeta lambda` and `(d0, d1) -> (d0, d1) / zeta` with C and the thresholds fixed.
# WAIT at the boundary has a throughput gap `O((zeta T)^-1/2)` and latency `O((zeta T)^1/2)`;
# with slack the gap is `O(1 / (zeta T))` and latency O(1); Nested WAIT with its buffer behaves
# like the slack case; greedy FCFS at `C = M*` keeps a constant gap.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np

from fluidopt.experiments.asymptotics import run_asymptotics
from fluidopt.plotting import use_style

QUICK = os.environ.get("FLUIDOPT_NOTEBOOK_QUICK", "0") == "1"
use_style()

# %%
result = run_asymptotics(quick=True)
for name, scaling in result["scaling"].items():
    gap = scaling.gap_slope
    print(f"{name:16s} gap slope {gap.estimate:+.2f} [{gap.low:+.2f}, {gap.high:+.2f}] theory {gap.theory}")
    plt.loglog(scaling.scaled_horizons, np.nanmean(scaling.gaps, axis=1), marker="o", label=name)
plt.xlabel("scaled horizon zeta T (dimensionless)")
plt.ylabel("throughput gap (fraction of the fluid benchmark)")
plt.legend()
plt.show()

# %% [markdown]
# Scaled queue paths of an overloaded WAIT approach the fluid ODE as zeta grows:

# %%
paths = result["sample_paths"]
print(dict(zip(paths.zetas.tolist(), paths.distances.round(3).tolist())))
