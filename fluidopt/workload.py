"""Request classes and workloads.

A workload is a set of request classes, each with a prefill (prompt) length ``l_j``, an output
(decode) length ``l'_j`` and a Poisson arrival rate ``lambda_j`` (Ao, Luo, Simchi-Levi, Wang,
"Optimizing LLM Inference: Fluid-Guided Online Scheduling with Memory Constraints",
arXiv:2504.11320, section 2).  Workloads come from TOML files, packaged presets, or Vidur-format
traces binned by decode length.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np

from fluidopt.errors import (
    InputError,
    reject_unknown_keys,
    require,
    require_finite_number,
    require_whole_number,
)
from fluidopt.tomlio import parse_toml, read_toml
from fluidopt.trace import Trace, read_trace


@dataclass(frozen=True)
class RequestClass:
    """One request class.

    Parameters
    ----------
    name : str
        Label of the class.
    prefill_tokens : int
        Prompt length ``l_j`` (>= 1).
    decode_tokens : int
        Output length ``l'_j`` (>= 1 decode iterations).
    rate_per_s : float
        Poisson arrival rate ``lambda_j`` (>= 0).
    max_new_tokens : int, optional
        The output cap a client sends with each request (``max_new_tokens`` / ``max_tokens``),
        an upper bound on the output that SGLang reserves KV against.  Default: the class's
        decode length (known lengths).  For trace replays each request's own output length is
        used (what ``vllm bench serve`` and ``sglang.bench_serving`` send).

    """

    name: str
    prefill_tokens: int
    decode_tokens: int
    rate_per_s: float
    max_new_tokens: int | None = None

    def __post_init__(self) -> None:
        prefix = f"class {self.name!r}"
        require(isinstance(self.name, str) and self.name != "", "name", self.name, "must be a non-empty string")
        object.__setattr__(
            self, "prefill_tokens", require_whole_number(self.prefill_tokens, f"{prefix}: prefill_tokens", 1)
        )
        object.__setattr__(
            self, "decode_tokens", require_whole_number(self.decode_tokens, f"{prefix}: decode_tokens", 1)
        )
        rate = require_finite_number(self.rate_per_s, f"{prefix}: rate_per_s")
        require(rate >= 0, f"{prefix}: rate_per_s", self.rate_per_s, "must be >= 0")
        object.__setattr__(self, "rate_per_s", rate)
        if self.max_new_tokens is not None:
            cap = require_whole_number(self.max_new_tokens, f"{prefix}: max_new_tokens", 1)
            require(
                cap >= self.decode_tokens,
                f"{prefix}: max_new_tokens",
                cap,
                f"must be >= decode_tokens ({self.decode_tokens}): it caps the output",
            )
            object.__setattr__(self, "max_new_tokens", cap)

    @property
    def kv_mass_tokens(self) -> float:
        """Lifetime KV mass ``S_j = (l'_j + 1)(l_j + l'_j / 2)`` in token-iterations (docs/theory.md section 1)."""
        return (self.decode_tokens + 1) * (self.prefill_tokens + self.decode_tokens / 2)

    @property
    def peak_kv_tokens(self) -> int:
        """KV tokens held at the last decode stage, ``l_j + l'_j``."""
        return self.prefill_tokens + self.decode_tokens

    def to_dict(self) -> dict[str, Any]:
        """Plain mapping in the TOML schema."""
        return {
            "name": self.name,
            "prefill_tokens": self.prefill_tokens,
            "decode_tokens": self.decode_tokens,
            "rate_per_s": self.rate_per_s,
            **({"max_new_tokens": self.max_new_tokens} if self.max_new_tokens is not None else {}),
        }


