"""The registry of timing kinds: one module per kind, in the kernel's dispatch order.

Each module of :data:`TIMING_MODULE_NAMES` (under :mod:`fluidopt.timing`) defines ``KIND`` (the
name in a profile's ``[iteration_time] kind``), ``ITERATION_TIME_KEYS`` (the keys its table
takes), ``TIMING`` (the frozen dataclass implementing
:class:`~fluidopt.timing.protocol.TimingModel`) and ``STEP`` (its step function, marked with
:func:`fluidopt._jit.kernel_function`).  The simulator's kernel binds the step functions in this
order and dispatches on the index (:func:`kind_index`) the way it dispatches over policies.

Adding a timing kind: write ``fluidopt/timing/<name>.py`` after the pattern of ``affine.py`` and
add its module name to :data:`TIMING_MODULE_NAMES` (or, from outside the package, call
:func:`register_timing_module` before the simulator's kernel is first imported).
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import Any

from fluidopt._jit import kernel_function
from fluidopt.errors import InputError, require

# The registry: one module name per timing kind, in the kernel's dispatch order.
TIMING_MODULE_NAMES = ("affine", "measured", "predictor", "roofline", "grid")
MAX_TIMING_KINDS = 8  # step-function slots the kernel unrolls (fluidopt.sim.kernel)

TIMING_MODULES: list[ModuleType] = [importlib.import_module(f"fluidopt.timing.{name}") for name in TIMING_MODULE_NAMES]


def register_timing_module(module: ModuleType) -> None:
    """Add a timing kind defined outside the package (``KIND``, ``TIMING``, ``STEP``; see the module docstring).

    Register before :mod:`fluidopt.sim.kernel` is imported: the kernel binds the step functions
    it dispatches over once, when it loads.
    """
    for attribute in ("KIND", "TIMING", "STEP"):
        require(hasattr(module, attribute), f"timing module {module.__name__}", attribute, "is missing")
    require(module.KIND not in timing_kinds(), "timing kind", module.KIND, "is already registered")
    require(len(TIMING_MODULES) < MAX_TIMING_KINDS, "timing kinds", len(TIMING_MODULES), "no kernel slot left")
    TIMING_MODULES.append(module)


def timing_kinds() -> tuple[str, ...]:
    """The registered kinds' names, in dispatch order."""
    return tuple(module.KIND for module in TIMING_MODULES)


def timing_class(kind: str) -> Any:
    """The dataclass of ``kind``; an unknown kind is an error naming the known ones."""
    for module in TIMING_MODULES:
        if module.KIND == kind:
            return module.TIMING
    raise InputError("iteration_time.kind", kind, f"must be one of {', '.join(timing_kinds())}")


def kind_index(timing: Any) -> int:
    """The kernel's index of ``timing``'s kind."""
    kinds = timing_kinds()
    if timing.kind not in kinds:
        raise InputError("iteration_time.kind", timing.kind, f"is not a registered timing kind ({', '.join(kinds)})")
    return kinds.index(timing.kind)


def timing_from_dict(data: dict[str, Any], where: str, fit: dict[str, Any] | None = None) -> Any:
    """The timing object of a profile's ``[iteration_time]`` table (``kind`` defaults to ``affine``).

    A table that mixes one kind's keys with another's is refused with an error naming both.
    """
    kind = data.get("kind", "affine")
    model = timing_class(kind) if isinstance(kind, str) else timing_class(repr(kind))
    foreign = {key for module in TIMING_MODULES if module.KIND != kind for key in _own_keys(module)}
    mixed = sorted(set(data) & foreign - set(_own_keys_of(kind)))
    require(
        not mixed,
        f"{where}",
        mixed,
        f"mixes incompatible timing kinds: kind = {kind!r} does not take these keys of other kinds",
    )
    return model.from_dict(data, where, fit)


def _own_keys(module: ModuleType) -> tuple[str, ...]:
    return tuple(getattr(module, "ITERATION_TIME_KEYS", ()))


def _own_keys_of(kind: str) -> tuple[str, ...]:
    for module in TIMING_MODULES:
        if module.KIND == kind:
            return _own_keys(module)
    return ()


def timing_of_pieces(pieces: Any, fit: dict[str, Any] | None = None) -> Any:
    """The timing whose step time is the maximum of the affine ``pieces`` (kind ``affine``)."""
    return timing_class("affine")(tuple(pieces), dict(fit or {}))


def compiled_step_functions() -> tuple[Any, ...]:
    """Compile the timing modules' kernel functions (numba) and return their step functions in order."""
    from fluidopt._jit import materialize

    materialize([*TIMING_MODULES, sys.modules[__name__]])
    return tuple(module.STEP for module in TIMING_MODULES)


@kernel_function
def step_none(tcoef, ttable, kv, prefill, decodes, decode_kv, sequences, n_prefill, pchunk, pcached):
    """The kernel's unused step-function slots (never called: every profile's kind is registered)."""
    return 0.0
