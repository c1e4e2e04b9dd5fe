"""GPU profiles: a KV-cache capacity and a timing object (:mod:`fluidopt.timing`).

A profile is one replica of one model on one GPU: how many KV tokens it holds and how long an
engine step takes.  The step time is a timing object of any registered kind; ``pieces`` are
the affine pieces the closed forms and the linear program read (the model itself for the
``affine`` kind, a convex surrogate for the others).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from fluidopt.errors import InputError, reject_unknown_keys, require, require_finite_number, require_whole_number
from fluidopt.timing import PIECE_KEYS, AffinePiece, TimingModel, timing_from_dict, timing_of_pieces
from fluidopt.tomlio import SCHEMA_VERSION, parse_toml, read_toml

MAX_KV_CAPACITY_TOKENS = 10**15
PROFILE_KEYS = (
    "name",
    "kv_capacity_tokens",
    "description",
    "iteration_time",
    "fit",
    "block_tokens",
    "gpu",
    "gpu_memory_gib",
    "schema_version",
)
__all__ = ["PIECE_KEYS", "AffinePiece", "GPUProfile", "linear_profile", "load_profile", "preset_profile"]


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
        An ``affine`` timing's pieces (at least one) when ``timing`` is not given; with a
        ``timing`` they are computed from it (:meth:`~fluidopt.timing.TimingModel.affine_pieces`).
    description : str
        Provenance: where the numbers come from.
    fit : dict
        Optional fit quality and sources (for example ``{"mape": 0.02, "r2": 0.999}``).
    timing : TimingModel, optional
        The step time (:mod:`fluidopt.timing`); default: the ``affine`` timing of ``pieces``.
        The simulator and the fluid core ask it; ``pieces`` are what the closed forms and the
        linear program read.
    block_tokens : int
        KV-cache block size the capacity was planned in (1 = token-exact; Vidur: 16).
    gpu : str
        The GPU's name, as the engine reports it or fluidopt's (``a100-80gb``); empty when unknown.
    gpu_memory_gib : float, optional
        Memory of one GPU in GiB: the engines' own defaults depend on it
        (:mod:`fluidopt.answers.engine_defaults`).  None when unknown.

    """

    name: str
    kv_capacity_tokens: int
    pieces: tuple[AffinePiece, ...] = ()
    description: str = ""
    fit: dict[str, Any] = field(default_factory=dict, compare=False)
    timing: TimingModel = None  # type: ignore[assignment]  # filled from pieces when not given
    block_tokens: int = 1
    gpu: str = ""
    gpu_memory_gib: float | None = None

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
        require(isinstance(self.gpu, str), "gpu", self.gpu, "must be a string (the GPU's name)")
        if self.gpu_memory_gib is not None:
            memory = require_finite_number(self.gpu_memory_gib, "gpu_memory_gib")
            require(0 < memory <= 10_000, "gpu_memory_gib", self.gpu_memory_gib, "must be in (0, 10000] GiB")
            object.__setattr__(self, "gpu_memory_gib", float(memory))
        if self.timing is None:
            object.__setattr__(self, "timing", timing_of_pieces(self.pieces))
        elif not self.pieces:
            object.__setattr__(self, "pieces", self.timing.affine_pieces())
        object.__setattr__(self, "pieces", tuple(self.pieces))

    # ----------------------------------------------------------- evaluation
    @property
    def is_single_piece(self) -> bool:
        """True when the iteration time is one affine piece."""
        return len(self.pieces) == 1

    @property
    def timing_kind(self) -> str:
        """The name of the timing's kind (:func:`fluidopt.timing.timing_kinds`)."""
        return self.timing.kind

    @property
    def is_paper_linear(self) -> bool:
        """True for the paper's model ``tau = d0 + d1 K`` (one piece, no prefill or sequence cost)."""
        piece = self.pieces[0]
        return (
            self.timing.exact_affine
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
        This evaluates the affine pieces (for a non-affine timing, its surrogate): aggregate
        counts do not say how the tokens split into chunks and decodes.  Use :meth:`batch_time`
        for one batch.

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
        return self.timing.batch_time(chunks, cached, decode_cached)

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
            self.gpu,
            self.gpu_memory_gib,
        )

    # ------------------------------------------------------------------ I/O
    def to_dict(self) -> dict[str, Any]:
        """Mapping in the TOML schema (first piece inline, further ones under ``pieces``)."""
        timing = self.timing.to_dict()
        out: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "name": self.name,
            "kv_capacity_tokens": self.kv_capacity_tokens,
        }
        if self.block_tokens != 1:
            out["block_tokens"] = self.block_tokens
        if self.gpu:
            out["gpu"] = self.gpu
        if self.gpu_memory_gib is not None:
            out["gpu_memory_gib"] = self.gpu_memory_gib
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
        fit = data.get("fit", {})
        fit = dict(fit) if isinstance(fit, dict) else {}
        model = timing_from_dict(timing, f"{source}: iteration_time", fit.get("components"))
        return cls(
            name=_text(data.get("name", "profile"), f"{source}: name"),
            kv_capacity_tokens=data["kv_capacity_tokens"],
            description=_text(data.get("description", ""), f"{source}: description"),
            fit=fit,
            timing=model,
            block_tokens=data.get("block_tokens", 1),
            gpu=data.get("gpu", ""),
            gpu_memory_gib=data.get("gpu_memory_gib"),
        )


def _text(value: Any, where: str) -> str:
    """A string field of a profile file; a number or a table there is an error naming the field."""
    require(isinstance(value, str), where, value, "must be a string (in quotes in TOML)")
    return value


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