@dataclass(frozen=True)
class Workload:
    """An immutable collection of request classes.

    Parameters
    ----------
    name : str
        Label of the workload.
    classes : tuple of RequestClass
        At least one class; names must be unique.
    description : str
        Free text: how the workload was built and where it comes from.

    """

    name: str
    classes: tuple[RequestClass, ...]
    description: str = ""
    _arrays: dict[str, np.ndarray] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(self.classes))
        require(len(self.classes) > 0, "classes", [], "a workload needs at least one class")
        names = [c.name for c in self.classes]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        require(not duplicates, "classes.name", duplicates, "class names must be unique")
        # A fresh cache per instance: ``dataclasses.replace`` must not share (and rewrite) the
        # original's arrays.
        object.__setattr__(self, "_arrays", {})
        self._arrays.update(
            prefill=np.array([c.prefill_tokens for c in self.classes], dtype=float),
            decode=np.array([c.decode_tokens for c in self.classes], dtype=float),
            rates=np.array([c.rate_per_s for c in self.classes], dtype=float),
            kv_mass=np.array([c.kv_mass_tokens for c in self.classes], dtype=float),
        )
        for array in self._arrays.values():
            array.setflags(write=False)

    # ------------------------------------------------------------------ arrays
    @property
    def num_classes(self) -> int:
        """Number of classes ``m``."""
        return len(self.classes)

    @property
    def class_names(self) -> tuple[str, ...]:
        """Names of the classes, in order."""
        return tuple(c.name for c in self.classes)

    @property
    def prefill(self) -> np.ndarray:
        """Prompt lengths ``l_j`` (read-only float array)."""
        return self._arrays["prefill"]

    @property
    def decode(self) -> np.ndarray:
        """Output lengths ``l'_j`` (read-only float array)."""
        return self._arrays["decode"]

    @property
    def rates(self) -> np.ndarray:
        """Arrival rates ``lambda_j`` per second (read-only float array)."""
        return self._arrays["rates"]

    @property
    def kv_mass(self) -> np.ndarray:
        """Lifetime KV masses ``S_j`` (read-only float array)."""
        return self._arrays["kv_mass"]

    @property
    def total_rate_per_s(self) -> float:
        """Total arrival rate ``Lambda = sum_j lambda_j``."""
        return float(self.rates.sum())

    @property
    def shares(self) -> np.ndarray:
        """Class probabilities ``lambda_j / Lambda`` (uniform when the total rate is 0)."""
        total = self.total_rate_per_s
        if total == 0:
            return np.full(self.num_classes, 1.0 / self.num_classes)
        return self.rates / total

    @property
    def kv_mass_rate(self) -> float:
        """KV mass arriving per second, ``a(lambda) = sum_j lambda_j S_j`` (docs/theory.md section 2)."""
        return float(self.rates @ self.kv_mass)

    @property
    def decode_token_rate(self) -> float:
        """Throughput benchmark ``sum_j lambda_j l'_j`` in decode tokens per second."""
        return float(self.rates @ self.decode)

    @property
    def max_peak_kv_tokens(self) -> int:
        """Largest KV footprint of any single request, ``max_j (l_j + l'_j)``."""
        return max(c.peak_kv_tokens for c in self.classes)

    # ------------------------------------------------------------ rescaling
    def scaled(self, scale: float) -> Workload:
        """Multiply every class rate by ``scale`` (>= 0)."""
        scale = require_finite_number(scale, "scale")
        require(scale >= 0, "scale", scale, "must be >= 0")
        classes = tuple(replace(c, rate_per_s=c.rate_per_s * scale) for c in self.classes)
        return Workload(self.name, classes, self.description)

    def with_total_rate(self, rate_per_s: float) -> Workload:
        """Rescale the rates so that they sum to ``rate_per_s``, keeping the class shares."""
        rate = require_finite_number(rate_per_s, "rate")
        require(rate >= 0, "rate", rate_per_s, "must be >= 0")
        shares = self.shares
        classes = tuple(replace(c, rate_per_s=rate * float(s)) for c, s in zip(self.classes, shares))
        return Workload(self.name, classes, self.description)

    def with_rates(self, rates: Sequence[float] | np.ndarray) -> Workload:
        """Replace the class rates by ``rates`` (one per class)."""
        rates = list(rates)
        require(len(rates) == self.num_classes, "rates", rates, f"needs {self.num_classes} entries")
        classes = tuple(replace(c, rate_per_s=float(r)) for c, r in zip(self.classes, rates))
        return Workload(self.name, classes, self.description)

    # ------------------------------------------------------------------- I/O
    def to_dict(self) -> dict[str, Any]:
        """Plain mapping in the TOML schema."""
        out: dict[str, Any] = {"name": self.name}
        if self.description:
            out["description"] = self.description
        out["classes"] = [c.to_dict() for c in self.classes]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "workload") -> Workload:
        """Build a workload from a mapping in the TOML schema (see :func:`load_workload`)."""
        require(isinstance(data, dict), source, type(data).__name__, "must be a table")
        reject_unknown_keys(data, ("name", "description", "classes", "schema_version"), source)
        raw_classes = data.get("classes")
        require(
            isinstance(raw_classes, list) and len(raw_classes) > 0,
            f"{source}: classes",
            raw_classes,
            "must be a non-empty array of tables [[classes]]",
        )
        assert isinstance(raw_classes, list)  # checked above
        classes = []
        for index, raw in enumerate(raw_classes):
            where = f"{source}: classes[{index}]"
            require(isinstance(raw, dict), where, raw, "must be a table")
            reject_unknown_keys(raw, ("name", "prefill_tokens", "decode_tokens", "rate_per_s", "max_new_tokens"), where)
            for key in ("prefill_tokens", "decode_tokens", "rate_per_s"):
                require(key in raw, f"{where}.{key}", None, "is required")
            classes.append(
                RequestClass(
                    name=_text(raw.get("name", f"class{index + 1}"), f"{where}.name"),
                    prefill_tokens=raw["prefill_tokens"],
                    decode_tokens=raw["decode_tokens"],
                    rate_per_s=raw["rate_per_s"],
                    max_new_tokens=raw.get("max_new_tokens"),
                )
            )
        return cls(
            _text(data.get("name", "workload"), f"{source}: name"),
            tuple(classes),
            _text(data.get("description", ""), f"{source}: description", empty=True),
        )


