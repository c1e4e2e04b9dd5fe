"""Timing kind ``affine``: the iteration time is the maximum of affine pieces.

``tau = max_p (base_s + per_kv_token_s * K + per_prefill_token_s * P + per_sequence_s * B)``

with K the KV tokens the batch touches (a prefill counts its cached tokens plus its chunk, a
decode at stage s counts ``l + s``), P the prompt tokens processed and B the sequences.  The
paper's model (arXiv:2504.11320, section 2) is one piece with ``per_prefill_token_s =
per_sequence_s = 0``: ``tau = d0 + d1 K``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from fluidopt._jit import step_function
from fluidopt.errors import reject_unknown_keys, require, require_finite_number
from fluidopt.timing.protocol import FluidBatch, StepTiming

KIND = "affine"
PIECE_KEYS = ("base_s", "per_kv_token_s", "per_prefill_token_s", "per_sequence_s")
ITERATION_TIME_KEYS = (*PIECE_KEYS, "pieces")


@dataclass(frozen=True)
class AffinePiece:
    """One affine piece of the iteration-time model (all coefficients >= 0, in seconds)."""

    base_s: float
    per_kv_token_s: float
    per_prefill_token_s: float = 0.0
    per_sequence_s: float = 0.0

    def __post_init__(self) -> None:
        for key in PIECE_KEYS:
            value = require_finite_number(getattr(self, key), f"iteration_time.{key}")
            require(value >= 0, f"iteration_time.{key}", value, "must be >= 0")
            object.__setattr__(self, key, value)

    def time(self, kv_tokens: Any, prefill_tokens: Any = 0.0, sequences: Any = 0.0) -> Any:
        """Iteration time of this piece for the given batch content."""
        return (
            self.base_s
            + self.per_kv_token_s * np.asarray(kv_tokens, dtype=float)
            + self.per_prefill_token_s * np.asarray(prefill_tokens, dtype=float)
            + self.per_sequence_s * np.asarray(sequences, dtype=float)
        )

    def to_dict(self) -> dict[str, float]:
        """Mapping with the four TOML keys."""
        return {key: getattr(self, key) for key in PIECE_KEYS}


@step_function
def step_affine(tcoef, ttable, kv, prefill, decodes, decode_kv, sequences, n_prefill, pchunk, pcached):
    """The maximum over the pieces laid out four coefficients each in ``tcoef`` (module docstring)."""
    tau = 0.0
    for p in range(tcoef.size // 4):
        value = tcoef[4 * p] + tcoef[4 * p + 1] * kv + tcoef[4 * p + 2] * prefill + tcoef[4 * p + 3] * sequences
        if value > tau:
            tau = value
    return tau


@dataclass(frozen=True)
class AffineTiming(StepTiming):
    """The maximum of :class:`AffinePiece` s (module docstring)."""

    pieces: tuple[AffinePiece, ...]
    fit: dict[str, Any] = field(default_factory=dict, compare=False)

    kind: ClassVar[str] = KIND
    exact_affine: ClassVar[bool] = True
    lp_refusal: ClassVar[str] = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "pieces", tuple(self.pieces))
        require(len(self.pieces) > 0, "iteration_time", [], "needs at least one affine piece")
        require(
            max(p.base_s for p in self.pieces) > 0,
            "iteration_time.base_s",
            [p.base_s for p in self.pieces],
            "must be > 0 (an empty batch cannot take zero time)",
        )

    def coefficient_matrix(self) -> np.ndarray:
        """Array of shape (pieces, 4): base, per KV token, per prefill token, per sequence."""
        return np.array([[getattr(p, k) for k in PIECE_KEYS] for p in self.pieces], dtype=float)

    def prefill_terms(self, chunks: Any, cached: Any) -> np.ndarray:
        """No terms of its own: the pieces read only the fluid batch's token and sequence totals."""
        return np.zeros(0)

    def fluid_time(self, batch: FluidBatch, x: Any) -> Any:
        """The maximum over the pieces of the scaled batch."""
        x = np.asarray(x, dtype=float)
        times = [
            p.base_s
            + x * (p.per_kv_token_s * batch.kv_touched + p.per_prefill_token_s * batch.prefill_tokens)
            + x * p.per_sequence_s * batch.sequences
            for p in self.pieces
        ]
        result = np.maximum.reduce(times) if len(times) > 1 else times[0]
        return float(result) if np.ndim(result) == 0 else result

    def affine_pieces(self) -> tuple[AffinePiece, ...]:
        """The pieces themselves."""
        return self.pieces

    def kernel_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """The pieces' coefficients, four per piece, and an unused table."""
        return np.ascontiguousarray(self.coefficient_matrix().reshape(-1)), np.zeros((1, 1))

    def to_dict(self) -> dict[str, Any]:
        """First piece inline, further ones under ``pieces``."""
        out = dict[str, Any](self.pieces[0].to_dict())
        if len(self.pieces) > 1:
            out["pieces"] = [p.to_dict() for p in self.pieces[1:]]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str, fit: dict[str, Any] | None = None) -> AffineTiming:
        """Build from an ``[iteration_time]`` table with the piece keys (and ``[[pieces]]``)."""
        reject_unknown_keys(data, (*PIECE_KEYS, "pieces", "kind"), where)
        first = {key: value for key, value in data.items() if key not in ("pieces", "kind")}
        pieces = [piece_from_dict(first, where)]
        extra = data.get("pieces", [])
        require(isinstance(extra, list), f"{where}.pieces", extra, "must be an array of tables")
        for index, raw in enumerate(extra):
            pieces.append(piece_from_dict(raw, f"{where}.pieces[{index}]"))
        return cls(tuple(pieces), dict(fit or {}))


def piece_from_dict(raw: Any, where: str) -> AffinePiece:
    """One piece from its TOML table (``base_s`` required, the rest default to 0)."""
    require(isinstance(raw, dict), where, raw, "must be a table")
    reject_unknown_keys(raw, PIECE_KEYS, where)
    require("base_s" in raw, f"{where}.base_s", None, "is required")
    values = {}
    for key in PIECE_KEYS:
        value = raw.get(key, 0.0)
        number = require_finite_number(value, f"{where}.{key}")
        require(number >= 0, f"{where}.{key}", value, "must be >= 0")
        values[key] = number
    return AffinePiece(**values)


TIMING = AffineTiming
STEP = step_affine
