"""fluidopt's vllm-v1 policy against vLLM's own scheduler (fluidopt.engines.vllm_parity)."""

from __future__ import annotations

import numpy as np
import pytest

from fluidopt.engines.vllm_parity import (
    Scenario,
    StepLog,
    compare,
    engine_check,
    random_scenario,
    run_fluidopt,
)


def test_the_fluidopt_side_of_a_scenario_by_hand():
    # Two 32-token prompts, three output tokens each, loose KV: one prefill step (64 tokens, the
    # first tokens), then two decode steps of two tokens.
    scenario = Scenario((32, 32), (3, 3), (0, 0), max_num_seqs=8, max_num_batched_tokens=256, num_blocks=40)
    log = run_fluidopt(scenario)
    assert (log.batch, log.tokens, log.preempted) == ([2, 2, 2], [64, 2, 2], [0, 0, 0])
    # A second wave before step 5 waits while the engine is idle and starts at once.
    waves = Scenario((32, 32), (3, 3), (0, 5), max_num_seqs=8, max_num_batched_tokens=256, num_blocks=40)
    assert run_fluidopt(waves).tokens == [32, 1, 1, 32, 1, 1]


def test_asynchronous_scheduling_by_hand():
    # max_num_seqs 2; A (2 outputs) and B (5) prefill together, C waits.  Synchronously A's slot is
    # free once its last token is out: step 2 runs B's decode and C's prefill (33 tokens).  With
    # asynchronous scheduling step 2 was planned while A's last token was in flight: A still held
    # its slot, so step 2 is B alone and C's prefill comes a step later.
    knobs = dict(max_num_seqs=2, max_num_batched_tokens=256, num_blocks=40)
    sync = Scenario((32, 32, 32), (2, 5, 2), (0, 0, 0), **knobs)
    both = Scenario((32, 32, 32), (2, 5, 2), (0, 0, 0), async_scheduling=True, **knobs)
    assert run_fluidopt(sync).tokens == [64, 2, 33, 2, 1]
    assert run_fluidopt(both).tokens == [64, 2, 1, 33, 2]
    # Per request (first token s, last token s, preemptions) on the one-second clock: C's prefill
    # ends at 3 s synchronously and at 4 s asynchronously.
    assert run_fluidopt(sync).requests == {0: (1.0, 2.0, 0), 1: (1.0, 5.0, 0), 2: (3.0, 4.0, 0)}
    assert run_fluidopt(both).requests == {0: (1.0, 2.0, 0), 1: (1.0, 5.0, 0), 2: (4.0, 5.0, 0)}


def test_compare_by_hand():
    a = StepLog([2, 2, 2], [64, 2, 2], [0, 0, 0])
    b = StepLog([2, 2], [64, 3], [0, 1])
    row = compare(a, b)
    assert row["steps_vllm"] == 3 and row["steps_fluidopt"] == 2 and row["requests_differing"] == 0
    c = StepLog([2], [64], [0], {0: (1.0, 3.0, 0), 1: (1.0, 3.0, 0)})
    d = StepLog([2], [64], [0], {0: (1.0, 3.0, 0), 1: (1.0, 4.0, 1)})
    assert compare(c, d)["requests_differing"] == 1 and compare(c, d)["first_request_difference"]["request"] == 1
    assert row["preemptions_fluidopt"] == 1 and row["identical_step_share"] == pytest.approx(1 / 3)
    assert row["first_difference"]["step"] == 1


def test_random_scenarios_are_seeded_and_fit():
    one = random_scenario(np.random.default_rng(3))
    assert one == random_scenario(np.random.default_rng(3))
    longest = max(p + o for p, o in zip(one.prompts, one.outputs))
    assert (one.num_blocks - 1) * one.block_size >= longest


@pytest.mark.engine
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit and friends, as vLLM imports them
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_vllm_scheduler_parity(tiny_model_dir):
    rows = engine_check(20, 0, tiny_model_dir)
    # Step-exact (the bar): every step of every scenario, synchronous and asynchronous.
    assert all(r["identical_step_share"] == 1.0 for r in rows)
    assert all(r["preemptions_vllm"] == r["preemptions_fluidopt"] for r in rows)
    assert all(r["requests_differing"] == 0 for r in rows)  # each request's first and last token, preemptions
    assert any(r["knobs"]["async_scheduling"] for r in rows) and not all(r["knobs"]["async_scheduling"] for r in rows)
