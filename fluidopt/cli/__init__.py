"""The ``fluidopt`` command-line interface.

Every command prints a readable table by default and JSON with ``--json``.  Invalid input
prints one line on stderr naming the field and value, and exits with status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from fluidopt.errors import InputError


def build_parser() -> argparse.ArgumentParser:
    """The top-level argument parser with every sub-command registered."""
    from fluidopt import __version__
    from fluidopt.cli import (
        dynamics_commands,
        experiment_commands,
        figures_command,
        fluid_commands,
        report_command,
        sim_commands,
    )

    parser = argparse.ArgumentParser(
        prog="fluidopt",
        description="Fluid-guided scheduling of LLM inference under KV-cache memory limits (arXiv:2504.11320).",
    )
    parser.add_argument("--version", action="version", version=f"fluidopt {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    report_command.register(subparsers)
    fluid_commands.register(subparsers)
    sim_commands.register(subparsers)
    experiment_commands.register(subparsers)
    dynamics_commands.register(subparsers)
    figures_command.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        from fluidopt.cli.validation import validate_common_arguments

        validate_common_arguments(args)
        return int(args.handler(args) or 0)
    except InputError as exc:
        print(f"fluidopt: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
