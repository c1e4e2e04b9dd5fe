"""CLI: ``fluidopt profile roofline``, a profile of any model on any GPU from public facts alone."""

from __future__ import annotations

import argparse
import math
from dataclasses import replace

from fluidopt.cli.common import add_json_option, print_json
from fluidopt.hardware import GPUS, MODELS


def register(profile_sub: argparse._SubParsersAction) -> None:
    """Add ``profile roofline`` to the ``profile`` command's subcommands."""
    p = profile_sub.add_parser(
        "roofline",
        help="a profile from the GPU's spec sheet and the model's config.json (no measurements needed)",
    )
    p.add_argument("--gpu", required=True, help=f"one of {', '.join(sorted(GPUS))}, or a GPU TOML file")
    p.add_argument("--model", required=True, help=f"a Hugging Face config.json, or one of {', '.join(sorted(MODELS))}")
    p.add_argument("--tp", type=int, default=1, help="tensor-parallel GPUs per engine (default 1)")
    p.add_argument("--dp", type=int, default=1, help="data-parallel engines (default 1)")
    p.add_argument("--ep", action="store_true", help="experts spread over the dp x tp GPUs (--enable-expert-parallel)")
    p.add_argument("--gpu-memory-utilization", type=float, default=0.9, help="vLLM's memory fraction (default 0.9)")
    p.add_argument("--max-num-batched-tokens", type=int, default=2048, help="for vLLM's activation peak (2048)")
    p.add_argument("--kv-capacity-tokens", type=int, help="the engine's KV capacity, instead of vLLM's memory rule")
    p.add_argument(
        "--cpu-offload-gb",
        type=float,
        default=0.0,
        help="GiB of each GPU's weights in host memory (vLLM's --cpu-offload-gb): read over PCIe every step",
    )
    p.add_argument(
        "--async-scheduling",
        action="store_true",
        help="vLLM plans each step while the one before runs: the engine's CPU work overlaps the GPU's",
    )
    p.add_argument("--name", help="profile name (default GPU-model-tpN-roofline)")
    p.add_argument("--out", help="write the profile TOML here")
    add_json_option(p)
    p.set_defaults(handler=cmd_profile_roofline)


def cmd_profile_roofline(args: argparse.Namespace) -> int:
    """Build a roofline profile, print its KV capacity and step times, and write it with ``--out``."""
    from fluidopt.errors import require
    from fluidopt.hardware import gpu_spec
    from fluidopt.model_config import resolve_model
    from fluidopt.timing.fit.engine_tables import Parallelism
    from fluidopt.timing.fit.roofline import roofline_profile, with_cpu_offload
    from fluidopt.tomlio import write_toml

    if args.kv_capacity_tokens is not None:
        require(args.kv_capacity_tokens >= 1, "--kv-capacity-tokens", args.kv_capacity_tokens, "must be >= 1")
    require(args.max_num_batched_tokens >= 1, "--max-num-batched-tokens", args.max_num_batched_tokens, "must be >= 1")
    model = resolve_model(args.model)
    require(not args.ep or model.is_moe, "--ep", True, f"needs a mixture-of-experts model ({model.name} is dense)")
    require(
        math.isfinite(args.cpu_offload_gb) and args.cpu_offload_gb >= 0,
        "--cpu-offload-gb",
        args.cpu_offload_gb,
        "must be a number of GiB >= 0",
    )
    spec = gpu_spec(args.gpu)
    profile = roofline_profile(
        spec,
        model,
        Parallelism(args.tp, args.dp, bool(args.ep)),
        gpu_memory_utilization=args.gpu_memory_utilization,
        max_num_batched_tokens=args.max_num_batched_tokens,
        kv_capacity_tokens=args.kv_capacity_tokens,
        name=args.name,
    )
    if args.async_scheduling:
        profile = replace(profile, timing=profile.timing.scaled(async_scheduling=True), pieces=())
    if args.cpu_offload_gb > 0:
        profile = with_cpu_offload(profile, spec, args.cpu_offload_gb, 16, args.kv_capacity_tokens is None)
    steps = {
        "decode_1_at_1024_s": profile.batch_time([], [], [1024]),
        "decode_64_at_1024_s": profile.batch_time([], [], [1024] * 64),
        "prefill_2048_s": profile.batch_time([2048], [0], []),
    }
    if args.out:
        write_toml(args.out, profile.to_dict())
    if args.json:
        print_json(
            {
                "name": profile.name,
                "kv_capacity_tokens": profile.kv_capacity_tokens,
                **steps,
                "profile": profile.to_dict(),
            }
        )
        return 0
    print(f"{profile.name}: {profile.description}")
    print(
        f"one decode at 1,024 cached tokens {1e3 * steps['decode_1_at_1024_s']:.2f} ms; 64 of them "
        f"{1e3 * steps['decode_64_at_1024_s']:.2f} ms; a 2,048-token prefill {1e3 * steps['prefill_2048_s']:.2f} ms"
    )
    if args.out:
        print(f"wrote {args.out}")
    return 0
