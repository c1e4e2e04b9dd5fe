# %% [markdown]
# # WAIT: thresholds from the fluid model, checked by simulation
#
# WAIT (arXiv:2504.11320, section 4) admits class j only when `n_j` requests wait and caps
# every stage at `n_j`.  With `n_j = kappa lambda_j` its conditions become
# `kappa in [dT*, C / a]`.

# %%
import os

import matplotlib.pyplot as plt

import fluidopt as fo
from fluidopt.plotting import use_style
from fluidopt.thresholds import kappa_interval, wait_thresholds
from fluidopt.sim import DeterministicArrivals, FCFSPolicy, InitialRequests, WaitPolicy, simulate

QUICK = os.environ.get("FLUIDOPT_NOTEBOOK_QUICK", "0") == "1"
REQUESTS = 3000 if QUICK else 50_000
use_style()

# %%
workload, profile = fo.preset_workload("p512d20").with_total_rate(22), fo.preset_profile("a100-80gb-llama-2-7b")
interval = kappa_interval(workload, profile)
design = wait_thresholds(workload, profile)
print("kappa interval", interval)
print("thresholds", design.thresholds, "case", design.case, "M^pi", design.memory_base_tokens)
for condition in design.conditions.conditions:
    print(f"  {condition.name:35s} {condition.lhs:10.4g} vs {condition.rhs:10.4g}  holds={condition.holds}")

# %% [markdown]
# ## The toy: exactly four completions per iteration

# %%
toy = simulate(
    fo.preset_workload("toy"),
    fo.preset_profile("toy"),
    WaitPolicy((4,)),
    requests=200,
    arrivals=DeterministicArrivals(),
    record_series=True,
    warmup_s=0,
)
print(toy.series["completions"][:12])

# %% [markdown]
# ## WAIT against greedy FCFS at `C = M*`
# Started from 6 requests at stage 0 and 3 at stage 1, FCFS overflows, evicts and completes
# about 3 requests per iteration instead of 4.

# %%
fcfs = simulate(
    fo.preset_workload("toy"),
    fo.preset_profile("toy"),
    FCFSPolicy(),
    horizon_s=60,
    rng=0,
    record_series=True,
    warmup_s=0,
    initial=[InitialRequests(0, 0, 6), InitialRequests(0, 1, 3)],
)
wait = simulate(
    fo.preset_workload("toy"),
    fo.preset_profile("toy"),
    WaitPolicy((4,)),
    horizon_s=60,
    rng=0,
    record_series=True,
    warmup_s=0,
)
fig, ax = plt.subplots()
for result in (fcfs, wait):
    ax.step(result.series["start_s"], result.series["memory_tokens"], where="post", label=result.policy)
ax.axhline(12, color="k", ls="--", label="capacity C = M* (12 tokens)")
ax.set_xlabel("time (s)")
ax.set_ylabel("KV cache in use (tokens)")
ax.set_title("toy at C = M*: FCFS overflows, WAIT does not")
ax.legend()
plt.show()
print("completions per iteration: FCFS", fcfs.series["completions"].mean(), "WAIT", wait.series["completions"].mean())

# %% [markdown]
# ## Simulated throughput matches the fluid benchmark in the stable region

# %%
result = simulate(workload, profile, WaitPolicy(design.thresholds), requests=REQUESTS, rng=1)
print(result.throughput_tokens_per_s, "vs benchmark", workload.decode_token_rate)
print("mean latency", result.mean_latency_s, "evictions", result.evictions, "peak memory", result.peak_memory_tokens)
