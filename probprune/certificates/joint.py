"""Joint S-procedure bound on the coupled chain (THEORY.md §12.12, Statement 12.60 [D]).

The mixed bound (§12.3) sums one sup per stage; this bound takes ONE sup over the whole difference network. With
delta_i = s_i - shat_i and scales kappa_i > 0, the state u_i = [delta_i; kappa_i shat_i; 1] obeys

    u_i = D_i X_i u_{i-1},   u_0 = [x; 1],   F(x) - F_hat(x) = X_L u_{L-1},

    X_i = [[M_i, E_i / kappa_{i-1}, db_i], [0, kappa_i Mhat_i / kappa_{i-1}, kappa_i bhat_i], [0, 0, 1]]

(kappa_0 = 1; no delta block before the first pruned stage, where delta = 0 exactly) with D_i diagonal: the ReLU
difference quotient on the delta coordinates and F_hat's activation pattern on the shat coordinates (both in
[0, 1], "relaxed"), exactly 1 on identity coordinates (values carried past residual additions and max-pool trees)
and on the constant ("fixed"). Statement 12.10's S-procedure recursion runs on this chain with multipliers on the
relaxed coordinates only (scalar, then diagonal by Adam steps), and the trust-region bound of Lemma 12.4 handles the
input ball (the constant column is the offset). Every positive kappa and admissible multiplier gives a valid bound;
kappa comes from a heuristic (the composed bound's delta recursion over its shat recursion), optionally refined by
Nelder-Mead on the bound itself."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from probprune.core.errors import ProbPruneError
from probprune.certificates.compose import PAIR_REL, check_deadline, stage_norms
from probprune.certificates.lower import Chain, stage_diff
from probprune.certificates.propagate import trs_dual_bound

JOINT_MAX_DIM = 4200  # refuse when a coupled state (2 x width + 1) exceeds this (an eigh and Choleskys of that size
# per step; resnet_bn_digits, 2,049: 10.9 s with 10 Adam steps, 21.7 s with 40)
KAPPA_RANGE = (1e-8, 1e8)
DIAG_RESERVE_SECONDS = 0.25  # the diagonal steps stop this long before the caller's deadline (the recursion's rest)


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


def coupled_chain(F: Chain, Fhat: Chain, kappa) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """([X_L, X_{L-1}, ..., X_1], [relaxed rows of X_{L-1}, ..., X_1]) of Statement 12.60 (output side first).
    Stages before the first pruned one k carry no delta block (delta = 0 there; at stage k the factor has no M_k
    delta column). A row is relaxed (its slope ranges over [0, 1]) where the stage applies ReLU; identity coordinates
    (carried values of residual additions and max-pool trees, §12.1 / §12.7) and the constant have slope exactly 1."""
    L = F.depth
    first = first_pruned_stage(F, Fhat)
    if first is None:
        raise ProbPruneError("F_hat = F: nothing is pruned (the error is 0)")
    k = [1.0] + [float(v) for v in kappa]  # k[i] = kappa_i, kappa_0 = 1 (the input)
    mats, rel = [], []
    for i in range(L - 1, -1, -1):  # stage index i (0-based) maps u_i -> pre-activation of stage i + 1
        s, sh = F.stages[i], Fhat.stages[i]
        E, db = stage_diff(F, Fhat, i)
        n = s.n_out
        has_delta_in = i > first  # the state entering stage i carries delta_{i-1}
        has_delta_out = i >= first
        rows, mask = [], []
        if has_delta_out:
            rows.append(np.hstack(([s.M] if has_delta_in else []) + [E / k[i], db[:, None]]))
            mask.append(np.asarray(s.relu, bool))
        if i < L - 1:  # hidden stage: F_hat's channel and the constant
            rows.append(np.hstack(([np.zeros((n, s.n_in))] if has_delta_in else [])
                                  + [k[i + 1] * sh.M / k[i], (k[i + 1] * sh.b)[:, None]]))
            mask.append(np.asarray(sh.relu, bool))
            one = np.zeros((1, rows[-1].shape[1]))
            one[0, -1] = 1.0
            rows.append(one)
            mask.append(np.zeros(1, bool))
        mats.append(np.vstack(rows))
        if i < L - 1:
            rel.append(np.concatenate(mask))
    return mats, rel


def coupled_factors(F: Chain, Fhat: Chain, kappa) -> list[np.ndarray]:
    """[X_L, ..., X_1] of Statement 12.60 (:func:`coupled_chain` without the masks)."""
    return coupled_chain(F, Fhat, kappa)[0]


class _Step:
    """One step of Statement 12.60 (b) from the state form G = C^T C through the factor X (rows: the state's
    coordinates; ``rel`` the relaxed ones R, the others F fixed at slope 1): for a diagonal T > 0 with
    2T - G_RR > 0, G' = Z^T (2T - G_RR)^{-1} Z + X_F^T G_FF X_F, Z = T X_R + G_RF X_F, returned as C' with
    G' = C'^T C'. The eigenvalues of G_RR (scalar T = tI) are lifted by a rounding slack, G_FF by the same (both only
    enlarge G'); a diagonal T is certified by the Cholesky factor of 2T - G_RR - slack I."""

    def __init__(self, C: np.ndarray, X: np.ndarray, rel: np.ndarray):
        G = C.T @ C
        G = (G + G.T) / 2
        self.X, self.rel = X, rel
        R, Fx = np.flatnonzero(rel), np.flatnonzero(~rel)
        self.GRR = G[np.ix_(R, R)]
        self.GRF = G[np.ix_(R, Fx)]
        self.XR, self.XF = X[R], X[Fx]
        self.slack = (G.shape[0] + 10) * np.finfo(float).eps * float(np.linalg.norm(G))
        GFF = G[np.ix_(Fx, Fx)]
        sg, U = np.linalg.eigh(GFF) if Fx.size else (np.zeros(0), np.zeros((0, 0)))
        self.KF = (U * np.sqrt(np.maximum(sg, 0.0) + self.slack)).T @ self.XF  # G_FF + slack I = LF LF^T
        self.m = X.shape[1]

    # ---- scalar multiplier
    def scalar_setup(self):
        lam, V = np.linalg.eigh(self.GRR)
        self.lam = np.maximum(lam, 0.0) + self.slack
        self.P = V.T @ self.XR
        self.H = V.T @ (self.GRF @ self.XF)
        return float(self.lam[-1]) if self.lam.size else 0.0

    def scalar_matvec(self, t: float):
        d = 1.0 / np.sqrt(2 * t - self.lam)
        P, H, KF = self.P, self.H, self.KF

        def mv(v):
            w = d * d * (t * (P @ v) + H @ v)
            return t * (P.T @ w) + H.T @ w + KF.T @ (KF @ v)
        return mv

    def scalar_C(self, t: float) -> np.ndarray:
        d = 1.0 / np.sqrt(2 * t - self.lam)
        return np.vstack([(t * self.P + self.H) * d[:, None], self.KF])

    # ---- diagonal multiplier
    def diag_factor(self, T):
        from scipy.linalg import cholesky
        n = self.GRR.shape[0]
        try:
            return cholesky(2 * np.diag(T) - self.GRR - self.slack * np.eye(n), lower=True, check_finite=False)
        except np.linalg.LinAlgError:
            return None

    def diag_matvec(self, T, Lc):
        from scipy.linalg import solve_triangular
        XR, XF, GRF, KF = self.XR, self.XF, self.GRF, self.KF

        def mv(v):
            w = solve_triangular(Lc, T * (XR @ v) + GRF @ (XF @ v), lower=True, check_finite=False)
            wt = solve_triangular(Lc, w, lower=True, trans="T", check_finite=False)
            return XR.T @ (T * wt) + XF.T @ (GRF.T @ wt) + KF.T @ (KF @ v)
        return mv

    def diag_C(self, T, Lc) -> np.ndarray:
        from scipy.linalg import solve_triangular
        Z = T[:, None] * self.XR + self.GRF @ self.XF
        return np.vstack([solve_triangular(Lc, Z, lower=True, check_finite=False), self.KF])


