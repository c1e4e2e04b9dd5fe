"""``python -m fluidopt`` runs the command-line interface."""

import sys

from fluidopt.cli import main

sys.exit(main())
