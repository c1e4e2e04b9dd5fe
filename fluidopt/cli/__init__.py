"""The ``fluidopt`` command-line interface.

Every command prints a readable table by default and JSON with ``--json``.  Invalid input
prints one line on stderr naming the field and value, and exits with status 2.
"""

from __future__ import annotations

import argparse
import gc
import sys
import warnings
from collections.abc import Sequence
from typing import NoReturn

from fluidopt._gc import collection_paused
from fluidopt.errors import InputError, SolverError


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Help that shows each option's default, unless the text already says it or there is none."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if "default" in text or default is None or default is argparse.SUPPRESS or isinstance(default, bool):
            return text
        if action.option_strings:
            return f"{text} (default: %(default)s)"
        return text


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line naming the problem, with exit status 2.

    Abbreviated options are refused (``--rat 20`` is an error, not ``--rate 20``), and every
    option's help shows its default.
    """

    def __init__(self, *args, **kwargs) -> None:  # noqa: D107
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", DefaultsHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        """Print ``fluidopt: error: <message>`` (no usage block) and exit with status 2."""
        self.exit(2, f"fluidopt: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The top-level argument parser with every sub-command registered."""
    from fluidopt import __version__
    from fluidopt.cli import (
        dynamics_commands,
        engine_check_command,
        experiment_commands,
        figures_command,
        fleet_command,
        fluid_commands,
        import_run_command,
        recommend_command,
        replay_command,
        report_command,
        sim_commands,
    )

    parser = OneLineParser(
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
    replay_command.register(subparsers)
    import_run_command.register(subparsers)
    recommend_command.register(subparsers)
    fleet_command.register(subparsers)
    engine_check_command.register(subparsers)
    return parser


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    """Show a warning as ``fluidopt: warning: <message>`` on stderr (no source line, no path)."""
    print(f"fluidopt: warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status.  Warnings print as one line each on stderr."""
    with collection_paused():  # imports and the parser only build long-lived objects
        parser = build_parser()
        args = parser.parse_args(argv)
    try:
        from fluidopt.cli.validation import validate_common_arguments

        validate_common_arguments(args)
        if hasattr(args, "quiet"):
            from fluidopt.experiments.sweep import show_command_progress

            show_command_progress(not args.quiet and sys.stderr.isatty())
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warning
            return int(args.handler(args) or 0)
    except InputError as exc:
        print(f"fluidopt: error: {exc}", file=sys.stderr)
        return 2
    except SolverError as exc:
        print(f"fluidopt: error: solver failed: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0


def run() -> NoReturn:
    """Console entry point: run :func:`main` and exit with its status.

    The process ends right after, so every live object is frozen first and the interpreter's
    final garbage collections do not traverse numba's registries again (about 0.4 s).  Frozen
    cyclic garbage is never collected, which is why only the exiting process does this.
    """
    status = main()
    gc.freeze()
    sys.exit(status)


if __name__ == "__main__":  # pragma: no cover
    run()
