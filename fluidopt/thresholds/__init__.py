"""Thresholds for WAIT, Nested WAIT and chunked WAIT from the fluid model (imported lazily)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fluidopt._lazy import lazy_exports

_EXPORTS = {
    "Condition": "fluidopt.thresholds.conditions",
    "ConditionsReport": "fluidopt.thresholds.conditions",
    "ThresholdConditionWarning": "fluidopt.thresholds.conditions",
    "default_policy": "fluidopt.thresholds.io",
    "read_thresholds": "fluidopt.thresholds.io",
    "thresholds_document": "fluidopt.thresholds.io",
    "write_thresholds": "fluidopt.thresholds.io",
    "NestedWaitThresholds": "fluidopt.thresholds.nested",
    "Segments": "fluidopt.thresholds.nested",
    "choose_cut_points": "fluidopt.thresholds.nested",
    "cramer_lundberg_theta": "fluidopt.thresholds.nested",
    "make_segments": "fluidopt.thresholds.nested",
    "memory_against_segments": "fluidopt.thresholds.nested",
    "nested_wait_thresholds": "fluidopt.thresholds.nested",
    "theta_lower_bound": "fluidopt.thresholds.nested",
    "KappaInterval": "fluidopt.thresholds.wait",
    "WaitThresholds": "fluidopt.thresholds.wait",
    "check_wait_conditions": "fluidopt.thresholds.wait",
    "kappa_interval": "fluidopt.thresholds.wait",
    "wait_thresholds": "fluidopt.thresholds.wait",
    "WaitCPThresholds": "fluidopt.thresholds.chunked",
    "wait_cp_thresholds": "fluidopt.thresholds.chunked",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from fluidopt.thresholds.chunked import WaitCPThresholds, wait_cp_thresholds
    from fluidopt.thresholds.conditions import Condition, ConditionsReport, ThresholdConditionWarning
    from fluidopt.thresholds.io import default_policy, read_thresholds, thresholds_document, write_thresholds
    from fluidopt.thresholds.nested import (
        NestedWaitThresholds,
        Segments,
        choose_cut_points,
        cramer_lundberg_theta,
        make_segments,
        memory_against_segments,
        nested_wait_thresholds,
        theta_lower_bound,
    )
    from fluidopt.thresholds.wait import (
        KappaInterval,
        WaitThresholds,
        check_wait_conditions,
        kappa_interval,
        wait_thresholds,
    )
