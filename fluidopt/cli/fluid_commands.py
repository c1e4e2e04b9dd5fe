"""CLI commands of the fluid core: equilibrium, stability, presets, profile fitting, symbolic."""

from __future__ import annotations

import argparse
import textwrap
from typing import Any

from fluidopt.cli import profile_calibrate as calibrate_command
from fluidopt.cli import profile_roofline as roofline_command
from fluidopt.cli.common import (
    add_constraint_options,
    add_json_option,
    add_profile_options,
    add_workload_options,
    constraints_from_args,
    format_table,
    print_json,
    profile_from_args,
    save_figure_atomic,
    workload_from_args,
)
from fluidopt.errors import InputError
from fluidopt.hardware import GPUS, MODELS, gpu_spec
from fluidopt.model_config import resolve_model
from fluidopt.profile import preset_profile, profile_presets
from fluidopt.timing.fit import VIDUR_TABLE_KINDS
from fluidopt.tomlio import write_toml
from fluidopt.workload import preset_workload, workload_presets

TABLE_WIDTH = 100  # listings fit a 100-column terminal; --json carries the full descriptions


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the fluid-core commands to the top-level parser."""
    p = subparsers.add_parser("equilibrium", help="fluid equilibrium: batch mix, iteration time, memory")
    add_workload_options(p)
    add_profile_options(p)
    add_constraint_options(p)
    p.add_argument(
        "--method",
        choices=("auto", "closed-form", "lp"),
        default="auto",
        help="closed form (linear profile) or the LP; auto picks the closed form where it applies",
    )
    add_json_option(p)
    p.set_defaults(handler=cmd_equilibrium)

    p = subparsers.add_parser("stability", help="largest stable scaling of a mix and what limits it")
    add_workload_options(p)
    add_profile_options(p)
    add_constraint_options(p)
    p.add_argument(
        "--method",
        choices=("auto", "closed-form", "lp"),
        default="auto",
        help="closed form (linear profile) or the LP; auto picks the closed form where it applies",
    )
    p.add_argument("--plot", help="2-class workloads: write the stability-region plot to this file")
    p.add_argument("--directions", type=int, default=91, help="rays for the 2-class boundary")
    add_json_option(p)
    p.set_defaults(handler=cmd_stability)

    p = subparsers.add_parser("workloads", help="list workload presets")
    add_json_option(p)
    p.set_defaults(handler=cmd_workloads)

    p = subparsers.add_parser("profiles", help="list GPU profile presets")
    add_json_option(p)
    p.set_defaults(handler=cmd_profiles)

    p = subparsers.add_parser("profile", help="GPU profile tools")
    profile_sub = p.add_subparsers(dest="profile_command", required=True)
    fit = profile_sub.add_parser(
        "fit",
        help="fit a profile from Vidur-format mlp.csv (+ attention.csv) or a per-batch timing log",
    )
    fit.add_argument(
        "csv",
        help="Vidur profiling CSV (mlp.csv), with --batch-log a per-iteration timing CSV, or with "
        "--format llmservingsim an LLMServingSim profile folder (meta.yaml, tpN/*.csv)",
    )
    fit.add_argument(
        "--format",
        choices=("vidur", "llmservingsim"),
        default="vidur",
        help="vidur (default): mlp.csv (+ --attention); llmservingsim: tables measured through vLLM",
    )
    fit.add_argument("--tp", type=int, help="llmservingsim: tensor-parallel degree of the tables (tpN)")
    fit.add_argument("--dp", type=int, help="llmservingsim: data-parallel engines (default the run's, else 1)")
    fit.add_argument(
        "--ep",
        action="store_true",
        default=None,
        help="llmservingsim: experts spread over the dp x tp GPUs (vLLM --enable-expert-parallel)",
    )
    fit.add_argument(
        "--run",
        help="llmservingsim: a vLLM run folder whose KV capacity (logged blocks, or vLLM's memory rule) and "
        "interconnect the profile takes",
    )
    fit.add_argument("--gpu-memory-gb", type=float, help="llmservingsim: GPU memory for vLLM's memory rule")
    fit.add_argument(
        "--attention-model",
        choices=("grid", "fit"),
        default="grid",
        help="llmservingsim: keep the measured attention grid (default; timing kind engine-grid) or fit the "
        "measured kind's parametric forms to it",
    )
    fit.add_argument("--attention", help="Vidur attention.csv (or the shared sample format): a measured profile")
    fit.add_argument(
        "--timing",
        choices=VIDUR_TABLE_KINDS,
        default="measured",
        help="with --attention: the measured model, or Vidur's execution-time predictor reproduced "
        "(docs/theory.md section 13)",
    )
    fit.add_argument(
        "--batch-log",
        action="store_true",
        help="CSV holds one row per iteration: prefill_tokens (prompt tokens computed in it), decode_sequences "
        "(requests decoding one token), cached_tokens (KV tokens read, over all requests), seconds (its wall "
        "time, in seconds: a median above 10 s is refused as milliseconds)",
    )
    fit.add_argument("--kv-capacity-tokens", type=int, help="--batch-log: the engine's KV capacity (tokens)")
    fit.add_argument(
        "--plot", help="--batch-log: write the fit's residual plot (fitted vs logged time, error by work) here"
    )
    fit.add_argument(
        "--gpu",
        help=f"GPU: one of {', '.join(sorted(GPUS))}, or a GPU TOML file (required except with --batch-log)",
    )
    fit.add_argument("--model", choices=sorted(MODELS), help="model (required except with --batch-log)")
    fit.add_argument("--name", help="profile name (default GPU-model)")
    fit.add_argument("--tensor-parallel", type=int, default=1)
    fit.add_argument("--memory-utilisation", type=float, default=0.9)
    fit.add_argument("--out", help="write the profile TOML here")
    add_json_option(fit)
    fit.set_defaults(handler=cmd_profile_fit)
    roofline_command.register(profile_sub)
    calibrate_command.register(profile_sub)
    show = profile_sub.add_parser("show", help="print a profile (a preset name or a TOML file) as TOML")
    show.add_argument("name", help="a preset name (fluidopt profiles) or a profile TOML file; checked as it loads")
    show.set_defaults(handler=cmd_profile_show)

    p = subparsers.add_parser("symbolic", help="closed forms derived with sympy, as LaTeX")
    p.add_argument("--classes", type=int, default=1, help="number of request classes (1-6)")
    p.add_argument("--paper-linear", action="store_true", help="the paper's model (no prefill/sequence cost)")
    add_json_option(p)
    p.set_defaults(handler=cmd_symbolic)


def cmd_equilibrium(args: argparse.Namespace) -> int:
    """Print the fluid equilibrium."""
    from fluidopt.fluid.equilibrium import equilibrium

    workload, profile = workload_from_args(args), profile_from_args(args)
    result = equilibrium(workload, profile, constraints_from_args(args), method=args.method)
    if args.json:
        print_json({"workload": workload.name, "profile": profile.name, **result.to_dict()})
        return 0
    print(f"workload {workload.name} ({workload.total_rate_per_s:.4g} requests/s) on {profile.name}")
    print(result.message)
    if result.stable:
        rows = [
            (n, c.prefill_tokens, c.decode_tokens, c.rate_per_s, v)
            for n, c, v in zip(result.class_names, workload.classes, result.per_stage)
        ]
        print(format_table(["class", "prefill", "decode", "rate/s", "per stage n*"], rows))
        print(
            f"throughput benchmark: {result.throughput_tokens_per_s:.6g} decode tokens/s, "
            f"{result.completed_per_s:.6g} requests/s"
        )
        print("utilisation: " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in result.utilisation.items()))
        print("binding: " + (", ".join(result.binding) or "none"))
    return 0


def cmd_stability(args: argparse.Namespace) -> int:
    """Print the largest stable scaling and optionally plot the 2-class region."""
    import matplotlib.pyplot as plt

    from fluidopt.fluid.stability import max_stable_scale, peer_max_scales, stability_boundary

    workload, profile = workload_from_args(args), profile_from_args(args)
    constraints = constraints_from_args(args)
    if args.plot and workload.num_classes != 2:
        raise InputError("--plot", args.plot, f"needs a 2-class workload; {workload.name} has {workload.num_classes}")
    result = max_stable_scale(workload, profile, constraints, method=args.method)
    peers = peer_max_scales(workload, profile)
    if args.plot:
        boundary = stability_boundary(workload, profile, constraints, directions=args.directions)
        from fluidopt.plotting import plot_stability_region

        figure = plot_stability_region(boundary, title=f"{workload.name} on {profile.name}")
        save_figure_atomic(figure, args.plot)
        plt.close(figure)
    out = {"workload": workload.name, "profile": profile.name, **result.to_dict()}
    out["rate_per_s"] = workload.total_rate_per_s
    out["peer_max_rate_per_s"] = {k: v * workload.total_rate_per_s for k, v in peers.items()}
    if args.plot:
        out["plot"] = args.plot
    if args.json:
        print_json(out)
        return 0
    print_stability(out)
    return 0


def print_stability(document: dict) -> None:
    """The stability answer from its JSON document: the verdict first, then the limits, one table."""
    verdict = "stable" if document["stable"] else "unstable"
    rows = [
        ("this mix's rate", document["rate_per_s"], ""),
        ("fluid limit (fluidopt)", document["max_rate_per_s"], ", ".join(document["binding"]) or "nothing"),
        *((f"peer closed form {k}", v, "") for k, v in document["peer_max_rate_per_s"].items()),
    ]
    elasticity = document["memory_elasticity"]
    print(
        textwrap.fill(
            f"{document['workload']} on {document['profile']}: {verdict} at {document['rate_per_s']:.4g} requests/s; "
            f"the largest stable scaling theta* = {document['max_scale']:.6g}",
            TABLE_WIDTH,
            subsequent_indent="  ",
        )
    )
    print(
        format_table(
            ["rate", "requests/s", "binds at the limit"],
            rows,
            notes=[
                f"memory elasticity d ln theta* / d ln C = {elasticity:.4g}: {document['regime']} (below 0.5 a "
                "larger KV cache barely raises the limit, even where memory is the constraint that binds at the "
                "edge, because the iteration time diverges there)"
            ],
        )
    )
    if document.get("plot"):
        print(f"wrote {document['plot']}")


def cmd_workloads(args: argparse.Namespace) -> int:
    """List workload presets."""
    rows = []
    for name in workload_presets():
        w = preset_workload(name)
        rows.append((name, w.num_classes, w.total_rate_per_s, w.description))
    if args.json:
        print_json([{"name": r[0], "classes": r[1], "rate_per_s": r[2], "description": r[3]} for r in rows])
    else:
        print(format_table(["preset", "classes", "rate/s"], [r[:3] for r in rows], width=TABLE_WIDTH))
        print()
        for r in rows:
            print(textwrap.fill(f"{r[0]}: {r[3].split('. ')[0]}.", TABLE_WIDTH, subsequent_indent="  "))
        print("full descriptions: fluidopt workloads --json")
    return 0


def cmd_profiles(args: argparse.Namespace) -> int:
    """List profile presets."""
    rows = []
    for name in profile_presets():
        p = preset_profile(name)
        mape = p.fit.get("mape", "")
        rows.append(
            (
                name,
                p.kv_capacity_tokens,
                len(p.pieces),
                mape if isinstance(mape, float) else "-",
                p.description,
            )
        )
    if args.json:
        print_json(
            [
                {"name": r[0], "kv_capacity_tokens": r[1], "pieces": r[2], "fit_mape": r[3], "description": r[4]}
                for r in rows
            ]
        )
    else:
        table = [(r[0], r[1], r[2], 100 * r[3] if isinstance(r[3], float) else None) for r in rows]
        print(format_table(["preset", "KV tokens", "pieces", "fit MAPE %"], table, width=TABLE_WIDTH))
        print()
        for r in rows:
            print(textwrap.fill(f"{r[0]}: {r[4].split('. ')[0]}.", TABLE_WIDTH, subsequent_indent="  "))
        print("full descriptions: fluidopt profiles --json, or fluidopt profile show NAME")
    return 0


def cmd_profile_fit(args: argparse.Namespace) -> int:
    """Fit a profile from measurements and report its quality."""
    from fluidopt.timing.fit.vidur_csv import fit_vidur_profile

    if args.timing != "measured" and not args.attention:
        raise InputError("--timing", args.timing, "needs --attention (the predictor pools attention rows)")
    if args.plot and not args.batch_log:
        raise InputError("--plot", args.plot, "needs --batch-log (the residual plot of a per-batch fit)")
    if args.format == "llmservingsim":
        return _profile_fit_engine_tables(args)
    if args.attention_model != "grid":
        raise InputError("--attention-model", args.attention_model, "applies to --format llmservingsim")
    for option in ("tp", "run", "gpu_memory_gb"):
        if getattr(args, option) is not None:
            raise InputError(
                f"--{option.replace('_', '-')}", getattr(args, option), "applies to --format llmservingsim"
            )
    if args.batch_log or args.attention:
        return _profile_fit_components(args)
    for option in ("gpu", "model"):
        if getattr(args, option) is None:
            raise InputError(f"--{option}", None, "is required to fit an mlp.csv")
    gpu, model = gpu_spec(args.gpu), resolve_model(args.model)
    name = args.name or f"{args.gpu}-{args.model}"
    profile = fit_vidur_profile(
        args.csv, gpu, model, name, tensor_parallel=args.tensor_parallel, memory_utilisation=args.memory_utilisation
    )
    if args.out:
        write_toml(args.out, profile.to_dict())
    if args.json:
        print_json({"name": name, "mape": profile.fit["mape"], "r2": profile.fit["r2"], "profile": profile.to_dict()})
        return 0
    fit = profile.fit
    print(f"{name}: {fit['points']} measurements, MAPE {100 * fit['mape']:.2f}%, R^2 {fit['r2']:.5f}")
    print(
        f"non-attention time = max({1e3 * fit['floor_s']:.3f} ms, {1e3 * fit['intercept_s']:.3f} ms + "
        f"{1e6 * fit['slope_s_per_token']:.2f} us x tokens); knee at {fit['knee_tokens']:.0f} tokens"
    )
    print(
        f"KV capacity {profile.kv_capacity_tokens} tokens; decode attention "
        f"{1e9 * profile.pieces[0].per_kv_token_s:.2f} ns per KV token"
    )
    if args.out:
        print(f"wrote {args.out}")
    return 0


def cmd_profile_show(args: argparse.Namespace) -> int:
    """Print a profile (preset or file) as TOML, after loading and checking it."""
    from fluidopt.profile import load_profile
    from fluidopt.tomlio import dumps_toml

    print(dumps_toml(load_profile(args.name).to_dict()), end="")
    return 0


def cmd_symbolic(args: argparse.Namespace) -> int:
    """Print the symbolic closed forms as LaTeX."""
    from fluidopt.fluid.symbolic import derive_equilibrium

    if args.classes < 1 or args.classes > 6:
        raise InputError("--classes", args.classes, "must be between 1 and 6")
    forms = derive_equilibrium(args.classes, paper_linear=args.paper_linear).latex()
    if args.json:
        print_json(forms)
    else:
        for name, latex in forms.items():
            print(f"{name}: $${latex}$$")
    return 0


def _profile_fit_engine_tables(args: argparse.Namespace) -> int:
    """Tables measured through vLLM (LLMServingSim): the composed step's error per component, then the TOML."""
    from fluidopt.timing.fit.engine_tables import profile_for_run

    for option in ("attention", "batch_log", "kv_capacity_tokens", "model"):
        if getattr(args, option):
            raise InputError(
                f"--{option.replace('_', '-')}", getattr(args, option), "does not apply to --format llmservingsim"
            )
    for option in ("tp", "dp"):
        if getattr(args, option) is not None and getattr(args, option) < 1:
            raise InputError(f"--{option}", getattr(args, option), "must be >= 1")
    if args.gpu_memory_gb is not None and not args.gpu_memory_gb > 0:
        raise InputError("--gpu-memory-gb", args.gpu_memory_gb, "must be > 0")
    memory = args.gpu_memory_gb * 1e9 if args.gpu_memory_gb is not None else None
    profile, components = profile_for_run(
        args.csv,
        args.run,
        tensor_parallel=args.tp,
        gpu_memory_bytes=memory,
        name=args.name,
        data_parallel=args.dp,
        expert_parallel=args.ep,
        gpu=args.gpu,
        attention=args.attention_model,
    )
    return _report_fit(args, profile.name, profile, components)


