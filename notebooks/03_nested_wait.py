# %% [markdown]
# # Nested WAIT: unknown output lengths, segments and the safety buffer
#
# When output lengths are hidden, Nested WAIT cuts the decode stages into segments at the
# classes' output lengths and keeps survivors in resident boundary queues.  The memory it needs
# is the base `M^pi`, a carry-over and a logarithmic buffer set by the Cramer-Lundberg exponent
# `theta_k` of `Binomial(n_{k-1}, p_k) - n_k`.

# %%
import os

import matplotlib.pyplot as plt

import fluidopt as fo
from fluidopt.plotting import use_style
from fluidopt.thresholds import cramer_lundberg_theta, memory_against_segments, nested_wait_thresholds
from fluidopt.sim import NestedWaitPolicy, simulate

QUICK = os.environ.get("FLUIDOPT_NOTEBOOK_QUICK", "0") == "1"
use_style()

# %%
mix, profile = fo.preset_workload("mix-p512d20-p512d50"), fo.preset_profile("a100-80gb-llama-3-8b")
design = nested_wait_thresholds(mix, profile, horizon_s=600, delta=0.01)
print("segments end at", design.segments.boundaries, "thresholds", design.thresholds)
print("p_k", design.segments.continuation, "theta_k", design.theta, ">= bound", design.theta_lower_bounds)
print(
    f"memory: base {design.memory_base_tokens:.0f} + carry-over {design.memory_carry_over_tokens:.0f} "
    f"+ buffer {design.memory_buffer_tokens:.0f} = {design.memory_required_tokens:.0f} tokens"
)

# %% [markdown]
# `theta_k` depends only on `n_k / n_{k-1}` and `p_k`:

# %%
print(cramer_lundberg_theta(10, 5, 0.3), cramer_lundberg_theta(20, 10, 0.3))

# %% [markdown]
# ## Required memory against the number of segments (the U shape)

# %%
curve = memory_against_segments(fo.preset_workload("lmsys-like"), fo.preset_profile("paper-linear"))
levels = [L for L, d in curve.items() if d is not None]
plt.plot(levels, [curve[L].memory_required_tokens for L in levels], marker="o", label="Nested WAIT")
plt.xlabel("segments L")
plt.ylabel("required KV memory (tokens)")
plt.legend()
plt.show()
best = min(levels, key=lambda L: curve[L].memory_required_tokens)
print("best L", best)

# %% [markdown]
# ## Simulation: no overflow with `C >= M_req`

# %%
result = simulate(
    mix,
    profile,
    NestedWaitPolicy(design.segments.boundaries, design.thresholds),
    requests=3000 if QUICK else 50_000,
    rng=2,
)
print(
    "overflowing iterations",
    result.overflow_iterations,
    "peak memory",
    result.peak_memory_tokens,
    "mean latency",
    result.mean_latency_s,
)
