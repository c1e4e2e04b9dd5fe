"""What every simulated policy module provides: validation helpers, the kernel pack, CLI knobs.

A policy module (``fluidopt/sim/policies/<name>.py``) holds three things: a frozen, validated
parameter dataclass (errors at construction name the field), its :meth:`kernel_pack` (the
parameter arrays its compiled selection function reads, laid out by constants in that module),
and the compiled selection function itself.  Its ``SPECS`` tuple registers the policy names it
serves; :mod:`fluidopt.sim.policies` lists the modules (the registry).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fluidopt.errors import require, require_finite_number, require_whole_number

EVICTIONS = ("restart", "recompute")


def whole_tuple(values: Any, name: str, minimum: int) -> tuple[int, ...]:
    """A non-empty tuple of whole numbers >= ``minimum`` (errors name ``name[i]``)."""
    values = tuple(values)
    require(len(values) > 0, name, values, "needs at least one entry")
    return tuple(require_whole_number(v, f"{name}[{i}]", minimum) for i, v in enumerate(values))


def fraction(value: float, name: str) -> float:
    """A finite number in [0, 1)."""
    number = require_finite_number(value, name)
    require(0 <= number < 1, name, value, "must be in [0, 1)")
    return number


def validate_fields(instance: Any, rules: dict[str, tuple[str, float]]) -> None:
    """Check and normalise dataclass fields in place: ``{field: ("whole", minimum) | ("fraction", 0)}``."""
    for name, (kind, minimum) in rules.items():
        value = getattr(instance, name)
        if kind == "whole":
            checked: Any = require_whole_number(value, name, int(minimum))
        elif kind == "fraction":
            checked = fraction(value, name)
        elif kind == "flag":
            require(isinstance(value, (bool, np.bool_)), name, value, "must be true or false")
            checked = bool(value)
        else:
            checked = require_finite_number(value, name)
            require(checked > minimum, name, value, f"must be > {minimum:g}")
        object.__setattr__(instance, name, checked)


def require_thresholds(document: dict[str, Any], where: str) -> None:
    """A thresholds file's ``thresholds``: present, a non-empty array (errors name the file)."""
    require("thresholds" in document, f"{where}: thresholds", None, "is required")
    require(
        isinstance(document["thresholds"], list) and len(document["thresholds"]) > 0,
        f"{where}: thresholds",
        document["thresholds"],
        "must be an array of whole numbers, one per class (wait) or segment (nested-wait)",
    )


def int_array(*parts: Any) -> np.ndarray:
    """Concatenate scalars and sequences into one int64 array (a policy's ``params_i``)."""
    out: list[int] = []
    for part in parts:
        if np.ndim(part) == 0:
            out.append(int(part))
        else:
            out.extend(int(v) for v in part)
    return np.array(out if out else [0], dtype=np.int64)


def segment_arrays(boundaries: tuple[int, ...], max_stage: int) -> tuple[np.ndarray, np.ndarray]:
    """Per segment its entry stage (0 for the first), and per stage ``0..max_stage+1`` its segment."""
    seg_of_stage = np.zeros(max_stage + 2, dtype=np.int64)
    seg_entry = np.zeros(len(boundaries), dtype=np.int64)
    previous = 0
    for k, end in enumerate(boundaries):
        low = 0 if k == 0 else previous + 1
        seg_entry[k] = low
        seg_of_stage[low : end + 1] = k
        previous = int(end)
    seg_of_stage[boundaries[-1] + 1 :] = len(boundaries) - 1
    return seg_entry, seg_of_stage


@dataclass(frozen=True)
class KernelPack:
    """What the engine hands the compiled kernel for one policy.

    Attributes
    ----------
    params_i, params_f : numpy.ndarray
        Read-only parameters of the selection function (layout: constants of the policy's module).
    state_i, state_f : numpy.ndarray
        Initial values of the policy's own mutable state, kept across iterations (e.g. SGLang's
        ``new_token_ratio``).
    block_size, watermark : int, float
        Paged KV blocks in tokens and the admission watermark (fraction of blocks kept free).
    per_class_queues : bool
        One waiting queue per class (WAIT) instead of one FCFS queue.
    engine_tokens : bool
        Engine token accounting (vLLM V1, SGLang): the selection function allocates KV itself
        (a request holds the tokens computed so far), the first output token comes out of the
        iteration that completes the prefill, and a re-prefill after preemption emits a token.
    eviction : str or None
        The eviction the policy always uses (engines recompute); ``None``: the caller's choice.
    reserves_prompt : bool
        Admission reserves a whole prompt, so one prompt in blocks must fit in C.
    tracks_stage_excess : bool
        The selection function records WAIT's invariant (residents per stage above ``n_j``).
    holds_finished : bool
        A request that completes in a step keeps its KV blocks and its place among the running
        requests while the next step is planned (vLLM's asynchronous scheduling plans step N+1
        before it applies step N's output); it is released after that plan.

    """

    params_i: np.ndarray
    params_f: np.ndarray = field(default_factory=lambda: np.zeros(1))
    state_i: np.ndarray = field(default_factory=lambda: np.zeros(1, dtype=np.int64))
    state_f: np.ndarray = field(default_factory=lambda: np.zeros(1))
    block_size: int = 1
    watermark: float = 0.0
    per_class_queues: bool = False
    engine_tokens: bool = False
    eviction: str | None = None
    reserves_prompt: bool = False
    tracks_stage_excess: bool = False
    holds_finished: bool = False


