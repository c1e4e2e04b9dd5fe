import json

import pytest

from fluidopt.answers.capacity import capacity
from fluidopt.cli import main
from fluidopt.experiments.evaluate import Targets
from fluidopt.experiments.sweep import DaskExecutor, ProcessExecutor, SerialExecutor, run_sweep
from fluidopt.experiments.tasks import SimulationTask, run_simulation_task, spawn_seeds
from fluidopt.experiments.tune import tune
from fluidopt.profile import preset_profile
from fluidopt.sim import SarathiPolicy, WaitPolicy
from fluidopt.workload import preset_workload

P512 = preset_workload("p512d20")
A100 = preset_profile("a100-80gb-llama-2-7b")


def _tasks(count=4):
    seeds = spawn_seeds(7, count)
    return [
        SimulationTask(P512.with_total_rate(18), A100, policy, seed, (("requests", 1500),))
        for policy in (WaitPolicy((1,)), SarathiPolicy())
        for seed in seeds
    ]


def test_sweep_identical_serial_processes_and_dask():
    tasks = _tasks(2)
    serial = run_sweep(run_simulation_task, tasks, executor=SerialExecutor()).values
    processes = run_sweep(run_simulation_task, tasks, executor=ProcessExecutor(2)).values
    from dask.distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            dask = run_sweep(run_simulation_task, tasks, executor=DaskExecutor(client=client)).values
    assert serial == processes == dask
    assert len({json.dumps(v, sort_keys=True) for v in serial}) == len(tasks)  # seeds differ


def test_interrupted_sweep_resumes_only_missing_points(tmp_path):
    tasks = _tasks(3)
    first = run_sweep(run_simulation_task, tasks[:2], cache_dir=tmp_path)
    assert len(first.computed) == 2 and not first.cached
    (tmp_path / "unrelated.json.tmp").write_text("{ half-written")  # a crashed writer's leftover
    second = run_sweep(run_simulation_task, tasks, cache_dir=tmp_path)
    assert set(second.cached) == {t.key() for t in tasks[:2]}
    assert len(second.computed) == len(tasks) - 2
    assert second.values[:2] == first.values
    third = run_sweep(run_simulation_task, tasks, cache_dir=tmp_path)
    assert not third.computed and third.values == second.values


def test_task_keys_follow_content():
    a, b = _tasks(1)[0], _tasks(1)[0]
    assert a.key() == b.key()
    changed = SimulationTask(a.workload.with_total_rate(19), a.profile, a.policy, a.seed, a.options)
    assert changed.key() != a.key()


def test_tune_picks_a_configuration_with_confidence_intervals():
    result = tune(P512.with_total_rate(20), A100, family="wait", replicates=3, requests=4000)
    assert result.status == "ok" and result.chosen.meets
    low, high = result.chosen.interval("mean_latency_s")
    assert low <= result.chosen.mean("mean_latency_s") <= high
    assert all(result.chosen.mean("mean_latency_s") <= e.mean("mean_latency_s") for e in result.runners_up if e.meets)


def test_unreachable_target_is_reported_with_best_found():
    result = tune(
        P512.with_total_rate(20), A100, family="wait", targets=Targets(p99_latency_s=1e-3), replicates=2, requests=2000
    )
    assert result.status == "no-configuration" and "no configuration meets p99 latency" in result.message
    assert result.best_found is not None and result.chosen is None


def test_capacity_respects_the_fluid_limit_and_orders_policies():
    result = capacity(
        P512, A100, policies=("wait", "fcfs"), targets=Targets(p99_latency_s=2.0), replicates=2, requests=6000, steps=6
    )
    fluid = result.fluid_max_rate_per_s
    for entry in result.policies.values():
        assert 0 < entry.max_rate_per_s <= fluid * 1.01
    assert result.policies["wait"].max_rate_per_s >= result.policies["fcfs"].max_rate_per_s


def test_tune_and_capacity_cli(capsys, tmp_path):
    out = tmp_path / "tuned.toml"
    code = main(
        [
            "tune",
            "--rate",
            "20",
            "--replicates",
            "2",
            "--requests",
            "2000",
            "--executor",
            "serial",
            "--out",
            str(out),
            "--json",
        ]
    )
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and data["status"] == "ok" and out.exists()
    code = main(["simulate", "--policy", "wait", "--rate", "20", "--thresholds", str(out), "--requests", "500"])
    assert code == 0
    capsys.readouterr()
    code = main(
        [
            "capacity",
            "--policies",
            "vllm,sarathi",
            "--replicates",
            "1",
            "--requests",
            "2000",
            "--steps",
            "3",
            "--executor",
            "serial",
            "--json",
        ]
    )
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and set(data["policies"]) == {"vllm", "sarathi"}
    assert all("max_rate_per_s" in v for v in data["policies"].values())


def test_capacity_rejects_unknown_policy(capsys):
    code = main(["capacity", "--policies", "edf", "--executor", "serial"])
    assert code == 2 and "edf" in capsys.readouterr().err


@pytest.mark.slow
def test_capacity_table_on_paper_profiles():
    for profile in ("a100-80gb-llama-3-8b", "a100-80gb-llama-2-7b"):
        result = capacity(P512, preset_profile(profile), targets=Targets(p99_latency_s=2.0), executor=ProcessExecutor())
        rates = {k: v.max_rate_per_s for k, v in result.policies.items()}
        assert rates["wait"] >= rates["vllm"]
