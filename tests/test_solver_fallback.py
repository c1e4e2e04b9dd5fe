"""The LP solver chain: a fallback is announced by a warning and recorded in the result."""

from __future__ import annotations

import cvxpy as cp
import pytest

from fluidopt import preset_profile, preset_workload
from fluidopt.errors import SolverError, SolverFallbackWarning
from fluidopt.fluid import _solver
from fluidopt.fluid.stability import max_stable_scale


def _small_lp() -> cp.Problem:
    x = cp.Variable(nonneg=True)
    return cp.Problem(cp.Maximize(x), [x <= 3])


def test_first_attempt_settles_without_a_warning(recwarn):
    assert _solver.solve(_small_lp()).startswith("HIGHS")
    assert not [w for w in recwarn if issubclass(w.category, SolverFallbackWarning)]


def test_a_fallback_warns_and_names_the_solver_that_settled(monkeypatch):
    calls = []
    original = cp.Problem.solve

    def flaky(self, *args, **kwargs):
        calls.append(kwargs.get("solver"))
        if kwargs.get("solver") == cp.HIGHS:
            raise cp.error.SolverError("forced failure")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cp.Problem, "solve", flaky)
    problem = _small_lp()
    with pytest.warns(SolverFallbackWarning, match="CLARABEL did"):
        used = _solver.solve(problem)
    assert used == "CLARABEL" and calls[-1] == cp.CLARABEL and problem.value == pytest.approx(3, rel=1e-6)


def test_every_attempt_failing_is_a_solver_error(monkeypatch):
    def broken(self, *args, **kwargs):
        raise cp.error.SolverError("forced failure")

    monkeypatch.setattr(cp.Problem, "solve", broken)
    with pytest.raises(SolverError, match="HIGHS, HIGHS, HIGHS, CLARABEL"):
        _solver.solve(_small_lp())


def test_the_stability_result_records_its_solver():
    result = max_stable_scale(preset_workload("p512d20"), preset_profile("a100-80gb-llama-3-8b-vidur"), method="lp")
    assert result.solver.startswith("HIGHS") and result.to_dict()["solver"] == result.solver
    closed = max_stable_scale(preset_workload("p512d20"), preset_profile("a100-80gb-llama-2-7b"), method="closed-form")
    assert closed.solver == ""


def test_the_cli_prints_a_fallback_as_one_warning_line(monkeypatch, capsys):
    from fluidopt.cli import main

    original = cp.Problem.solve

    def flaky(self, *args, **kwargs):
        if kwargs.get("solver") == cp.HIGHS:
            raise cp.error.SolverError("forced failure")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cp.Problem, "solve", flaky)
    monkeypatch.setattr("warnings.filters", [])  # the CLI's own display, not pytest's error filter
    code = main(["stability", "-w", "p512d20", "-p", "a100-80gb-llama-3-8b-vidur", "--method", "lp", "--json"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 0 and len(err) == 1 and err[0].startswith("fluidopt: warning: LP solver fallback")
