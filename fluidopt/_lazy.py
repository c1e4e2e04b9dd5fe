"""Lazy re-exports for package ``__init__`` modules (PEP 562).

A package lists ``name -> module`` and gets a module-level ``__getattr__`` that imports the
module on first use, so ``import fluidopt`` costs little more than numpy and every heavy
library (cvxpy, scipy, numba, sympy, matplotlib) is imported only where it is used, with the
cyclic garbage collector paused (:mod:`fluidopt._gc`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from fluidopt._gc import collection_paused


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` resolving ``exports[name]`` (a module path) on first access."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        with collection_paused():  # a heavy import builds long-lived objects only
            value = getattr(importlib.import_module(module), name)
        globals_of_package = importlib.import_module(package).__dict__
        globals_of_package[name] = value  # cache: later look-ups skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted(set(importlib.import_module(package).__dict__) | set(exports))

    return __getattr__, __dir__
