"""Thresholds for WAIT, Nested WAIT and chunked WAIT from the fluid model (imported lazily)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fluidopt._lazy import lazy_exports

_EXPORTS = {
    "Condition": "fluidopt.policies.conditions",
    "ConditionsReport": "fluidopt.policies.conditions",
    "ThresholdConditionWarning": "fluidopt.policies.conditions",
    "default_policy": "fluidopt.policies.io",
    "read_thresholds": "fluidopt.policies.io",
    "thresholds_document": "fluidopt.policies.io",
    "write_thresholds": "fluidopt.policies.io",
    "NestedWaitThresholds": "fluidopt.policies.nested",
    "Segments": "fluidopt.policies.nested",
    "choose_cut_points": "fluidopt.policies.nested",
    "cramer_lundberg_theta": "fluidopt.policies.nested",
    "make_segments": "fluidopt.policies.nested",
    "memory_against_segments": "fluidopt.policies.nested",
    "nested_wait_thresholds": "fluidopt.policies.nested",
    "theta_lower_bound": "fluidopt.policies.nested",
    "KappaInterval": "fluidopt.policies.wait",
    "WaitThresholds": "fluidopt.policies.wait",
    "check_wait_conditions": "fluidopt.policies.wait",
    "kappa_interval": "fluidopt.policies.wait",
    "wait_thresholds": "fluidopt.policies.wait",
    "WaitCPThresholds": "fluidopt.policies.chunked",
    "wait_cp_thresholds": "fluidopt.policies.chunked",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from fluidopt.policies.chunked import WaitCPThresholds, wait_cp_thresholds
    from fluidopt.policies.conditions import Condition, ConditionsReport, ThresholdConditionWarning
    from fluidopt.policies.io import default_policy, read_thresholds, thresholds_document, write_thresholds
    from fluidopt.policies.nested import (
        NestedWaitThresholds,
        Segments,
        choose_cut_points,
        cramer_lundberg_theta,
        make_segments,
        memory_against_segments,
        nested_wait_thresholds,
        theta_lower_bound,
    )
    from fluidopt.policies.wait import (
        KappaInterval,
        WaitThresholds,
        check_wait_conditions,
        kappa_interval,
        wait_thresholds,
    )
