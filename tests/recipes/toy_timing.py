"""A toy timing kind, written as docs/ARCHITECTURE.md's recipe says: one module, one registry call.

Every step costs ``step_s`` plus ``per_token_s`` per token it processes (prompt tokens and one per
decode), whatever the KV: simple enough that its fluid equilibrium and limit are known by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from fluidopt._jit import step_function
from fluidopt.timing import AffinePiece
from fluidopt.timing.protocol import FluidBatch, StepTiming

KIND = "toy-per-token"
ITERATION_TIME_KEYS = ("step_s", "per_token_s")


@step_function
def step_toy(tcoef, ttable, kv, prefill, decodes, decode_kv, sequences, n_prefill, pchunk, pcached):
    """``step_s + per_token_s * (prompt tokens + decodes)``."""
    return tcoef[0] + tcoef[1] * float(prefill + decodes)


@dataclass(frozen=True)
class ToyTiming(StepTiming):
    """The toy kind (module docstring)."""

    step_s: float
    per_token_s: float
    fit: dict[str, Any] = field(default_factory=dict, compare=False)

    kind: ClassVar[str] = KIND
    exact_affine: ClassVar[bool] = False
    lp_refusal: ClassVar[str] = ""

    def prefill_terms(self, chunks: Any, cached: Any) -> np.ndarray:
        return np.zeros(0)

    def fluid_time(self, batch: FluidBatch, x: Any) -> Any:
        return self.step_s + self.per_token_s * np.asarray(x, dtype=float) * batch.tokens

    def affine_pieces(self) -> tuple[AffinePiece, ...]:
        return (AffinePiece(self.step_s, 0.0, self.per_token_s, self.per_token_s),)

    def kernel_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return np.array([self.step_s, self.per_token_s]), np.zeros((1, 1))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": KIND, "step_s": self.step_s, "per_token_s": self.per_token_s}

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str, fit: dict[str, Any] | None = None) -> ToyTiming:
        return cls(float(data["step_s"]), float(data["per_token_s"]))


TIMING = ToyTiming
STEP = step_toy
