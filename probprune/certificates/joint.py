"""Joint S-procedure bound on the coupled chain (THEORY.md §12.12, Statement 12.60 [D]).

The mixed bound (§12.3) sums one sup per stage; this bound takes ONE sup over the whole difference network. With
delta_i = s_i - shat_i, the state u_i = [delta_i; kappa_i shat_i; gamma] (kappa_i > 0, gamma > 0 free scales) obeys

    u_i = D_i X_i u_{i-1},   u_0 = [x; gamma],   F(x) - F_hat(x) = X_L u_{L-1},

    X_i = [[M_i, E_i / kappa_{i-1}, db_i / gamma], [0, kappa_i Mhat_i / kappa_{i-1}, kappa_i bhat_i / gamma], [0, 0, 1]]

(kappa_0 = 1; no delta block before the first pruned stage, where delta = 0 exactly), D_i diagonal in [0, I]: the ReLU difference quotient on the delta
coordinates, the activation pattern of F_hat on the shat coordinates, 1 on identity and constant coordinates. So
sup ||F - F_hat|| over the ball is at most sup over diagonal slopes in [0, I] of ||X_L D X_{L-1} ... D X_1 [x; gamma]||,
bounded by Statement 12.10's S-procedure recursion and, at the input, the trust-region bound of Statement 12.6 (ii)
(the constant coordinate is fixed at gamma, x ranges over the ball). Any kappa, gamma and multipliers are valid:
they are chosen by a heuristic (kappa_i = the composed bound's delta recursion over its shat recursion) and
optionally refined by Nelder-Mead on the bound itself. The constant coordinate carries no S-procedure multiplier
(its slope is exactly 1), so gamma does not change the bound and is 1."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from probprune.core.errors import ProbPruneError
from probprune.certificates.compose import (PAIR_REL, _scalar_sproc, check_deadline, stage_norms)
from probprune.certificates.lower import Chain, stage_diff
from probprune.certificates.propagate import trs_dual_bound

JOINT_MAX_DIM = 1600  # refuse when a coupled state (2 x width + 1) exceeds this (an eigh of that size per step)
KAPPA_RANGE = (1e-8, 1e8)


@dataclass(frozen=True)
class JointResult:
    """Statement 12.60's bound with the scales and multipliers that produced it (provenance)."""

    eps: float
    kappa: tuple[float, ...]  # scale of F_hat's channel after each hidden stage
    gamma: float  # value of the constant coordinate (1: it carries no multiplier, so its scale is immaterial)
    multipliers: tuple[float, ...]  # scalar S-procedure multiplier t per step (output side first)
    evaluations: int  # recursions computed (1 + the Nelder-Mead refinement's)
    seconds: float
    assumptions: tuple[str, ...] = field(default=(
        "deterministic: holds for this network and mask",
        "inputs in the l2 ball of radius r around the origin",
        "ReLU / identity activations of a lowered chain (§12.1)",
        "floating point: eigenvalues padded by (n + 10) u ||G||_F per step, result x (1 + 1e-6 (L + 1))"))


def coupled_width(F: Chain) -> int:
    """The largest coupled state 2 x (stage width) + 1 of the recursion (the input side is n_in + 1)."""
    return max([2 * s.n_out + 1 for s in F.stages[:-1]] + [F.n_in + 1])


def check_joint_dim(F: Chain, max_dim: int = JOINT_MAX_DIM) -> None:
    w = coupled_width(F)
    if w > max_dim:
        raise ProbPruneError(f"joint S-procedure bound: a coupled state has {w} coordinates (2 x width + 1), above "
                             f"max_dim={max_dim}")


def first_pruned_stage(F: Chain, Fhat: Chain) -> int | None:
    """The first stage k whose (E_k, db_k) is nonzero (None: F_hat = F). Before it delta_i = 0 exactly, so the
    coupled state carries only F_hat's channel there (Statement 12.60)."""
    for i in range(F.depth):
        E, db = stage_diff(F, Fhat, i)
        if np.any(E) or np.any(db):
            return i
    return None


