"""Fit the roofline's efficiencies to the shared measured operator tables and write fluidopt/data/roofline.toml.

Reads ../shared/data (Vidur's A100 / H100 / A40 ``mlp.csv`` and A100 attention sample; the
vLLM-measured LLMServingSim tables of the RTX 4090 and RTX PRO 6000), fits one calibration to
all of them (:func:`fluidopt.timing.fit.roofline_calibration.fit_calibration`), and for each GPU
refits without it and reports the held-out median error per component (the README's
leave-one-GPU-out table).  No serving run is read.

    python scripts/calibrate_roofline.py [--data ../shared/data] [--write]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from fluidopt.cli.common import format_table
from fluidopt.hardware import gpu_spec, model_shape
from fluidopt.timing.fit.engine_tables import Interconnect, Parallelism, engine_profile, read_llmservingsim_profile
from fluidopt.timing.fit.roofline import ENGINE_GPUS, roofline_profile, roofline_timing
from fluidopt.timing.fit.roofline_calibration import (
    component_errors,
    fit_calibration,
    leave_one_gpu_out,
    shared_observations,
)
from fluidopt.tomlio import dumps_toml, write_text_atomic, write_toml

COMPONENTS = ("gemm", "elementwise", "attention", "sampler", "moe")
SOURCE = (
    "median operator times of Vidur's profiles (microsoft/vidur, MIT: A100, H100, A40 mlp.csv; the A100 "
    "attention sample) and LLMServingSim's vLLM-measured tables (CASYS Lab at KAIST, MIT: RTX 4090 "
    "Llama-3.1-8B, RTX PRO 6000 Qwen3-32B and Qwen3-30B-A3B, TP1 and TP2), fitted by "
    "scripts/calibrate_roofline.py"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--write", action="store_true", help="write fluidopt/data/roofline.toml")
    args = parser.parse_args()
    observations = shared_observations(Path(args.data))
    calibration = fit_calibration(observations, SOURCE)
    fitted = component_errors(observations, calibration)
    held_out = leave_one_gpu_out(observations)
    gpus = sorted({gpu for gpu, _ in held_out})
    rows = []
    for gpu in gpus:
        cells = [
            f"{100 * held_out[(gpu, c)]:.0f} / {100 * fitted[(gpu, c)]:.0f}" if (gpu, c) in held_out else "-"
            for c in COMPONENTS
        ]
        rows.append([gpu, *cells])
    print("median |error| %, held out / fitted on all GPUs")
    print(format_table(["GPU", *COMPONENTS], rows))
    print({key: round(value, 6) if isinstance(value, float) else value for key, value in calibration.to_dict().items()})
    print()
    print("whole steps against the tables' own composition (median / worst |error| %, calibration without the GPU)")
    print(format_table(["tables", "decode", "prefill", "mixed"], step_errors(observations, Path(args.data))))
    if args.write:
        document = {
            "schema_version": 1,
            "calibration": calibration.to_dict(),
            "leave_one_gpu_out": {
                gpu: {c: round(held_out[(gpu, c)], 4) for c in COMPONENTS if (gpu, c) in held_out} for gpu in gpus
            },
            "fitted": {gpu: {c: round(fitted[(gpu, c)], 4) for c in COMPONENTS if (gpu, c) in fitted} for gpu in gpus},
        }
        path = Path(__file__).resolve().parents[1] / "fluidopt" / "data" / "roofline.toml"
        write_text_atomic(
            path, "# Written by scripts/calibrate_roofline.py; do not edit by hand.\n" + dumps_toml(document)
        )
        print(f"wrote {path}")
        write_presets(path.parent / "profiles")


# Engine tables whose whole steps the roofline is checked against: (folder, tensor parallel, fluidopt GPU).
STEP_CHECKS = (
    ("RTX4090/meta-llama/Llama-3.1-8B", 1),
    ("RTXPRO6000/Qwen/Qwen3-32B", 1),
    ("RTXPRO6000/Qwen/Qwen3-32B", 2),
    ("RTXPRO6000/Qwen/Qwen3-30B-A3B-Instruct-2507", 1),
)
BATCHES = {
    "decode": [([], [], [kv] * n) for n in (1, 8, 32, 128) for kv in (256, 1024, 4096)],
    "prefill": [([c], [k], []) for c in (64, 512, 2048) for k in (0, 1024)],
    "mixed": [([c], [0], [1024] * n) for c in (64, 512) for n in (8, 64)],
}


def step_errors(observations: list, data: Path) -> list[list[str]]:
    """Roofline step times (calibrated without the tables' GPU) against the grid composition of the tables."""
    rows = []
    for folder, tp in STEP_CHECKS:
        tables = read_llmservingsim_profile(data / "llmservingsim" / "profiles" / folder, tp)
        gpu = gpu_spec(ENGINE_GPUS[tables.gpu])
        link = Interconnect(gpu.link_bandwidth_bytes_per_s, gpu.link_latency_s, "spec sheet")
        composed, _ = engine_profile(tables, interconnect=link, kv_capacity_tokens=100_000)
        calibration = fit_calibration([o for o in observations if o.gpu != gpu.name])
        roof = roofline_timing(gpu, tables.model_shape, Parallelism(tp), calibration)
        cells = []
        for batches in BATCHES.values():
            errors = [abs(roof.batch_time(*b) / composed.timing.batch_time(*b) - 1) for b in batches]
            cells.append(f"{100 * float(np.median(errors)):.0f} / {100 * max(errors):.0f}")
        rows.append([f"{tables.gpu} {tables.model_shape.name} tp{tp}", *cells])
    return rows


# Roofline presets written with the calibration: (GPU, model, tensor parallel).
PRESETS = (("h100-80gb", "llama-3-8b", 1), ("h100-80gb", "mixtral-8x7b", 2))


def write_presets(folder: Path) -> None:
    """The roofline presets, from the calibration just written (the shipped one)."""
    for gpu, model, tp in PRESETS:
        profile = roofline_profile(gpu_spec(gpu), model_shape(model), Parallelism(tp))
        path = folder / f"{profile.name}.toml"
        write_toml(path, profile.to_dict())
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
