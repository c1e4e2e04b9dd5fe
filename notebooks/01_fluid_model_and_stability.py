# %% [markdown]
# # The fluid model and stability regions
#
# fluidopt implements the fluid model of Ao, Luo, Simchi-Levi and Wang, *Optimizing LLM
# Inference: Fluid-Guided Online Scheduling with Memory Constraints* (arXiv:2504.11320).
# In equilibrium every stage of class j holds `n_j = lambda_j dT` requests; for the paper's
# linear iteration time `tau = d0 + d1 K` this gives `dT* = d0 / (1 - d1 a)` and
# `M* = d0 a / (1 - d1 a)` with `a = sum_j lambda_j S_j`.

# %%
import os

import matplotlib.pyplot as plt

import fluidopt as fo
from fluidopt.plotting import plot_stability_region, use_style

use_style()

QUICK = os.environ.get("FLUIDOPT_NOTEBOOK_QUICK", "0") == "1"

# %% [markdown]
# ## The paper's toy: "Hello" -> "Hi"
# One class with `l = l' = 1`, rate 4, `C = 12`, `d0 + 12 d1 = 1`: four requests per stage,
# memory 12, iteration time 1 second.

# %%
toy = fo.equilibrium(fo.preset_workload("toy"), fo.preset_profile("toy"))
print(toy.per_stage, toy.memory_tokens, toy.iteration_time_s, toy.binding)

# %% [markdown]
# ## A real GPU: which resource limits the load?
# The A100 Llama-3-8B profile has a large KV cache (about 467k tokens) and a compute-bound
# prefill: its memory elasticity is near 0, so more memory would not raise the stable rate.

# %%
profile = fo.preset_profile("a100-80gb-llama-3-8b")
for name in ("p512d20", "mix-p512d20-p512d50", "p512d1000", "lmsys-like"):
    limit = fo.max_stable_scale(fo.preset_workload(name), profile)
    print(
        f"{name:22s} max rate {limit.max_rate_per_s:7.2f}/s  elasticity {limit.memory_elasticity:.3f}  {limit.regime}"
    )

# %% [markdown]
# A limit on the time between tokens changes what binds:

# %%
tight = fo.max_stable_scale(fo.preset_workload("p512d20"), profile, fo.Constraints(tbt_max_s=0.05))
print(tight.max_rate_per_s, tight.binding)

# %% [markdown]
# ## The 2-class stability region
# The fluid boundary, and the closed forms of Li-Dai-Peng and Nie-Si-Zhou on the same axes.

# %%
boundary = fo.stability_boundary(fo.preset_workload("mix-p512d20-p512d50"), profile, directions=31 if QUICK else 91)
figure = plot_stability_region(boundary, title="0.7 p512d20 + 0.3 p512d50")
plt.show()

# %% [markdown]
# ## Symbolic forms
# sympy derives the closed forms and exports LaTeX.

# %%
from fluidopt.fluid.symbolic import derive_equilibrium

forms = derive_equilibrium(1, paper_linear=True)
print(forms.latex()["memory"])
