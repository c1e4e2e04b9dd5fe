"""Validation of the number tables in a timing kind's ``[iteration_time]`` table."""

from __future__ import annotations

from typing import Any

from fluidopt.errors import InputError, reject_unknown_keys, require, require_finite_number


def number_tuple(values: Any, name: str) -> tuple[float, ...]:
    """An array of finite numbers (errors name ``name[i]``)."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise InputError(name, values, "must be an array of numbers")
    return tuple(require_finite_number(v, f"{name}[{i}]") for i, v in enumerate(values))


def coefficients(raw: Any, keys: tuple[str, ...], where: str) -> tuple[float, ...]:
    """The values of ``keys`` (all required) from the table ``raw``, in that order."""
    require(isinstance(raw, dict), where, raw, "must be a table")
    reject_unknown_keys(raw, keys, where)
    values = []
    for key in keys:
        require(key in raw, f"{where}.{key}", None, "is required")
        values.append(require_finite_number(raw[key], f"{where}.{key}"))
    return tuple(values)
