"""CLI command ``import-run``: a benchmark's output turned into a plain run folder."""

from __future__ import annotations

import argparse

from fluidopt.cli.common import add_json_option, print_json


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``import-run``."""
    p = subparsers.add_parser(
        "import-run",
        help="turn a 'vllm bench serve --save-detailed' JSON or any CSV into a plain run folder",
        description="Write requests.csv and engine.toml (README 'Replay your own run') from a vllm bench serve "
        "detailed result (arrivals from start_times, or from request_rate inf / max_concurrency) or a CSV "
        "with a column mapping, and the engine.toml you give (its arguments are not in the benchmark's file).",
    )
    p.add_argument("source", help="the benchmark's result: a JSON (--format vllm-bench) or a CSV (--format csv)")
    p.add_argument(
        "--format",
        required=True,
        choices=("vllm-bench", "csv"),
        dest="source_format",
        help="vllm-bench: vllm bench serve --save-result --save-detailed JSON; csv: any CSV with --columns",
    )
    p.add_argument("--engine", required=True, help="an engine.toml with the server's [engine] table")
    p.add_argument("--out", required=True, help="the run folder to write (must not hold a run)")
    p.add_argument(
        "--columns",
        help="with --format csv: plain=theirs[:unit],... e.g. arrival_s=timestamp,input_tokens=prompt_len,"
        "output_tokens=completion_len,ttft_s=ttft_ms:ms,e2e_s=latency_ms:ms",
    )
    add_json_option(p)
    p.set_defaults(handler=cmd_import_run)


def cmd_import_run(args: argparse.Namespace) -> int:
    """Import, say what was done, and where the run is."""
    from fluidopt.answers.run_import import import_run

    folder, note = import_run(args.source, args.source_format, args.engine, args.out, args.columns)
    if args.json:
        print_json({"run": str(folder), "note": note})
    else:
        print(f"wrote {folder}/requests.csv and engine.toml: {note}")
    return 0
