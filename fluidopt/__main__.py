"""``python -m fluidopt`` runs the command-line interface."""

from fluidopt.cli import run

run()
