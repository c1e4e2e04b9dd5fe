"""Fleet planning: routers, the multi-replica simulation, per-replica polytopes, the program, the plan."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fluidopt.answers.fleet import evaluate_counts, plan_fleet
from fluidopt.answers.fleet_model import Deployment, read_fleet, replica_region
from fluidopt.answers.fleet_program import Simulation, solve_plan
from fluidopt.cli import main
from fluidopt.errors import InputError
from fluidopt.experiments.runs import Targets
from fluidopt.fluid.stability import max_stable_scale
from fluidopt.profile import load_profile
from fluidopt.sim import TraceArrivals, VLLMV1Policy, simulate
from fluidopt.sim.fleet import Replica, Stream, _least_loaded, class_share_routing, simulate_fleet
from fluidopt.trace import Trace
from fluidopt.workload import load_workload, workload_from_trace

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "fleet-h100-l40s.toml"
MIX = "mix-long-prompts-long-decodes"


def test_least_loaded_routing_by_hand():
    # Two engines; requests at 0, 1, 2, 3 each staying 2.5 s: 0 -> e0, 1 -> e1, 2 -> e0 (e0 and e1
    # hold one each, tie to the lowest), 3 -> e1 (the request at 0 left at 2.5; e0 holds one, e1 one).
    chosen = _least_loaded(np.array([0.0, 1.0, 2.0, 3.0]), np.full(4, 2.5), np.ones(4), 2)
    assert chosen.tolist() == [0, 1, 0, 0]
    # Token weights: a heavy request keeps its engine loaded.
    chosen = _least_loaded(np.array([0.0, 0.1, 0.2]), np.full(3, 10.0), np.array([100.0, 1.0, 1.0]), 2)
    assert chosen.tolist() == [0, 1, 1]


def test_class_shares_route_each_class_by_its_shares():
    rng = np.random.default_rng(0)
    n = 20_000
    stream = Stream(np.arange(n) * 0.01, rng.integers(0, 2, n), np.full(n, 10), np.full(n, 5))
    profile = load_profile("paper-linear")
    replicas = [Replica("a", profile, None), Replica("a", profile, None), Replica("b", profile, None)]
    shares = {"a": np.array([0.25, 1.0]), "b": np.array([0.75, 0.0])}
    chosen = class_share_routing(stream, replicas, shares, rng)
    to_b = chosen == 2
    assert abs(to_b[stream.classes == 0].mean() - 0.75) < 0.02
    assert not to_b[stream.classes == 1].any()
    in_a = chosen[~to_b]
    assert abs((in_a == 0).mean() - 0.5) < 0.01  # round robin within a deployment


def test_a_one_replica_fleet_is_the_simulator():
    workload = load_workload("p512d20", rate_per_s=5.0)
    profile = load_profile("h100-80gb-llama-3-8b-tp1-roofline")
    run = simulate_fleet(workload, [Replica("h", profile, VLLMV1Policy())], requests=500, rng=3)
    trace = Trace("t", run.stream.prompt, run.stream.output, run.stream.arrival_s)
    alone = simulate(
        workload_from_trace(trace, bins=1, rate_per_s=5.0),
        profile,
        VLLMV1Policy(),
        requests=500,
        arrivals=TraceArrivals(trace, bins=1),
        drain=True,
        warmup_s=0.0,
        record_requests=True,
    )
    records = alone.requests
    ttft = np.full(500, np.nan)
    ttft[records["id"].astype(int)] = records["first_token_s"] - records["arrival_s"]
    assert np.allclose(run.ttft_s, ttft)


def test_every_router_serves_every_request_on_its_replicas():
    workload = load_workload(MIX, rate_per_s=12.0)
    profile = load_profile("h100-80gb-llama-3-8b-tp1-roofline")
    replicas = [Replica("h", profile, VLLMV1Policy(max_num_seqs=1024, max_num_batched_tokens=8192))] * 3
    for router in ("round-robin", "least-tokens", "vllm-dp"):
        run = simulate_fleet(workload, replicas, router, requests=3000, rng=1)
        assert set(np.unique(run.chosen)) == {0, 1, 2}
        assert np.all(np.isfinite(run.e2e_s)) and np.all(run.e2e_s >= run.ttft_s)
        per = run.per_replica()
        assert sum(p["requests"] for p in per) == run.statistics()["requests"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_replica_polytope_agrees_with_the_closed_form_on_random_mixes(seed):
    rng = np.random.default_rng(seed)
    profile = load_profile("a100-80gb-llama-3-8b")  # affine: the polytope is exact
    workload = load_workload(MIX).with_rates(rng.uniform(0.1, 5.0, 2))
    region = replica_region(workload, profile)
    theta = 1.0 / float(np.max(region @ workload.rates))
    assert theta == pytest.approx(max_stable_scale(workload, profile).max_scale, rel=1e-9)


def test_replica_polytope_is_exact_along_the_mix_for_a_roofline():
    workload = load_workload(MIX)
    profile = load_profile("h100-80gb-llama-3-8b-tp1-roofline")
    region = replica_region(workload, profile)
    theta = 1.0 / float(np.max(region @ workload.rates))
    assert theta == pytest.approx(max_stable_scale(workload, profile).max_scale, rel=1e-6)


def test_the_program_by_hand():
    # Class 0 fits 4/s on A (cost 2) or 1/s on B (cost 1); class 1 fits 1/s on A, 4/s on B.
    profile = load_profile("paper-linear")
    a = Deployment("a", profile, "vllm", {}, 2.0)
    b = Deployment("b", profile, "vllm", {}, 1.0)
    regions = {"a": np.array([[0.25, 1.0]]), "b": np.array([[1.0, 0.25]])}
    counts, shares = solve_plan(np.array([4.0, 4.0]), [a, b], regions, {"a": 1.0, "b": 1.0})
    assert counts == {"a": 1, "b": 1}  # each type takes the class it serves cheaply: cost 3
    assert shares["a"][0] == pytest.approx(1.0) and shares["b"][1] == pytest.approx(1.0)
    capped = Deployment("a", profile, "vllm", {}, 2.0, max_replicas=1)
    assert solve_plan(np.array([40.0, 0.0]), [capped], {"a": regions["a"]}, {"a": 1.0}) is None


@pytest.fixture(scope="module")
def answer():
    deployments = read_fleet(EXAMPLE)
    workload = load_workload(MIX, rate_per_s=20.0)
    return plan_fleet(workload, deployments, Targets(p99_ttft_s=3.0, p99_tpot_s=0.1), Simulation(requests=3000))


def test_the_plan_meets_the_slo_and_costs_no_more_than_any_homogeneous_fleet(answer):
    assert answer.success and answer.plan.slo_met
    homogeneous = [b["total_cost_per_hour"] for b in answer.baselines if b["name"].startswith("all ") and b["slo_met"]]
    assert homogeneous and answer.plan.cost_per_hour <= min(homogeneous)
    # Long prompts and long decodes over two types: strictly cheaper than the best single type.
    assert answer.plan.cost_per_hour < min(homogeneous)
    document = answer.to_dict()
    assert {"plan", "total_cost_per_hour", "validation", "baselines", "wall_time_s"} <= set(document)
    assert document["plan"][0]["command"].startswith("vllm serve")
    json.dumps(document)


def test_one_replica_fewer_of_the_priciest_type_misses(answer):
    deployments = read_fleet(EXAMPLE)
    priciest = max((d for d in deployments if d.name in answer.plan.counts), key=lambda d: d.cost_per_hour)
    counts = dict(answer.plan.counts)
    if counts[priciest.name] <= 1:
        pytest.skip("the plan holds one replica of its priciest type")  # the per-type minimum
    from fluidopt.answers.fleet_program import run_plan

    counts[priciest.name] -= 1
    workload = load_workload(MIX, rate_per_s=20.0)
    evaluation = run_plan(
        workload, deployments, counts, answer.plan.shares, Targets(p99_ttft_s=3.0, p99_tpot_s=0.1), Simulation(3000)
    )
    assert not evaluation.meets


def test_unreachable_slo_and_rate_are_results_not_errors():
    deployments = read_fleet(EXAMPLE)
    workload = load_workload(MIX, rate_per_s=5.0)
    fast = plan_fleet(workload, deployments, Targets(p99_ttft_s=1e-4), Simulation(requests=500), baselines=False)
    assert fast.status == "slo-unreachable" and fast.plan is None
    capped = [Deployment(d.name, d.profile, d.engine, d.knobs, d.cost_per_hour, 1) for d in deployments]
    heavy = load_workload(MIX, rate_per_s=200.0)
    result = plan_fleet(heavy, capped, Targets(p99_ttft_s=5.0), Simulation(requests=500), baselines=False)
    assert result.status == "infeasible" and "max_replicas" in result.message


def test_evaluate_a_given_fleet():
    deployments = read_fleet(EXAMPLE)
    workload = load_workload(MIX, rate_per_s=20.0)
    plan, line = evaluate_counts(workload, deployments, {"h100": 1}, Targets(p99_ttft_s=3.0), Simulation(1000))
    assert plan is None and "cannot hold" in line
    with pytest.raises(InputError, match="--evaluate"):
        evaluate_counts(workload, deployments, {"tpu": 2}, Targets(p99_ttft_s=3.0))


FLEET_OK = '[[deployment]]\nname = "h"\ngpu = "h100-80gb"\nmodel = "llama-3-8b"\nengine = "vllm"\ncost_per_hour = 2.0\n'


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (FLEET_OK.replace("cost_per_hour = 2.0", "cost_per_hour = -1"), "cost_per_hour"),
        (FLEET_OK.replace('"vllm"', '"trt"'), "engine"),
        (FLEET_OK + "colour = 1\n", "colour"),
        (FLEET_OK + FLEET_OK, "used twice"),
        (FLEET_OK.replace('gpu = "h100-80gb"\n', ""), "gpu"),
        (FLEET_OK.replace('"llama-3-8b"', '"llama-3.1-70b"').replace('"h100-80gb"', '"l4"'), "memory"),
        (FLEET_OK + "max_replicas = 0\n", "max_replicas"),
        (FLEET_OK + "[deployment.settings]\nmax_num_seqs = -2\n", "max_num_seqs"),
        ("", "deployment"),
    ],
)
def test_bad_fleet_files_are_refused_naming_the_field(tmp_path, text, needle):
    path = tmp_path / "fleet.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match=needle):
        read_fleet(path)


def test_fleet_cli_json_and_bad_input(tmp_path, capsys):
    args = ["fleet", "-w", MIX, "--rate", "4", "--deployments", str(EXAMPLE), "--p99-ttft-s", "3"]
    assert main([*args, "--evaluate", "h100=1", "--requests", "500", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["plan"][0]["name"] == "h100" and "slo_met" in document
    for extra in (["--p99-ttft-s", "-1"], ["--evaluate", "h100"], ["--evaluate", "gpu=2"], ["--requests", "5"]):
        assert main([*args, *extra]) == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_replicates_on_a_local_dask_cluster_equal_the_serial_ones():
    from dask.distributed import Client, LocalCluster

    from fluidopt.experiments.sweep import DaskExecutor
    from fluidopt.sim.fleet import evaluate_fleet

    workload = load_workload("p512d20", rate_per_s=10.0)
    replicas = [Replica("h", load_profile("h100-80gb-llama-3-8b-tp1-roofline"), VLLMV1Policy())] * 2
    kwargs = {"requests": 600, "replicates": 2, "seed": 4, "p99_ttft_s": 1.0, "p99_tpot_s": None}
    serial = evaluate_fleet(workload, replicas, "round-robin", **kwargs)
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            dask = evaluate_fleet(workload, replicas, "round-robin", executor=DaskExecutor(client=client), **kwargs)
    for a, b in zip(serial.runs, dask.runs):
        assert np.array_equal(a.ttft_s, b.ttft_s, equal_nan=True)


def test_a_schedule_per_window_of_a_trace(tmp_path):
    from fluidopt.answers.fleet_schedule import plan_schedule, write_schedule

    rng = np.random.default_rng(2)
    # Two windows of 300 s: 2 requests/s, then 8 requests/s.
    times = np.concatenate([np.sort(rng.uniform(0, 300, 600)), np.sort(rng.uniform(300, 600, 2400))])
    trace = Trace("two-rates", rng.integers(100, 2000, times.size), rng.integers(10, 400, times.size), times)
    deployments = read_fleet(EXAMPLE)
    schedule = plan_schedule(
        trace, deployments, Targets(p99_ttft_s=3.0), Simulation(requests=800), window_s=300, bins=2
    )
    assert schedule.rates_per_s.tolist() == pytest.approx([2.0, 8.0])
    costs = schedule.costs_per_hour
    assert costs[0] <= costs[1]
    assert schedule.scheduled_cost <= schedule.static_cost
    paths = write_schedule(schedule, deployments, tmp_path / "out")
    assert all(p.is_file() for p in paths)
    assert json.loads(paths[0].read_text())["windows"][1]["rate_per_s"] == pytest.approx(8.0)


def test_the_json_validation_holds_numbers_and_intervals(answer):
    validation = answer.to_dict()["validation"]
    assert isinstance(validation["p99_ttft_s"], float) and isinstance(validation["p99_tpot_s"], float)
    low, high = validation["p99_ttft_interval_s"]
    assert low <= validation["p99_ttft_s"] <= high
