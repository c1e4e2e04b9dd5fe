"""Regenerate the real-GPU profile presets in fluidopt/data/profiles from the Vidur measurements.

Run from the repository root with ../shared/data present:

    python scripts/build_gpu_presets.py [--data ../shared/data]

The presets embed the fitted numbers; the measurements themselves are not copied.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from fluidopt.hardware import gpu_spec, model_shape
from fluidopt.timing.fit.attention import fit_vidur_measured_profile
from fluidopt.timing.fit.predictor import fit_vidur_predictor_profile
from fluidopt.timing.fit.vidur_csv import fit_piecewise, profile_from_fit, read_vidur_mlp_csv, transfer_fit
from fluidopt.tomlio import write_toml

# Attention-aware presets: (gpu, model, folder, attention file).
MEASURED_ATTENTION = {
    "a100-80gb-llama-3-8b-vidur": ("a100-80gb", "llama-3-8b", "a100/Meta-Llama-3-8B", "attention-sample.csv"),
}
# Vidur's execution-time predictor reproduced from the same measurements (timing kind vidur-predictor).
PREDICTOR = {
    "a100-80gb-llama-3-8b-vidur-predictor": ("a100-80gb", "llama-3-8b", "a100/Meta-Llama-3-8B", "attention-sample.csv"),
}
NO_ATTENTION_NOTE = (
    " No measured attention: prefill attention and KV-cache writes are left out and decode attention is "
    "a bandwidth estimate (see the -vidur presets for the measured, attention-aware model)."
)

MEASURED = {
    "a100-80gb-llama-2-7b": ("a100-80gb", "llama-2-7b", "a100/Llama-2-7b-hf"),
    "h100-80gb-llama-2-7b": ("h100-80gb", "llama-2-7b", "h100/Llama-2-7b-hf"),
    "a100-80gb-llama-3-8b": ("a100-80gb", "llama-3-8b", "a100/Meta-Llama-3-8B"),
    "a40-llama-2-7b": ("a40", "llama-2-7b", "a40/Llama-2-7b-hf"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default="../shared/data", help="folder holding profiles/vidur")
    parser.add_argument("--out", default="fluidopt/data/profiles")
    args = parser.parse_args()
    root = Path(args.data) / "profiles" / "vidur"
    fits = {}
    for name, (gpu, model, folder) in MEASURED.items():
        shape = model_shape(model)
        fit = fit_piecewise(read_vidur_mlp_csv(root / folder / "mlp.csv", shape.layers))
        fits[name] = fit
        source = f"Vidur profiling data/profiling/compute/{folder}/mlp.csv (TP 1)"
        profile = profile_from_fit(name, fit, gpu_spec(gpu), shape, source=source)
        profile = _with_note(profile)
        write_toml(Path(args.out) / f"{name}.toml", _clean(profile.to_dict()))
        print(f"{name}: MAPE {fit.mape:.4f}, R^2 {fit.r2:.5f}, C = {profile.kv_capacity_tokens}")
    # No Llama-3-8B measurement exists for the H100: carry the A100 fit over by the H100/A100
    # ratios of Llama-2-7B (same layer count and hidden size, measured on both GPUs).
    derived = transfer_fit(fits["a100-80gb-llama-3-8b"], fits["a100-80gb-llama-2-7b"], fits["h100-80gb-llama-2-7b"])
    source = (
        "derived: the A100 Llama-3-8B fit scaled by the H100/A100 ratios of the Llama-2-7B fits "
        "(no H100 Llama-3-8B measurement in the Vidur data)"
    )
    profile = profile_from_fit(
        "h100-80gb-llama-3-8b", derived, gpu_spec("h100-80gb"), model_shape("llama-3-8b"), source=source
    )
    write_toml(Path(args.out) / "h100-80gb-llama-3-8b.toml", _clean(_with_note(profile).to_dict()))
    print(f"h100-80gb-llama-3-8b: derived, C = {profile.kv_capacity_tokens}")
    attention_aware = [(spec, fit_vidur_measured_profile) for spec in MEASURED_ATTENTION.items()]
    attention_aware += [(spec, fit_vidur_predictor_profile) for spec in PREDICTOR.items()]
    for (name, (gpu, model, folder, attention)), fit_profile in attention_aware:
        source = (
            f"Vidur profiling data/profiling/compute/{folder}/mlp.csv (TP 1) and the attention rows of "
            f"shared/data/profiles/vidur/{folder}/{attention} (FlashInfer, block 16)"
        )
        profile, quality = fit_profile(
            root / folder / "mlp.csv", root / folder / attention, gpu_spec(gpu), model_shape(model), name, source=source
        )
        write_toml(Path(args.out) / f"{name}.toml", _clean(profile.to_dict()))
        print(f"{name} ({profile.timing_kind}): C = {profile.kv_capacity_tokens}")
        for component, fit in quality.items():
            print(
                f"  {component:22s} MAPE {100 * fit.mape:6.1f}%  worst {100 * fit.max_abs_pct_error:6.1f}%  "
                f"({fit.points} rows, {fit.model})"
            )


def _with_note(profile):
    from fluidopt.profile import GPUProfile

    return GPUProfile(
        profile.name,
        profile.kv_capacity_tokens,
        profile.pieces,
        profile.description + NO_ATTENTION_NOTE,
        dict(profile.fit),
    )


def _clean(data: dict) -> dict:
    """Replace NaN fit-quality numbers (TOML has no null) by the string 'n/a'."""
    fit = data.get("fit", {})
    for key, value in list(fit.items()):
        if isinstance(value, float) and math.isnan(value):
            fit[key] = "n/a"
    return data


if __name__ == "__main__":
    main()
