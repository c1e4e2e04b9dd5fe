"""Extra per-iteration constraints of the fluid model (docs/theory.md section 8)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fluidopt.errors import InputError, require, require_finite_number
from fluidopt.profile import GPUProfile
from fluidopt.workload import Workload

RESOURCES = ("memory", "tbt", "batch_sequences", "prefill_budget")


@dataclass(frozen=True)
class Constraints:
    """Optional limits on the equilibrium batch, besides KV memory.

    Parameters
    ----------
    tbt_max_s : float, optional
        Upper bound on the iteration time (time between tokens), seconds.
    max_batch_sequences : float, optional
        Upper bound on sequences per iteration.
    prefill_token_budget : float, optional
        Upper bound on prefill tokens per iteration.

    """

    tbt_max_s: float | None = None
    max_batch_sequences: float | None = None
    prefill_token_budget: float | None = None

    def __post_init__(self) -> None:
        for name in ("tbt_max_s", "max_batch_sequences", "prefill_token_budget"):
            value = getattr(self, name)
            if value is not None:
                number = require_finite_number(value, name)
                require(number > 0, name, value, "must be > 0")
                object.__setattr__(self, name, number)

    def as_dict(self) -> dict[str, float | None]:
        """The limits as a mapping (None where unset)."""
        return {
            "tbt_max_s": self.tbt_max_s,
            "max_batch_sequences": self.max_batch_sequences,
            "prefill_token_budget": self.prefill_token_budget,
        }


def class_costs(workload: Workload, profile: GPUProfile) -> np.ndarray:
    """Per-piece iteration-time cost of one request over its life, shape (pieces, classes).

    ``c_j = c_kv S_j + c_pf l_j + c_seq (l'_j + 1)`` (docs/theory.md section 8): an equilibrium batch
    holds ``n_j (l'_j + 1)`` class-j sequences, ``n_j l_j`` prefill tokens and ``n_j S_j`` KV tokens.
    """
    coefficients = profile.coefficient_matrix()
    features = np.vstack([workload.kv_mass, workload.prefill, workload.decode + 1.0])
    return coefficients[:, 1:] @ features


def resource_loads(
    workload: Workload, constraints: Constraints, profile: GPUProfile
) -> dict[str, tuple[np.ndarray, float]]:
    """For each active resource: (per-stage usage per class, limit) of the equilibrium batch."""
    loads: dict[str, tuple[np.ndarray, float]] = {"memory": (workload.kv_mass, float(profile.kv_capacity_tokens))}
    if constraints.max_batch_sequences is not None:
        loads["batch_sequences"] = (workload.decode + 1.0, constraints.max_batch_sequences)
    if constraints.prefill_token_budget is not None:
        loads["prefill_budget"] = (workload.prefill, constraints.prefill_token_budget)
    return loads


def check_fits(workload: Workload, profile: GPUProfile) -> None:
    """Raise :class:`InputError` if one request of some class cannot fit in the KV cache."""
    for request_class in workload.classes:
        if request_class.peak_kv_tokens > profile.kv_capacity_tokens:
            raise InputError(
                "kv_capacity_tokens",
                profile.kv_capacity_tokens,
                f"is smaller than one request of class {request_class.name!r} at its peak "
                f"(prefill + decode = {request_class.peak_kv_tokens} tokens)",
            )


def utilisation(
    workload: Workload, profile: GPUProfile, constraints: Constraints, per_stage: np.ndarray, iteration_time: float
) -> dict[str, float]:
    """Each resource's load at the per-stage counts ``per_stage``, as a fraction of its limit."""
    out = {
        name: float(usage @ per_stage) / limit
        for name, (usage, limit) in resource_loads(workload, constraints, profile).items()
    }
    if constraints.tbt_max_s is not None:
        out["tbt"] = iteration_time / constraints.tbt_max_s
    return out
