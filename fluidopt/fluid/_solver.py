"""LP solver settings shared by the fluid LPs.

HiGHS prints a copyright banner on stdout the first time a solver object is created in a
process; that would corrupt the CLI's JSON output, so the first instance is created here with
the process's stdout pointed at /dev/null.
"""

from __future__ import annotations

import os
import sys
import warnings
from functools import cache

import cvxpy as cp

from fluidopt.errors import SolverError, SolverFallbackWarning

SOLVER = cp.HIGHS


@cache
def silence_highs_banner() -> None:
    """Create (and drop) one HiGHS instance with stdout silenced; later ones print nothing."""
    import highspy

    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as sink:
            os.dup2(sink.fileno(), 1)
            highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)


PRIMAL_SIMPLEX = {"simplex_strategy": 4}
SETTLED = (cp.OPTIMAL, cp.INFEASIBLE, cp.UNBOUNDED)


def solve(problem: cp.Problem, solver: str = SOLVER) -> str:
    """Solve ``problem`` with ``solver`` (HiGHS by default) without console output.

    On a nearly degenerate LP, HiGHS occasionally ends with status UNKNOWN after presolve; the
    problem is then solved again without presolve, and finally with Clarabel, before giving up.
    Any attempt after the first issues a :class:`~fluidopt.errors.SolverFallbackWarning` naming
    the attempt that failed and the one that settled the problem.

    Returns
    -------
    str
        The solver (and options) that settled the problem, for the result's record.

    Raises
    ------
    fluidopt.errors.SolverError
        When no attempt settles the problem.

    """
    attempts: list[tuple[str, dict]] = [(solver, {})]
    if solver == cp.HIGHS:
        silence_highs_banner()
        # Primal simplex: on the equilibrium LP (one dense dT column) it is about 7x faster than
        # HiGHS's default dual simplex for 10,000 classes.
        attempts = [(cp.HIGHS, PRIMAL_SIMPLEX), (cp.HIGHS, {}), (cp.HIGHS, {"presolve": "off"}), (cp.CLARABEL, {})]
    failed: list[str] = []
    for name, options in attempts:
        label = name + (f" {options}" if options else "")
        try:
            problem.solve(solver=name, **options)
        except (cp.error.SolverError, ValueError) as exc:
            failed.append(f"{label} ({type(exc).__name__})")
            continue
        if problem.status in SETTLED:
            if failed:
                warnings.warn(
                    f"LP solver fallback: {'; '.join(failed)} did not settle the problem, {label} did",
                    SolverFallbackWarning,
                    stacklevel=2,
                )
            return label
        failed.append(f"{label} (status {problem.status})")
    raise SolverError(
        f"the LP could not be solved by {', '.join(n for n, _ in attempts)} (last status {problem.status!r})"
    )
