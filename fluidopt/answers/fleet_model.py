"""The fleet planner's inputs: candidate deployments (``FLEET.toml``) and each one's per-replica SLO region.

``FLEET.toml`` lists ``[[deployment]]`` tables: ``name``, ``profile`` (a preset name or a profile
TOML, relative to the file) or ``gpu`` and ``model`` (and ``tensor_parallel_size``: the roofline
from public facts, :mod:`fluidopt.timing.fit.roofline`), ``engine`` (``vllm`` or ``sglang``), optional ``settings`` (the
engine's knobs by its own names; the engine's defaults on the profile's GPU otherwise),
``cost_per_hour`` (> 0) and optional ``max_replicas``.

**A replica's stability region is a polytope in the class rates.**  For a profile whose step time
is the maximum of affine pieces ``tau_p = a_p + c_p . batch`` (every timing kind provides them:
exact for the paper's model, a convex surrogate otherwise), the fluid equilibrium at rates
``lambda`` exists iff for every piece ``a_p M(lambda) + C B_p(lambda) <= C``, with
``M(lambda) = sum_j lambda_j S_j`` the KV mass and ``B_p(lambda) = sum_j lambda_j c_pj`` the
per-piece cost of the classes' lifetimes (docs/theory.md sections 6 and 8).  Both are linear in
``lambda``, so the region is ``{lambda >= 0 : W lambda <= 1}`` with
``W_pj = (a_p S_j + C c_pj) / C``.  Where the pieces are a surrogate, ``W`` is rescaled so that
the region is exact along the workload's own mix (the bisection on the exact timing).  A replica
fed rates inside ``rho W lambda <= 1`` meets the SLO, with the derating ``rho`` found by simulation
(:func:`slo_derating`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fluidopt.errors import InputError, reject_unknown_keys, require
from fluidopt.profile import GPUProfile
from fluidopt.tomlio import read_toml
from fluidopt.workload import Workload

ENGINES = ("vllm", "sglang")
DEPLOYMENT_KEYS = (
    "name",
    "profile",
    "gpu",
    "model",
    "tensor_parallel_size",
    "engine",
    "settings",
    "cost_per_hour",
    "max_replicas",
)
DERATING_STEPS = 6  # bisection steps on the derating (1/64 of the fluid limit)
LOWEST_DERATING = 1 / 64


@dataclass(frozen=True)
class Deployment:
    """One candidate deployment type: a GPU profile, an engine and its settings, a price."""

    name: str
    profile: GPUProfile = field(repr=False)
    engine: str
    knobs: dict[str, Any]
    cost_per_hour: float
    max_replicas: int | None = None

    def policy(self) -> Any:
        """The engine's simulated scheduler with this deployment's knobs."""
        from fluidopt.answers.recommend import engine_policy

        return engine_policy(self.engine, self.knobs)

    def command(self, model: str = "MODEL") -> str:
        """The engine's command line with these knobs."""
        from fluidopt.answers.recommend import command_line

        return command_line(self.engine, self.knobs, model)


def read_fleet(path: str | Path) -> list[Deployment]:
    """The deployments of a ``FLEET.toml`` (module docstring); errors name the deployment and the key."""
    from fluidopt.answers.engine_defaults import engine_defaults_for

    source = Path(path)
    data = read_toml(source)
    reject_unknown_keys(data, ("deployment", "schema_version"), str(source))
    tables = data.get("deployment")
    require(isinstance(tables, list) and len(tables) > 0, f"{source}: [[deployment]]", None, "needs at least one")
    assert isinstance(tables, list)
    deployments: list[Deployment] = []
    for i, table in enumerate(tables):
        where = f"{source}: deployment[{i}]"
        require(isinstance(table, dict), where, table, "must be a table")
        reject_unknown_keys(table, DEPLOYMENT_KEYS, where)
        for key in ("name", "engine", "cost_per_hour"):
            require(key in table, f"{where}.{key}", None, "is required")
        name = table["name"]
        require(isinstance(name, str) and name.strip() != "", f"{where}.name", name, "must be a non-empty string")
        require(name not in {d.name for d in deployments}, f"{where}.name", name, "is used twice")
        engine = table["engine"]
        require(engine in ENGINES, f"{where}.engine", engine, f"must be one of {', '.join(ENGINES)}")
        cost = table["cost_per_hour"]
        ok = isinstance(cost, (int, float)) and not isinstance(cost, bool) and math.isfinite(cost) and cost > 0
        require(ok, f"{where}.cost_per_hour", cost, "must be a price per hour > 0")
        cap = table.get("max_replicas")
        if cap is not None:
            ok = isinstance(cap, int) and not isinstance(cap, bool) and cap >= 1
            require(ok, f"{where}.max_replicas", cap, "must be a whole number >= 1")
        profile = _deployment_profile(table, where, source.parent)
        settings = table.get("settings", {})
        require(isinstance(settings, dict), f"{where}.settings", settings, "must be a table of the engine's knobs")
        knobs = {**engine_defaults_for(engine, profile).knobs, **settings}
        deployment = Deployment(name, profile, engine, knobs, float(cost), cap)
        try:
            deployment.policy()
        except (InputError, TypeError) as error:
            raise InputError(f"{where}.settings", settings, f"are not {engine}'s knobs ({error})") from None
        deployments.append(deployment)
    return deployments


