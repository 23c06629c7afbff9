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
kappa comes from a heuristic (the composed bound's delta recursion over its shat recursion)."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from probprune.core.errors import ProbPruneError
from probprune.certificates.compose import PAIR_REL, TimeLimitReached, check_deadline, stage_norms
from probprune.certificates.lower import Chain, stage_diff
from probprune.certificates.propagate import trs_dual_bound, trs_dual_from_spectrum

JOINT_MAX_DIM = 4200  # refuse when a coupled state (2 x width + 1) exceeds this (an eigh and Choleskys of that size
# per step; resnet_bn_digits, 2,049: 10.9 s with 10 Adam steps, 21.7 s with 40)
KAPPA_RANGE = (1e-8, 1e8)
THIN_STEPS = True  # Statement 12.61's thin scalar step where the state has fewer rows than relaxed coordinates
JOINT_ADAM_LR = 0.1  # Adam step on log T of the joint bound's diagonal multipliers (compose's default 0.05 for the
# pair/segment bounds). Measured at 15 / 25 steps: LeNet-300-100 (trained, q = 0.3) 0.693 / 0.668 -> 0.661 / 0.654,
# digits MLP 2.068 / 2.018 -> 2.021 / 1.989, residual digits MLP (q = 0.4) 25.37 / 23.18 -> 22.90 / 22.35; at 5 / 10
# steps the 8x8 average-pool CNN 4.74 / 4.18 -> 4.30 / 3.65 (q = 0.3); 0.2 and 0.4 were worse than 0.1; the one
# case where 0.05 was smaller: the MNIST-1D MLP at 25 steps (q = 0.6: 16.89 against 17.08)
DIAG_RESERVE_SECONDS = 0.25  # the diagonal steps stop this long before the caller's deadline (the recursion's rest)
JOINT_COST = 0.4  # predicted seconds of the recursion without diagonal steps = eigh256 x JOINT_COST x the work of
# predicted_joint_seconds (measured under load 1-2, one BLAS thread: resnet_bn_digits 2.1-2.5 s, coupled width
# 2,049; the 28x28 average-pool CNN 1.1 s, 1,729; the 16x16 residual net 11-13 s, 4,097: predicted 3.3 / 1.5 / 27 s)
JOINT_STEP_OVERHEAD = 10.0  # ... plus this many eigh256 per step (the scalar search's Krylov runs; LeNet-300-100:
# 0.34 s, 3 steps)


JOINT_RELU_CONSTRAINTS = True  # the end-to-end phase adds the ReLU's linear constraints (Statement 12.63)
JOINT_NU0 = -14.0  # their multipliers start at exp(JOINT_NU0) x the T of the coordinate they name first (so that the
# start is the greedy value: at -8 the bias-free LeNet-300-100 started at 1.25 against 0.654) ...
JOINT_NU_LR = 0.3  # ... and move by this Adam step on their logarithms (T's: JOINT_ADAM_LR)
JOINT_E2E_WORK = 200.0  # the end-to-end phase (_end_to_end) gets floor(JOINT_E2E_WORK / work) Adam steps, work = the
# recursion's summed _step_work (units of a 256^3 eigh), at most the caller's cap, and none where that is below
# JOINT_E2E_MIN_STEPS: a count fixed by the network's shape, not by the machine's speed. A step (torch forward and
# backward) cost 0.3-0.6 s on LeNet-300-100 (work 32: 3 steps, so none; 2 steps had taken its auto certificate from
# 0.77 s to 1.92 s for 2.8%, against a 2 s target) and 5-15 ms on the 64-wide digits MLPs (work 0.45-2.1: 95-100)
JOINT_E2E_MIN_STEPS = 10  # fewer end-to-end steps than this are not run (they moved the bound by < 3%)
E2E_DTYPES = ("float64", "float32")  # the end-to-end proposal's arithmetic (E2EOptions.dtype)


@dataclass(frozen=True)
class E2EOptions:
    """How the end-to-end phase (:func:`_end_to_end`, Statements 12.62-12.63) searches its multipliers; only the
    proposal depends on them (it is certified in float64 at the multipliers found). ``dtype``: the torch forms'
    arithmetic ("float32": about half the time a step); ``lr_scale``: the Adam steps (JOINT_ADAM_LR, JOINT_NU_LR)
    times this at the start, decaying (cosine) to ``lr_end`` x that over the steps or the time
    (compose.adam_log_multipliers); ``recover``: after an inadmissible point the momentum restarts and the step grows
    back. The default is the phase as measured on the MLPs (float64, constant step): there float32 was 2-4% looser
    (MNIST-1D) and a decaying double step moved the bound by -4% to +1%."""

    dtype: str = "float64"
    lr_scale: float = 1.0
    lr_end: float = 1.0
    recover: bool = False

    def __post_init__(self):
        if self.dtype not in E2E_DTYPES:
            raise ProbPruneError(f"end-to-end dtype must be one of {', '.join(E2E_DTYPES)}, got {self.dtype!r}")
        if not (math.isfinite(self.lr_scale) and self.lr_scale > 0 and math.isfinite(self.lr_end)
                and 0 < self.lr_end <= 1):
            raise ProbPruneError(f"end-to-end lr_scale must be positive and lr_end in (0, 1], got {self.lr_scale!r}, "
                                 f"{self.lr_end!r}")


def joint_work(F: Chain) -> float:
    """The summed :func:`_step_work` of the coupled recursion on F (every stage taken as pruned, the widest case)."""
    dims = [F.n_in + 1] + [2 * s.n_out + 1 for s in F.stages[:-1]]
    return sum(_step_work(dims[i], dims[i - 1]) for i in range(1, len(dims)))


def e2e_steps_for(F: Chain, cap: int, work_budget: float = JOINT_E2E_WORK) -> int:
    """Adam steps of the end-to-end multipliers on F: floor(work_budget / joint_work(F)), at most ``cap``; 0 where that
    is below JOINT_E2E_MIN_STEPS (or the cap, if smaller)."""
    w = joint_work(F)
    n = int(max(0, min(cap, math.floor(work_budget / w)))) if w > 0 else int(cap)
    return n if n >= min(JOINT_E2E_MIN_STEPS, cap) else 0


@dataclass(frozen=True)
class JointResult:
    """Statement 12.60's bound with the scales and multipliers that produced it (provenance)."""

    eps: float
    kappa: tuple[float, ...]  # scale of F_hat's channel after each hidden stage
    gamma: float  # value of the constant coordinate (1: it carries no multiplier, so its scale is immaterial)
    multipliers: tuple[float, ...]  # scalar S-procedure multiplier t per step (output side first)
    evaluations: int  # recursions computed
    seconds: float
    end_to_end: float | None = None  # the certified value at the end-to-end multipliers (None: not run / no gain)
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


def _step_work(m_out: int, m_in: int) -> float:
    """Work of one recursion step in units of a 256 x 256 eigh: the form's Gram, eigh and factors are ~m_out^2 (m_out +
    m_in) flops (m_out: the state after the factor, m_in: before it)."""
    return m_out * m_out * (m_out + m_in) / 256.0 ** 3


def predicted_joint_seconds(F: Chain) -> float:
    """Predicted seconds of :func:`joint_bound` without diagonal steps on F (every stage taken as pruned, the widest
    case): eigh256 x JOINT_COST x the summed work of the steps. A prediction, used only to decide whether to start
    (``auto``'s time limit)."""
    from probprune.certificates.compose import _eigh256_seconds

    work = joint_work(F)
    return _eigh256_seconds() * (JOINT_COST * work + JOINT_STEP_OVERHEAD * (F.depth - 1))


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


def _lifted_factor(GFF: np.ndarray, slack: float) -> np.ndarray:
    """U with U^T U = G_FF + slack I (G_FF symmetric positive semidefinite up to rounding): the upper Cholesky factor
    (a Cholesky is ~15x cheaper than an eigh at 2,000 coordinates); where it fails (G_FF not numerically positive
    definite even after the slack), the eigen-factor of G_FF with its eigenvalues clipped at 0 and lifted by slack.
    Both only enlarge the form (Statement 12.60 (b), floating point)."""
    from scipy.linalg import cholesky

    if GFF.size == 0:
        return np.zeros((0, 0))
    try:
        return cholesky(GFF + slack * np.eye(GFF.shape[0]), lower=False, check_finite=False)
    except np.linalg.LinAlgError:
        sg, U = np.linalg.eigh(GFF)
        return (U * np.sqrt(np.maximum(sg, 0.0) + slack)).T


class _Step:
    """One step of Statement 12.60 (b) from the state form G = C^T C through the factor X (rows: the state's
    coordinates; ``rel`` the relaxed ones R, the others F fixed at slope 1): for a diagonal T > 0 with
    2T - G_RR > 0, G' = Z^T (2T - G_RR)^{-1} Z + X_F^T G_FF X_F, Z = T X_R + G_RF X_F, returned as C' with
    G' = C'^T C'. The eigenvalues of G_RR (scalar T = tI) are lifted by a rounding slack, G_FF by the same (both only
    enlarge G'); a diagonal T is certified by the Cholesky factor of 2T - G_RR - slack I.

    Thin form (Statement 12.61, C with fewer rows r than relaxed coordinates): the scalar step decomposes the r x r
    matrix C_R C_R^T instead of the |R| x |R| G_RR (push-through identity, as 12.2b); G_RR and G_RF are formed only
    if a diagonal step asks for them."""

    def __init__(self, C: np.ndarray, X: np.ndarray, rel: np.ndarray):
        self.X, self.rel = X, rel
        R, Fx = np.flatnonzero(rel), np.flatnonzero(~rel)
        self.XR, self.XF = X[R], X[Fx]
        self.m = X.shape[1]
        self.thin = THIN_STEPS and C.shape[0] < R.size
        if self.thin:
            self.CR, self.CF = C[:, R], C[:, Fx]
            self.slack = (max(C.shape) + 10) * np.finfo(float).eps * float(np.einsum("ij,ij->", C, C))
            GFF = self.CF.T @ self.CF
            self._GRR = self._GRF = None
        else:
            G = C.T @ C
            G = (G + G.T) / 2
            self._GRR = G[np.ix_(R, R)]
            self._GRF = G[np.ix_(R, Fx)]
            self.slack = (G.shape[0] + 10) * np.finfo(float).eps * float(np.linalg.norm(G))
            GFF = G[np.ix_(Fx, Fx)]
        self.KF = _lifted_factor((GFF + GFF.T) / 2, self.slack) @ self.XF  # KF^T KF = X_F^T (G_FF + slack I) X_F

    @property
    def GRR(self) -> np.ndarray:
        if self._GRR is None:
            G = self.CR.T @ self.CR
            self._GRR = (G + G.T) / 2
        return self._GRR

    @property
    def GRF(self) -> np.ndarray:
        if self._GRF is None:
            self._GRF = self.CR.T @ self.CF
        return self._GRF

    # ---- scalar multiplier
    def scalar_setup(self):
        if self.thin:
            # 12.61: (2tI - C_R^T C_R)^{-1} = (2t)^{-1} (I + C_R^T (2tI - H)^{-1} C_R), H = C_R C_R^T = U diag(lam) U^T
            H = self.CR @ self.CR.T
            lam, U = np.linalg.eigh((H + H.T) / 2)
            self.lam = np.maximum(lam, 0.0) + self.slack
            self.Q = self.CF @ self.XF  # G_RF X_F = C_R^T Q
            self.P1 = U.T @ (self.CR @ self.XR)  # U^T C_R Z(t) = t P1 + P2
            self.P2 = U.T @ (H @ self.Q)
            return float(self.lam[-1]) if self.lam.size else 0.0
        lam, V = np.linalg.eigh(self.GRR)
        self.lam = np.maximum(lam, 0.0) + self.slack
        self.P = V.T @ self.XR
        self.H = V.T @ (self.GRF @ self.XF)
        return float(self.lam[-1]) if self.lam.size else 0.0

    def scalar_matvec(self, t: float):
        KF = self.KF
        if self.thin:
            XR, CR, Q, P1, P2 = self.XR, self.CR, self.Q, self.P1, self.P2
            c = 1.0 / (2 * t)
            d2 = c / (2 * t - self.lam)

            def mv(v):
                z = t * (XR @ v) + CR.T @ (Q @ v)
                w = d2 * (t * (P1 @ v) + P2 @ v)
                return c * (t * (XR.T @ z) + Q.T @ (CR @ z)) + t * (P1.T @ w) + P2.T @ w + KF.T @ (KF @ v)
            return mv
        d = 1.0 / np.sqrt(2 * t - self.lam)
        P, H = self.P, self.H

        def mv(v):
            w = d * d * (t * (P @ v) + H @ v)
            return t * (P.T @ w) + H.T @ w + KF.T @ (KF @ v)
        return mv

    def scalar_C(self, t: float) -> np.ndarray:
        if self.thin:
            Z = t * self.XR + self.CR.T @ self.Q
            d = 1.0 / np.sqrt(2 * t * (2 * t - self.lam))
            return np.vstack([Z / math.sqrt(2 * t), (t * self.P1 + self.P2) * d[:, None], self.KF])
        d = 1.0 / np.sqrt(2 * t - self.lam)
        return np.vstack([(t * self.P + self.H) * d[:, None], self.KF])

    # ---- diagonal multiplier
    def diag_factor(self, T):
        """Lower Cholesky factor of 2T - G_RR - slack I (compose._diag_factor, Statement 12.10's), or None."""
        from probprune.certificates.compose import _diag_factor

        return _diag_factor(self.GRR, T, self.slack)

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


def _diag_search(st: _Step, t0: float, steps: int, stop: float = math.inf):
    """Adam on log T (:func:`compose.adam_log_multipliers`; Statement 12.60 (b) with a diagonal T on the relaxed
    coordinates) from T = t0 I against lambda_max(G') (Danskin: with q its top eigenvector, a = X_R q,
    z = T a + G_RF X_F q, u = (2T - G_RR)^{-1} z: d lambda / d log T_j = T_j (2 a_j u_j - 2 u_j^2)). The steps stop
    DIAG_RESERVE_SECONDS before the caller's deadline, so that the rest of the recursion can still finish, and at
    ``stop`` (a time.perf_counter() value: this step's share of the caller's time). Returns
    (C', lambda_max estimate, T) of the best T that factorises, or None."""
    from scipy.linalg import cho_solve

    from probprune.certificates.compose import _DEADLINE, _krylov_top, adam_log_multipliers

    v0 = [None]  # the Krylov start: the previous top Ritz vector

    def evaluate(T, grad: bool):
        Lc = st.diag_factor(T)
        if Lc is None:
            return None
        lam, v0[0] = _krylov_top(st.diag_matvec(T, Lc), st.m, v0[0], dim=6)  # warm-started: a few vectors suffice
        if not grad:
            return lam, None, Lc
        q = v0[0] / max(np.linalg.norm(v0[0]), 1e-300)
        a = st.XR @ q
        u = cho_solve((Lc, True), T * a + st.GRF @ (st.XF @ q), check_finite=False)
        return lam, T * (2 * a * u - 2 * u * u), Lc

    wall = _DEADLINE.get()
    found = adam_log_multipliers(evaluate, t0, st.GRR.shape[0], steps,
                                 min(stop, math.inf if wall is None else wall - DIAG_RESERVE_SECONDS), lr=JOINT_ADAM_LR)
    if found is None:
        return None
    lam, T, Lc = found[1]
    return st.diag_C(T, Lc), lam, T


def _recursion(mats: list[np.ndarray], rel: list[np.ndarray], r: float, diag_steps: int = 0,
               adam_stop: float | None = None, used: list | None = None) -> tuple[float, tuple[float, ...]]:
    """Statement 12.60's bound for fixed scales: Statement 12.10's S-procedure step (b) with a scalar multiplier t
    per step on the relaxed (ReLU) coordinates, chosen on Krylov estimates of lambda_max of the next state (any
    t > lambda_max(G_RR) / 2 is valid), then optionally a diagonal T (Adam from t, kept where its estimate is
    smaller), and the trust-region bound at the input (Lemma 12.4; the constant coordinate is the offset).
    ``adam_stop`` (a time.perf_counter() value): the diagonal steps of all recursion steps end by then; each step gets
    an equal share of what is left after the predicted fixed cost of the steps after it (its own measured fixed cost
    scaled by the steps' work, :func:`_step_work`). ``used``: a list that receives the multiplier of every step (the
    vector T on its relaxed coordinates; None where none is relaxed), the start of :func:`_end_to_end`."""
    from scipy.optimize import minimize_scalar

    from probprune.certificates.compose import _krylov_top

    ts = []
    C = mats[0]  # G_1 = C^T C
    work = [_step_work(X.shape[0], X.shape[1]) if rj.any() else 0.0 for X, rj in zip(mats[1:], rel)]
    for k, (X, rj) in enumerate(zip(mats[1:], rel)):
        check_deadline()
        t_step = time.perf_counter()
        st = _Step(C, X, rj)
        if not rj.any():  # no slope relaxed: G' = X^T G X exactly
            C = st.KF
            ts.append(0.0)
            if used is not None:
                used.append(None)
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
        stop = math.inf
        if adam_stop is not None:  # this step's share of the time left for the diagonal steps
            now = time.perf_counter()
            rest = (now - t_step) * sum(work[k + 1:]) / max(work[k], 1e-300)  # the later steps' fixed cost
            stop = now + max(0.0, adam_stop - now - rest) / (1 + sum(w > 0 for w in work[k + 1:]))
        dg = _diag_search(st, t, diag_steps, stop) if diag_steps > 0 else None
        diag = dg is not None and dg[1] < f_best
        C = dg[0] if diag else st.scalar_C(t)
        if used is not None:
            used.append(dg[2] if diag else np.full(int(rj.sum()), t))
    # sup over ||x|| <= r of ||C [x; 1]||: the trust-region bound (Statement 12.6 (ii), Lemma 12.4)
    val = trs_dual_bound(C[:, :-1], C[:, -1], r)
    return val * (1 + PAIR_REL * (len(mats) + 1)), tuple(ts)


@dataclass(frozen=True)
class ReluRows:
    """The ReLU units of one recursion state u = [delta; kappa shat; 1] (Statement 12.63): ``h`` the coordinates of
    F_hat's ReLU units (u_j = kappa shat_j = ReLU(y_j)), ``d`` those of delta at F's ReLU units and ``dh`` their
    F_hat partners (s_j = delta_j + u_dh / kappa = ReLU(z_j), z_j = y_d + y_dh / kappa); ``m`` the state's size."""

    m: int
    h: np.ndarray
    d: np.ndarray
    dh: np.ndarray
    inv_kappa: float

    @classmethod
    def none(cls, m: int) -> "ReluRows":
        """A state of size m whose ReLU constraints are left out (nu empty: 12.60 (b)'s step)."""
        empty = np.zeros(0, np.int64)
        return cls(int(m), empty, empty, empty, 1.0)

    @property
    def n_nu(self) -> int:
        return 2 * self.h.size + 2 * self.d.size

    def linear_terms(self, nu, xp=np):
        """(c_u, c_y) with sum_k nu_k (a_k.u + b_k.y) = c_u.u + c_y.y for the constraints, in this order (each >= 0
        on the network): u_h >= 0, u_h - y_h >= 0, s_d >= 0, s_d - z_d >= 0. ``xp``: numpy or torch."""
        nh, nd = self.h.size, self.d.size
        n1, n2, n3, n4 = nu[:nh], nu[nh:2 * nh], nu[2 * nh:2 * nh + nd], nu[2 * nh + nd:]
        if xp is np:
            cu, cy = np.zeros(self.m), np.zeros(self.m)
            np.add.at(cu, self.h, n1 + n2)
            np.add.at(cy, self.h, -n2)
            np.add.at(cu, self.d, n3 + n4)
            np.add.at(cu, self.dh, (n3 + n4) * self.inv_kappa)
            np.add.at(cy, self.d, -n4)
            np.add.at(cy, self.dh, -n4 * self.inv_kappa)
            return cu, cy
        import torch
        z = torch.zeros(self.m, dtype=torch.float64)
        h, d, dh = (torch.from_numpy(v) for v in (self.h, self.d, self.dh))
        cu = z.index_add(0, h, n1 + n2).index_add(0, d, n3 + n4).index_add(0, dh, (n3 + n4) * self.inv_kappa)
        cy = z.index_add(0, h, -n2).index_add(0, d, -n4).index_add(0, dh, -n4 * self.inv_kappa)
        return cu, cy


def relu_rows(F: Chain, Fhat: Chain, kappa) -> list[ReluRows]:
    """:class:`ReluRows` of every recursion state of :func:`coupled_chain` (output side first, as its ``rel``)."""
    L = F.depth
    first = first_pruned_stage(F, Fhat)
    k = [1.0] + [float(v) for v in kappa]
    out = []
    for i in range(L - 2, -1, -1):
        s, sh = F.stages[i], Fhat.stages[i]
        off = s.n_out if i >= first else 0
        h = off + np.flatnonzero(np.asarray(sh.relu, bool))
        jd = np.flatnonzero(np.asarray(s.relu, bool)) if i >= first else np.zeros(0, int)
        out.append(ReluRows(m=off + s.n_out + 1, h=h.astype(np.int64), d=jd.astype(np.int64),
                            dh=(off + jd).astype(np.int64), inv_kappa=1.0 / k[i + 1]))
    return out


def _form_trs(G: np.ndarray, r: float) -> float:
    """sup_{||x|| <= r} [x; 1]^T G [x; 1] <= c + mu r^2 + b^T (mu I - A)^{-1} b for every mu >= 0 with mu I - A > 0
    (G = [[A, b], [b^T, c]] symmetric, A possibly indefinite; Lemma 12.4's dual, minimised by
    :func:`propagate.trs_dual_from_spectrum`); the eigenvalues of A lifted by (n + 10) u ||A||_F. Returns the square
    root, inflated by 1e-9."""
    A, b, c = G[:-1, :-1], G[:-1, -1], float(G[-1, -1])
    lam, V = np.linalg.eigh((A + A.T) / 2)
    lam = lam + (A.shape[0] + 10) * np.finfo(float).eps * float(np.linalg.norm(A))
    scale = max(abs(float(lam[-1])), float(np.abs(b).max(initial=0.0)), 1e-300)
    top = max(float(lam[-1]), 0.0) * (1 + 1e-9) + 1e-300  # strictly above lambda_max, as trs_dual_bound's s1^2
    return trs_dual_from_spectrum(lam, (V.T @ b) ** 2, c, r, top, scale)


def _relu_step(G: np.ndarray, X: np.ndarray, rj: np.ndarray, rw: ReluRows, T, nu) -> np.ndarray | None:
    """One step of Statement 12.63 on a dense symmetric form G of the state u (relaxed coordinates ``rj``, the
    constant last) through the factor X: G' = Z^T (2T - G_RR - s I)^{-1} Z + X_F^T (G_FF + s I) X_F + sym(2 v e_c^T),
    Z = T X_R + G_RF X_F + c_u,R e_c^T, v = X_F^T c_u,F + X^T c_y ((c_u, c_y) = :meth:`ReluRows.linear_terms` of nu,
    e_c the constant of the previous state, s 12.60's slack); None where the Cholesky factor of 2T - G_RR - s I does not
    exist or a multiplier is not admissible (T > 0, nu >= 0, finite)."""
    from scipy.linalg import solve_triangular

    from probprune.certificates.compose import _diag_factor

    G = (G + G.T) / 2
    R, Fx = np.flatnonzero(rj), np.flatnonzero(~rj)
    slack = (G.shape[0] + 10) * np.finfo(float).eps * float(np.linalg.norm(G))
    nu = np.asarray(nu, float)
    if nu.shape != (rw.n_nu,) or not np.all(np.isfinite(nu)) or np.any(nu < 0):
        return None
    cu, cy = rw.linear_terms(nu)
    XF = X[Fx]
    Gp = XF.T @ (G[np.ix_(Fx, Fx)] + slack * np.eye(Fx.size)) @ XF
    if R.size:
        T = np.asarray(T, float)
        if not (T.shape == (R.size,) and np.all(np.isfinite(T)) and np.all(T > 0)):
            return None
        Lc = _diag_factor(G[np.ix_(R, R)], T, slack)  # certifies 2T - G_RR - slack I > 0
        if Lc is None:
            return None
        Z = T[:, None] * X[R] + G[np.ix_(R, Fx)] @ XF
        Z[:, -1] += cu[R]  # the constraints' u_R terms, times the constant (the last coordinate of u')
        W = solve_triangular(Lc, Z, lower=True, check_finite=False)
        Gp += W.T @ W
    v = XF.T @ cu[Fx] + X.T @ cy  # their u_F and y terms, times the constant
    Gp[:, -1] += v
    Gp[-1, :] += v
    return Gp


def _recursion_relu_at(mats: list[np.ndarray], rel: list[np.ndarray], rows: list[ReluRows], Ts: list, nus: list,
                       r: float) -> float:
    """Statement 12.63's bound at given diagonal multipliers T (one vector per step on its relaxed coordinates) and
    ReLU-constraint multipliers nu >= 0 (one vector per step, :meth:`ReluRows.linear_terms` order): :func:`_relu_step`
    per step on dense symmetric forms (the constant's row and column make them indefinite; +inf where a step has no
    certified factor), the input by :func:`_form_trs`, the result inflated as 12.60's. nu = 0 gives 12.60 (b)'s
    recursion at T."""
    G = mats[0].T @ mats[0]
    for X, rj, rw, T, nu in zip(mats[1:], rel, rows, Ts, nus):
        check_deadline()
        G = _relu_step(G, X, rj, rw, T, nu)
        if G is None:
            return math.inf
    return _form_trs(G, r) * (1 + PAIR_REL * (len(mats) + 1))


TORCH_SPARSE_DENSITY = 0.05  # the end-to-end phase applies a factor's X_F^T as a sparse matrix below this density
# (max-pool trees, stage breaks and carried blocks are 0.2-1% dense; LeNet-5's rewritten chain, 5 Adam steps: see
# THEORY §12.12, Statement 12.62's *In the code*)


@dataclass(frozen=True)
class TorchFactor:
    """One recursion step's factor X for the torch end-to-end phase: X (dense), its relaxed rows R and fixed rows F
    (index tensors), X_R (dense) and X_F^T (a sparse COO matrix where X_F is sparser than TORCH_SPARSE_DENSITY)."""

    X: "torch.Tensor"
    R: "torch.Tensor"
    F: "torch.Tensor"
    XR: "torch.Tensor"
    XFt: "torch.Tensor"

    @classmethod
    def of(cls, X: np.ndarray, rel: np.ndarray, dtype=None) -> "TorchFactor":
        """``dtype``: torch.float64 (None) or torch.float32 (a proposal's arithmetic; certified in float64 after)."""
        import torch

        R, Fx = np.flatnonzero(rel), np.flatnonzero(~rel)
        Xt = torch.from_numpy(np.ascontiguousarray(X)).to(torch.float64 if dtype is None else dtype)
        XFt = Xt[torch.from_numpy(Fx)].T.contiguous()
        if XFt.numel() and np.count_nonzero(X[Fx]) <= TORCH_SPARSE_DENSITY * XFt.numel():
            XFt = XFt.to_sparse().coalesce()
        return cls(Xt, torch.from_numpy(R), torch.from_numpy(Fx), Xt[torch.from_numpy(R)], XFt)


def _torch_relu_step(G, f: TorchFactor, T, cu, cy):
    """:func:`_relu_step` in torch without the rounding margins (the end-to-end phase's proposal, differentiable):
    the multiplier T is a vector (diagonal, Statement 12.63) or a symmetric matrix on the relaxed coordinates R (a
    probe's block multipliers); None where 2T - G_RR has no Cholesky factor. G must be symmetric: X_F^T G_FF X_F is
    formed as X_F^T (X_F^T G_FF)^T (two products with X_F^T, sparse where it is)."""
    import torch

    GxF = G.index_select(1, f.F)  # G_{:, F}
    Gp = f.XFt @ (f.XFt @ GxF.index_select(0, f.F)).T
    if f.R.numel():
        diag = T.dim() == 1
        GRR = G.index_select(0, f.R).index_select(1, f.R)
        Lc, info = torch.linalg.cholesky_ex((torch.diag(2 * T) if diag else 2 * T) - GRR)
        if int(info) != 0:
            return None
        Z = (T[:, None] * f.XR if diag else T @ f.XR) + (f.XFt @ GxF.index_select(0, f.R).T).T
        Z = torch.cat([Z[:, :-1], (Z[:, -1] + cu[f.R])[:, None]], dim=1)
        W = torch.linalg.solve_triangular(Lc, Z, upper=False)
        Gp = Gp + W.T @ W
    v = f.XFt @ cu[f.F] + f.X.T @ cy
    ec = torch.zeros(f.X.shape[1], dtype=f.X.dtype)
    ec[-1] = 1.0
    return Gp + torch.outer(v, ec) + torch.outer(ec, v)


def _torch_form_trs(G, r: float):
    """:func:`_form_trs` in torch without the rounding margins (differentiable through lambda_max): the trust-region
    bound at mu = max(lambda_max(A), 0) + d with d fixed on a log grid per call (any d > 0 is valid for every A)."""
    import torch

    A, b, c = G[:-1, :-1], G[:-1, -1], G[-1, -1]
    lam, V = torch.linalg.eigh((A + A.T) / 2)
    beta2 = (V.T @ b) ** 2
    with torch.no_grad():  # the best offset d of mu = max(lambda_max, 0) + d on a log grid
        top = max(float(lam[-1]), 0.0)
        scale = max(abs(float(lam[-1])), float(b.abs().max()) if b.numel() else 0.0, 1e-300)
        ds = scale * np.exp(np.linspace(-30.0, 30.0, 241))
        mus = torch.from_numpy(top + ds)
        f = float(c) + mus * r * r + (beta2[None, :] / (mus[:, None] - lam[None, :])).sum(1)
        d = float(ds[int(torch.argmin(f))])
    mu = torch.clamp(lam[-1], min=0.0) + d
    return torch.sqrt(torch.clamp(c + mu * r * r + torch.sum(beta2 / (mu - lam)), min=0.0))


def _e2e_layout(Ts0: list, idx: list, rows: list | None):
    """The end-to-end phase's parameter vector (log multipliers): (p0, lr, offs, noffs) with the T of step k at
    p[offs[k]:offs[k+1]] (started at the greedy ``Ts0[k]``, Adam step JOINT_ADAM_LR) and its ReLU constraints' nu at
    p[noffs[k]:noffs[k+1]] (started at exp(JOINT_NU0) x the T of the coordinate each names first, step JOINT_NU_LR)."""
    sizes = [0 if T is None else len(T) for T in Ts0]
    nsz = [0 if rows is None else rw.n_nu for rw in (rows or [None] * len(idx))]
    offs = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    noffs = offs[-1] + np.concatenate([[0], np.cumsum(nsz)]).astype(int)
    starts = [np.asarray(T, float) for T in Ts0 if T is not None]
    for k, n in enumerate(nsz):
        if n:
            rw, Tk = rows[k], np.ones(rows[k].m)
            if Ts0[k] is not None:
                Tk[idx[k]] = np.asarray(Ts0[k], float)
            starts.append(math.exp(JOINT_NU0) * Tk[np.concatenate([rw.h, rw.h, rw.d, rw.d])])
    p0 = np.concatenate(starts) if starts else np.zeros(0)
    lr = np.full(p0.size, JOINT_ADAM_LR)
    lr[offs[-1]:] = JOINT_NU_LR  # the constraints' multipliers start far below where they help
    return p0, lr, offs, noffs


def _log_evaluate(value):
    """``evaluate(P, grad)`` for :func:`compose.adam_log_multipliers` from a torch ``value(theta)`` of the log
    multipliers (None where inadmissible): (value, gradient in log P or None, None), or None."""
    import torch

    def evaluate(P, grad: bool):
        check_deadline()
        lt = torch.from_numpy(np.log(P)).requires_grad_(grad)
        v = value(lt)
        if v is None or not torch.isfinite(v):
            return None
        val = float(v.detach())
        if not grad:
            return val, None, None
        v.backward()
        gr = lt.grad.numpy().copy()
        return (val, gr, None) if np.all(np.isfinite(gr)) else None
    return evaluate


def _end_to_end(mats: list[np.ndarray], rel: list[np.ndarray], Ts0: list, r: float, steps: int,
                stop: float = math.inf, rows: list[ReluRows] | None = None,
                options: "E2EOptions | None" = None):
    """All steps' multipliers at once by Adam on their logarithms (:func:`compose.adam_log_multipliers`, step
    JOINT_ADAM_LR) against the *final* bound, from the greedy recursion's diagonal multipliers ``Ts0``: the greedy
    steps each minimise the next form's largest eigenvalue, which is not the bound. With ``rows`` (Statement 12.63)
    the ReLU constraints' multipliers nu join, started at exp(JOINT_NU0) x the T of the coordinate each constraint
    names first. The value and its gradient come from the recursion written in torch on dense forms (autograd
    through the Choleskys and the input's trust-region bound at mu = max(lambda_max(A), 0) + d, d fixed per
    evaluation on a log grid: any d > 0 is valid for every A, so the gradient flows through lambda_max). Only
    proposes multipliers: the caller certifies them with :func:`_recursion_relu_at`. ``options``
    (:class:`E2EOptions`): the proposal's arithmetic and Adam schedule. Returns (T per step, nu per step) of the best
    point (by the torch value), or None if no step improved on the start."""
    import torch

    from probprune.certificates.compose import adam_log_multipliers

    opt = E2EOptions() if options is None else options
    dt = getattr(torch, opt.dtype)
    idx = [np.flatnonzero(rj) for rj in rel]
    p0, lr, offs, noffs = _e2e_layout(Ts0, idx, rows)
    if p0.size == 0 or steps <= 0:
        return None
    X0 = torch.from_numpy(np.ascontiguousarray(mats[0])).to(dt)
    factors = [TorchFactor.of(X, rj, dt) for X, rj in zip(mats[1:], rel)]

    def value(theta: "torch.Tensor"):
        G = X0.T @ X0
        for k, f in enumerate(factors):
            if rows is not None:
                cu, cy = (c.to(dt) for c in rows[k].linear_terms(torch.exp(theta[noffs[k]:noffs[k + 1]]), xp=torch))
            else:
                cu = cy = torch.zeros(f.X.shape[0], dtype=dt)
            T = torch.exp(theta[offs[k]:offs[k + 1]]).to(dt) if f.R.numel() else None
            G = _torch_relu_step(G, f, T, cu, cy)
            if G is None:
                return None
        return _torch_form_trs(G, r)

    found = adam_log_multipliers(_log_evaluate(value), p0, p0.size, steps, stop, lr=lr * opt.lr_scale,
                                 lr_end=opt.lr_end, recover=opt.recover)
    if found is None or not found[1][0] < found[0][0]:
        return None
    P = found[1][1]
    Ts = [None if offs[k + 1] == offs[k] else P[offs[k]:offs[k + 1]].copy() for k in range(len(rel))]
    nus = [P[noffs[k]:noffs[k + 1]].copy() for k in range(len(rel))]
    return Ts, nus


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


def joint_bound(F: Chain, Fhat: Chain, radius: float = 1.0, *, norms=None, diag_steps: int = 0,
                max_dim: int = JOINT_MAX_DIM, adam_stop: float | None = None, e2e_steps: int = 0,
                e2e_stop: float | None = None, e2e_options: "E2EOptions | None" = None) -> JointResult:
    """Statement 12.60 (THEORY §12.12): certified upper bound on sup_{||x||_2 <= radius} ||F(x) - F_hat(x)||_2 for a
    lowered chain pair (ball centred at the origin), at the heuristic scales, with ``diag_steps`` Adam steps of
    diagonal multipliers per recursion step (0: scalar multipliers only). Refuses (ProbPruneError) when a coupled
    state exceeds ``max_dim`` coordinates or the chains differ in structure; past the caller's deadline
    (compose.deadline) it raises TimeLimitReached, never a partial value. ``adam_stop`` (a time.perf_counter()
    value, optional): the diagonal steps end by then (shared among the recursion steps); the result is a valid bound
    whatever their number. ``e2e_steps``: then up to this many Adam steps on all multipliers at once against the
    final bound (:func:`_end_to_end`, ending at ``e2e_stop``), whose multipliers are certified again
    (:func:`_recursion_relu_at`); the smaller of the two certified values is returned (a deadline inside that phase
    keeps the greedy value, which is complete). ``e2e_options`` (:class:`E2EOptions`, default float64, constant
    step): that phase's arithmetic and Adam schedule (they change only the proposal, never the certification)."""
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
    kappa = heuristic_scales(F, Fhat, r, norms)
    mats, rel = coupled_chain(F, Fhat, kappa)
    used: list = []
    v, ts = _recursion(mats, rel, r, diag_steps, adam_stop, used)
    evaluations, e2e = 1, None
    if e2e_steps > 0 and (e2e_stop is None or time.perf_counter() < e2e_stop):
        rows = relu_rows(F, Fhat, kappa) if JOINT_RELU_CONSTRAINTS else [ReluRows.none(X.shape[0]) for X in mats[1:]]
        try:  # interrupted at the deadline: the greedy value is complete and valid (12.60), the proposal is dropped
            found = _end_to_end(mats, rel, used, r, e2e_steps, math.inf if e2e_stop is None else e2e_stop, rows,
                                e2e_options)
            ve = _recursion_relu_at(mats, rel, rows, *found, r) if found is not None else None  # certified at them
        except TimeLimitReached:
            ve = None
        if ve is not None:
            evaluations += 1
            e2e = ve
            v = min(v, ve)
    if not math.isfinite(v):
        raise ProbPruneError("joint S-procedure bound: no finite value")
    return JointResult(eps=float(v), kappa=tuple(float(x) for x in kappa), gamma=1.0,
                       multipliers=tuple(float(t) for t in ts), evaluations=evaluations,
                       seconds=time.perf_counter() - t0, end_to_end=e2e)


__all__ = ["JointResult", "E2EOptions", "joint_bound", "e2e_steps_for", "joint_work", "ReluRows", "relu_rows",
           "coupled_chain", "first_pruned_stage", "coupled_width", "check_joint_dim",
           "heuristic_scales", "predicted_joint_seconds", "JOINT_MAX_DIM"]