def coupled_factors(F: Chain, Fhat: Chain, kappa, gamma: float = 1.0) -> list[np.ndarray]:
    """[X_L, X_{L-1}, ..., X_1] of Statement 12.60 (output side first). Stages before the first pruned one k carry
    no delta block (delta = 0 there; at stage k the factor has no M_k delta column)."""
    L = F.depth
    first = first_pruned_stage(F, Fhat)
    if first is None:
        raise ProbPruneError("F_hat = F: nothing is pruned (the error is 0)")
    k = [1.0] + [float(v) for v in kappa]  # k[i] = kappa_i, kappa_0 = 1 (the input)
    out = []
    for i in range(L - 1, -1, -1):  # stage index i (0-based) maps u_i -> pre-activation of stage i + 1
        s, sh = F.stages[i], Fhat.stages[i]
        E, db = stage_diff(F, Fhat, i)
        n = s.n_out
        has_delta_in = i > first  # the state entering stage i carries delta_{i-1}
        has_delta_out = i >= first
        rows = []
        if has_delta_out:
            top = ([s.M] if has_delta_in else []) + [E / k[i], (db / gamma)[:, None]]
            rows.append(np.hstack(top))
        if i < L - 1:  # hidden stage: F_hat's channel and the constant
            mid = ([np.zeros((n, s.n_in))] if has_delta_in else []) + [k[i + 1] * sh.M / k[i],
                                                                       (k[i + 1] * sh.b / gamma)[:, None]]
            rows.append(np.hstack(mid))
            one = np.zeros((1, rows[-1].shape[1]))
            one[0, -1] = 1.0
            rows.append(one)
        out.append(np.vstack(rows))
    return out


def _diag_step(G: np.ndarray, X: np.ndarray, t0: float, steps: int, margin: float, t_end: float | None = None):
    """Statement 12.60's step with a diagonal multiplier T on the slope coordinates (none on the constant):
    G' = C^T C, C = [L^{-1} (T X_R + g_RF X_F); sqrt(g_FF) X_F] with L L^T = 2T - G_RR - margin I (Cholesky: the
    certificate that the step is valid; the margin only lowers the matrix, so C^T C is >= the exact form). T starts
    at t0 I and takes ``steps`` Adam steps on log T against lambda_max(G') (Danskin: with q its top eigenvector,
    a = X_R q, z = T a + g_RF (X_F q), u = (2T - G_RR)^{-1} z: d lambda / d log T_j = T_j (2 a_j u_j - 2 u_j^2)).
    Stops early at ``t_end`` (a time.perf_counter() value). Returns (C, lambda_max estimate) of the best T that
    factorises, or None."""
    from scipy.linalg import cho_solve, cholesky, solve_triangular

    from probprune.certificates.compose import _krylov_top

    GRR, gRF, gFF = G[:-1, :-1], G[:-1, -1], float(G[-1, -1]) + margin
    XR, xf = X[:-1], X[-1]
    n = GRR.shape[0]

    def factor(T):
        try:
            return cholesky(2 * np.diag(T) - GRR - margin * np.eye(n), lower=True, check_finite=False)
        except np.linalg.LinAlgError:
            return None

    def top(T, L, v0):
        def mv(v):  # C^T C v without forming C
            w = solve_triangular(L, T * (XR @ v) + gRF * (xf @ v), lower=True, check_finite=False)
            wt = solve_triangular(L, w, lower=True, trans="T", check_finite=False)
            return XR.T @ (T * wt) + xf * (gRF @ wt) + gFF * xf * (xf @ v)
        return _krylov_top(mv, X.shape[1], v0, dim=6)  # warm-started: a few vectors suffice to choose T

    logt = np.full(n, math.log(t0))
    L = factor(np.exp(logt))
    if L is None:
        return None
    v0 = None
    lam0, v0 = top(np.exp(logt), L, v0)
    best = (lam0, np.exp(logt), L)
    lr, b1, b2, eps_a = 0.05, 0.9, 0.999, 1e-8  # Adam (Kingma & Ba) on log T
    m1, m2, it = np.zeros(n), np.zeros(n), 0
    for _ in range(steps):
        check_deadline()
        if t_end is not None and time.perf_counter() > t_end:
            break
        T = np.exp(logt)
        L = factor(T)
        if L is None:  # left the feasible set: back to the best point, smaller steps
            logt = np.log(best[1])
            lr *= 0.5
            continue
        lam, v0 = top(T, L, v0)
        if lam < best[0]:
            best = (lam, T, L)
        q = v0 / max(np.linalg.norm(v0), 1e-300)
        a = XR @ q
        z = T * a + gRF * float(xf @ q)
        u = cho_solve((L, True), z, check_finite=False)
        g = T * (2 * a * u - 2 * u * u)
        it += 1
        m1 = b1 * m1 + (1 - b1) * g
        m2 = b2 * m2 + (1 - b2) * g * g
        logt = logt - lr * (m1 / (1 - b1 ** it)) / (np.sqrt(m2 / (1 - b2 ** it)) + eps_a)
    lam, T, L = best
    C = np.vstack([solve_triangular(L, T[:, None] * XR + np.outer(gRF, xf), lower=True, check_finite=False),
                   math.sqrt(max(gFF, 0.0)) * xf[None, :]])
    return C, lam