@dataclass(frozen=True)
class Knob:
    """A command-line option of a policy: ``--flag VALUE`` sets dataclass field ``field`` (of ``type``).

    With ``const`` set, the flag takes no value and sets the field to ``const``.
    """

    flag: str
    field: str
    type: Callable[[str], Any]
    help: str
    const: Any = None

    @property
    def dest(self) -> str:
        """The argparse destination of the flag."""
        return self.flag.lstrip("-").replace("-", "_")


@dataclass(frozen=True)
class FluidDesign:
    """What a fluid-designed policy (the WAIT family) needs beyond its knobs.

    The designer and the tuning grid are named by import path (``"module:function"``, resolved
    when called, :func:`fluidopt.sim.policies.resolve`): they live in the layers above the
    simulator (threshold design, experiments), which import this package, so naming them keeps
    every import pointing one way.

    Attributes
    ----------
    family : str
        The ``policy`` a thresholds file of this policy holds (``wait``, ``nested-wait``,
        ``wait-cp``, ``nested-wait-cp``); the names of one family share files.
    designer : str
        ``f(workload, profile, **design_options) -> policy``: the policy from the fluid model.
    tuning : str
        ``f(workload, profile, conventions) -> [(policy, setting)]``: the candidates tried by
        ``tune`` and ``capacity``.
    variant : tuple of (field, value)
        Dataclass fields this name fixes on the family's policy (``hold = False`` for ``-nohold``).
    chunked : bool
        A chunked-prefill design (``--chunk-tokens``, ``--slack``, ``--wait-gate``); it exists
        only below the fluid limit.
    takes_kappa : bool
        ``--kappa`` sets its thresholds ``n_j = ceil(kappa lambda_j)``.
    nested : bool
        Thresholds per decode segment (``--segments``).

    """

    family: str
    designer: str
    tuning: str
    variant: tuple[tuple[str, Any], ...] = ()
    chunked: bool = False
    takes_kappa: bool = False
    nested: bool = False


@dataclass(frozen=True)
class PolicySpec:
    """One registered policy name.

    Attributes
    ----------
    name : str
        The policy id (``--policy NAME``).
    summary : str
        One line for ``--help`` and the glossary.
    policy_type : type
        The parameter dataclass.
    build : callable
        ``build(**options) -> policy`` from keyword options (dataclass fields).
    knobs : tuple of Knob
        The CLI options this policy takes (others given with it are an error).
    baseline : bool
        In the default lists of ``capacity`` / ``compare`` / rate sweeps (untuned baselines).
    grid : callable or None
        ``grid() -> [(policy, setting)]``: the tuning grid of a baseline (engines' own knobs).
    fluid : FluidDesign or None
        Built from the fluid model (the WAIT family) rather than from knobs alone.
    engine : str or None
        The serving engine this policy models (``vllm``, ``sglang``), for recommendations.

    """

    name: str
    summary: str
    policy_type: type
    build: Callable[..., Any]
    knobs: tuple[Knob, ...] = ()
    baseline: bool = False
    grid: Callable[[], list[tuple[Any, dict[str, Any]]]] | None = None
    fluid: FluidDesign | None = None
    engine: str | None = None

    @property
    def needs_thresholds(self) -> bool:
        """Built from the fluid model (its thresholds come from a design or a thresholds file)."""
        return self.fluid is not None


BLOCK_SIZE_KNOB = Knob("--block-size", "block_size", int, "KV block size in tokens")
WATERMARK_KNOB = Knob("--watermark", "watermark", float, "fraction of KV blocks kept free at admission")
MAX_BATCH_KNOB = Knob("--max-batch", "max_batch", int, "sequences per iteration (0: no cap)")