# ---------------------------------------------------------------- presets
def _preset_dir() -> Any:
    return resources.files("fluidopt").joinpath("data", "workloads")


def workload_presets() -> list[str]:
    """Names of the packaged workload presets."""
    return sorted(p.name[:-5] for p in _preset_dir().iterdir() if p.name.endswith(".toml"))


def preset_workload(name: str) -> Workload:
    """Load a packaged workload preset by name (see :func:`workload_presets`)."""
    if name not in workload_presets():
        raise InputError("workload", name, f"unknown preset; choose one of {', '.join(workload_presets())}")
    text = _preset_dir().joinpath(f"{name}.toml").read_text(encoding="utf-8")
    return Workload.from_dict(parse_toml(text, source=f"preset {name}"), source=f"preset {name}")


def load_workload(
    spec: str | os.PathLike[str] | Workload,
    *,
    rate_per_s: float | None = None,
    scale: float | None = None,
    bins: int | Sequence[float] = 8,
    prefill_statistic: Literal["mean", "max"] = "mean",
) -> Workload:
    """Resolve a workload from a preset name, a TOML file or a trace CSV, then rescale it.

    Parameters
    ----------
    spec : str, path or Workload
        Preset name, path to a ``.toml`` workload, or path to a Vidur-format ``.csv`` trace.
    rate_per_s : float, optional
        New total arrival rate (keeps class shares).  Required for traces without arrival times.
    scale : float, optional
        Multiply every rate by this factor (exclusive with ``rate_per_s``).
    bins, prefill_statistic
        Passed to :func:`workload_from_trace` for CSV traces.

    """
    if rate_per_s is not None and scale is not None:
        raise InputError("rate/scale", (rate_per_s, scale), "give at most one of rate and scale")
    if isinstance(spec, Workload):
        workload = spec
    else:
        text = str(spec)
        path = Path(text)
        if text.endswith(".csv"):
            workload = workload_from_trace(
                read_trace(path), bins=bins, prefill_statistic=prefill_statistic, rate_per_s=rate_per_s
            )
            rate_per_s = None
        elif text.endswith(".toml") or path.exists():
            workload = Workload.from_dict(read_toml(path), source=str(path))
        else:
            workload = preset_workload(text)
    if rate_per_s is not None:
        workload = workload.with_total_rate(rate_per_s)
    if scale is not None:
        workload = workload.scaled(scale)
    return workload


