"""CLI commands for simulation and thresholds: simulate, thresholds."""

from __future__ import annotations

import argparse
import sys
import warnings
from typing import TYPE_CHECKING, Any

from fluidopt.cli.common import (
    add_json_option,
    add_profile_options,
    add_workload_options,
    format_table,
    print_json,
    profile_from_args,
    workload_from_args,
)
from fluidopt.errors import InputError
from fluidopt.sim.policies import (
    FLUID_POLICIES,
    THRESHOLD_FAMILIES,
    as_variant,
    fluid_design,
    make_policy,
)

if TYPE_CHECKING:
    from fluidopt.sim.arrivals import ArrivalProcess


def _floats(text: str, name: str, count: int) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise InputError(name, text, f"must be {count} comma-separated numbers") from None
    if len(values) != count:
        raise InputError(name, text, f"must be {count} comma-separated numbers")
    return values


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``simulate`` and ``thresholds``."""
    from fluidopt.sim.policies import POLICY_NAMES, REGISTRY

    p = subparsers.add_parser(
        "simulate",
        help="simulate a scheduling policy on a GPU profile",
        epilog="policies: " + "; ".join(f"{name}: {spec.summary}" for name, spec in REGISTRY.items()),
    )
    add_workload_options(p)
    add_profile_options(p)
    p.add_argument("--policy", required=True, choices=POLICY_NAMES, help="scheduling policy (see below)")
    horizon = p.add_mutually_exclusive_group()
    horizon.add_argument("--requests", type=int, help="number of arrivals (default 10000)")
    horizon.add_argument("--horizon-s", type=float, help="simulated time horizon (s)")
    p.add_argument("--warmup-s", type=float, help="ignore requests arriving earlier (default 10%% of the span)")
    p.add_argument("--seed", type=int, default=0, help="seed of the arrival stream (same seed, same arrivals)")
    thresholds = p.add_mutually_exclusive_group()
    thresholds.add_argument("--kappa", type=float, help="WAIT thresholds n_j = ceil(kappa lambda_j)")
    thresholds.add_argument("--thresholds", help="thresholds file (TOML or JSON) from `fluidopt thresholds --out`")
    p.add_argument("--segments", type=int, help="nested-wait default thresholds: number of segments")
    p.add_argument("--repair", action="store_true", help="nested-wait: evict boundary requests on overflow")
    p.add_argument(
        "--no-hold",
        action="store_true",
        help="wait / nested-wait: residents of closed classes or segments keep decoding "
        "(docs/theory.md section 4 holds them)",
    )
    p.add_argument(
        "--eviction",
        choices=("restart", "recompute"),
        help="what an evicted request loses (default restart; vllm-v1 and sglang always recompute)",
    )
    p.add_argument(
        "--arrivals",
        choices=("poisson", "deterministic", "mmpp", "trace"),
        default="poisson",
        help="arrival process (trace: replay the --workload CSV's arrival times and lengths)",
    )
    p.add_argument("--mmpp-multipliers", default="1.5,0.5", help="mmpp: rate multipliers of the two states")
    p.add_argument("--mmpp-switch-rates", default="0.1,0.1", help="mmpp: switching rates 0->1, 1->0 (per s)")
    p.add_argument("--drain", action="store_true", help="serve until empty after the last arrival")
    p.add_argument(
        "--strict",
        action="store_true",
        help="thresholds violating their conditions are an error (exit 2); a run that overflows, livelocks, "
        "starves or truncates exits with status 3",
    )
    add_policy_knobs(p)
    add_chunked_options(p)
    p.add_argument(
        "--conventions",
        default="fluidopt",
        help="fluidopt (exact Poisson, docs/theory.md section 1) or vidur (first token from the prefill, gaps "
        "capped at 3/rate, recompute, middle 50%% of requests measured; docs/theory.md section 9)",
    )
    p.add_argument(
        "--override-conventions",
        action="store_true",
        help="simulate a thresholds file designed under other conventions than --conventions",
    )
    add_json_option(p)
    p.set_defaults(handler=cmd_simulate)

    p = subparsers.add_parser("thresholds", help="WAIT / Nested WAIT thresholds from the fluid model")
    add_workload_options(p)
    add_profile_options(p)
    p.add_argument(
        "--policy",
        required=True,
        choices=THRESHOLD_FAMILIES,
        help="policy whose thresholds are designed",
    )
    add_chunked_options(p, slack=True)
    p.add_argument(
        "--conventions",
        default="fluidopt",
        help="wait-cp: decode iterations per request, l' (fluidopt, the default of every command) or l'-1 (vidur); "
        "recorded in the thresholds file, and simulating it under other conventions is an error",
    )
    p.add_argument("--kappa", type=float, help="wait: use this kappa")
    p.add_argument("--case", choices=("slack", "boundary"), default="slack", help="wait: kappa at dT* or above")
    p.add_argument("--segments", type=int, help="nested-wait: number of segments L (default: one per length)")
    p.add_argument(
        "--method",
        choices=("equal-width", "equal-mass", "optimal"),
        default="equal-mass",
        help="nested-wait: how the decode-length segments are cut",
    )
    p.add_argument("--eta", type=float, default=0.05, help="nested-wait: ratio margin")
    p.add_argument("--delta", type=float, default=0.01, help="nested-wait: failure probability of the buffer")
    p.add_argument("--horizon-s", type=float, default=600.0, help="nested-wait: horizon T of the buffer")
    p.add_argument("--zeta", type=float, default=1.0, help="nested-wait: scale of the buffer")
    p.add_argument("--out", help="write a thresholds file (TOML, or JSON for .json)")
    add_json_option(p)
    p.set_defaults(handler=cmd_thresholds)


STRICT_FAILURE = 3  # exit status of --strict when a simulation overflows, livelocks or starves


def add_policy_knobs(p: argparse.ArgumentParser) -> None:
    """One option per knob of the registered policies (engines' own names, e.g. ``--max-num-seqs``)."""
    from fluidopt.sim.policies import REGISTRY, all_knobs

    for flag, knob in all_knobs().items():
        owners = [name for name, spec in REGISTRY.items() if any(k.flag == flag for k in spec.knobs)]
        text = f"{knob.help} [{', '.join(owners)}]"
        if knob.const is not None:
            p.add_argument(flag, dest=knob.dest, action="store_const", const=knob.const, help=text)
        else:
            p.add_argument(flag, dest=knob.dest, type=knob.type, help=text)


def knob_options(args: argparse.Namespace, policy: str) -> dict[str, Any]:
    """The knobs given on the command line as dataclass options; a knob the policy lacks is an error."""
    from fluidopt.sim.policies import all_knobs, policy_spec

    spec = policy_spec(policy)
    own = {knob.flag for knob in spec.knobs}
    options: dict[str, Any] = {}
    for flag, knob in all_knobs().items():
        value = getattr(args, knob.dest, None)
        if value is None:
            continue
        if flag not in own:
            takes = ", ".join(sorted(own)) or "none"
            raise InputError(flag, value, f"is not a knob of policy {policy} (its knobs: {takes})")
        options[knob.field] = value
    return options


def add_chunked_options(p: argparse.ArgumentParser, *, slack: bool = False) -> None:
    """Options of the chunked policies (wait-cp, nested-wait-cp)."""
    p.add_argument(
        "--chunk-tokens", type=int, help="wait-cp: chunk size cs (default 256, or the longest prompt if shorter)"
    )
    if slack:
        p.add_argument("--slack", type=float, help="wait-cp: kappa = dT* (1 + slack) instead of --kappa")
    p.add_argument("--wait-gate", action="store_true", help="wait-cp: per-segment wait gate (figure K ablation)")


def _design_options(args: argparse.Namespace) -> dict[str, Any]:
    """The command line's design options, for the registered designer of a fluid-designed policy."""
    return {
        "kappa": args.kappa,
        "kappa_rounding": True,
        "slack": getattr(args, "slack", None),
        "chunk_tokens": args.chunk_tokens,
        "conventions": args.conventions,
        "segments": args.segments,
        "repair": getattr(args, "repair", False),
        "watermark": getattr(args, "watermark", None),
        "wait_gate": args.wait_gate,
    }


def _check_design_options(args: argparse.Namespace) -> None:
    """Design options given to a policy whose design does not take them are errors naming the option."""
    design = fluid_design(args.policy)
    chunked = design is not None and design.chunked
    if not chunked:
        for option in ("chunk_tokens", "slack"):
            if getattr(args, option, None) is not None:
                raise InputError(f"--{option.replace('_', '-')}", getattr(args, option), "applies to wait-cp only")
        if args.wait_gate:
            raise InputError("--wait-gate/--chunk-tokens", args.policy, "apply to wait-cp and nested-wait-cp only")
    if args.kappa is not None and not (design is not None and (design.takes_kappa or design.chunked)):
        takes = ", ".join(n for n in FLUID_POLICIES if (fluid_design(n) or design).takes_kappa)  # type: ignore[union-attr]
        raise InputError("--kappa", args.kappa, f"applies to {takes}, not {args.policy}")
    if args.segments is not None and not (design is not None and design.nested):
        raise InputError("--segments", args.segments, f"applies to nested-wait, not {args.policy}")


def _policy_from_args(args: argparse.Namespace, workload, profile):
    from dataclasses import replace

    from fluidopt.thresholds.io import default_policy, read_thresholds, thresholds_conventions

    options = knob_options(args, args.policy)
    design = fluid_design(args.policy)
    if args.thresholds:
        if design is None:
            raise InputError("--thresholds", args.thresholds, f"applies to the WAIT family, not {args.policy}")
        policy = read_thresholds(args.thresholds, workload)
        designed = thresholds_conventions(args.thresholds)
        if designed is not None and designed != args.conventions and not args.override_conventions:
            raise InputError(
                "--thresholds",
                args.thresholds,
                f"was designed under conventions {designed!r}, not {args.conventions!r} (give --conventions "
                f"{designed} or --override-conventions)",
            )
        held = fluid_design(policy.name)
        if held is None or held.family != design.family:
            raise InputError("--thresholds", args.thresholds, f"holds {policy.name} settings, not {args.policy}")
        policy = as_variant(args.policy, policy)
        return replace(policy, **options) if options else policy
    _check_design_options(args)
    if design is None:
        return make_policy(args.policy, **{**_engine_defaults(args.policy, profile), **options})
    policy = default_policy(args.policy, workload, profile, **_design_options(args))
    if design.chunked and "block_size" in options:
        policy = replace(policy, block_size=options["block_size"])
    return policy


def _engine_defaults(name: str, profile: Any) -> dict[str, Any]:
    """An engine scheduler's knobs as the engine would set them on the profile's GPU (the user's own win)."""
    from fluidopt.answers.engine_defaults import engine_defaults_for
    from fluidopt.sim.policies import policy_spec

    engine = policy_spec(name).engine
    return dict(engine_defaults_for(engine, profile).knobs) if engine else {}


def policy_settings_text(policy: Any) -> str:
    """The policy's settings as ``name value`` pairs, whole; a zero sequence cap spelled out as "no cap"."""
    parts = []
    for key, value in policy.to_dict().items():
        if key == "policy":
            continue
        if key in ("max_batch", "max_num_seqs", "max_running_requests") and value == 0:
            value = "no cap"
        parts.append(f"{key} {value}")
    return ", ".join(parts) or "none"


def cmd_simulate(args: argparse.Namespace) -> int:
    """Run one simulation and print its summary."""
    from fluidopt.conventions import check_conventions
    from fluidopt.sim import MMPPArrivals, TraceArrivals, arrival_process, simulate
    from fluidopt.sim.policies import NestedWaitPolicy, WaitPolicy
    from fluidopt.thresholds.conditions import ThresholdConditionWarning
    from fluidopt.thresholds.io import check_policy_conditions
    from fluidopt.trace import read_trace

    workload, profile = workload_from_args(args), profile_from_args(args)
    check_conventions(args.conventions)
    if args.conventions == "vidur" and args.horizon_s is not None:
        raise InputError("--horizon-s", args.horizon_s, "conventions vidur count requests: use --requests")
    arrivals: ArrivalProcess | None
    if args.arrivals == "trace":
        if not str(args.workload).endswith(".csv"):
            raise InputError("--arrivals", "trace", "needs --workload to be a trace CSV")
        arrivals = TraceArrivals(
            read_trace(args.workload), bins=int(args.bins) if args.bins.isdigit() else 8, rate_per_s=args.rate
        )
    elif args.arrivals == "mmpp":
        arrivals = MMPPArrivals(
            _floats(args.mmpp_multipliers, "--mmpp-multipliers", 2),
            _floats(args.mmpp_switch_rates, "--mmpp-switch-rates", 2),
        )
    elif args.conventions == "vidur" and args.arrivals == "poisson":
        arrivals = None  # Vidur's capped-gap Poisson process, chosen by simulate()
    else:
        arrivals = arrival_process(args.arrivals)
    design = fluid_design(args.policy)
    if design is not None and design.chunked and not args.thresholds:
        from fluidopt.fluid.stability import max_stable_scale

        limit = max_stable_scale(workload, profile).max_rate_per_s
        if not workload.total_rate_per_s < limit:
            message = (
                f"rate {workload.total_rate_per_s:.4g} requests/s is at or above the fluid limit {limit:.4g}: no "
                f"{args.policy} design exists (the load is unstable under every policy)"
            )
            if args.json:
                print_json({"status": "unstable", "success": True, "message": message, "fluid_max_rate_per_s": limit})
            else:
                print(f"unstable: {message}")
            return 0
    policy = _policy_from_args(args, workload, profile)
    if args.no_hold:
        if isinstance(policy, WaitPolicy):
            policy = WaitPolicy(policy.thresholds, gate=policy.gate, hold=False)
        elif isinstance(policy, NestedWaitPolicy):
            policy = NestedWaitPolicy(policy.boundaries, policy.thresholds, policy.repair, hold=False)
        else:
            raise InputError("--no-hold", True, f"applies to wait and nested-wait, not {policy.name}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ThresholdConditionWarning)
        check_policy_conditions(policy, workload, profile, strict=args.strict)
    for warning in caught:
        print(f"fluidopt: warning: {warning.message}", file=__import__("sys").stderr)
    requests = args.requests if args.requests is not None or args.horizon_s is not None else 10_000
    result = simulate(
        workload,
        profile,
        policy,
        requests=requests,
        horizon_s=args.horizon_s,
        warmup_s=args.warmup_s,
        rng=args.seed,
        arrivals=arrivals,
        eviction=args.eviction,
        drain=args.drain,
        conventions=args.conventions,
    )
    code = 0
    if not result.success:
        print(f"fluidopt: warning: {result.status}: {result.message}", file=sys.stderr)
        code = STRICT_FAILURE if args.strict else 0
    document = result.to_dict()
    if args.json:
        print_json(document)
        return code
    header = (
        f"{policy.name} on {profile.name}, workload {workload.name} at {workload.total_rate_per_s:.4g} requests/s "
        f"(seed {args.seed}, eviction {result.eviction}, conventions {args.conventions}"
        + (
            f", delivered {document['settings']['delivered_rate_per_s']:.4g} requests/s)"
            if args.conventions == "vidur"
            else ")"
        )
    )
    print_simulation(document, header, policy_settings_text(policy), workload.decode_token_rate)
    return code


def print_simulation(document: dict, header: str, settings: str, benchmark_tokens_per_s: float) -> None:
    """A simulation's summary from its JSON document: the status first, then latency, rates and counts."""
    import textwrap

    from fluidopt.cli.tables import TABLE_WIDTH

    print(textwrap.fill(header, TABLE_WIDTH, subsequent_indent="  "))
    print(textwrap.fill(f"status: {document['status']}: {document['message']}", TABLE_WIDTH, subsequent_indent="  "))
    print(textwrap.fill(f"policy settings: {settings}", TABLE_WIDTH, subsequent_indent="  "))
    print()
    print(
        format_table(
            ["latency (s)", "mean", "p50", "p90", "p99"],
            [
                (name, *(document[f"{stat}_{key}_s"] for stat in ("mean", "p50", "p90", "p99")))
                for name, key in (
                    ("end to end", "latency"),
                    ("time to first token", "ttft"),
                    ("time per output token", "tpot"),
                    ("time between tokens", "tbt"),
                )
            ],
        )
    )
    print()
    print(
        format_table(
            ["rate", "simulated", "fluid benchmark"],
            [
                ("throughput (decode tokens/s)", document["throughput_tokens_per_s"], benchmark_tokens_per_s),
                ("completions (requests/s)", document["completed_per_s"], None),
            ],
            notes=["fluid benchmark: the decode tokens the arrivals bring per second (what a stable run serves)."],
        )
    )
    print()
    print(
        format_table(
            ["count", "value"],
            [
                ("arrived requests", document["arrived_requests"]),
                ("completed requests", document["completed_requests"]),
                ("unfinished requests", document["unfinished_requests"]),
                ("peak running requests", document["peak_running_requests"]),
                ("preemptions", document["evictions"]),
                ("decode tokens lost to restarts", document["wasted_tokens"]),
                ("tokens recomputed", document["recomputed_tokens"]),
                ("iterations", document["iterations"]),
                ("iterations over the KV capacity", document["overflow_iterations"]),
                ("peak KV memory (tokens)", document["peak_memory_tokens"]),
                ("KV capacity C (tokens)", document["kv_capacity_tokens"]),
            ],
        )
    )
    print()
    print(
        format_table(
            ["other", "value"],
            [
                ("mean KV memory (tokens)", document["mean_memory_tokens"]),
                ("simulation speed (requests/s)", document["arrived_requests"] / max(document["wall_time_s"], 1e-12)),
            ],
        )
    )


def cmd_thresholds(args: argparse.Namespace) -> int:
    """Compute thresholds from the fluid model; report conditions and memory."""
    from fluidopt.conventions import check_conventions
    from fluidopt.thresholds.io import thresholds_document, write_thresholds
    from fluidopt.thresholds.nested import nested_wait_thresholds
    from fluidopt.thresholds.wait import wait_thresholds

    workload, profile = workload_from_args(args), profile_from_args(args)
    check_conventions(args.conventions)
    family = fluid_design(args.policy)
    assert family is not None  # the option's choices are the fluid-designed families
    if family.chunked:
        return _print_chunked(args, workload, profile)
    if args.chunk_tokens is not None or args.slack is not None or args.wait_gate:
        raise InputError("--chunk-tokens/--slack/--wait-gate", args.policy, "apply to wait-cp and nested-wait-cp only")
    design: Any
    if not family.nested:
        design = wait_thresholds(workload, profile, kappa=args.kappa, case=args.case)
    else:
        design = nested_wait_thresholds(
            workload,
            profile,
            segments=args.segments,
            method=args.method,
            eta=args.eta,
            delta=args.delta,
            horizon_s=args.horizon_s,
            zeta=args.zeta,
        )
    document = thresholds_document(design, workload, profile)
    if args.out:
        write_thresholds(args.out, document)
    serve = _serve_line(document, workload, args.out)
    if args.json:
        print_json(
            {
                **design.to_dict(),
                "workload": workload.name,
                "profile": profile.name,
                "vllm_serve": serve,
                **({"written": args.out} if args.out else {}),
            }
        )
        return 0
    details = design.to_dict()
    print(
        f"{args.policy} thresholds for {workload.name} at {workload.total_rate_per_s:.4g} requests/s on {profile.name}"
    )
    if not family.nested:
        print(format_table(["class", "n_j"], list(zip(workload.class_names, design.thresholds))))
        print(f"kappa {design.kappa:.6g} in [{design.interval.low:.6g}, {design.interval.high:.6g}] ({design.case})")
    else:
        rows = [
            (k + 1, r, lam, n, p, th)
            for k, (r, lam, n, p, th) in enumerate(
                zip(
                    design.segments.boundaries,
                    design.segments.rates,
                    design.thresholds,
                    (float("nan"), *design.segments.continuation),
                    (float("nan"), *design.theta),
                )
            )
        ]
        print(format_table(["segment", "last stage", "Lambda_k", "n_k", "p_k", "theta_k"], rows))
        print(
            f"memory: base {design.memory_base_tokens:.6g} + carry-over {design.memory_carry_over_tokens:.6g} + "
            f"buffer {design.memory_buffer_tokens:.6g} = required {design.memory_required_tokens:.6g} tokens "
            f"(C = {profile.kv_capacity_tokens})"
        )
    print(f"M^pi = {details['memory_base_tokens']:.6g} tokens, dT(n) = {details['iteration_time_s']:.6g} s")
    _print_conditions(design.conditions)
    if args.out:
        print(f"wrote {args.out}")
    _print_serve_line(serve, args.out)
    return 0


def _serve_line(document: dict[str, Any], workload: Any, out: str | None) -> str:
    """The ``vllm serve`` line running the thresholds inside vLLM (fluidopt.engines.launch)."""
    from fluidopt.engines.launch import serve_command
    from fluidopt.sim.policies import policy_from_document

    return serve_command(policy_from_document(document, "thresholds"), workload, out or "THRESHOLDS.toml")


def _print_serve_line(line: str, out: str | None) -> None:
    print("run it inside vLLM (README 'Run WAIT inside vLLM'):" if out else "inside vLLM, with --out THRESHOLDS.toml:")
    print("  " + line)


def _print_chunked(args: argparse.Namespace, workload, profile) -> int:
    from fluidopt.thresholds.chunked import wait_cp_thresholds
    from fluidopt.thresholds.io import write_thresholds

    family = fluid_design(args.policy)
    design = wait_cp_thresholds(
        workload,
        profile,
        kappa=args.kappa,
        slack=getattr(args, "slack", None),
        chunk_tokens=args.chunk_tokens,
        conventions=args.conventions,
        nested=family is not None and family.nested,
        segments=args.segments,
        **({"watermark": args.watermark} if getattr(args, "watermark", None) is not None else {}),
    )
    document = {
        **design.to_dict(),
        "classes": list(workload.class_names),
        "workload": workload.name,
        "profile": profile.name,
        "wait_gate": bool(args.wait_gate),
    }
    if args.out:
        write_thresholds(args.out, document)
    serve = _serve_line(document, workload, args.out)
    if args.json:
        print_json({**document, "vllm_serve": serve, **({"written": args.out} if args.out else {})})
        return 0
    print(
        f"{design.policy_name} settings for {workload.name} at {workload.total_rate_per_s:.4g} requests/s on "
        f"{profile.name} (conventions {design.conventions})"
    )
    rows = [
        ("tl (requests holding KV)", design.tl),
        ("chunk tokens", design.chunk_tokens),
        ("prefill budget (tokens)", design.prefill_budget_tokens),
        ("decode budgets per segment", ", ".join(str(b) for b in design.decode_budgets)),
        ("total budget (tokens)", design.total_budget_tokens),
        ("segment boundaries (stages)", ", ".join(str(b) for b in design.boundaries)),
        (
            "kappa (s)",
            f"{design.kappa:.6g} in [{design.interval[0]:.6g}, {design.interval[1]:.6g}] ({design.binding_end})",
        ),
        ("iteration time of the rounded batch (s)", f"{design.iteration_time_s:.6g}"),
        ("M^pi (tokens)", f"{design.memory_tokens:.6g} of C = {profile.kv_capacity_tokens}"),
    ]
    print(format_table(["setting", "value"], rows))
    _print_conditions(design.conditions)
    if args.out:
        print(f"wrote {args.out}")
    _print_serve_line(serve, args.out)
    return 0


def _print_conditions(report) -> None:
    """The conditions of a threshold design as a table."""
    print(
        format_table(
            ["condition", "lhs", "rhs", "holds"],
            [(c.name, c.lhs, c.rhs, "yes" if c.holds else "NO") for c in report.conditions],
        )
    )
