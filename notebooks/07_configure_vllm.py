# %% [markdown]
# # Configure vLLM (and SGLang) from the fluid model
#
# An inference engineer's question: *for this GPU, this model and this traffic, which settings should my
# engine run, and what will they get?*  The fluid model answers it without a search: its chunked WAIT
# design (an in-system cap, a chunk size and a token budget per iteration) becomes vLLM's `max_num_seqs`,
# `max_num_batched_tokens` and `long_prefill_token_threshold`; SGLang's `max_running_requests` comes from
# the fluid model of its alternating prefill and decode steps and `schedule_conservativeness` from the
# Nested WAIT safety buffer (docs/theory.md).  `fluidopt recommend` then checks the derived settings in
# the simulator against the engine's defaults and a grid over the same knobs, and hands out the best one
# it validated.
#
# Two GPUs: the RTX 4090 profile measured through vLLM 0.19 (`rtx4090-llama-3.1-8b-vllm`, whose replay of a
# real vLLM run is within 5 % of what vLLM measured) with the ShareGPT-like chat mix of that run, and the
# attention-aware A100 preset with the paper's p512d20 workload.

# %%
import os

import matplotlib.pyplot as plt

import fluidopt as fo
from fluidopt.answers.recommend import fluid_settings, recommend
from fluidopt.experiments.runs import Targets
from fluidopt.plotting import style

QUICK = os.environ.get("FLUIDOPT_NOTEBOOK_QUICK", "0") == "1"
REQUESTS, REPLICATES = (800, 2) if QUICK else (3000, 3)

# %% [markdown]
# ## The RTX 4090 and the ShareGPT-like mix
#
# The fluid limit of the mix on this GPU is what the real run served: it offered 10 requests/s and vLLM
# completed about 1.6/s; the fluid model's memory-bound limit is 1.61/s.

# %%
rtx = fo.preset_profile("rtx4090-llama-3.1-8b-vllm")
chat = fo.preset_workload("sharegpt-like")
limit = fo.max_stable_scale(chat, rtx)
print(f"fluid limit {limit.max_rate_per_s:.3g} requests/s, limited by {', '.join(limit.binding)}")
knobs, derivation = fluid_settings("vllm", chat.with_total_rate(0.85 * limit.max_rate_per_s), rtx)
for row in derivation:
    print(f"{row.knob:30s} {row.value!s:>8}  from {row.source}")

# %% [markdown]
# The derivation takes milliseconds.  Checking it in the simulator, at 85 % of the limit, with a p99
# time-per-output-token target of 100 ms:

# %%
result = recommend(
    "vllm",
    chat.with_total_rate(0.85 * limit.max_rate_per_s),
    rtx,
    targets=Targets(p99_tpot_s=0.1),
    replicates=REPLICATES,
    requests=REQUESTS,
)
print(result.message)
print(result.command("meta-llama/Llama-3.1-8B"))
for label, evaluation in result.evaluations.items():
    if evaluation is not None:
        print(f"{label:32s} stable {evaluation.stable!s:5}  mean E2E {evaluation.mean('mean_latency_s'):.3g} s")

# %% [markdown]
# ## The A100 and p512d20: derived vs default settings across the load
#
# The engine's defaults (vLLM 0.19 on an A100: `max_num_seqs` 256, `max_num_batched_tokens` 2048) against
# the settings derived at each load.

# %%
a100 = fo.preset_profile("a100-80gb-llama-3-8b-vidur")
p512 = fo.preset_workload("p512d20")
a100_limit = fo.max_stable_scale(p512, a100).max_rate_per_s
fractions = (0.6, 0.8) if QUICK else (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
derived, default = [], []
for fraction in fractions:
    r = recommend("vllm", p512.with_total_rate(fraction * a100_limit), a100, replicates=REPLICATES, requests=REQUESTS)
    derived.append(r.evaluations["fluid-derived"].mean("mean_latency_s"))
    default.append(r.evaluations["engine defaults"].mean("mean_latency_s"))

with style():
    fig, ax = plt.subplots(figsize=(6, 3.6))
    rates = [f * a100_limit for f in fractions]
    ax.plot(rates, derived, "o-", label="vLLM, fluid-derived settings")
    ax.plot(rates, default, "s--", label="vLLM, default settings")
    ax.axvline(a100_limit, color="grey", linestyle=":", label=f"fluid limit {a100_limit:.3g}/s")
    ax.set_xlabel("arrival rate (requests/s)")
    ax.set_ylabel("mean end-to-end latency (s)")
    ax.set_title("p512d20 on the A100 Llama-3-8B profile")
    ax.legend()
    fig.tight_layout()
plt.show()

# %% [markdown]
# ## SGLang
#
# The same question for SGLang: its conservativeness comes from the Nested WAIT buffer, its cap from the
# fluid model of its prefill-or-decode steps.

# %%
sglang = recommend(
    "sglang",
    p512.with_total_rate(0.85 * a100_limit),
    a100,
    replicates=REPLICATES,
    requests=REQUESTS,
)
for row in sglang.derivation:
    print(f"{row.knob:28s} {row.value!s:>8}  from {row.source}")
print(sglang.command("meta-llama/Meta-Llama-3-8B"))
