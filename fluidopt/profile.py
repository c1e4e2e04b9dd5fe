"""GPU profiles: KV-cache capacity and an iteration-time model.

The iteration time of a batch is the maximum over affine pieces of

``tau = base_s + per_kv_token_s * K + per_prefill_token_s * P + per_sequence_s * B``

where K is the number of KV tokens the batch touches (a prefill counts its prompt, a request
at decode stage s counts ``l + s``), P the number of prefill tokens and B the number of
sequences.  The paper's model (arXiv:2504.11320, section 2) is one piece with
``per_prefill_token_s = per_sequence_s = 0``: ``tau = d0 + d1 K``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from fluidopt.errors import InputError, reject_unknown_keys, require, require_finite_number, require_whole_number
from fluidopt.timing import MeasuredTiming, affine_surrogate
from fluidopt.tomlio import SCHEMA_VERSION, parse_toml, read_toml
from fluidopt.vidur_predictor import VidurPredictorTiming

PIECE_KEYS = ("base_s", "per_kv_token_s", "per_prefill_token_s", "per_sequence_s")
TIMING_KINDS = ("affine", "measured", "vidur-predictor")
# Timing kinds given as tables, with what their [iteration_time] takes (for the mixed-keys error).
TABLE_TIMINGS: dict[str, tuple[Any, str]] = {
    "measured": (MeasuredTiming, "tokens / prefill_attention / decode_attention tables"),
    "vidur-predictor": (VidurPredictorTiming, "lookup tables"),
}
MAX_KV_CAPACITY_TOKENS = 10**15
PROFILE_KEYS = ("name", "kv_capacity_tokens", "description", "iteration_time", "fit", "block_tokens", "schema_version")


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


@dataclass(frozen=True)
class GPUProfile:
    """A GPU (one replica) serving one model: KV capacity and iteration time.

    Parameters
    ----------
    name : str
        Label.
    kv_capacity_tokens : int
        KV-cache capacity ``C`` in tokens.
    pieces : tuple of AffinePiece
        Iteration time is the maximum of these affine pieces (at least one).
    description : str
        Provenance: where the numbers come from.
    fit : dict
        Optional fit quality and sources (for example ``{"mape": 0.02, "r2": 0.999}``).
    timing : MeasuredTiming or VidurPredictorTiming, optional
        A measured, attention-aware iteration-time model (:mod:`fluidopt.timing`).  When given,
        the simulator and the fixed-point equilibrium use it, and ``pieces`` (computed from it
        when left empty) is only its convex affine surrogate for the linear program's duals.
    block_tokens : int
        KV-cache block size the capacity was planned in (1 = token-exact; Vidur: 16).

    """

    name: str
    kv_capacity_tokens: int
    pieces: tuple[AffinePiece, ...] = ()
    description: str = ""
    fit: dict[str, Any] = field(default_factory=dict, compare=False)
    timing: MeasuredTiming | VidurPredictorTiming | None = None
    block_tokens: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "kv_capacity_tokens", require_whole_number(self.kv_capacity_tokens, "kv_capacity_tokens", 1)
        )
        require(
            self.kv_capacity_tokens <= MAX_KV_CAPACITY_TOKENS,
            "kv_capacity_tokens",
            self.kv_capacity_tokens,
            f"must be at most {MAX_KV_CAPACITY_TOKENS:.0e} tokens (no GPU holds more; the simulator counts in int64)",
        )
        object.__setattr__(self, "block_tokens", require_whole_number(self.block_tokens, "block_tokens", 1))
        if self.timing is not None and not self.pieces:
            object.__setattr__(self, "pieces", tuple(AffinePiece(*row) for row in affine_surrogate(self.timing)))
        object.__setattr__(self, "pieces", tuple(self.pieces))
        require(len(self.pieces) > 0, "iteration_time", [], "needs at least one affine piece")
        require(
            max(p.base_s for p in self.pieces) > 0,
            "iteration_time.base_s",
            [p.base_s for p in self.pieces],
            "must be > 0 (an empty batch cannot take zero time)",
        )

    # ----------------------------------------------------------- evaluation
    @property
    def is_single_piece(self) -> bool:
        """True when the iteration time is one affine piece."""
        return len(self.pieces) == 1

    @property
    def timing_kind(self) -> str:
        """The iteration-time kind: ``affine``, ``measured`` or ``vidur-predictor``."""
        return "affine" if self.timing is None else getattr(self.timing, "kind", "measured")

    @property
    def is_measured(self) -> bool:
        """True when the iteration time is a measured (non-affine) model."""
        return self.timing is not None

    @property
    def is_paper_linear(self) -> bool:
        """True for the paper's model ``tau = d0 + d1 K`` (one piece, no prefill or sequence cost)."""
        piece = self.pieces[0]
        return (
            not self.is_measured
            and self.is_single_piece
            and piece.per_prefill_token_s == 0
            and piece.per_sequence_s == 0
        )

    def coefficient_matrix(self) -> np.ndarray:
        """Array of shape (pieces, 4): base, per KV token, per prefill token, per sequence."""
        return np.array([[getattr(p, k) for k in PIECE_KEYS] for p in self.pieces], dtype=float)

    def iteration_time(self, kv_tokens: Any, prefill_tokens: Any = 0.0, sequences: Any = 0.0) -> Any:
        """Iteration time of a batch: the maximum over the affine pieces.

        Parameters
        ----------
        kv_tokens : float or array
            KV tokens touched by the batch (prefills count their prompt).
        prefill_tokens : float or array
            Prompt tokens processed in the batch.
        sequences : float or array
            Sequences in the batch.

        Notes
        -----
        For a measured profile this evaluates its affine surrogate: aggregate counts do not say
        how the tokens split into chunks and decodes.  Use :meth:`batch_time` for one batch.

        """
        times = [p.time(kv_tokens, prefill_tokens, sequences) for p in self.pieces]
        result = np.maximum.reduce(times) if len(times) > 1 else times[0]
        return float(result) if np.ndim(result) == 0 else result

    def batch_time(self, chunks: Any = (), cached: Any = (), decode_cached: Any = ()) -> float:
        """Iteration time of one concrete batch (the simulator's rule).

        Parameters
        ----------
        chunks, cached : sequences of int
            For each prefilling request: prompt tokens processed this iteration and already cached.
        decode_cached : sequence of int
            For each decoding request: tokens already cached (the KV it reads).

        """
        if self.timing is not None:
            return self.timing.batch_time(chunks, cached, decode_cached)
        chunks = np.asarray(chunks, dtype=float)
        cached = np.asarray(cached, dtype=float)
        decode_cached = np.asarray(decode_cached, dtype=float)
        kv = float(chunks.sum() + cached.sum() + decode_cached.sum() + decode_cached.size)
        return float(self.iteration_time(kv, float(chunks.sum()), float(chunks.size + decode_cached.size)))

    def with_capacity(self, kv_capacity_tokens: int) -> GPUProfile:
        """The same profile with another KV capacity."""
        return GPUProfile(
            self.name,
            kv_capacity_tokens,
            self.pieces,
            self.description,
            dict(self.fit),
            self.timing,
            self.block_tokens,
        )

    # ------------------------------------------------------------------ I/O
    def to_dict(self) -> dict[str, Any]:
        """Mapping in the TOML schema (first piece inline, further ones under ``pieces``)."""
        timing: dict[str, Any]
        if self.timing is not None:
            timing = self.timing.to_dict()
        else:
            timing = dict[str, Any](self.pieces[0].to_dict())
            if len(self.pieces) > 1:
                timing["pieces"] = [p.to_dict() for p in self.pieces[1:]]
        out: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "name": self.name,
            "kv_capacity_tokens": self.kv_capacity_tokens,
        }
        if self.block_tokens != 1:
            out["block_tokens"] = self.block_tokens
        if self.description:
            out["description"] = self.description
        out["iteration_time"] = timing
        if self.fit:
            out["fit"] = dict(self.fit)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "profile") -> GPUProfile:
        """Build a profile from a mapping in the TOML schema."""
        require(isinstance(data, dict), source, type(data).__name__, "must be a table")
        reject_unknown_keys(data, PROFILE_KEYS, source)
        require("kv_capacity_tokens" in data, f"{source}: kv_capacity_tokens", None, "is required")
        timing = data.get("iteration_time")
        require(isinstance(timing, dict), f"{source}: iteration_time", timing, "must be a table [iteration_time]")
        assert isinstance(timing, dict)  # checked above
        kind = timing.get("kind", "affine")
        require(kind in TIMING_KINDS, f"{source}: iteration_time.kind", kind, f"must be one of {TIMING_KINDS}")
        fit = data.get("fit", {})
        fit = dict(fit) if isinstance(fit, dict) else {}
        measured: MeasuredTiming | VidurPredictorTiming | None = None
        pieces: list[AffinePiece] = []
        if kind in TABLE_TIMINGS:
            model, takes = TABLE_TIMINGS[kind]
            mixed = [key for key in (*PIECE_KEYS, "pieces") if key in timing]
            require(
                not mixed,
                f"{source}: iteration_time",
                mixed,
                f"mixes incompatible timing kinds: kind = {kind!r} takes {takes}, not affine keys",
            )
            measured = model.from_dict(timing, f"{source}: iteration_time", fit.get("components"))
        else:
            mixed = [key for key in ("tokens", "prefill_attention", "decode_attention", "layers") if key in timing]
            require(
                not mixed,
                f"{source}: iteration_time",
                mixed,
                "mixes incompatible timing kinds: measured tables need kind = 'measured' and no affine keys",
            )
            reject_unknown_keys(timing, (*PIECE_KEYS, "pieces", "kind"), f"{source}: iteration_time")
            first = {key: value for key, value in timing.items() if key not in ("pieces", "kind")}
            pieces = [_piece_from_dict(first, f"{source}: iteration_time")]
            extra = timing.get("pieces", [])
            require(isinstance(extra, list), f"{source}: iteration_time.pieces", extra, "must be an array of tables")
            for index, raw in enumerate(extra):
                pieces.append(_piece_from_dict(raw, f"{source}: iteration_time.pieces[{index}]"))
        return cls(
            name=str(data.get("name", "profile")),
            kv_capacity_tokens=data["kv_capacity_tokens"],
            pieces=tuple(pieces),
            description=str(data.get("description", "")),
            fit=fit,
            timing=measured,
            block_tokens=data.get("block_tokens", 1),
        )


