"""Thresholds files and default policies.

A thresholds file (TOML, or JSON by extension) records a policy and where it came from::

    policy = "wait"                 # or "nested-wait"
    workload = "p512d20"            # provenance: what the thresholds were designed for
    profile = "a100-80gb-llama-3-8b"
    rate_per_s = 18.0
    classes = ["p512d20"]           # wait: the class order of `thresholds`
    class_prompt_tokens = [512]     # wait: each class's lengths (the vLLM plugin classifies by them)
    class_output_tokens = [20]
    thresholds = [1]
    # nested-wait only:
    # boundaries = [20, 50]         # last decode stage of each segment
    # repair = false
    [design]                        # memory figures, conditions, margins (informative)
    memory_base_tokens = 10962.0

``fluidopt simulate --thresholds FILE`` reads it back.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

from fluidopt import __version__
from fluidopt.errors import InputError, require
from fluidopt.profile import GPUProfile
from fluidopt.sim.policies import (
    NestedWaitPolicy,
    Policy,
    WaitPolicy,
    design_policy,
    fluid_design,
    make_policy,
    policy_from_document,
)
from fluidopt.thresholds.conditions import ThresholdConditionWarning
from fluidopt.thresholds.nested import NestedWaitThresholds, nested_wait_thresholds
from fluidopt.thresholds.wait import WaitThresholds, check_wait_conditions
from fluidopt.tomlio import SCHEMA_VERSION, dumps_toml, read_toml, write_text_atomic
from fluidopt.workload import Workload


def thresholds_document(
    design: WaitThresholds | NestedWaitThresholds, workload: Workload, profile: GPUProfile, *, repair: bool = False
) -> dict[str, Any]:
    """The mapping written to a thresholds file."""
    details = design.to_dict()
    doc: dict[str, Any] = {
        "policy": details["policy"],
        "workload": workload.name,
        "profile": profile.name,
        "rate_per_s": workload.total_rate_per_s,
        "thresholds": list(design.thresholds),
    }
    if isinstance(design, WaitThresholds):
        doc["classes"] = list(design.class_names)
        # The engine plugins (fluidopt.engines.vllm) sort requests into classes by these lengths.
        doc["class_prompt_tokens"] = [int(v) for v in workload.prefill]
        doc["class_output_tokens"] = [int(v) for v in workload.decode]
    else:
        doc["boundaries"] = list(design.segments.boundaries)
        doc["repair"] = repair
    doc["design"] = {k: v for k, v in details.items() if k not in ("policy", "thresholds", "classes", "boundaries")}
    doc["provenance"] = {"created_by": f"fluidopt {__version__}", "kv_capacity_tokens": profile.kv_capacity_tokens}
    return doc


def write_thresholds(path: str | os.PathLike[str], document: dict[str, Any]) -> Path:
    document = {"schema_version": SCHEMA_VERSION, **document}
    """Write a thresholds document as TOML (or JSON for a ``.json`` path), atomically."""
    path = Path(path)
    if path.suffix == ".json":
        return write_text_atomic(path, json.dumps(document, indent=2))
    return write_text_atomic(path, dumps_toml(_toml_safe(document)))


def _toml_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _toml_safe(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_toml_safe(v) for v in value]
    if isinstance(value, float) and value != value:
        return "nan"
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return "inf" if value > 0 else "-inf"
    return value


def thresholds_conventions(path: str | os.PathLike[str]) -> str | None:
    """The conventions a thresholds file was designed under (None when it does not say)."""
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8")) if path.suffix == ".json" else read_toml(path)
    except (OSError, json.JSONDecodeError, InputError):
        return None
    value = document.get("conventions") if isinstance(document, dict) else None
    return str(value) if value is not None else None


def read_thresholds(path: str | os.PathLike[str], workload: Workload | None = None) -> Policy:
    """Read a thresholds file into a policy; with ``workload``, check it matches the classes."""
    return read_thresholds_document(path, workload)[0]


def read_thresholds_document(
    path: str | os.PathLike[str], workload: Workload | None = None
) -> tuple[Policy, dict[str, Any]]:
    """Read a thresholds file: its policy and the whole document (the engine plugins read the class lengths)."""
    path = Path(path)
    if path.suffix == ".json":
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise InputError("thresholds", str(path), f"cannot be read ({exc.strerror})") from None
        except json.JSONDecodeError as exc:
            raise InputError(str(path), "<JSON>", f"is not valid JSON ({exc})") from None
    else:
        document = read_toml(path)
    require(isinstance(document, dict), str(path), type(document).__name__, "must be a table")
    return policy_from_document(document, path.name, workload), document


def default_policy(
    name: str,
    workload: Workload,
    profile: GPUProfile,
    *,
    kappa: float | None = None,
    segments: int | None = None,
    repair: bool = False,
    **options: Any,
) -> Policy:
    """The policy ``name`` with thresholds from the fluid model when it needs them.

    WAIT and its no-wait ablation use :func:`~fluidopt.thresholds.wait.wait_thresholds` (or
    ``n_j = ceil(kappa lambda_j)`` with ``kappa``); Nested WAIT uses
    :func:`~fluidopt.thresholds.nested.nested_wait_thresholds` with ``segments``.  Baselines take
    their knobs from ``options``.
    """
    if fluid_design(name) is not None:
        return design_policy(name, workload, profile, kappa=kappa, segments=segments, repair=repair, **options)
    return make_policy(name, **options)


def check_policy_conditions(policy: Policy, workload: Workload, profile: GPUProfile, *, strict: bool = False) -> None:
    """Warn (or raise with ``strict``) when WAIT / Nested WAIT thresholds violate their conditions."""
    if isinstance(policy, WaitPolicy):
        if len(policy.thresholds) == workload.num_classes:
            check_wait_conditions(workload, profile, policy.thresholds).enforce(strict, "thresholds")
    elif isinstance(policy, NestedWaitPolicy):
        from fluidopt.thresholds.nested import make_segments, nested_conditions

        try:
            cuts = _cuts_for_boundaries(workload, policy.boundaries)
        except InputError as error:
            # Segments that do not end at the classes' output lengths have no conditions to check:
            # say so (an error with strict), never pass in silence.
            if strict:
                raise
            warnings.warn(f"thresholds cannot be checked: {error}", ThresholdConditionWarning, stacklevel=2)
            return
        segments = make_segments(workload, cuts)
        design = nested_wait_thresholds(workload, profile, cut_points=cuts, thresholds=policy.thresholds)
        nested_conditions(segments, policy.thresholds, profile, design.memory_required_tokens).enforce(
            strict, "thresholds"
        )


def _cuts_for_boundaries(workload: Workload, boundaries: tuple[int, ...]) -> tuple[int, ...]:
    lengths = sorted({c.decode_tokens for c in workload.classes})
    if boundaries and boundaries[-1] != lengths[-1]:
        raise InputError(
            "boundaries",
            list(boundaries),
            f"must end at the workload's longest output ({lengths[-1]} tokens): the last segment covers every "
            "stage up to it",
        )
    cuts = []
    for boundary in boundaries:
        if boundary not in lengths:
            raise InputError("boundaries", list(boundaries), "must be output lengths of the workload's classes")
        cuts.append(lengths.index(boundary) + 1)
    return tuple(cuts)
