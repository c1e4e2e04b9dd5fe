# %% [markdown]
# # Plan a fleet: which GPUs, how many, for this traffic and SLO
#
# After "which settings for my engine" comes "how many GPUs, of which type".  fluidopt answers it with the
# fluid model: one replica of a deployment (a GPU profile, an engine and its settings) is stable at class
# rates `lambda` exactly when `W lambda <= 1`, a polytope whose rows are the step-time pieces and whose
# columns are the request classes (docs/theory.md section 19).  Long prompts load the compute-bound piece,
# long decodes the KV memory, so a replica's capacity depends on the mix it is sent; a throughput table per
# request size misses that.  The planner derates each polytope to the SLO by simulating one replica, picks
# replicas and class routing at least cost with a mixed-integer program (cvxpy, HiGHS), and checks the plan
# in a multi-replica simulation.
#
# The example fleet: Llama-3-8B on an H100 or on an L40S, roofline profiles from the spec sheets, vLLM with
# its own defaults on each GPU, RunPod's on-demand prices as listed by deploybase.ai (March 2026).

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from fluidopt.answers.fleet import plan_fleet
from fluidopt.answers.fleet_model import read_fleet, replica_region
from fluidopt.answers.fleet_program import Simulation
from fluidopt.experiments.runs import Targets
from fluidopt.plotting import style
from fluidopt.workload import load_workload

QUICK = os.environ.get("FLUIDOPT_NOTEBOOK_QUICK", "0") == "1"
SIMULATION = Simulation(requests=800, replicates=2) if QUICK else Simulation(requests=3000, replicates=3)
RATE = 8.0 if QUICK else 20.0
FLEET = Path("..") / "examples" / "fleet-h100-l40s.toml"
deployments = read_fleet(FLEET)
workload = load_workload("mix-long-prompts-long-decodes", rate_per_s=RATE)
targets = Targets(p99_ttft_s=3.0, p99_tpot_s=0.1)
[(d.name, d.cost_per_hour, d.knobs) for d in deployments]

# %% [markdown]
# ## Each replica's region
#
# The two classes are p4096d64 (long prompts, short answers) and p256d1024 (short prompts, long answers).
# Below, the stability region of one replica of each type in the plane of the two class rates: the H100's
# is larger, but what matters is the region per dollar, and its shape: how much of one class a replica
# still takes when it already serves the other.

# %%
with style():
    fig, ax = plt.subplots(figsize=(5.5, 4.2), layout="constrained")
    for d in deployments:
        region = replica_region(workload, d.profile)
        # The boundary of {x >= 0 : W x <= 1} in the plane, per dollar per hour.
        angles = np.linspace(0, np.pi / 2, 200)
        directions = np.stack([np.cos(angles), np.sin(angles)])
        reach = 1.0 / np.max(region @ directions, axis=0)
        points = directions * reach / d.cost_per_hour
        ax.plot(points[0], points[1], label=f"{d.name} (${d.cost_per_hour}/h)")
    ax.set_xlabel("p4096d64 requests/s per $/h")
    ax.set_ylabel("p256d1024 requests/s per $/h")
    ax.legend(title="one replica, per dollar")
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)

# %% [markdown]
# ## The plan, its validation and the baselines
#
# The plan must meet p99 TTFT 3 s and p99 TPOT 100 ms in simulation (the upper end of a 95 % interval over
# independent seeds); the baselines are every homogeneous fleet (fewest replicas that meet the SLO in
# simulation) and a plan in Melange's manner (fixed throughput per class and type, additive).

# %%
answer = plan_fleet(workload, deployments, targets, SIMULATION)
document = answer.to_dict()
print(answer.status, "-", answer.message)
for entry in document["plan"]:
    print(f"{entry['name']}: {entry['replicas']} replicas, class shares {np.round(entry['class_shares'], 2)}")
print("validation:", document["validation"])
for baseline in document["baselines"]:
    print(baseline)

# %% [markdown]
# The plan costs no more than the cheapest homogeneous fleet that meets the SLO; at 20 requests/s it is
# strictly cheaper (README "Plan a fleet"): whole replicas of the type that is cheaper per request leave a
# remainder that a smaller type serves for less.  `fluidopt fleet --evaluate h100=2,l40s=1` checks a fleet
# one replica smaller, and `--trace` plans each window of a trace (an autoscaling schedule).
