"""Functions stay short enough to read: none over 150 lines but the compiled kernel's event loop.

The kernel's loop (:func:`fluidopt.sim.kernel.run_kernel`) stays whole on purpose: numba keeps
its state in registers across the loop and inlines the selection and step-time functions into
it (its docstring says so).
"""

from __future__ import annotations

import ast
from pathlib import Path

import fluidopt

LIMIT = 150
EXEMPT = {("fluidopt/sim/kernel.py", "run_kernel")}


def _long_functions(root: Path) -> list[tuple[str, str, int]]:
    out = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                name = path.relative_to(root.parent).as_posix()
                if length > LIMIT and (name, node.name) not in EXEMPT:
                    out.append((name, node.name, length))
    return out


def test_no_function_is_longer_than_150_lines_but_the_kernel_loop():
    root = Path(fluidopt.__file__).parent
    assert _long_functions(root) == []


def test_the_length_check_sees_a_long_function(tmp_path):
    package = tmp_path / "fluidopt"
    package.mkdir()
    (package / "long.py").write_text("def f():\n" + "    x = 1\n" * 160, encoding="utf-8")
    assert _long_functions(package) == [("fluidopt/long.py", "f", 161)]
