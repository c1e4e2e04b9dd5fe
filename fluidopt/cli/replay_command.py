"""CLI command ``replay``: a real vLLM run replayed in the simulator, metric by metric."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from fluidopt.cli.common import add_json_option, format_table, print_json
from fluidopt.errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``replay``."""
    p = subparsers.add_parser(
        "replay",
        help="replay a real vLLM run (LLMServingSim's run folder) and compare TTFT, TPOT, E2E",
        description="Simulate a vLLM run on its own arrivals with the vllm-v1 policy configured as the run's engine "
        "and print simulated against observed metrics with their relative errors, LLMServingSim's where its "
        "summary is in the folder, and the same replay on the profile's affine surrogate.",
    )
    p.add_argument(
        "run",
        help="run folder: LLMServingSim's (vllm/meta.json, vllm/requests.jsonl) or the plain format "
        "(requests.csv, engine.toml; README 'Replay your own run')",
    )
    p.add_argument(
        "--profile",
        "-p",
        required=True,
        help="profile TOML or preset name (its step times; the KV capacity is the run's num_gpu_blocks x block_size "
        "when logged), an LLMServingSim profile folder (fitted with this run's KV capacity), or "
        "'roofline': built from the GPU's spec sheet and the run's model, parallelism, KV blocks and link",
    )
    p.add_argument("--tp", type=int, help="with a profile folder: its tensor-parallel degree (default the run's)")
    p.add_argument("--gpu", help="with --profile roofline: the GPU (default the run's hardware name)")
    p.add_argument("--out", help="folder for requests.csv (per request), summary.json and replay.png")
    add_json_option(p)
    p.set_defaults(handler=cmd_replay)


def _profile(args: argparse.Namespace):
    from fluidopt.profile import load_profile
    from fluidopt.timing.fit.engine_tables import profile_for_run

    if args.tp is not None and args.tp < 1:
        raise InputError("--tp", args.tp, "must be >= 1")
    from fluidopt.answers.run_format import is_plain_run, plain_run_profile

    plain = is_plain_run(args.run)
    if args.profile == "roofline":
        from fluidopt.timing.fit.roofline import roofline_profile_for_run

        if args.tp is not None:
            raise InputError("--tp", args.tp, "the roofline takes the run's tensor-parallel degree")
        return plain_run_profile(args.run, gpu=args.gpu) if plain else roofline_profile_for_run(args.run, gpu=args.gpu)
    if plain and Path(args.profile).is_dir():
        if args.tp is not None:
            raise InputError("--tp", args.tp, "a plain run's engine.toml gives the tensor-parallel degree")
        return plain_run_profile(args.run, args.profile, gpu=args.gpu)
    if args.gpu is not None:
        raise InputError("--gpu", args.gpu, "applies to --profile roofline or a plain run")
    if Path(args.profile).is_dir():
        profile, _ = profile_for_run(args.profile, args.run, tensor_parallel=args.tp)
        return profile
    if args.tp is not None:
        raise InputError("--tp", args.tp, "applies to an LLMServingSim profile folder given as --profile")
    return load_profile(args.profile)


def cmd_replay(args: argparse.Namespace) -> int:
    """Replay the run and print the comparison."""
    import time
    from dataclasses import replace

    from fluidopt.answers.replay import read_vllm_run, replay, write_replay

    started = time.perf_counter()
    if args.out and Path(args.out).exists() and not Path(args.out).is_dir():
        raise InputError("--out", args.out, "must be a folder")
    run = read_vllm_run(args.run)
    profile = _profile(args)
    if run.kv_capacity_tokens and not Path(args.profile).is_dir() and args.profile != "roofline":
        profile = profile.with_capacity(run.kv_capacity_tokens)  # the engine's logged KV blocks, not the file's
    result = replay(run, profile)
    variants = [("composed tables", result)]
    if not profile.timing.exact_affine:
        surrogate = replace(profile, name=f"{profile.name}-affine", timing=None)  # the affine timing of its pieces
        variants.append(("affine surrogate (2 pieces)", replay(run, surrogate)))
    written = write_replay(result, args.out) if args.out else []
    wall = time.perf_counter() - started
    if args.json:
        print_json(
            {
                **result.to_dict(),
                "variants": {
                    label: {
                        f"{r['metric']}_{r['statistic']}_error": r["fluidopt_error"]
                        for r in v.rows
                        if r["statistic"] in ("mean", "p90")
                    }
                    for label, v in variants
                },
                "command_wall_time_s": wall,
                **({"written": [str(p) for p in written]} if written else {}),
            }
        )
        return 0

    def pct(value: float) -> str:
        return "" if not math.isfinite(value) else f"{100 * value:+.1f}%"

    def num(value: float) -> str:
        return "" if not math.isfinite(value) else f"{value:.4g}"

    print(
        f"replay of {run.folder}: {run.num_requests} requests, {run.model}, vLLM {run.engine_version}, "
        f"on {profile.name} (KV {profile.kv_capacity_tokens} tokens)"
    )
    print(f"policy: {', '.join(f'{k} {v}' for k, v in result.policy.items() if k != 'policy')}")
    rows = [
        (
            r["metric"],
            r["statistic"],
            num(r["observed"]),
            num(r["fluidopt"]),
            pct(r["fluidopt_error"]),
            num(r["llmservingsim"]),
            pct(r["llmservingsim_error"]),
        )
        for r in result.rows
    ]
    print(format_table(["metric (s, /s)", "stat", "vLLM", "fluidopt", "error", "LLMServingSim", "error"], rows))
    if len(variants) > 1:
        keys = [("ttft", "mean"), ("tpot", "mean"), ("e2e", "mean"), ("ttft", "p90"), ("tpot", "p90"), ("e2e", "p90")]
        table = []
        for label, v in variants:
            errors = {(r["metric"], r["statistic"]): r["fluidopt_error"] for r in v.rows}
            table.append((label, *[pct(errors[k]) for k in keys]))
        print(format_table(["timing of the profile", *[f"{m} {s}" for m, s in keys]], table))
    print(
        f"preemptions (fluidopt): {result.preemptions}; steps {result.steps}; "
        f"status {result.status}: {result.message}; "
        f"replay {result.wall_time_s:.3f} s, command {wall:.2f} s"
    )
    for path in written:
        print(f"wrote {path}")
    return 0