def _recursion(mats: list[np.ndarray], r: float, diag_steps: int = 0, diag_max_dim: int = 0,
               diag_seconds: float | None = None) -> tuple[float, tuple[float, ...]]:
    """Statement 12.60's bound for fixed scales: Statement 12.10's S-procedure with one scalar multiplier t per step
    on the slope coordinates and none on the constant one (fixed at 1), then the trust-region bound at the input
    (Lemma 12.4; the constant is the offset). t is chosen on Krylov estimates of lambda_max of the next state
    (only a choice: any t > lambda_max(G_RR) / 2 is valid). The next state is G' = C^T C,
    C = [diag(2t - lam)^(-1/2) V^T (t X_R + g_RF X_F); sqrt(g_FF) X_F] (V, lam: eigenpairs of G_RR, lifted by a
    rounding slack, which only lowers 2t - lam)."""
    from scipy.optimize import minimize_scalar

    from probprune.certificates.compose import _krylov_top

    ts = []
    C = mats[0]  # G_1 = C^T C
    diag_end = None if diag_seconds is None else time.perf_counter() + diag_seconds
    for j, X in enumerate(mats[1:]):
        check_deadline()
        G = C.T @ C
        G = (G + G.T) / 2
        GRR = G[:-1, :-1]
        lam, V = np.linalg.eigh(GRR)
        slack = (GRR.shape[0] + 10) * np.finfo(float).eps * float(np.linalg.norm(G))
        lam = np.maximum(lam, 0.0) + slack
        gRF, gFF = G[:-1, -1], float(G[-1, -1]) + slack
        lmax = float(lam[-1])
        if lmax <= 0:
            return 0.0, tuple(ts)
        VX = V.T @ X[:-1]
        vg = V.T @ gRF
        xf = X[-1]
        # C(t) C(t)^T on the small side from t-independent pieces: O(n^2) per t instead of O(n^2 m)
        A, a, xx = VX @ VX.T, VX @ xf, float(xf @ xf)

        def small(t):
            d = 1.0 / np.sqrt(2 * t - lam)
            K = t * t * A + t * (np.outer(a, vg) + np.outer(vg, a)) + xx * np.outer(vg, vg)
            top = K * d[:, None] * d[None, :]
            cross = d * (t * a + xx * vg) * math.sqrt(gFF)
            return np.block([[top, cross[:, None]], [cross[None, :], np.array([[gFF * xx]])]])

        v0 = [None]

        def f(s):
            K = small(lmax / 2 * (1 + math.exp(s)))
            val, v0[0] = _krylov_top(lambda v: K @ v, K.shape[0], v0[0])
            return val

        res = minimize_scalar(f, bounds=(-12.0, 6.0), method="bounded", options={"xatol": 2e-2})
        f0 = f(0.0)
        s_best, f_best = (float(res.x), float(res.fun)) if res.success and float(res.fun) <= f0 else (0.0, f0)
        t = lmax / 2 * (1 + math.exp(s_best))
        ts.append(t)
        # the Adam steps' share of the time left (``diag_seconds`` over the remaining steps)
        share = None if diag_end is None else time.perf_counter() + (diag_end - time.perf_counter()) / (len(mats) - 1 - j)
        dg = _diag_step(G, X, t, diag_steps, slack, share) if 0 < diag_steps and GRR.shape[0] <= diag_max_dim \
            else None
        if dg is not None and dg[1] < f_best:
            C = dg[0]
        else:
            C = np.vstack([(t * VX + np.outer(vg, xf)) / np.sqrt(2 * t - lam)[:, None],
                           math.sqrt(gFF) * xf[None, :]])
    # sup over ||x|| <= r of ||C [x; 1]||: the trust-region bound (Statement 12.6 (ii), Lemma 12.4)
    val = trs_dual_bound(C[:, :-1], C[:, -1], r)
    return val * (1 + PAIR_REL * (len(mats) + 1)), tuple(ts)


def heuristic_scales(F: Chain, Fhat: Chain, r: float, norms=None) -> np.ndarray:
    """kappa_i = Delta_i / hhat_i from the composed bound's forward recursion (§12.1: hhat_i = ||Mhat_i|| hhat_{i-1} +
    ||bhat_i||, Delta_i = ||E_i|| hhat_{i-1} + ||M_i|| Delta_{i-1} + ||db_i||), so that both channels of the state
    have comparable size. Only a starting point: every positive choice is valid."""
    n = stage_norms(F, Fhat) if norms is None else norms
    h, d, ks = float(r), 0.0, []
    for i in range(F.depth - 1):
        d = float(n.E[i]) * h + float(n.M[i]) * d + float(n.bias_diff[i])
        h = float(n.Mhat[i]) * h + float(n.bias_hat[i])
        ks.append(d / h if h > 0 and d > 0 else 1e-3)
    return np.clip(np.asarray(ks, float), *KAPPA_RANGE)


