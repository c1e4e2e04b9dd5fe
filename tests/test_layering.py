"""Threshold design stays light: no numba import (the simulator's compiler) for a chunked design."""

from __future__ import annotations

import subprocess
import sys


def test_chunked_design_imports_no_numba():
    code = (
        "import sys\n"
        "import fluidopt as fo\n"
        "from fluidopt.thresholds.chunked import wait_cp_thresholds\n"
        "import fluidopt.sim.policies\n"
        "for conventions in ('vidur', 'fluidopt'):\n"
        "    wait_cp_thresholds(fo.preset_workload('p512d20').with_total_rate(15),\n"
        "                       fo.preset_profile('a100-80gb-llama-3-8b-vidur'), conventions=conventions)\n"
        "assert 'numba' not in sys.modules, 'numba was imported'\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
