"""Condition reports: which threshold conditions hold, and by how much."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

from fluidopt.errors import InputError
from fluidopt.status import HasStatus


class ThresholdConditionWarning(UserWarning):
    """Thresholds given to a policy violate one of the paper's conditions."""


@dataclass(frozen=True)
class Condition:
    """One inequality ``lhs <relation> rhs``.

    Attributes
    ----------
    name : str
        Human-readable statement, e.g. ``"dT(n) <= n_j / lambda_j [p512d20]"``.
    lhs, rhs : float
        The two sides.
    strict : bool
        True for ``<``, False for ``<=``.

    """

    name: str
    lhs: float
    rhs: float
    strict: bool = False

    @property
    def holds(self) -> bool:
        """Whether the inequality holds (a 1e-12 relative tolerance for ``<=``)."""
        if self.strict:
            return bool(self.lhs < self.rhs)
        return bool(self.lhs <= self.rhs * (1 + 1e-12) + 1e-12)

    @property
    def margin(self) -> float:
        """``rhs - lhs``: positive when the condition holds with room to spare."""
        return self.rhs - self.lhs

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping."""
        return {
            "name": self.name,
            "lhs": self.lhs,
            "rhs": self.rhs,
            "strict": self.strict,
            "holds": self.holds,
            "margin": self.margin,
        }


@dataclass(frozen=True)
class ConditionsReport:
    """All conditions of a threshold choice."""

    conditions: tuple[Condition, ...]

    @property
    def all_hold(self) -> bool:
        """True when every condition holds."""
        return all(c.holds for c in self.conditions)

    @property
    def violated(self) -> tuple[Condition, ...]:
        """The conditions that fail."""
        return tuple(c for c in self.conditions if not c.holds)

    def to_list(self) -> list[dict[str, Any]]:
        """JSON-ready list."""
        return [c.to_dict() for c in self.conditions]

    def enforce(self, strict: bool, source: str = "thresholds") -> None:
        """Warn (or, when ``strict``, raise :class:`~fluidopt.errors.InputError`) naming each violation."""
        for condition in self.violated:
            detail = f"{condition.lhs:.6g} vs {condition.rhs:.6g}"
            if strict:
                raise InputError(source, condition.name, f"violates its condition ({detail})")
            warnings.warn(
                f"{source} violate the condition {condition.name}: {detail}", ThresholdConditionWarning, stacklevel=3
            )


class ConditionsStatus(HasStatus):
    """Mixin for threshold designs: status and message from their ``conditions`` report."""

    conditions: ConditionsReport

    @property
    def status(self) -> str:  # type: ignore[override]
        """``ok`` when every condition holds, else ``conditions-violated``."""
        return "ok" if self.conditions.all_hold else "conditions-violated"

    @property
    def message(self) -> str:
        """The violated conditions, if any."""
        violated = [c.name for c in self.conditions.violated]
        return "every condition holds" if not violated else "violated: " + "; ".join(violated)
