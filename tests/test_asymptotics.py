import json

import numpy as np
import pytest

from fluidopt.cli import main
from fluidopt.experiments.asymptotics import run_asymptotics, sample_paths
from fluidopt.experiments.sweep import ProcessExecutor


@pytest.fixture(scope="module")
def quick():
    return run_asymptotics(quick=True, executor=ProcessExecutor())


def test_wait_slack_and_nested_rates(quick):
    for name in ("wait-slack", "nested-wait"):
        result = quick["scaling"][name]
        assert result.gap_slope.low <= -1.0 <= result.gap_slope.high + 0.1
        assert abs(result.latency_slope.estimate) < 0.1


def test_wait_boundary_rates(quick):
    result = quick["scaling"]["wait-boundary"]
    assert -0.8 < result.gap_slope.estimate < -0.35  # theory -1/2
    assert 0.25 < result.latency_slope.estimate < 0.65  # theory +1/2


def test_fcfs_gap_does_not_vanish(quick):
    result = quick["scaling"]["fcfs-at-m-star"]
    gaps = np.nanmean(result.gaps, axis=1)
    assert np.all(gaps > 0.1)
    assert result.gap_slope.estimate > -0.2


def test_nested_overflow_is_rare(quick):
    overflow = quick["scaling"]["nested-wait"].overflow
    # C = M_req for delta = 0.05: overflow in few replicates (binomial slack for 8 replicates per zeta)
    assert overflow.mean() <= 0.15


def test_scaled_paths_approach_the_fluid():
    paths = sample_paths(np.array([1, 10, 100]))
    assert paths.distances[0] > paths.distances[1] > paths.distances[2]


def test_asymptotics_cli_json(capsys):
    assert main(["asymptotics", "--quick", "--executor", "serial", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data["experiments"]) == {"wait-boundary", "wait-slack", "nested-wait", "fcfs-at-m-star"}
    for experiment in data["experiments"].values():
        assert {"slope", "ci", "theory"} <= set(experiment["gap_slope"])
