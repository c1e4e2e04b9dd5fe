"""The typed bundles of arrays the compiled kernel takes (:func:`fluidopt.sim.kernel.run_kernel`).

numba passes named tuples of arrays through a call as one argument and unpacks them for free,
so the kernel's 31 arrays travel as six bundles, one per concern.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np


class KernelState(NamedTuple):
    """Everything the event loop changes: slots, queues, counters, the batch scratch and histograms."""

    slot_i: np.ndarray  # (N_INT_FIELDS, slots) per-request integers (fluidopt.sim.layout I_*)
    slot_f: np.ndarray  # (N_FLOAT_FIELDS, slots) per-request floats (F_*)
    res: np.ndarray  # resident slots
    queues: np.ndarray  # (queues, slots) circular waiting queues
    qhead: np.ndarray
    qlen: np.ndarray
    free: np.ndarray  # stack of free slots
    scal_i: np.ndarray  # integer counters (S_*)
    scal_f: np.ndarray  # float counters and areas (T_*)
    cnt: np.ndarray  # (classes, stages) residents per class and stage
    bsel: np.ndarray  # the batch's slots
    bchunk: np.ndarray  # the batch's prefill chunk per entry
    pchunk: np.ndarray  # the batch's prefills: chunk
    pcached: np.ndarray  # the batch's prefills: tokens already cached
    hist: np.ndarray  # (N_HISTOGRAMS, HIST_BINS) latency histograms


class KernelConfig(NamedTuple):
    """The run's configuration (C_* and CF_* entries)."""

    cfg_i: np.ndarray
    cfg_f: np.ndarray


class PolicyArrays(NamedTuple):
    """The policy's parameters and its own state (laid out by its module)."""

    params_i: np.ndarray
    params_f: np.ndarray
    state_i: np.ndarray
    state_f: np.ndarray

    @classmethod
    def of(cls, pack: Any) -> PolicyArrays:
        """Contiguous copies of a :class:`~fluidopt.sim.policies.KernelPack`'s arrays (its state is mutated)."""
        return cls(
            np.ascontiguousarray(pack.params_i, dtype=np.int64),
            np.ascontiguousarray(pack.params_f, dtype=np.float64),
            np.array(pack.state_i, dtype=np.int64),
            np.array(pack.state_f, dtype=np.float64),
        )


class TimingArrays(NamedTuple):
    """The timing kind's coefficients and table (:meth:`fluidopt.timing.TimingModel.kernel_arrays`)."""

    tcoef: np.ndarray
    ttable: np.ndarray


class ArrivalChunk(NamedTuple):
    """The unconsumed arrivals of the current chunk and whether it is the last."""

    times: np.ndarray
    classes: np.ndarray
    prefill: np.ndarray
    decode: np.ndarray
    ids: np.ndarray
    class_max_new: np.ndarray  # per class: max_new_tokens the client sends (0: the decode length)
    cached: np.ndarray  # per arrival: prompt tokens already in the prefix cache (0: none)
    final: bool


class KernelLogs(NamedTuple):
    """Where completions and the per-iteration series are written."""

    completions: np.ndarray
    series: np.ndarray
