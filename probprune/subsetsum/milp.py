"""Mixed-integer baseline for subset sum with ``scipy.optimize.milp`` (HiGHS) (THEORY.md §4.6, "MIP baseline").

Formulation (§4.6), one MILP per target, variables x in {0,1}^n and t >= 0:

* "closest": min t  s.t.  -t <= z - c^T x <= t  (plus t <= eps when ``eps_constraint`` is set, as in Pensia et al.'s
  Gurobi code [CODE]);
* "sparsest": stage 1 min 1^T x  s.t.  |z - c^T x| <= eps; stage 2 min t with 1^T x = k* (the same lexicographic
  objective as the MITM solver).

The LP relaxation's bound is 0, so a relative MIP gap closes only near t = 0 and HiGHS in effect solves to
optimality; its default *absolute* gap (1e-6) and integrality tolerance (1e-6) are not exposed by scipy, so the
achieved error is recomputed from the rounded x and is optimal to about 1e-6 (documented limitation).
Used to cross-check the exact MITM solver (tests) and as the benchmark peer.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp

from probprune.core.errors import ProbPruneError
from probprune.subsetsum.solver import SOLVE_MODES, SubsetSumResult, _finish, _float_tol, validate


def _solve_one(c: np.ndarray, z: float, eps, mode: str, eps_constraint: bool, time_limit: float | None):
    """Returns (x bool (n,), found flag): the mode's MILP (:data:`MILP_MODES`)."""
    opts = {"mip_rel_gap": 0.0, "presolve": True}
    if time_limit is not None:
        opts["time_limit"] = float(time_limit)
    return MILP_MODES[mode](c, z, eps, eps_constraint, opts)


def _milp_closest(c: np.ndarray, z: float, eps, eps_constraint: bool, opts: dict):
    """min t subject to |z - c x| <= t (and t <= eps with ``eps_constraint``)."""
    n = c.size
    integrality = np.r_[np.ones(n), 0.0]
    # rows: c x + t >= z  and  c x - t <= z   (i.e. |z - c x| <= t)
    A = np.vstack([np.r_[c, 1.0], np.r_[c, -1.0]])
    cons = LinearConstraint(A, [z, -np.inf], [np.inf, z])
    ub_t = eps if (eps_constraint and eps is not None) else np.inf
    res = milp(np.r_[np.zeros(n), 1.0], integrality=integrality, bounds=Bounds(np.zeros(n + 1),
               np.r_[np.ones(n), ub_t]), constraints=[cons], options=opts)
    if res.x is None:
        return None, False
    return np.round(res.x[:n]).astype(bool), True


def _milp_sparsest(c: np.ndarray, z: float, eps, eps_constraint: bool, opts: dict):
    """Two stages: the fewest terms with |z - c x| <= eps, then the smallest error among subsets of that size."""
    n = c.size
    integrality = np.r_[np.ones(n), 0.0]
    # sparsest, stage 1: fewest terms with |z - c x| <= eps
    cons1 = LinearConstraint(c[None, :], [z - eps], [z + eps])
    r1 = milp(np.ones(n), integrality=np.ones(n), bounds=Bounds(np.zeros(n), np.ones(n)), constraints=[cons1],
              options=opts)
    if r1.x is None:
        return None, False
    k = int(round(r1.fun))
    # stage 2: smallest error among k-term subsets
    A = np.vstack([np.r_[c, 1.0], np.r_[c, -1.0], np.r_[np.ones(n), 0.0]])
    cons2 = LinearConstraint(A, [z, -np.inf, k], [np.inf, z, k])
    r2 = milp(np.r_[np.zeros(n), 1.0], integrality=integrality,
              bounds=Bounds(np.zeros(n + 1), np.r_[np.ones(n), eps]), constraints=[cons2], options=opts)
    x = r2.x if r2.x is not None else np.r_[r1.x, 0.0]
    return np.round(x[:n]).astype(bool), True


#: mode name -> its MILP formulation (the names of probprune.subsetsum.solver.MODES)
MILP_MODES = {"closest": _milp_closest, "sparsest": _milp_sparsest}


def solve_milp(coeffs, targets, eps: float | None = None, mode: str = "closest", eps_constraint: bool = False,
               on_uncoverable: str = "raise", time_limit: float | None = None) -> SubsetSumResult:
    """MILP baseline with the same inputs, objectives and result type as :func:`probprune.subsetsum.solver.solve`.

    ``eps_constraint`` adds t <= eps to "closest" (Pensia et al.'s formulation); a target with no feasible subset
    is then a failure (success False, empty subset). In "sparsest" mode an infeasible target falls back to the
    closest-mode MILP and is reported with success False, like the MITM solver."""
    C, Z, batched, squeeze, eps = validate(coeffs, targets, eps, mode, on_uncoverable)
    if eps_constraint and eps is None:
        raise ProbPruneError("eps_constraint needs eps > 0")
    R, n = C.shape
    bits = np.zeros(Z.shape, dtype=np.int64)
    found = np.zeros(Z.shape, dtype=bool)
    weights = (1 << np.arange(n, dtype=np.int64))
    for r in range(R):
        for k in range(Z.shape[1]):
            x, ok = _solve_one(C[r], float(Z[r, k]), eps, mode, eps_constraint, time_limit)
            if not ok and SOLVE_MODES[mode].needs_eps:  # no feasible subset: the closest one, reported as failed
                x, _ = _solve_one(C[r], float(Z[r, k]), eps, "closest", False, time_limit)
            if x is not None:
                bits[r, k] = int((weights * x).sum())
            found[r, k] = ok
    return _finish(C, Z, bits, found, eps, mode, "milp", batched, squeeze, _float_tol(C, Z),
                   ("scipy.optimize.milp (HiGHS), mip_rel_gap=0; absolute gap/integrality tolerance 1e-6",),
                   use_found=SOLVE_MODES[mode].success_needs_found or eps_constraint)
