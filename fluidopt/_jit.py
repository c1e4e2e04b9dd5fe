"""Deferred numba compilation for the kernel's functions (policy and timing modules).

The policy modules are imported by the command line, threshold design and experiments, which
must not pay numba's import (about 0.5 s).  Their compiled functions are therefore marked with
:func:`kernel_function` and stay plain Python until :func:`materialize` (called when the kernel
module loads) replaces each marked function, in every module that names it, by one
``numba.njit(cache=True)`` dispatcher.  numba resolves a compiled function's callees from its
module's globals when it compiles, so the callers then link the dispatchers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])
_MARK = "_fluidopt_kernel_function"
_INLINE = "_fluidopt_inline"
_DISPATCHERS: dict[Callable[..., Any], Any] = {}


def kernel_function(function: F) -> F:
    """Mark ``function`` for compilation by :func:`materialize` (numba-compilable source)."""
    setattr(function, _MARK, True)
    return function


def selection_function(function: F) -> F:
    """Mark a policy's selection function: compiled like :func:`kernel_function`, inlined into the kernel.

    numba inlines it at its own IR level into the kernel's loop, so the 18 state arrays are not
    passed through a call each iteration (measured: about 10 % of the speed of vLLM v0 and Sarathi).
    """
    setattr(function, _INLINE, True)
    return kernel_function(function)


def step_function(function: F) -> F:
    """Mark a timing kind's step function for inlining into the kernel's loop (else as :func:`kernel_function`).

    For a step of a few operations (the affine kind's): inlined it costs what it would cost
    written in the loop, where a call costs about 10 % of the simulator's speed.  A step that
    walks tables (measured, predictor) stays a :func:`kernel_function`, called: inlining every
    kind's body into the loop made the loop itself slower (measured: 4-6 %).
    """
    setattr(function, _INLINE, True)
    return kernel_function(function)


def is_kernel_function(value: Any) -> bool:
    """Whether ``value`` is a marked function not yet compiled."""
    return callable(value) and getattr(value, _MARK, False) is True and value.__class__.__name__ == "function"


def dispatcher(function: Callable[..., Any]) -> Any:
    """The one numba dispatcher of a marked function (created on first request)."""
    if function not in _DISPATCHERS:
        from numba import njit

        if getattr(function, _INLINE, False):
            _DISPATCHERS[function] = njit(cache=True, inline="always")(function)
        else:
            _DISPATCHERS[function] = njit(cache=True)(function)
    return _DISPATCHERS[function]


def materialize(modules: Iterable[ModuleType]) -> None:
    """Replace every marked function named in ``modules`` by its dispatcher."""
    for module in modules:
        for name, value in list(vars(module).items()):
            if is_kernel_function(value):
                setattr(module, name, dispatcher(value))