def _profile_fit_components(args: argparse.Namespace) -> int:
    """Measured (attention-aware) or per-batch-log fits: every component's error, then the TOML."""
    from fluidopt.timing.fit import fit_vidur_tables
    from fluidopt.timing.fit.batch_log import fit_batch_log_profile, read_batch_log_csv

    if args.batch_log:
        if args.attention:
            raise InputError("--attention", args.attention, "does not combine with --batch-log")
        if args.kv_capacity_tokens is None:
            raise InputError("--kv-capacity-tokens", None, "is required with --batch-log")
        name = args.name or "batch-log"
        log = read_batch_log_csv(args.csv)
        profile, quality = fit_batch_log_profile(log, name, args.kv_capacity_tokens)
        components = {"iteration_time": quality}
        if args.plot:
            import matplotlib.pyplot as plt

            from fluidopt.plotting import plot_batch_log_fit

            figure = plot_batch_log_fit(log, profile)
            save_figure_atomic(figure, args.plot)
            plt.close(figure)
    else:
        for option in ("gpu", "model"):
            if getattr(args, option) is None:
                raise InputError(f"--{option}", None, "is required to fit Vidur measurements")
        name = args.name or f"{args.gpu}-{args.model}-{args.timing}"
        profile, components = fit_vidur_tables(
            args.timing,
            args.csv,
            args.attention,
            gpu_spec(args.gpu),
            resolve_model(args.model),
            name,
            tensor_parallel=args.tensor_parallel,
        )
    return _report_fit(args, name, profile, components)


def _report_fit(args: argparse.Namespace, name: str, profile: Any, components: dict[str, Any]) -> int:
    """Write the profile (with --out) and print every component's error."""
    if args.out:
        write_toml(args.out, profile.to_dict())
    if args.json:
        print_json(
            {
                "name": name,
                "components": {k: q.to_dict() for k, q in components.items()},
                "profile": profile.to_dict(),
                **({"written": args.out} if args.out else {}),
            }
        )
        return 0
    print(
        f"{name}: KV capacity {profile.kv_capacity_tokens} tokens"
        + (f" ({profile.fit['kv_capacity_source']})" if profile.fit.get("kv_capacity_source") else "")
    )
    rows = [
        (k, q.model, q.points, f"{100 * q.mape:.2f}%", f"{100 * q.max_abs_pct_error:.1f}%")
        for k, q in components.items()
    ]
    print(format_table(["component", "model", "rows", "MAPE", "worst"], rows))
    if args.out:
        print(f"wrote {args.out}")
    if getattr(args, "plot", None):
        print(f"wrote {args.plot}")
    return 0