def _diag_search(st: _Step, t0: float, steps: int, t_end: float | None = None):
    """Adam on log T (Statement 12.60 (b) with a diagonal T on the relaxed coordinates) from T = t0 I against
    lambda_max(G') (Danskin: with q its top eigenvector, a = X_R q, z = T a + G_RF X_F q, u = (2T - G_RR)^{-1} z:
    d lambda / d log T_j = T_j (2 a_j u_j - 2 u_j^2)). Returns (C', lambda_max estimate) of the best T that
    factorises, or None."""
    from scipy.linalg import cho_solve

    from probprune.certificates.compose import _krylov_top

    n = st.GRR.shape[0]
    logt = np.full(n, math.log(t0))
    T = np.exp(logt)
    Lc = st.diag_factor(T)
    if Lc is None:
        return None
    lam0, v0 = _krylov_top(st.diag_matvec(T, Lc), st.m, None, dim=6)
    best = (lam0, T, Lc)
    lr, b1, b2, eps_a = 0.05, 0.9, 0.999, 1e-8  # Adam (Kingma & Ba) on log T
    m1, m2, it = np.zeros(n), np.zeros(n), 0
    from probprune.certificates.compose import _DEADLINE

    wall = _DEADLINE.get()  # the caller's deadline: stop the Adam steps (keeping the best T) a reserve before it, so
    stop = min(e for e in (t_end, None if wall is None else wall - DIAG_RESERVE_SECONDS, math.inf) if e is not None)
    for _ in range(steps):  # that the rest of the recursion can still finish
        if time.perf_counter() > stop:
            break
        T = np.exp(logt)
        Lc = st.diag_factor(T)
        if Lc is None:  # left the feasible set: back to the best point, smaller steps
            logt = np.log(best[1])
            lr *= 0.5
            continue
        lam, v0 = _krylov_top(st.diag_matvec(T, Lc), st.m, v0, dim=6)  # warm-started: a few vectors suffice
        if lam < best[0]:
            best = (lam, T, Lc)
        q = v0 / max(np.linalg.norm(v0), 1e-300)
        a = st.XR @ q
        u = cho_solve((Lc, True), T * a + st.GRF @ (st.XF @ q), check_finite=False)
        g = T * (2 * a * u - 2 * u * u)
        it += 1
        m1 = b1 * m1 + (1 - b1) * g
        m2 = b2 * m2 + (1 - b2) * g * g
        logt = logt - lr * (m1 / (1 - b1 ** it)) / (np.sqrt(m2 / (1 - b2 ** it)) + eps_a)
    lam, T, Lc = best
    return st.diag_C(T, Lc), lam


