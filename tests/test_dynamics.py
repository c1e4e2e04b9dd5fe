import math

import numpy as np
import pytest

from fluidopt.cli import main
from fluidopt.errors import InputError
from fluidopt.fluid import equilibrium
from fluidopt.fluid.dynamics import FluidSystem, fixed_point_iteration, iterate_map, solve_ode, step
from fluidopt.profile import preset_profile
from fluidopt.workload import preset_workload


@pytest.mark.parametrize(
    ("workload", "profile"),
    [("toy", "toy"), ("mix-p512d20-p512d50", "paper-linear"), ("p512d20", "a100-80gb-llama-3-8b")],
)
def test_map_fixed_point_is_the_equilibrium(workload, profile):
    w, p = preset_workload(workload), preset_profile(profile)
    eq = equilibrium(w, p)
    system = FluidSystem(w, p, "wait", tuple(eq.per_stage))
    dt, stages, memory = fixed_point_iteration(system, horizon_s=200 * eq.iteration_time_s)
    assert math.isclose(dt, eq.iteration_time_s, rel_tol=1e-9)
    assert math.isclose(memory, eq.memory_tokens, rel_tol=1e-9)
    for j, n in enumerate(eq.per_stage):
        np.testing.assert_allclose(stages[j, 1 : int(w.decode[j]) + 1], n, rtol=1e-9)


def test_ode_and_map_agree():
    w, p = preset_workload("toy"), preset_profile("toy")
    system = FluidSystem(w, p, "wait", (4.0,))
    mapped = iterate_map(system, horizon_s=80)
    ode = solve_ode(system, horizon_s=80)
    assert math.isclose(mapped.throughput_per_s(40), ode.throughput_per_s(40), rel_tol=1e-3)
    np.testing.assert_allclose(ode.stages[-1][0, 1], mapped.stages[-1][0, 1], rtol=1e-3)
    # Overload from a large queue: both drain at the same fluid rate.
    queue = np.array([40.0])
    mapped = iterate_map(FluidSystem(w, p.with_capacity(10**6), "wait", (4.0,)), horizon_s=30, queue=queue)
    ode = solve_ode(FluidSystem(w, p.with_capacity(10**6), "wait", (4.0,)), horizon_s=30, queue=queue)
    assert math.isclose(mapped.throughput_per_s(10), ode.throughput_per_s(10), rel_tol=0.02)


def test_fcfs_counterexample_fluid_loses_throughput():
    w, p = preset_workload("toy"), preset_profile("toy")
    system = FluidSystem(w, p, "fcfs")
    queue, stages = system.empty_state()
    stages[0, 0], stages[0, 1] = 6, 3
    trajectory = iterate_map(system, horizon_s=200, stages=stages)
    assert trajectory.throughput_per_s(50) < 3.6
    assert np.all(trajectory.memory_tokens <= 12 + 1e-9)  # evictions keep batches within C


def test_ode_records_memory_and_queue_events():
    w, p = preset_workload("toy"), preset_profile("toy").with_capacity(7)  # the ODE state holds 8 at rest
    system = FluidSystem(w, p, "wait", (4.0,))
    ode = solve_ode(system, horizon_s=40)
    assert ode.events["memory_full"].size >= 1
    stopped = solve_ode(system, horizon_s=40, stop_at_memory_full=True)
    assert stopped.times_s[-1] <= ode.events["memory_full"][0] + 1e-9
    drained = solve_ode(
        FluidSystem(w.with_total_rate(0.0), preset_profile("toy"), "wait-nowait", (4.0,)),
        horizon_s=20,
        queue=np.array([3.0]),
    )
    assert drained.events["queue_empty"].size >= 1


def test_step_conserves_mass():
    w, p = preset_workload("mix-p512d20-p512d50"), preset_profile("paper-linear")
    system = FluidSystem(w, p, "wait-nowait", (2.0, 1.0))
    queue, stages = system.empty_state()
    queue[:] = [5.0, 3.0]
    stages[:, 3] = [1.0, 0.5]
    before = queue.sum() + stages.sum()
    q1, x1, tau, finished, _ = step(system, queue, stages)
    assert math.isclose(q1.sum() + x1.sum() + finished, before + w.total_rate_per_s * tau, rel_tol=1e-12)


def test_bad_dynamics_input():
    w, p = preset_workload("toy"), preset_profile("toy")
    with pytest.raises(InputError, match="thresholds"):
        FluidSystem(w, p, "wait", ())
    with pytest.raises(InputError, match="policy"):
        FluidSystem(w, p, "edf")


def test_trajectory_cli(capsys):
    assert (
        main(["trajectory", "-w", "toy", "-p", "toy", "--policy", "fcfs", "--start", "stage:0=6,stage:1=3", "--json"])
        == 0
    )
    out = capsys.readouterr().out
    assert '"times_s"' in out
    assert main(["trajectory", "-w", "toy", "-p", "toy", "--method", "ode", "--horizon-s", "10"]) == 0
    assert main(["trajectory", "--start", "bogus"]) == 2


def test_nested_map_fixed_point_is_the_equilibrium_and_ode_agrees():
    w, p = preset_workload("mix-p512d20-p512d50"), preset_profile("paper-linear")
    eq = equilibrium(w, p)
    thresholds = (w.total_rate_per_s * eq.iteration_time_s, w.rates[1] * eq.iteration_time_s)
    system = FluidSystem(w, p, "nested-wait", thresholds, (20, 50))
    dt, _, memory = fixed_point_iteration(system, horizon_s=5)
    assert math.isclose(dt, eq.iteration_time_s, rel_tol=1e-9)
    assert math.isclose(memory, eq.memory_tokens, rel_tol=1e-9)
    assert math.isclose(solve_ode(system, horizon_s=5).throughput_per_s(2), w.total_rate_per_s, rel_tol=1e-3)
    with pytest.raises(InputError, match="boundaries"):
        FluidSystem(w, p, "nested-wait", thresholds, (20, 40))
    assert main(["trajectory", "-w", "mix-p512d20-p512d50", "--policy", "nested-wait", "--horizon-s", "5"]) == 0
