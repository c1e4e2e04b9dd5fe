"""CLI: ``fluidopt profile calibrate``, a roofline profile fitted to a user's own run."""

from __future__ import annotations

import argparse
import math
from typing import Any

from fluidopt.cli.common import add_json_option, format_table, print_json
from fluidopt.errors import InputError, require


def register(profile_sub: argparse._SubParsersAction) -> None:
    """Add ``profile calibrate`` to the ``profile`` command's subcommands."""
    p = profile_sub.add_parser(
        "calibrate",
        help="fit a roofline profile's compute, bandwidth and overheads to a run of your own deployment",
        description="Replay RUN on BASE with the run's own arrivals and engine arguments and fit four scales of "
        "BASE's roofline (compute and memory-bandwidth factors, per-step and per-sequence overheads) so that the "
        "simulated TTFT, TPOT and E2E match the observed; print them with 95 %% intervals, the fit error and the "
        "held-out error on each --check run and on the requests after --split-at-s; write FITTED.toml.",
    )
    p.add_argument("run", help="run folder: the plain format (requests.csv, engine.toml) or LLMServingSim's")
    p.add_argument(
        "--profile",
        "-p",
        default="roofline",
        help="BASE: 'roofline' (default: built from the run's GPU, model and engine) or a roofline profile "
        "(preset name or TOML)",
    )
    p.add_argument("--gpu", help="with --profile roofline: the GPU (default the run's)")
    p.add_argument("--out", required=True, help="write the fitted profile TOML here")
    p.add_argument("--check", action="append", default=[], metavar="RUN2", help="a held-out run of the same deployment")
    p.add_argument("--split-at-s", type=float, help="fit on the requests arriving before this time, check on the rest")
    p.add_argument(
        "--fit",
        help="comma-separated scales to fit (default: as many of compute, bandwidth, step_overhead_s, "
        "sequence_overhead_s as the run determines)",
    )
    p.add_argument("--name", help="name of the fitted profile (default BASE-calibrated)")
    add_json_option(p)
    p.set_defaults(handler=cmd_profile_calibrate)


def _base(args: argparse.Namespace) -> Any:
    from fluidopt.answers.run_format import is_plain_run, plain_run_profile
    from fluidopt.profile import load_profile
    from fluidopt.timing.fit.roofline import roofline_profile_for_run

    if args.profile == "roofline":
        return (
            plain_run_profile(args.run, gpu=args.gpu)
            if is_plain_run(args.run)
            else roofline_profile_for_run(args.run, gpu=args.gpu)
        )
    if args.gpu is not None:
        raise InputError("--gpu", args.gpu, "applies to --profile roofline")
    return load_profile(args.profile)


def cmd_profile_calibrate(args: argparse.Namespace) -> int:
    """Calibrate, print the scales and errors, and write the fitted profile (only after a successful fit)."""
    from fluidopt.answers.calibrate import SCALES, calibrate
    from fluidopt.answers.replay import read_vllm_run
    from fluidopt.tomlio import write_toml

    fit = tuple(s.strip() for s in args.fit.split(",") if s.strip()) if args.fit is not None else None
    if fit is not None:
        unknown = [s for s in fit if s not in SCALES]
        require(bool(fit) and not unknown, "--fit", args.fit, f"must name some of {', '.join(SCALES)}")
    run = read_vllm_run(args.run)
    checks = tuple(read_vllm_run(folder) for folder in args.check)
    for check in checks:
        same = not (check.model and run.model) or check.model.lower() == run.model.lower()
        require(same, "--check", check.folder, f"served {check.model}, the calibration run {run.model}")
    base = _base(args)
    result = calibrate(run, base, fit=fit, split_at_s=args.split_at_s, checks=checks, name=args.name)
    path = write_toml(args.out, result.profile.to_dict())
    if args.json:
        print_json({**result.to_dict(), "written": str(path)})
        return 0
    _print(result)
    print(f"wrote {path}")
    return 0


def _print(result: Any) -> None:
    from fluidopt.answers.calibrate import SCALES

    def show(name: str, value: float) -> str:
        if name in ("compute", "bandwidth"):
            return f"x{value:.3f}"
        return f"{value * 1e3:.3f} ms" if name == "step_overhead_s" else f"{value * 1e6:.2f} us"

    print(f"{result.profile.name}: {result.message}; {result.evaluations} replays in {result.wall_time_s:.1f} s")
    neutral = {"compute": 1.0, "bandwidth": 1.0, "step_overhead_s": 0.0, "sequence_overhead_s": 0.0}
    rows = []
    for name in SCALES:
        low, high = result.interval(name)
        fitted = name in result.fitted_scales
        rows.append(
            (
                name,
                show(name, neutral[name]),
                show(name, result.values[name]),
                f"{show(name, low)} - {show(name, high)}" if fitted else "held at base",
            )
        )
    print(format_table(["scale", "BASE", "fitted", "95 % interval"], rows))

    def pct(value: float) -> str:
        return "" if not math.isfinite(value) else f"{100 * value:+.1f}%"

    labels = {"fit": "fitted requests", "split": "after --split-at-s (held out)"}
    table = []
    for label, by_when in result.errors.items():
        row = [labels.get(label, f"{label} (held out)")]
        for metric in ("ttft", "tpot", "e2e"):
            row.append(f"{pct(by_when['base'][metric])} -> {pct(by_when['fitted'][metric])}")
        table.append(tuple(row))
    print(format_table(["mean error, BASE -> fitted", "TTFT", "TPOT", "E2E"], table))
