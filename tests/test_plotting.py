"""Plotting leaves global matplotlib state alone and returns figures."""

from __future__ import annotations

import subprocess
import sys


def test_import_and_plot_change_no_global_state():
    code = (
        "import matplotlib as m; m.use('svg'); before = dict(m.rcParams)\n"
        "import fluidopt as fo; from fluidopt.plotting import plot_stability_region\n"
        "w = fo.preset_workload('mix-p512d20-p512d50'); p = fo.preset_profile('a100-80gb-llama-2-7b')\n"
        "fig = plot_stability_region(fo.stability_boundary(w, p, directions=7))\n"
        "assert m.get_backend() == 'svg', m.get_backend()\n"
        "changed = [k for k, v in m.rcParams.items() if before.get(k) != v and k != 'backend']\n"
        "assert not changed, changed\n"
        "assert fig.axes and fig.axes[0].lines\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
