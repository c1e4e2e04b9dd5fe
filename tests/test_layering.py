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


def _imported_modules(path) -> set[str]:
    import ast

    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_timing_kinds_are_named_only_inside_the_timing_package():
    """Outside fluidopt/timing/ nothing imports a concrete kind's module: everything asks the timing object."""
    from pathlib import Path

    import fluidopt

    root = Path(fluidopt.__file__).parent
    kinds = {f"fluidopt.timing.{name}" for name in ("affine", "measured", "predictor", "roofline", "grid")}
    offenders = {
        path.relative_to(root).as_posix(): sorted(_imported_modules(path) & kinds)
        for path in root.rglob("*.py")
        if "timing" not in path.relative_to(root).parts[:1]
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_runtime_timing_modules_import_no_fitter():
    """Fitters produce timing objects; no runtime module of fluidopt/timing/ imports one."""
    from pathlib import Path

    import fluidopt

    folder = Path(fluidopt.__file__).parent / "timing"
    offenders = {
        path.name: sorted(m for m in _imported_modules(path) if m.startswith("fluidopt.timing.fit"))
        for path in folder.glob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}
