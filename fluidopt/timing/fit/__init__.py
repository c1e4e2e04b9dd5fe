"""Fitters: one module per source of measurements, each producing a timing object (and a profile).

- :mod:`~fluidopt.timing.fit.vidur_csv`: Vidur's ``mlp.csv`` -> an ``affine`` timing;
- :mod:`~fluidopt.timing.fit.attention`: Vidur's ``mlp.csv`` and attention rows -> ``measured``;
- :mod:`~fluidopt.timing.fit.predictor`: the same files -> ``vidur-predictor``;
- :mod:`~fluidopt.timing.fit.engine_tables`: tables measured through vLLM (LLMServingSim) -> ``measured``;
- :mod:`~fluidopt.timing.fit.batch_log`: a per-step log of an engine -> ``affine``.

No runtime class imports a fitter.
"""

from __future__ import annotations

import os
from typing import Any

from fluidopt.errors import InputError

# Timing kinds that Vidur-format ``mlp.csv`` + attention rows can be fitted to (``profile fit --timing``).
VIDUR_TABLE_KINDS = ("measured", "vidur-predictor")


def fit_vidur_tables(
    kind: str,
    mlp_path: str | os.PathLike[str],
    attention_path: str | os.PathLike[str],
    gpu: Any,
    model: Any,
    name: str,
    *,
    tensor_parallel: int = 1,
) -> tuple[Any, dict[str, Any]]:
    """A profile of timing ``kind`` fitted to Vidur-format tables, and each component's error."""
    if kind == "measured":
        from fluidopt.timing.fit.attention import fit_vidur_measured_profile

        return fit_vidur_measured_profile(mlp_path, attention_path, gpu, model, name, tensor_parallel=tensor_parallel)
    if kind == "vidur-predictor":
        from fluidopt.timing.fit.predictor import fit_vidur_predictor_profile

        if tensor_parallel != 1:
            raise InputError("--tensor-parallel", tensor_parallel, "Vidur's predictor is fitted at TP 1 only")
        return fit_vidur_predictor_profile(mlp_path, attention_path, gpu, model, name)
    raise InputError("--timing", kind, f"must be one of {', '.join(VIDUR_TABLE_KINDS)}")