def _deployment_profile(table: dict[str, Any], where: str, folder: Path) -> GPUProfile:
    """A deployment's profile: ``profile`` (preset or TOML), or the roofline of ``gpu`` and ``model``."""
    from fluidopt.hardware import gpu_spec
    from fluidopt.model_config import resolve_model
    from fluidopt.profile import load_profile
    from fluidopt.timing.fit.engine_tables import Parallelism
    from fluidopt.timing.fit.roofline import roofline_profile

    if "profile" in table:
        require("gpu" not in table and "model" not in table, f"{where}.profile", table["profile"], "or gpu and model")
        named = str(table["profile"])
        local = folder / named
        return load_profile(str(local) if named.endswith(".toml") and local.is_file() else named)
    for key in ("gpu", "model"):
        require(key in table, f"{where}.{key}", None, "is required without a profile (or give profile)")
    tp = table.get("tensor_parallel_size", 1)
    require(isinstance(tp, int) and not isinstance(tp, bool) and tp >= 1, f"{where}.tensor_parallel_size", tp, ">= 1")
    gpu = str(table["gpu"])
    model = str(table["model"])
    local_gpu, local_model = folder / gpu, folder / model
    hardware = gpu_spec(str(local_gpu) if gpu.endswith(".toml") and local_gpu.is_file() else gpu)
    shape = resolve_model(str(local_model) if model.endswith(".json") and local_model.is_file() else model)
    return roofline_profile(hardware, shape, Parallelism(tp))


def replica_region(workload: Workload, profile: GPUProfile) -> np.ndarray:
    """``W`` (pieces x classes): one replica is stable at class rates ``lambda`` iff ``W lambda <= 1``."""
    from fluidopt.fluid.constraints import check_fits, class_costs
    from fluidopt.fluid.stability import max_stable_scale

    check_fits(workload, profile)
    capacity = float(profile.kv_capacity_tokens)
    bases = profile.coefficient_matrix()[:, 0]
    costs = class_costs(workload, profile)  # (pieces, classes)
    region = (bases[:, None] * workload.kv_mass[None, :] + capacity * costs) / capacity
    if not profile.timing.exact_affine:
        along = float(np.max(region @ workload.rates))
        exact = max_stable_scale(workload, profile).max_scale
        if along > 0 and math.isfinite(exact) and exact > 0:
            region = region * (1.0 / along) / exact  # exact along the workload's mix
    return region


def fluid_replicas(region: np.ndarray, rates: np.ndarray, derating: float = 1.0) -> float:
    """Replicas the fluid model needs for ``rates`` on one deployment: ``max_p (W lambda)_p / rho``."""
    return float(np.max(region @ rates)) / derating


def slo_derating(
    workload: Workload,
    deployment: Deployment,
    targets: Any,
    *,
    requests: int,
    replicates: int,
    seed: int,
    executor: Any = None,
) -> float:
    """The largest share ``rho`` of one replica's fluid limit on the workload's mix at which it meets the SLO.

    Bisection over ``rho`` in ``[1/64, 1]`` (6 steps) with :func:`fluidopt.sim.fleet.evaluate_fleet`
    on one replica; 0 when even ``1/64`` of the limit misses (the SLO is out of this deployment's
    reach at any useful load).
    """
    from fluidopt.sim.fleet import Replica, evaluate_fleet

    region = replica_region(workload, deployment.profile)
    limit = 1.0 / float(np.max(region @ workload.rates))  # scale of the mix one replica holds
    replica = [Replica(deployment.name, deployment.profile, deployment.policy())]

    def meets(rho: float) -> bool:
        scaled = workload.scaled(rho * limit)
        evaluation = evaluate_fleet(
            scaled,
            replica,
            "round-robin",
            requests=requests,
            replicates=replicates,
            seed=seed,
            p99_ttft_s=targets.p99_ttft_s,
            p99_tpot_s=targets.p99_tpot_s,
            executor=executor,
        )
        return evaluation.meets

    if not meets(LOWEST_DERATING):
        return 0.0
    if meets(1.0):
        return 1.0
    low, high = LOWEST_DERATING, 1.0
    for _ in range(DERATING_STEPS):
        middle = math.sqrt(low * high)
        low, high = (middle, high) if meets(middle) else (low, middle)
    return low
