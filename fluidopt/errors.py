"""Exceptions raised by fluidopt for invalid input.

Every validation failure raises :class:`InputError`, which names the offending field and
value so that the CLI can print one clear line without a traceback.
"""

from __future__ import annotations

from typing import Any


class InputError(ValueError):
    """Invalid user input: a field had a value outside its domain.

    Parameters
    ----------
    field : str
        Dotted name of the field (for example ``"classes[0].rate_per_s"``).
    value : Any
        The rejected value.
    reason : str
        Why the value is rejected, phrased as a requirement ("must be > 0").

    """

    def __init__(self, field: str, value: Any, reason: str) -> None:
        self.field = field
        self.value = value
        self.reason = reason
        super().__init__(f"{field} = {value!r}: {reason}")


class SolverError(RuntimeError):
    """An optimisation solver failed on a well-formed problem (names the solver and its status)."""


class SolverFallbackWarning(UserWarning):
    """The preferred LP solver did not settle a problem and a fallback did (the result names which)."""


def reject_unknown_keys(table: dict[str, Any], known: tuple[str, ...], where: str) -> None:
    """Raise :class:`InputError` for the first key of ``table`` not in ``known``, with a did-you-mean.

    A misspelt key in a TOML file would otherwise be silently ignored (and its value replaced by a
    default), so unknown keys are errors.
    """
    import difflib

    for key in table:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(known)}"
            raise InputError(f"{where}.{key}", table[key], "is not a known key" + hint)


def require(condition: bool, field: str, value: Any, reason: str) -> None:
    """Raise :class:`InputError` unless ``condition`` holds."""
    if not condition:
        raise InputError(field, value, reason)


def require_finite_number(value: Any, field: str) -> float:
    """Return ``value`` as a float, or raise if it is not a finite real number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            import numpy as np

            if isinstance(value, np.generic) and np.isreal(value):
                value = float(value)
            else:
                raise TypeError
        except TypeError:
            raise InputError(field, value, "must be a number") from None
    number = float(value)
    if number != number or number in (float("inf"), float("-inf")):
        raise InputError(field, value, "must be a finite number")
    return number


def require_whole_number(value: Any, field: str, minimum: int) -> int:
    """Return ``value`` as an int >= ``minimum``, or raise if it is not one."""
    number = require_finite_number(value, field)
    if number != int(number):
        raise InputError(field, value, "must be a whole number")
    if number < minimum:
        raise InputError(field, value, f"must be >= {minimum}")
    return int(number)
