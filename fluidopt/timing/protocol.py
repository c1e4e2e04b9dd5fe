"""The one interface every GPU timing kind implements: how long one engine step takes.

A timing kind answers three questions, each from one place in its module:

- **A concrete batch** (the simulator's question): prefilling requests, each with the chunk of
  new prompt tokens it processes this step and the tokens it has cached, and decoding requests
  with the tokens each has cached.  The kind's *step function* (a numba-compilable scalar
  function, :data:`StepFunction`) takes the batch's aggregates and its prefills one by one; the
  compiled kernel calls it every iteration and :meth:`TimingModel.batch_time` calls the same
  function from Python, so the simulator and the Python API share one formula.
- **A fluid batch** (the fluid core's question): the equilibrium batch per unit of iteration
  time, :class:`FluidBatch`, every field linear in the scale ``x = dT``.  The kind evaluates it
  vectorised over ``x`` (:meth:`TimingModel.fluid_time`) and says, through
  :meth:`TimingModel.prefill_terms`, what each prefill chunk adds to the kind-specific
  ``terms`` of the fluid batch.
- **Its affine pieces** (the linear program's question): the pieces whose maximum is the model
  (``exact_affine``) or a convex surrogate of it, and whether an LP may stand in for the model
  at all (``lp_refusal``).

Kinds register in :mod:`fluidopt.timing.registry`; nothing outside :mod:`fluidopt.timing`
names a concrete kind.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

# The rate-weighted totals of a fluid batch: they scale with the rates and add up over classes.
LINEAR_FIELDS = (
    "tokens",
    "prefill_tokens",
    "decodes",
    "decode_kv",
    "kv_touched",
    "sequences",
    "memory",
    "in_system",
)

# ``step(tcoef, ttable, kv, prefill, decodes, decode_kv, sequences, n_prefill, pchunk, pcached) -> seconds``:
# kv = KV tokens the batch touches, prefill = prompt tokens processed, decodes = decoding requests,
# decode_kv = cached tokens the decodes read, sequences = requests in the batch; the first
# ``n_prefill`` entries of ``pchunk`` / ``pcached`` are the prefills' chunks and cached tokens.
StepFunction = Callable[..., float]


@dataclass(frozen=True)
class FluidBatch:
    """The equilibrium batch per unit of iteration time: every field is linear in ``x = dT``.

    With ``n_j = lambda_j x`` per stage, the batch processes ``x * tokens`` new tokens of which
    ``x * prefill_tokens`` are prompt tokens, holds ``x * decodes`` decoding requests reading
    ``x * decode_kv`` cached tokens, touches ``x * kv_touched`` KV tokens, runs ``x * sequences``
    requests, keeps ``x * memory`` KV tokens resident and ``x * in_system`` requests holding KV.
    ``terms`` are the timing kind's own rate-weighted prefill totals
    (:meth:`TimingModel.prefill_terms`), linear in ``x`` too.
    """

    tokens: float
    prefill_tokens: float
    decodes: float
    decode_kv: float
    kv_touched: float
    sequences: float
    memory: float
    in_system: float
    prefill_per_class: np.ndarray
    stages_per_class: np.ndarray
    terms: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def scaled(self, theta: float) -> FluidBatch:
        """The batch of the mix with every rate multiplied by ``theta``."""
        return replace(
            self,
            **{name: getattr(self, name) * theta for name in LINEAR_FIELDS},
            terms=np.asarray(self.terms, dtype=float) * theta,
        )

    @staticmethod
    def combine(units: list[FluidBatch], counts: np.ndarray) -> FluidBatch:
        """The batch holding ``counts[j]`` requests per stage of class j (unit batches weighted)."""
        totals = {f: float(sum(c * getattr(u, f) for c, u in zip(counts, units))) for f in LINEAR_FIELDS}
        terms = np.zeros(max((len(u.terms) for u in units), default=0))
        for c, u in zip(counts, units):
            terms = terms + c * np.asarray(u.terms, dtype=float)
        return FluidBatch(
            **totals,
            prefill_per_class=np.concatenate([u.prefill_per_class for u in units]),
            stages_per_class=np.concatenate([u.stages_per_class for u in units]),
            terms=terms,
        )

    def iteration_time(self, profile: Any, x: float | np.ndarray) -> float | np.ndarray:
        """``tau`` of the batch scaled by ``x`` under ``profile``'s timing (vectorised over ``x``)."""
        return profile.timing.fluid_time(self, x)


