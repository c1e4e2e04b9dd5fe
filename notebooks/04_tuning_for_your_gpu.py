# %% [markdown]
# # Tuning for your GPU
#
# Fit a profile from profiling measurements (Vidur's `mlp.csv` format), then tune WAIT
# thresholds by simulation and compare the capacity of every policy under a latency target.

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt

import fluidopt as fo
from fluidopt.answers.capacity import capacity
from fluidopt.experiments.evaluate import Targets
from fluidopt.experiments.tune import tune
from fluidopt.timing.fit.vidur_csv import fit_vidur_profile
from fluidopt.hardware import gpu_spec, model_shape
from fluidopt.plotting import use_style

QUICK = os.environ.get("FLUIDOPT_NOTEBOOK_QUICK", "0") == "1"
use_style()
DATA = Path("..") / ".." / "shared" / "data" / "profiles" / "vidur" / "a100" / "Llama-2-7b-hf" / "mlp.csv"

# %%
if DATA.exists():
    profile = fit_vidur_profile(DATA, gpu_spec("a100-80gb"), model_shape("llama-2-7b"), "my-a100")
    print(f"fitted: MAPE {profile.fit['mape']:.3f}, R^2 {profile.fit['r2']:.4f}, C = {profile.kv_capacity_tokens}")
else:
    profile = fo.preset_profile("a100-80gb-llama-2-7b")
    print("measurements not present; using the packaged preset")

# %%
workload = fo.preset_workload("p512d20").with_total_rate(20)
result = tune(workload, profile, family="wait", replicates=2 if QUICK else 4, requests=2000 if QUICK else 20_000)
print(result.message)
print(result.chosen.to_dict())

# %% [markdown]
# The candidates the tuner simulated: mean latency with its 95 % interval, best first.

# %%
candidates = [e for e in (result.chosen, *result.runners_up) if e is not None]
labels = [str(e.description.get("thresholds", e.description)) for e in candidates]
means = [e.mean("mean_latency_s") for e in candidates]
errors = [
    [m - e.interval("mean_latency_s")[0] for m, e in zip(means, candidates)],
    [e.interval("mean_latency_s")[1] - m for m, e in zip(means, candidates)],
]
fig, ax = plt.subplots()
ax.barh(range(len(candidates)), means, xerr=errors, label="mean latency, 95 % interval")
ax.set_yticks(range(len(candidates)), labels)
ax.invert_yaxis()
ax.set_xlabel("mean latency (s)")
ax.set_ylabel("WAIT thresholds")
ax.set_title(f"tuning WAIT at {workload.total_rate_per_s:g} requests/s")
ax.legend()
plt.show()

# %% [markdown]
# ## Capacity under a p99 latency target of 2 seconds

# %%
table = capacity(
    fo.preset_workload("p512d20"),
    profile,
    policies=("wait", "vllm", "sarathi"),
    targets=Targets(p99_latency_s=2.0),
    replicates=1 if QUICK else 3,
    requests=2000 if QUICK else 20_000,
    steps=4 if QUICK else 8,
)
for name, entry in table.policies.items():
    print(f"{name:8s} {entry.max_rate_per_s:6.2f} requests/s")
fig, ax = plt.subplots()
names = list(table.policies)
ax.bar(names, [table.policies[n].max_rate_per_s for n in names], label="largest rate meeting p99 <= 2 s")
ax.set_xlabel("policy")
ax.set_ylabel("capacity (requests/s)")
ax.legend()
plt.show()
