"""First-order solver for the cross-network SDP dual (THEORY.md §12.6b, Statement 12.12b [D]).

Same lifted QCQP and same Lagrangian dual as §12.6 (:func:`probprune.certificates.sdp.build_qcqp`), solved without an
interior-point / SCS cone solver: minimise over the multipliers lambda (>= 0 on inequalities, free on equalities) and
t the penalised dual function (Statement 12.12 (i))

    f(lambda, t) = t + V2 * max(0, lambda_max(Q(lambda) - t e0 e0^T)),   Q(lambda) = C + sum_k lambda_k G_k,

whose value at ANY (lambda, t) upper-bounds sup ||F - F_hat||^2 on the ball. Q is sparse (the constraint matrices) plus
low rank (C = A_D^T A_D), so lambda_max and its eigenvector u come from Lanczos (ARPACK, matrix-vector products only,
warm-started from the previous u); the subgradient is d f / d lambda_k = V2 u^T G_k u, d f / d t = 1 - V2 u_0^2
(one sparse product with the constraint matrix), and Adam steps with projection onto lambda_ineq >= 0 decrease f.
Memory: the sparse constraint matrix and O(N) vectors per step.

The solver is only a guess: the reported bound is re-derived in float64 by the certified steps of sdp.py
(``_certify_multipliers``, form (i), Cholesky at a guess with explicit slack; ``_certify_schur``, form (ii), with
the norm multiplier set optimally), so a poor solve only makes the bound looser (Statement 12.12b). These steps factor
one dense (N x N) matrix (memory ~ 4 N^2 doubles, checked before allocating with ``check_memory``).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from probprune.core.errors import ProbPruneError, check_memory
from probprune.certificates.lower import Chain
from probprune.certificates.sdp import (EPS, _certify_multipliers, _certify_schur, _v2, ball, build_qcqp, lifted_dim,
                                        sigma_star)

FO_MAX_DIM = 12_000  # refuse above this many lifted coordinates (the certified step factors a dense N x N matrix)
PATIENCE = 15  # Adam steps without a 1e-6 relative improvement before the step is halved (restart at the best point)
SMOOTH_K = 8  # top Ritz pairs in the smoothed subgradient
SMOOTH = 0.01  # smoothing width mu = SMOOTH * (objective scale) * (current step / initial step)
MIN_LR_FRAC = 1e-4  # stop when the step has been halved below this fraction of the initial one
DENSE_EIG_DIM = 300  # below this N the eigen-steps use a dense eigh (faster than ARPACK at this size)
STEP_EIG_TOL = 1e-4  # Lanczos tolerance inside the solve (a direction only; the certified step uses 1e-10)
DENSE_SIGMA_DIM = 3000  # up to this N the norm multiplier of form (ii) is set exactly (dense eigh of Q11)


@dataclass(frozen=True)
class FOCertificate:
    """``eps`` upper-bounds sup_{||x - c||_2 <= r} ||F(x) - F_hat(x)||_2 (Statements 12.11-12.12b)."""

    eps: float
    bound_sq: float  # certified bound on the sup of ||F - F_hat||^2 (the smaller of forms (i) and (ii))
    form: str  # which certified form gave it: "shift (i)" or "schur (ii)"
    bound_sq_shift: float  # form (i) at the solver's (lambda, t)
    bound_sq_schur: float  # form (ii) with the norm multiplier set optimally (inf when Q11 was not certified < 0)
    solver_value_sq: float  # the best (uncertified) f(lambda, t) the first-order solver saw
    start_value_sq: float  # f at the starting point
    lifted_dim: int
    n_constraints: int
    iterations: int
    stopped: str  # "iterations" or "time limit"
    solve_seconds: float
    certify_seconds: float
    seconds: float
    memory_bytes: float  # the estimate checked before the dense certified step
    statement: str = "THEORY.md §12.6b, Statement 12.12b [D]: first-order (Lanczos + Adam) solve of the §12.6 " \
                     "Lagrangian dual; bound re-certified in float64 (Statement 12.12)"


class DualOperator:
    """Q(lambda) = C + sum_k lambda_k G_k as a sparse matrix on the nonzero pattern of the constraint matrices plus
    the rank-(n_out) objective C = A_D^T A_D; ``quad(u)`` = (u^T G_k u)_k, the subgradient of u^T Q(lambda) u."""

    def __init__(self, AD: np.ndarray, G: sp.csr_matrix):
        N = AD.shape[1]
        self.N = N
        nz = np.flatnonzero(np.diff(G.indptr))
        self.Gc = G[nz].tocsr()  # (nnz pattern, K)
        self.pr, self.pc = np.divmod(nz, N)
        self.indptr = np.concatenate([[0], np.cumsum(np.bincount(self.pr, minlength=N))])
        self.AD = AD
        self.ADT = np.ascontiguousarray(AD.T)

    def sparse(self, lam: np.ndarray) -> sp.csr_matrix:
        return sp.csr_matrix((self.Gc @ lam, self.pc, self.indptr), shape=(self.N, self.N))

    def dense(self, lam: np.ndarray, t: float) -> np.ndarray:
        A = self.sparse(lam).toarray() + self.ADT @ self.AD
        A[0, 0] -= t
        return (A + A.T) / 2

    def quad(self, u: np.ndarray) -> np.ndarray:
        return self.Gc.T @ (u[self.pr] * u[self.pc])


def _top_eig(op: DualOperator, lam, t, v0, tol=1e-7, k: int = 1):
    """The k largest eigenvalues (descending) and unit eigenvectors (columns) of Q(lambda) - t e0 e0^T: dense eigh
    for small N, else Lanczos (ARPACK) started at v0. With k = 1: (lambda_max, its eigenvector)."""
    N = op.N
    if N <= DENSE_EIG_DIM:
        ev, U = np.linalg.eigh(op.dense(lam, t))
        w, U = ev[::-1][:k], U[:, ::-1][:, :k]
    else:
        from scipy.sparse.linalg import ArpackError, ArpackNoConvergence, LinearOperator, eigsh

        Qs = op.sparse(lam)

        def mv(x):
            x = np.asarray(x).reshape(-1)
            y = Qs @ x + op.ADT @ (op.AD @ x)
            y[0] -= t * x[0]
            return y
        A = LinearOperator((N, N), matvec=mv, dtype=float)
        try:
            w, U = eigsh(A, k=k, which="LA", v0=v0, tol=tol, ncv=min(N - 1, max(24, 3 * k)), maxiter=5 * N)
        except ArpackNoConvergence as e:  # a partial answer is still a direction (the solver is only a guess)
            if len(e.eigenvalues) == 0:
                raise ProbPruneError("sdp_fo: Lanczos did not converge") from None
            w, U = e.eigenvalues, e.eigenvectors
        except ArpackError as e:
            raise ProbPruneError(f"sdp_fo: Lanczos failed ({str(e).splitlines()[0][:80]})") from None
        o = np.argsort(w)[::-1]
        w, U = w[o], U[:, o]
    if k == 1:
        return float(w[0]), U[:, 0]
    return np.asarray(w, float), U


def _deadline_from_context() -> float | None:
    try:
        from probprune.certificates.compose import _DEADLINE
        return _DEADLINE.get()
    except Exception:  # pragma: no cover
        return None


def dense_step_bytes(N: int) -> float:
    """Peak memory of the certified float64 step: Q, |Q|, their temporaries, the shifted copy and its Cholesky factor
    (about 9 N^2 doubles)."""
    return 9.0 * 8.0 * N * N


def solve_dual(op: DualOperator, kinds, family, V2: float, *, iters: int = 600, lr: float = 0.01,
               lam0=None, t0=None, t_end: float | None = None, seed: int = 0):
    """Adam on f(lambda, t) = t + V2 max(0, lambda_max(Q(lambda) - t e0 e0^T)) with projection lambda_ineq >= 0 and
    the norm multiplier held at 0 (set in the certified step); the step uses the gradient of the smoothed
    max(0, lambda_max) over the top SMOOTH_K Ritz pairs, and halves (back at the best point) after PATIENCE steps
    without progress. Only a guess: the bound comes from :func:`certify_point`. Returns (lambda, t, best f,
    start f, iterations, stopped)."""
    K = op.Gc.shape[1]
    ineq = kinds == "ineq"
    fixed = family == "norm"
    lam = np.zeros(K) if lam0 is None else np.where(ineq, np.maximum(np.asarray(lam0, float), 0.0), lam0)
    lam[fixed] = 0.0
    rng = np.random.default_rng(seed)
    v0 = rng.standard_normal(op.N)
    theta, u = _top_eig(op, lam, 0.0, v0)
    t = 0.0 if t0 is None else float(t0)
    scale = max(abs(theta), 1e-300)  # the objective's scale in the scaled coordinates
    f_start = t + V2 * max(theta, 0.0) if t0 is not None else V2 * max(theta, 0.0)
    best = (f_start, lam.copy(), t)
    m = np.zeros(K + 1)
    v = np.zeros(K + 1)
    b1, b2, ep = 0.9, 0.999, 1e-12
    stopped = "iterations"
    it = k_adam = it_best = 0
    lr_cur = float(lr)
    for it in range(1, int(iters) + 1):
        if t_end is not None and time.perf_counter() > t_end:
            stopped = "time limit"
            it -= 1
            break
        try:
            ths, Us = _top_eig(op, lam, t, u, tol=STEP_EIG_TOL, k=SMOOTH_K)
        except ProbPruneError as e:  # the best point so far is still certified
            stopped = str(e)
            it -= 1
            break
        theta, u = float(ths[0]), Us[:, 0]
        f = t + V2 * max(theta, 0.0)
        if f < best[0] * (1 - 1e-6):
            it_best = it
        if f < best[0]:
            best = (f, lam.copy(), t)
        if it - it_best > PATIENCE:  # no progress: back to the best point with half the step, moments reset
            lr_cur *= 0.5
            it_best = it
            lam, t = best[1].copy(), best[2]
            m[:] = 0.0
            v[:] = 0.0
            k_adam = 0
            if lr_cur < lr * MIN_LR_FRAC:
                stopped = "converged (step below its floor)"
                break
            try:
                ths, Us = _top_eig(op, lam, t, u, tol=STEP_EIG_TOL, k=SMOOTH_K)
            except ProbPruneError as e:
                stopped = str(e)
                break
            theta, u = float(ths[0]), Us[:, 0]
        k_adam += 1
        # gradient of the smoothed max(0, lambda_max): mu log(1 + sum_i exp(theta_i / mu)) over the top SMOOTH_K
        # Ritz pairs (weights p_i; mu shrinks with the step), which spreads the step over a cluster of top eigenvalues
        mu = SMOOTH * scale * lr_cur / lr
        z = np.concatenate([[0.0], ths]) / mu
        p = np.exp(z - z.max())
        p = p[1:] / p.sum()
        acc = np.zeros(len(op.pr))  # sum_i p_i u_i[row] u_i[col] on the nonzero pattern (O(nnz) memory)
        for i in np.flatnonzero(p > 1e-12 * p.max()):
            acc += p[i] * (Us[op.pr, i] * Us[op.pc, i])
        g_lam = V2 * (op.Gc.T @ acc)
        g_t = 1.0 - V2 * float(p @ Us[0] ** 2)
        g_lam[fixed] = 0.0
        g = np.concatenate([g_lam, [g_t]])
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        mh = m / (1 - b1 ** k_adam)
        vh = v / (1 - b2 ** k_adam)
        d = lr_cur * mh / (np.sqrt(vh) + ep)
        lam = lam - scale * d[:K]
        lam = np.where(ineq, np.maximum(lam, 0.0), lam)
        lam[fixed] = 0.0
        t = t - max(best[0], scale) * d[K]
    return best[1], best[2], best[0], f_start, it, stopped


def certify_point(AD, G, Gabs, tpr, kinds, family, box, lam, t, op: DualOperator | None = None):
    """Statement 12.12b: the certified float64 bound at any multipliers (lambda, t): the smaller of form (i)
    (``_certify_multipliers``) and form (ii) (``_certify_schur`` with the norm multiplier set optimally: dense
    secular search up to DENSE_SIGMA_DIM coordinates, else lambda_max(Q11) by Lanczos plus a margin); above
    DENSE_SIGMA_DIM form (i) only when (ii) is refused. Returns (bound_sq, form, bound_shift, bound_schur), inf
    for a form not evaluated or refused."""
    N = AD.shape[1]
    check_memory(dense_step_bytes(N), f"the certified step of the first-order SDP (N = {N})")
    op = op or DualOperator(AD, G)
    lam = np.where(kinds == "ineq", np.maximum(lam, 0.0), lam).astype(float)
    kn = int(np.flatnonzero(family == "norm")[0])
    lam[kn] = 0.0
    W = float(G[0, kn])
    lam2 = lam.copy()
    if N <= DENSE_SIGMA_DIM:
        Q = op.dense(lam2, 0.0)
        _, _, sg = sigma_star(Q, W)
        lam2[kn] = sg + 1e-6 * max(sg, float(np.abs(Q[1:, 1:]).max()), 1e-12)
        del Q
        guess = None
    else:  # lambda_max(Q11) by Lanczos on Q with row/column 0 removed: shift the norm multiplier past it
        try:
            sub = DualOperator(AD[:, 1:], _drop_first(G, N))
            th11, _ = _top_eig(sub, lam2, 0.0, None, tol=1e-10)
            lam2[kn] = max(th11, 0.0) + 1e-4 * max(abs(th11), 1e-300)
            guess = th11 - lam2[kn]
        except ProbPruneError:  # no guess: form (ii) is skipped, form (i) below
            guess = math.nan
    sch = None if guess is not None and math.isnan(guess) else \
        _certify_schur(AD, G, Gabs, tpr, lam2, kinds, box, lam_max_guess=guess)
    b2 = sch[0] if sch is not None else math.inf
    b1 = math.inf
    if N <= DENSE_SIGMA_DIM or sch is None:  # form (i): always on small problems, as the fallback on large ones
        theta = None
        if N > DENSE_EIG_DIM:
            try:
                theta, _ = _top_eig(op, lam, t, None, tol=1e-10)
            except ProbPruneError:  # the dense eigvalsh of _certify_multipliers gives the shift instead
                theta = None
        b1, _, _ = _certify_multipliers(AD, G, Gabs, tpr, t, lam, kinds, box,
                                        lam_min_guess=None if theta is None else -theta)
    return (b2, "schur (ii)", b1, b2) if b2 < b1 else (b1, "shift (i)", b1, b2)


def _drop_first(G: sp.csr_matrix, N: int) -> sp.csr_matrix:
    """The rows of vec(G_k) that belong to the lower-right (N-1) x (N-1) block, re-indexed."""
    nz = np.flatnonzero(np.diff(G.indptr))
    i, j = np.divmod(nz, N)
    keep = (i > 0) & (j > 0)
    M = N - 1
    rows = (i[keep] - 1) * M + (j[keep] - 1)
    sub = G[nz[keep]].tocoo()
    return sp.csr_matrix((sub.data, (rows[sub.row], sub.col)), shape=(M * M, G.shape[1]))


def sdp_fo_certificate(F: Chain, Fhat: Chain, radius: float = 1.0, center=None, *, max_dim: int = FO_MAX_DIM,
                       iters: int = 600, lr: float = 0.01, crown=None, time_limit: float | None = None,
                       seed: int = 0) -> FOCertificate:
    """Statement 12.12b (THEORY §12.6b): certified upper bound on sup_{||x - c||_2 <= r} ||F(x) - F_hat(x)||_2 from a
    first-order solve of the §12.6 dual. ``time_limit`` (seconds) or an enclosing ``compose.deadline`` stops the
    iterations early (the bound is certified at the best point so far); ``crown`` as in :func:`sdp_certificate`.
    Refuses (ProbPruneError) above ``max_dim`` lifted coordinates or when the dense certified step does not fit in
    memory."""
    t_start = time.perf_counter()
    r, c = ball(F, radius, center)
    N = lifted_dim(F)
    if N > max_dim:
        raise ProbPruneError(f"sdp_fo certificate: the lifted problem has {N} coordinates, above max_dim={max_dim}")
    mem = check_memory(dense_step_bytes(N), f"the certified step of the first-order SDP (N = {N})")
    cF, cH = crown if crown is not None else (None, None)
    N, AD, G, Gabs, tpr, kinds, family, box, _ = build_qcqp(F, Fhat, c, r, cF, cH)
    op = DualOperator(AD, G)
    V2 = _v2(box)
    t_end = None if time_limit is None else t_start + float(time_limit)
    ctx = _deadline_from_context()
    if ctx is not None:
        t_end = ctx if t_end is None else min(t_end, ctx)
    if t_end is not None:  # leave time for the certified step (a few dense factorisations)
        t_end -= 2e-9 * N ** 3 + 0.05
    lam, t, fbest, fstart, nit, stopped = solve_dual(op, kinds, family, V2, iters=iters, lr=lr, t_end=t_end,
                                                      seed=seed)
    t_solve = time.perf_counter() - t_start
    bound, form, b1, b2 = certify_point(AD, G, Gabs, tpr, kinds, family, box, lam, t, op)
    t_all = time.perf_counter() - t_start
    return FOCertificate(eps=math.sqrt(bound) * (1 + 4 * EPS), bound_sq=bound, form=form, bound_sq_shift=b1,
                         bound_sq_schur=b2, solver_value_sq=fbest, start_value_sq=fstart, lifted_dim=N,
                         n_constraints=G.shape[1], iterations=nit, stopped=stopped, solve_seconds=t_solve,
                         certify_seconds=t_all - t_solve, seconds=t_all, memory_bytes=mem)


__all__ = ["FOCertificate", "DualOperator", "sdp_fo_certificate", "solve_dual", "certify_point", "FO_MAX_DIM"]
