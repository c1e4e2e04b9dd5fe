"""The engine-grid timing (measured attention kept as measured) and vLLM's prefix cache on recompute."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import fluidopt as fo
from fluidopt.sim import VLLMV1Policy, simulate
from fluidopt.sim.layout import I_CACHE_BLOCKS, I_CACHE_MARK, N_INT_FIELDS, N_INT_SCALARS, S_BLOCKS_ALLOCATED
from fluidopt.sim.policies.vllm_v1 import P_PREFIX_CACHING, cached_blocks
from fluidopt.timing.fit.engine_grid import attention_grid
from fluidopt.timing.grid import GridTiming

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "llmservingsim"
AXES = ((0.0, 16.0, 256.0, 2048.0), (0.0, 512.0, 4096.0), (0.0, 1.0, 16.0, 128.0), (0.0, 256.0, 2048.0))


def multilinear(p: float, k: float, d: float, m: float) -> float:
    """Affine in each coordinate separately: multilinear interpolation reproduces it everywhere."""
    return 1e-3 * (1 + p / 1000) * (2 + k / 500) * (1 + d / 10) * (1 + m / 300)


def grid_timing() -> GridTiming:
    grid = np.zeros([len(a) for a in AXES])
    for index in np.ndindex(grid.shape):
        grid[index] = multilinear(*(AXES[d][i] for d, i in enumerate(index)))
    return GridTiming(
        layers=1,
        knots_tokens=(1.0, 100.0),
        non_attention_s=(0.01, 0.02),
        per_sequence_s=(0.0, 0.0),
        axes=AXES,
        attention_s=tuple(grid.reshape(-1)),
    )


def test_a_multilinear_function_is_reproduced_between_and_beyond_the_points():
    timing = grid_timing()
    rng = np.random.default_rng(3)
    for _ in range(50):
        p, k, d, m = rng.uniform(0, 3000), rng.uniform(0, 6000), rng.uniform(0, 200), rng.uniform(0, 3000)
        assert timing.attention_time(p, k, d, m) == pytest.approx(multilinear(p, k, d, m), rel=1e-9)


def test_the_step_function_reads_the_same_grid():
    """One prefill chunk of 300 on 1,000 cached tokens beside 5 decodes averaging 700 cached tokens."""
    timing = grid_timing()
    step = timing.batch_time([300], [1000], [600, 700, 800, 650, 750])
    tokens = 300 + 5
    non_attention = 0.01 + (0.02 - 0.01) * (tokens - 1) / 99  # linear beyond the last knot too
    assert step == pytest.approx(non_attention + multilinear(300, 1000, 5, 700), rel=1e-9)


def test_below_the_first_point_the_grid_is_flat():
    timing = grid_timing()
    assert timing.attention_time(-5.0, 0.0, 0.0, 0.0) == pytest.approx(timing.attention_time(0.0, 0.0, 0.0, 0.0))


def test_unmeasured_cells_take_the_nearest_measured_value():
    rows = []
    for p in (0, 16):
        for k in (0, 64):
            for d in (0, 4):
                for m in (0, 128):
                    rows.append((p, k, d, m, 1e-6 * (1 + p + k + d + m)))
    rows = np.array([r for r in rows if not (r[0] == 16 and r[1] == 64 and r[2] == 4 and r[3] == 128)])
    axes, grid, filled = attention_grid(rows, layers=2)
    assert filled == 1 and axes[0] == (0.0, 16.0)
    # The missing corner's nearest measured neighbours are one index away; all hold a measured value.
    assert grid[1, 1, 1, 1] in {2 * r[4] for r in rows}
    assert grid[0, 0, 0, 0] == pytest.approx(2e-6)


def test_a_grid_missing_an_axis_is_refused():
    rows = np.array([(0.0, 0.0, float(d), 128.0, 1e-5) for d in range(1, 20)])
    with pytest.raises(fo.InputError, match="prefill_tokens"):
        attention_grid(rows, layers=1)


def test_cached_blocks_by_hand():
    """Freed 10 blocks (8 full) ending at queue number 110; 105 blocks allocated since: 5 leading blocks survive."""
    slot_i = np.zeros((N_INT_FIELDS, 1), dtype=np.int64)
    scal_i = np.zeros(N_INT_SCALARS, dtype=np.int64)
    p_i = np.zeros(8, dtype=np.int64)
    p_i[P_PREFIX_CACHING] = 1
    slot_i[I_CACHE_MARK, 0], slot_i[I_CACHE_BLOCKS, 0] = 110, 8
    for allocated, expected in ((100, 8), (105, 5), (109, 1), (110, 0), (200, 0)):
        scal_i[S_BLOCKS_ALLOCATED] = allocated
        assert cached_blocks(slot_i, scal_i, p_i, 0) == expected
    p_i[P_PREFIX_CACHING] = 0
    scal_i[S_BLOCKS_ALLOCATED] = 100
    assert cached_blocks(slot_i, scal_i, p_i, 0) == 0


def test_prefix_caching_serves_recomputed_prefixes_and_off_serves_none():
    workload = fo.Workload("tight", (fo.RequestClass("a", 400, 200, 6.0),))
    profile = fo.preset_profile("a100-80gb-llama-3-8b").with_capacity(6000)
    runs = {
        flag: simulate(workload, profile, VLLMV1Policy(enable_prefix_caching=flag), requests=3000, rng=7)
        for flag in (True, False)
    }
    assert runs[True].evictions > 0 and runs[False].evictions > 0
    assert runs[True].prefix_hit_tokens > 0 and runs[False].prefix_hit_tokens == 0
    per_eviction = {flag: r.recomputed_tokens / r.evictions for flag, r in runs.items()}
    assert per_eviction[True] < per_eviction[False]


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data/llmservingsim is not beside the checkout")
@pytest.mark.parametrize(
    ("run", "tables"),
    [
        ("RTX4090/Llama-3.1-8B", "RTX4090/meta-llama/Llama-3.1-8B"),
        ("RTXPRO6000/Qwen3-32B", "RTXPRO6000/Qwen/Qwen3-32B"),
    ],
)
def test_replay_from_the_measured_grid_is_within_five_percent(run, tables):
    from fluidopt.answers.replay import read_vllm_run, replay
    from fluidopt.timing.fit.engine_tables import profile_for_run

    profile, quality = profile_for_run(SHARED / "profiles" / tables, SHARED / "runs" / run)
    assert profile.timing.kind == "engine-grid" and quality["attention"].mape < 1e-9
    rows = replay(read_vllm_run(SHARED / "runs" / run), profile).rows
    for row in rows:
        if row["metric"] in ("ttft", "tpot", "e2e") and row["statistic"] in ("mean", "p90"):
            assert abs(row["fluidopt_error"]) < 0.05, row