@runtime_checkable
class TimingModel(Protocol):
    """What every timing kind provides (module docstring).

    Attributes
    ----------
    kind : str
        The name in a profile's ``[iteration_time] kind = ...`` (class attribute).
    exact_affine : bool
        True when :meth:`affine_pieces` *is* the model: the closed forms and the LP are exact.
    lp_refusal : str
        Non-empty when no linear program may stand in for the model (the reason, for the error).
    fit : dict
        Provenance and fit quality (ignored by equality).

    """

    kind: ClassVar[str]
    exact_affine: ClassVar[bool]
    lp_refusal: ClassVar[str]

    @property
    def fit(self) -> dict[str, Any]:
        """Provenance and fit quality."""
        ...

    def batch_time(self, chunks: Any = (), cached: Any = (), decode_cached: Any = ()) -> float:
        """Seconds of one step: prefill ``chunks`` on ``cached`` tokens, decodes with ``decode_cached`` tokens."""
        ...

    def prefill_terms(self, chunks: Any, cached: Any) -> np.ndarray:
        """The kind's additive fluid terms of one request's prefill chunks (summed over its chunks)."""
        ...

    def fluid_time(self, batch: FluidBatch, x: Any) -> Any:
        """``tau`` of ``batch`` scaled by ``x`` (vectorised over ``x``)."""
        ...

    def affine_pieces(self) -> tuple[Any, ...]:
        """Affine pieces (:class:`~fluidopt.timing.affine.AffinePiece`): the model or its convex surrogate."""
        ...

    def kernel_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """``(tcoef, ttable)``: the flat coefficients and the table the kind's step function reads."""
        ...

    def to_dict(self) -> dict[str, Any]:
        """The ``[iteration_time]`` table of a profile TOML."""
        ...


def batch_aggregates(chunks: Any, cached: Any, decode_cached: Any) -> tuple[Any, ...]:
    """The step function's batch arguments (after ``tcoef, ttable``) for a concrete batch.

    A prefill chunk touches its cached tokens plus the chunk; a decode with ``k`` cached tokens
    touches ``k + 1`` (the token it writes) and reads ``k``.  Counts stay floats here (a fluid
    caller may pass fractional ones); the kernel passes whole numbers.
    """
    chunk = np.asarray(chunks, dtype=float).reshape(-1)
    prefix = np.asarray(cached, dtype=float).reshape(-1)
    decode = np.asarray(decode_cached, dtype=float).reshape(-1)
    if prefix.size != chunk.size:
        raise ValueError(f"cached has {prefix.size} entries for {chunk.size} prefill chunks")
    kv = float(chunk.sum() + prefix.sum() + decode.sum() + decode.size)
    return (
        kv,
        float(chunk.sum()),
        int(decode.size),
        float(decode.sum()),
        int(chunk.size + decode.size),
        int(chunk.size),
        chunk,
        prefix,
    )


class StepTiming:
    """Mixin: ``batch_time`` from the kind's own step function (``STEP`` of the kind's module)."""

    def kernel_arrays(self) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - every kind defines it
        raise NotImplementedError

    def batch_time(self, chunks: Any = (), cached: Any = (), decode_cached: Any = ()) -> float:
        """Seconds of one concrete step: the simulator's own formula (the kind's step function), from Python.

        Parameters
        ----------
        chunks, cached : sequences of int
            For each prefilling request: new tokens this step and tokens already cached.
        decode_cached : sequence of int
            For each decoding request: tokens already cached.

        """
        step = sys.modules[type(self).__module__].STEP  # type: ignore[attr-defined]
        tcoef, ttable = self.kernel_arrays()
        return float(python_step(step)(tcoef, ttable, *batch_aggregates(chunks, cached, decode_cached)))


def python_step(step: StepFunction) -> StepFunction:
    """The plain-Python form of a step function (its source, whether or not numba compiled it)."""
    return getattr(step, "py_func", step)
