import math

import sympy as sp

from fluidopt.fluid.symbolic import derive_equilibrium
from fluidopt.profile import preset_profile
from fluidopt.workload import preset_workload


def test_paper_forms_match_model_text():
    forms = derive_equilibrium(2, paper_linear=True)
    s = forms.symbols
    lam, l, lp, d0, d1 = s["lam"], s["l"], s["lp"], s["d0"], s["c_kv"]
    a = sum(lam[j] * (lp[j] + 1) * (l[j] + lp[j] / 2) for j in range(2))
    assert sp.simplify(forms.iteration_time - d0 / (1 - d1 * a)) == 0
    assert sp.simplify(forms.memory - d0 * a / (1 - d1 * a)) == 0
    C = s["C"]
    assert sp.simplify(forms.max_scale - C / ((d0 + d1 * C) * a)) == 0


def test_toy_values_and_latex():
    forms = derive_equilibrium(1, paper_linear=True)
    values = forms.evaluate(preset_workload("toy"), preset_profile("toy"))
    assert math.isclose(values["iteration_time"], 1.0) and math.isclose(values["memory"], 12.0)
    latex = forms.latex()
    assert "d_{0}" in latex["iteration_time"] and "lambda" in latex["memory"]
