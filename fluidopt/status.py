"""One small vocabulary for the status of every fluidopt result.

Every result type (equilibrium, stability, simulation, trajectory, thresholds, tuning,
capacity, comparison) carries ``status`` (one of :data:`STATUSES`), ``message`` and
``success``.  ``success`` is True when the computation did what was asked, including when the
answer is "unstable" (an unstable load is a result, not a failure); it is False when the result
cannot be trusted as it stands (memory overflowed, the run livelocked or starved, a quantile ran
off the histogram, no configuration met the target, the method erred).
"""

from __future__ import annotations

STATUSES: dict[str, tuple[bool, str]] = {
    "ok": (True, "computed as asked"),
    "stable": (True, "the load has a fluid equilibrium"),
    "unstable": (True, "the load has no fluid equilibrium (a result, not an error)"),
    "not-applicable": (True, "the question does not apply to this input"),
    "conditions-violated": (False, "thresholds break a condition of the paper"),
    "no-configuration": (False, "no configuration meets the target"),
    "method-error": (False, "the method produced an impossible answer (flagged, not reported)"),
    "overflow": (False, "resident KV memory exceeded the capacity"),
    "livelock": (False, "evictions kept requests from completing"),
    "starved": (False, "requests arrived but none completed"),
    "truncated": (False, "a latency quantile reached the top of the histogram (reported value is a bound)"),
    "overloaded": (True, "arrivals outpaced service: the queue grew through the run (a result, not an error)"),
}


def is_success(status: str) -> bool:
    """Whether ``status`` means the result can be used as it stands."""
    return STATUSES[status][0]


def describe(status: str) -> str:
    """The vocabulary's one-line meaning of ``status``."""
    return STATUSES[status][1]


class HasStatus:
    """Mixin: ``success`` derived from a ``status`` attribute of the vocabulary."""

    status: str

    @property
    def success(self) -> bool:
        """Whether the result can be used as it stands (see :data:`STATUSES`)."""
        return is_success(self.status)