def _piece_from_dict(raw: Any, where: str) -> AffinePiece:
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


def linear_profile(name: str, kv_capacity_tokens: int, base_s: float, per_kv_token_s: float) -> GPUProfile:
    """The paper's linear model ``tau = d0 + d1 K`` with capacity ``C``."""
    return GPUProfile(name, kv_capacity_tokens, (AffinePiece(base_s, per_kv_token_s),))


# ---------------------------------------------------------------- presets
def _preset_dir() -> Any:
    return resources.files("fluidopt").joinpath("data", "profiles")


def profile_presets() -> list[str]:
    """Names of the packaged GPU profile presets."""
    return sorted(p.name[:-5] for p in _preset_dir().iterdir() if p.name.endswith(".toml"))


def preset_profile(name: str) -> GPUProfile:
    """Load a packaged profile preset by name (see :func:`profile_presets`)."""
    if name not in profile_presets():
        raise InputError("profile", name, f"unknown preset; choose one of {', '.join(profile_presets())}")
    text = _preset_dir().joinpath(f"{name}.toml").read_text(encoding="utf-8")
    return GPUProfile.from_dict(parse_toml(text, source=f"preset {name}"), source=f"preset {name}")


def load_profile(spec: str | os.PathLike[str] | GPUProfile, *, kv_capacity_tokens: int | None = None) -> GPUProfile:
    """Resolve a profile from a preset name or a TOML path, optionally overriding its capacity."""
    if isinstance(spec, GPUProfile):
        profile = spec
    else:
        text = str(spec)
        path = Path(text)
        if text.endswith(".toml") or path.exists():
            profile = GPUProfile.from_dict(read_toml(path), source=str(path))
        else:
            profile = preset_profile(text)
    if kv_capacity_tokens is not None:
        profile = profile.with_capacity(kv_capacity_tokens)
    return profile