# ---------------------------------------------------------------- traces
def decode_bin_edges(decode_tokens: np.ndarray, bins: int | Sequence[float]) -> np.ndarray:
    """Bin edges on decode length: equal-mass quantile edges for an int, else the given edges.

    Edges are right-closed intervals ``(e_i, e_{i+1}]``; the first edge is below the minimum.
    """
    decode_tokens = np.asarray(decode_tokens, dtype=float)
    if isinstance(bins, (int, np.integer)):
        count = require_whole_number(bins, "bins", 1)
        inner = np.quantile(decode_tokens, np.linspace(0, 1, count + 1)[1:-1], method="higher")
        edges = np.unique(np.concatenate([[0.0], inner, [decode_tokens.max()]]))
    else:
        edges = np.asarray(list(bins), dtype=float)
        require(edges.size >= 2, "bins", list(bins), "needs at least two edges")
        require(bool(np.all(np.diff(edges) > 0)), "bins", list(bins), "edges must increase")
        edges = edges.copy()
        edges[0] = min(edges[0], decode_tokens.min() - 1)
        edges[-1] = max(edges[-1], decode_tokens.max())
    return edges


def workload_from_trace(
    trace: Trace,
    *,
    bins: int | Sequence[float] = 8,
    prefill_statistic: Literal["mean", "max"] = "mean",
    decode_statistic: Literal["mean", "max"] = "mean",
    rate_per_s: float | None = None,
) -> Workload:
    """Turn a trace into request classes by binning decode lengths.

    Each non-empty bin becomes one class whose decode length is the bin's mean (rounded up) or
    maximum, whose prefill length is the bin's mean (rounded up) or maximum (the conservative
    view), and whose rate is the total rate times the bin's share of requests.

    Parameters
    ----------
    trace : Trace
        Requests read by :func:`fluidopt.trace.read_trace`.
    bins : int or sequence of float
        Number of equal-mass bins, or explicit right-closed edges on decode length.
    prefill_statistic, decode_statistic : {"mean", "max"}
        Representative length of a bin.
    rate_per_s : float, optional
        Total arrival rate; defaults to the trace's mean rate over its arrival span.

    """
    for name, value in (("prefill_statistic", prefill_statistic), ("decode_statistic", decode_statistic)):
        require(value in ("mean", "max"), name, value, "must be 'mean' or 'max'")
    if rate_per_s is None:
        rate_per_s = trace.mean_rate_per_s
        if rate_per_s is None:
            raise InputError("rate", None, f"trace {trace.name!r} has no arrival times; give the total rate")
    rate = require_finite_number(rate_per_s, "rate")
    require(rate >= 0, "rate", rate_per_s, "must be >= 0")
    edges = decode_bin_edges(trace.decode_tokens, bins)
    index = np.clip(np.searchsorted(edges, trace.decode_tokens, side="left") - 1, 0, edges.size - 2)
    classes = []
    for b in range(edges.size - 1):
        members = index == b
        count = int(members.sum())
        if count == 0:
            continue
        decode = trace.decode_tokens[members]
        prefill = trace.prefill_tokens[members]
        classes.append(
            RequestClass(
                name=f"d{int(edges[b]) + 1}-{int(edges[b + 1])}",
                prefill_tokens=_statistic(prefill, prefill_statistic),
                decode_tokens=_statistic(decode, decode_statistic),
                rate_per_s=rate * count / trace.num_requests,
            )
        )
    description = (
        f"binned from trace {trace.name} ({trace.num_requests} requests) into {len(classes)} decode-length "
        f"classes; prefill per class = {prefill_statistic}, decode per class = {decode_statistic}"
    )
    return Workload(trace.name, tuple(classes), description)


def _statistic(values: np.ndarray, statistic: str) -> int:
    if statistic == "max":
        return int(values.max())
    return int(math.ceil(float(values.mean())))


def _text(value: Any, where: str, *, empty: bool = False) -> str:
    """A string field of a workload file; a number or a table there is an error naming the field."""
    require(isinstance(value, str), where, value, "must be a string (in quotes in TOML)")
    require(empty or value != "", where, value, "must not be empty")
    return value