def joint_bound(F: Chain, Fhat: Chain, radius: float = 1.0, *, norms=None, refine_evals: int = 0,
                refine_seconds: float | None = None, max_dim: int = JOINT_MAX_DIM, diag_steps: int = 0,
                diag_max_dim: int = JOINT_MAX_DIM, diag_seconds: float | None = None) -> JointResult:
    """Statement 12.60 (THEORY §12.12): certified upper bound on sup_{||x||_2 <= radius} ||F(x) - F_hat(x)||_2 for a
    lowered chain pair (ball centred at the origin). ``refine_evals`` > 0: Nelder-Mead on log kappa from
    the heuristic scales, at most that many recursions (each is a valid bound; the smallest is returned), stopped
    after ``refine_seconds`` or at the caller's deadline (the best completed recursion is returned). Refuses
    (ProbPruneError) when a coupled state exceeds ``max_dim`` coordinates or the chains differ in structure."""
    t0 = time.perf_counter()
    if not F.same_structure(Fhat):
        raise ProbPruneError("F and F_hat must be chains of the same structure")
    if F.scale_exp != Fhat.scale_exp:
        raise ProbPruneError("F and F_hat were lowered with different power-of-two scalings")
    r = float(radius)
    if not (math.isfinite(r) and r >= 0):
        raise ProbPruneError(f"radius must be finite and >= 0, got {radius!r}")
    check_joint_dim(F, max_dim)
    if first_pruned_stage(F, Fhat) is None:  # F_hat = F: the error is 0 (no bound to compute)
        return JointResult(eps=0.0, kappa=(), gamma=1.0, multipliers=(), evaluations=0,
                           seconds=time.perf_counter() - t0)
    kappa0 = heuristic_scales(F, Fhat, r, norms)
    evals = [0]
    best = [math.inf, kappa0, 1.0, ()]

    def bound(theta: np.ndarray) -> float:
        kap = np.clip(np.exp(theta), *KAPPA_RANGE)
        gam = 1.0  # the constant coordinate carries no multiplier: its scale does not change the bound
        v, ts = _recursion(coupled_factors(F, Fhat, kap, gam), r)
        evals[0] += 1
        if not math.isfinite(v):
            return math.inf
        if v < best[0]:
            best[:] = [v, kap, gam, ts]
        return v

    theta0 = np.log(kappa0)
    if diag_steps <= 0 or refine_evals > 0:  # else the diagonal recursion below is the only one (it starts from the
        bound(theta0)                         # scalar multipliers and keeps a step's scalar form where that is better)
    if refine_evals > 0 and theta0.size:
        from scipy.optimize import minimize

        from probprune.certificates.compose import _DEADLINE, TimeLimitReached, deadline

        ends = [e for e in (_DEADLINE.get(), None if refine_seconds is None else time.perf_counter() + refine_seconds)
                if e is not None]
        try:
            with deadline(min(ends) if ends else None):
                minimize(bound, theta0, method="Nelder-Mead",
                         options={"maxfev": int(refine_evals), "xatol": 0.02, "fatol": 1e-4 * best[0],
                                  "initial_simplex": theta0 + np.vstack([np.zeros(theta0.size),
                                                                         0.7 * np.eye(theta0.size)])})
        except TimeLimitReached:  # the refinement stops at the deadline: every completed recursion is a valid bound
            pass
    if diag_steps > 0:  # diagonal multipliers once, at the best scales
        from probprune.certificates.compose import TimeLimitReached

        try:
            v, ts = _recursion(coupled_factors(F, Fhat, best[1], 1.0), r, diag_steps, diag_max_dim, diag_seconds)
            evals[0] += 1
            if math.isfinite(v) and v < best[0]:
                best[0], best[3] = v, ts
        except TimeLimitReached:  # the scalar result stands (if there is none, the caller's deadline stops the bound)
            if not math.isfinite(best[0]):
                raise
    if not math.isfinite(best[0]):
        raise ProbPruneError("joint S-procedure bound: no finite value")
    return JointResult(eps=float(best[0]), kappa=tuple(float(v) for v in best[1]), gamma=float(best[2]),
                       multipliers=tuple(float(t) for t in best[3]), evaluations=evals[0],
                       seconds=time.perf_counter() - t0)


__all__ = ["JointResult", "joint_bound", "coupled_factors", "first_pruned_stage", "coupled_width", "check_joint_dim", "heuristic_scales",
           "JOINT_MAX_DIM"]