def _recursion(mats: list[np.ndarray], rel: list[np.ndarray], r: float, diag_steps: int = 0,
               diag_max_dim: int = 0, diag_seconds: float | None = None) -> tuple[float, tuple[float, ...]]:
    """Statement 12.60's bound for fixed scales: Statement 12.10's S-procedure step (b) with a scalar multiplier t
    per step on the relaxed (ReLU) coordinates, chosen on Krylov estimates of lambda_max of the next state (any
    t > lambda_max(G_RR) / 2 is valid), then optionally a diagonal T (Adam from t, kept where its estimate is
    smaller), and the trust-region bound at the input (Lemma 12.4; the constant coordinate is the offset)."""
    from scipy.optimize import minimize_scalar

    from probprune.certificates.compose import _krylov_top

    ts = []
    C = mats[0]  # G_1 = C^T C
    diag_end = None if diag_seconds is None else time.perf_counter() + diag_seconds
    for j, (X, rj) in enumerate(zip(mats[1:], rel)):
        check_deadline()
        st = _Step(C, X, rj)
        if not rj.any():  # no slope relaxed: G' = X^T G X exactly
            C = np.vstack([st.KF])
            ts.append(0.0)
            continue
        lmax = st.scalar_setup()
        if lmax <= 0:  # G_RR = 0: any small t; the relaxed rows drop out as t -> 0
            lmax = st.slack
        v0 = [None]

        def f(sv):
            val, v0[0] = _krylov_top(st.scalar_matvec(lmax / 2 * (1 + math.exp(sv))), st.m, v0[0])
            return val

        res = minimize_scalar(f, bounds=(-12.0, 6.0), method="bounded", options={"xatol": 2e-2})
        f0 = f(0.0)
        s_best, f_best = (float(res.x), float(res.fun)) if res.success and float(res.fun) <= f0 else (0.0, f0)
        t = lmax / 2 * (1 + math.exp(s_best))
        ts.append(t)
        share = None if diag_end is None else \
            time.perf_counter() + (diag_end - time.perf_counter()) / (len(mats) - 1 - j)
        dg = _diag_search(st, t, diag_steps, share) if 0 < diag_steps and st.GRR.shape[0] <= diag_max_dim else None
        C = dg[0] if dg is not None and dg[1] < f_best else st.scalar_C(t)
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
        v, ts = _recursion(*coupled_chain(F, Fhat, kap), r)
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
            v, ts = _recursion(*coupled_chain(F, Fhat, best[1]), r, diag_steps, diag_max_dim, diag_seconds)
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


__all__ = ["JointResult", "joint_bound", "coupled_chain", "coupled_factors", "first_pruned_stage", "coupled_width", "check_joint_dim", "heuristic_scales",
           "JOINT_MAX_DIM"]
