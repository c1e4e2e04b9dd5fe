"""Thresholds for WAIT and Nested WAIT from the fluid model, condition reports and files."""

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
from fluidopt.policies.wait import KappaInterval, WaitThresholds, check_wait_conditions, kappa_interval, wait_thresholds

__all__ = [
    "Condition",
    "ConditionsReport",
    "KappaInterval",
    "NestedWaitThresholds",
    "Segments",
    "ThresholdConditionWarning",
    "WaitThresholds",
    "check_wait_conditions",
    "choose_cut_points",
    "cramer_lundberg_theta",
    "default_policy",
    "kappa_interval",
    "make_segments",
    "memory_against_segments",
    "nested_wait_thresholds",
    "read_thresholds",
    "theta_lower_bound",
    "thresholds_document",
    "wait_thresholds",
    "write_thresholds",
]
