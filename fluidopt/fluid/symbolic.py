"""Symbolic derivation of the fluid closed forms with sympy.

The equilibrium equations of arXiv:2504.11320 (section 3) for one affine iteration-time piece
``tau = d0 + c_kv K + c_pf P + c_seq B`` are solved symbolically:

    n_j = lambda_j dT,   dT = d0 + sum_j n_j (c_kv S_j + c_pf l_j + c_seq (l'_j + 1)),
    S_j = (l'_j + 1)(l_j + l'_j / 2),   M = sum_j n_j S_j,

and the largest stable scaling solves ``M*(theta lambda) = C``.  Setting ``c_pf = c_seq = 0``
gives the paper's ``dT* = d0 / (1 - d1 a)`` and ``M* = d0 a / (1 - d1 a)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import sympy as sp

from fluidopt.errors import require
from fluidopt.profile import GPUProfile
from fluidopt.workload import Workload


@dataclass(frozen=True)
class SymbolicEquilibrium:
    """Closed-form expressions for ``m`` classes and their symbols.

    Attributes
    ----------
    symbols : dict
        Name -> sympy symbol or tuple of symbols (``lam``, ``l``, ``lp``, ``d0``, ``c_kv``,
        ``c_pf``, ``c_seq``, ``C``, ``theta``).
    kv_mass : tuple of sympy.Expr
        ``S_j``.
    iteration_time, memory, max_scale : sympy.Expr
        ``dT*``, ``M*`` and ``theta*``.
    per_stage : tuple of sympy.Expr
        ``n_j*``.

    """

    symbols: dict[str, Any]
    kv_mass: tuple[sp.Expr, ...]
    iteration_time: sp.Expr
    per_stage: tuple[sp.Expr, ...]
    memory: sp.Expr
    max_scale: sp.Expr

    def latex(self) -> dict[str, str]:
        """LaTeX strings of the main expressions, for papers."""
        return {
            "kv_mass": sp.latex(self.kv_mass[0]),
            "iteration_time": sp.latex(self.iteration_time),
            "per_stage": sp.latex(self.per_stage[0]),
            "memory": sp.latex(self.memory),
            "max_scale": sp.latex(self.max_scale),
        }

    def substitutions(self, workload: Workload, profile: GPUProfile) -> dict[sp.Symbol, float]:
        """Numeric values for every symbol from a workload and a single-piece profile."""
        require(profile.is_single_piece, "profile", profile.name, "symbolic forms need a single affine piece")
        s = self.symbols
        piece = profile.pieces[0]
        values: dict[sp.Symbol, float] = {
            s["d0"]: piece.base_s,
            s["c_kv"]: piece.per_kv_token_s,
            s["c_pf"]: piece.per_prefill_token_s,
            s["c_seq"]: piece.per_sequence_s,
            s["C"]: float(profile.kv_capacity_tokens),
        }
        for j, request_class in enumerate(workload.classes):
            values[s["lam"][j]] = request_class.rate_per_s
            values[s["l"][j]] = float(request_class.prefill_tokens)
            values[s["lp"][j]] = float(request_class.decode_tokens)
        return values

    def evaluate(self, workload: Workload, profile: GPUProfile) -> dict[str, object]:
        """Evaluate the expressions numerically (exact rational arithmetic, then float)."""
        values = {k: sp.nsimplify(v, rational=True) for k, v in self.substitutions(workload, profile).items()}
        return {
            "iteration_time": float(self.iteration_time.subs(values)),
            "per_stage": [float(e.subs(values)) for e in self.per_stage],
            "memory": float(self.memory.subs(values)),
            "max_scale": float(self.max_scale.subs(values)),
        }


@cache
def derive_equilibrium(num_classes: int, *, paper_linear: bool = False) -> SymbolicEquilibrium:
    """Derive the equilibrium and the largest stable scaling for ``num_classes`` classes.

    Parameters
    ----------
    num_classes : int
        Number of request classes ``m``.
    paper_linear : bool
        Set ``c_pf = c_seq = 0`` (the paper's model, with ``c_kv`` written ``d1``).

    """
    require(num_classes >= 1, "num_classes", num_classes, "must be >= 1")
    m = num_classes
    lam = sp.symbols(f"lambda_1:{m + 1}", nonnegative=True)
    l = sp.symbols(f"l_1:{m + 1}", positive=True)
    lp = sp.symbols(f"lprime_1:{m + 1}", positive=True)
    d0, capacity, theta, dt = sp.symbols("d_0 C theta DeltaT", positive=True)
    c_kv = sp.Symbol("d_1" if paper_linear else "c_kv", nonnegative=True)
    c_pf = sp.Integer(0) if paper_linear else sp.Symbol("c_pf", nonnegative=True)
    c_seq = sp.Integer(0) if paper_linear else sp.Symbol("c_seq", nonnegative=True)
    kv_mass = tuple((lp[j] + 1) * (l[j] + lp[j] / 2) for j in range(m))
    cost = [c_kv * kv_mass[j] + c_pf * l[j] + c_seq * (lp[j] + 1) for j in range(m)]
    n = [lam[j] * dt for j in range(m)]
    balance = sp.Eq(dt, d0 + sum(n[j] * cost[j] for j in range(m)))
    iteration_time = sp.simplify(sp.solve(balance, dt)[0])
    per_stage = tuple(sp.simplify(lam[j] * iteration_time) for j in range(m))
    memory = sp.simplify(sum(per_stage[j] * kv_mass[j] for j in range(m)))
    scaled_memory = memory.subs({lam[j]: theta * lam[j] for j in range(m)}, simultaneous=True)
    max_scale = sp.simplify(sp.solve(sp.Eq(scaled_memory, capacity), theta)[0])
    symbols: dict[str, object] = {
        "lam": lam,
        "l": l,
        "lp": lp,
        "d0": d0,
        "c_kv": c_kv,
        "c_pf": c_pf,
        "c_seq": c_seq,
        "C": capacity,
        "theta": theta,
    }
    return SymbolicEquilibrium(symbols, kv_mass, iteration_time, per_stage, memory, max_scale)
