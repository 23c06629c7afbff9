"""Cross-network SDP certificate (THEORY.md §12.6, Statements 12.11-12.12 [D]).

The sup of ||F(x) - F_hat(x)||^2 over the ball ||x - c|| <= r is a non-convex quadratic programme in the lifted
vector v = [1; x; z_1; zhat_1; ...; z_{L-1}; zhat_{L-1}] of the input and the hidden activations of *both* networks
(z = ReLU(y) neuron by neuron, y = M z_prev + b). Every ReLU fact used is a quadratic (or linear) inequality or
equality g_k(v) >= 0 / = 0 that holds for every input in the ball:

* unstable neuron (l < 0 < u on the ball): z >= 0, z - y >= 0, z^2 - z y = 0, u z - z^2 >= 0 and the triangle
  s (y - l) - z >= 0 with s >= u / (u - l) rounded up;
* stable neuron or identity coordinate: z - y = 0 (active / identity) or z = 0 (inactive); every coordinate
  B_z^2 - z^2 >= 0 with B_z >= sup |z|;
* cross-network (Li, Drummond & Duncan 2020 in spirit: each neuron of F coupled with its copy in F_hat; ReLU is
  monotone and 1-Lipschitz): (z - zhat)(y - yhat) - (z - zhat)^2 >= 0;
* the ball: r^2 - ||x - c||^2 >= 0.

Weak Lagrangian duality (Statement 12.12): for multipliers lambda (>= 0 on inequalities, free on equalities)
Q = C + sum_k lambda_k G_k (G_k the symmetric matrix of g_k, C = A_D^T A_D of the output difference) satisfies
v^T C v <= v^T Q v on the feasible set, and if the lower-right block Q_11 <= -m I (m > 0) then for any w_hat
sup_w v^T Q v <= q(w_hat) + ||q + Q_11 w_hat||^2 / m. The multipliers come from an SDP solver (cvxpy + SCS, the
dual of the Shor relaxation); the solver is *only a guess*: the bound is re-derived in float64 from the multipliers
with a Cholesky certificate for lambda_min(S) (§11.5) and explicit rounding allowances (Statement 12.12), so an inaccurate
solver makes the bound looser, never wrong. Refused (named) above ``max_dim`` lifted coordinates: the SDP has one
(N+1) x (N+1) matrix and SCS costs O(N^3) per iteration.
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from probprune.core.errors import ProbPruneError
from probprune.theory.norms import cholesky_slack
from probprune.certificates.lower import Chain, stage_diff

EPS = np.finfo(float).eps / 2  # unit roundoff u
MAX_DIM = 700  # refuse above this many lifted coordinates (SCS: O(N^3) per iteration)


def _gamma(n: int) -> float:
    return n * EPS / (1 - n * EPS)


@dataclass(frozen=True)
class SDPCertificate:
    """``eps`` upper-bounds sup_{||x - c||_2 <= r} ||F(x) - F_hat(x)||_2 (Statements 12.11-12.12)."""

    eps: float
    bound_sq: float  # certified bound on the sup of ||F - F_hat||^2
    solver_value_sq: float  # the SDP solver's own (uncertified) optimal value, for comparison
    lifted_dim: int  # N: number of lifted coordinates (input + hidden of both nets)
    n_constraints: int
    mu_certified: float  # certified -lambda_min of the dual matrix S (0 up to rounding when the solver is exact)
    allowance: float  # (mu_certified + rounding) * V2 added to the solver's t
    solver: str
    solver_status: str
    seconds: float
    statement: str = "THEORY.md §12.6, Statements 12.11-12.12 [D]: Lagrangian dual of the cross-network QCQP, " \
                     "multipliers from an SDP solver, bound re-certified in float64"


def _cholesky_slack(A: np.ndarray) -> float | None:
    """Cholesky at a guess (§11.5) for a symmetric float matrix A = fl(mu I - G): lambda_min(mu I - G) >= -slack
    with :func:`probprune.theory.norms.cholesky_slack` of the computed factor; None when the factorisation fails."""
    try:
        R = np.linalg.cholesky(A)
    except np.linalg.LinAlgError:
        return None
    if not np.all(np.isfinite(R)):
        return None
    return float(cholesky_slack(float(np.sum(R * R)), float(np.abs(np.diag(A)).max()), A.shape[0]))


def _intervals(ch: Chain, c: np.ndarray, r: float, crown=None):
    """Sound pre-activation intervals of every hidden stage on the ball (midpoint-radius interval arithmetic with
    an outward allowance; intersected with CROWN bounds ``crown[j] = (l, u)`` on the ReLU coordinates when given)."""
    out = []
    st = ch.stages[0]
    mid = st.M @ c + st.b
    rad = r * np.linalg.norm(st.M, axis=1)
    for j, st in enumerate(ch.stages[:-1]):
        if j > 0:
            mid = st.M @ zmid + st.b
            rad = np.abs(st.M) @ zrad
        allow = _gamma(st.n_in + 3) * (np.abs(st.M) @ (np.abs(zmid) + zrad if j > 0 else np.abs(c) + r)
                                       + np.abs(st.b) + np.abs(mid)) + rad * 4 * EPS
        l, u = mid - rad - allow, mid + rad + allow
        if crown is not None and crown[j] is not None:
            idx, cl, cu = crown[j]
            l[idx] = np.maximum(l[idx], cl)
            u[idx] = np.minimum(u[idx], cu)
            u = np.maximum(u, l)
        out.append((l, u))
        zl = np.where(st.relu, np.maximum(l, 0.0), l)
        zu = np.where(st.relu, np.maximum(u, 0.0), u)
        zmid, zrad = (zl + zu) / 2, (zu - zl) / 2
        zrad = zrad + 4 * EPS * (np.abs(zl) + np.abs(zu))  # cover the rounding of the midpoint / radius
    return out


def crown_bounds(prop):
    """(crown_F, crown_H) for :func:`sdp_certificate` from a :class:`~probprune.certificates.propagate.CoupledPropagator`
    (its CROWN pre-activation bounds on the first centre's region), or None without one."""
    if prop is None:
        return None
    cF = [None if b is None else (b[0], b[3], b[4]) for b in prop.pre_bounds]
    cH = [None if b is None else (b[0], b[1], b[2]) for b in prop.pre_bounds]
    return cF, cH


class _Builder:
    """Collects constraints g_k(v) = sum coef * (a^T v)(b^T v) as columns of a sparse matrix (vec of G_k)."""

    def __init__(self, N: int):
        self.N = N
        self.rows: list[np.ndarray] = []
        self.cols: list[np.ndarray] = []
        self.vals: list[np.ndarray] = []
        self.kinds: list[str] = []  # "ineq" or "eq"
        self.family: list[str] = []

    def add(self, terms, kind: str, family: str):
        """terms: list of (coef, (ia, va), (ib, vb)) sparse vectors; adds sym(a b^T) * coef."""
        k = len(self.kinds)
        N = self.N
        for coef, (ia, va), (ib, vb) in terms:
            I = np.repeat(ia, len(ib))
            J = np.tile(ib, len(ia))
            V = 0.5 * coef * np.outer(va, vb).ravel()
            self.rows.append(np.concatenate([I * N + J, J * N + I]))
            self.vals.append(np.concatenate([V, V]))
            self.cols.append(np.full(2 * len(V), k))
        self.kinds.append(kind)
        self.family.append(family)

    def matrix(self) -> tuple[sp.csr_matrix, sp.csr_matrix, int]:
        """(G, |G| summed from the absolute raw terms, the largest number of raw terms in one row of G)."""
        K = len(self.kinds)
        rows, cols, vals = np.concatenate(self.rows), np.concatenate(self.cols), np.concatenate(self.vals)
        G = sp.csr_matrix((vals, (rows, cols)), shape=(self.N * self.N, K))
        Gabs = sp.csr_matrix((np.abs(vals), (rows, cols)), shape=(self.N * self.N, K))
        return G, Gabs, int(np.bincount(rows).max())


def _e(i: int, v: float = 1.0):
    return (np.array([i]), np.array([v]))


def _sub(a, b):
    return (np.concatenate([a[0], b[0]]), np.concatenate([a[1], -b[1]]))


def build_qcqp(F: Chain, Fhat: Chain, c: np.ndarray, r: float, crown_F=None, crown_H=None):
    """The lifted QCQP of the module docstring in scaled coordinates v~ = v / d (d: the box bounds, 1 where 0):
    (N, A_D (objective ||A_D v~||^2), sparse G (N*N, K) with columns vec(G_k), |G| from the absolute raw terms, the
    most raw terms per entry, kinds, families, box bounds |v~_i| <= box_i (1 or 0), the scaling d)."""
    if not F.same_structure(Fhat):
        raise ProbPruneError("F and F_hat must be chains of the same structure")
    L = F.depth
    n0 = F.n_in
    bF = _intervals(F, c, r, crown_F)
    bH = _intervals(Fhat, c, r, crown_H)
    # index map: 0 = constant, then x, then per hidden stage z (F) and zhat (F_hat)
    off = 1
    xi = np.arange(off, off + n0)
    off += n0
    zi, hi = [], []
    for st in F.stages[:-1]:
        zi.append(np.arange(off, off + st.n_out))
        off += st.n_out
        hi.append(np.arange(off, off + st.n_out))
        off += st.n_out
    N = off
    box = np.zeros(N)
    box[0] = 1.0
    box[xi] = np.abs(c) + r  # |x_i| <= |c_i| + r
    bld = _Builder(N)

    def affine_rows(ch, j, prev_idx):
        st = ch.stages[j]
        return [(np.concatenate([[0], prev_idx[np.flatnonzero(st.M[k])]]),
                 np.concatenate([[st.b[k]], st.M[k][np.flatnonzero(st.M[k])]])) for k in range(st.n_out)]

    # ball: r^2 - ||x - c||^2 >= 0
    terms = [(r * r, _e(0), _e(0))]
    for i in range(n0):
        a = (np.array([xi[i], 0]), np.array([1.0, -c[i]]))
        terms.append((-1.0, a, a))
    bld.add(terms, "ineq", "ball")
    for j in range(L - 1):
        st = F.stages[j]
        ys = {}
        for tag, ch, zz, bounds in (("F", F, zi[j], bF[j]), ("H", Fhat, hi[j], bH[j])):
            prev = xi if j == 0 else (zi[j - 1] if tag == "F" else hi[j - 1])
            Y = affine_rows(ch, j, prev)
            ys[tag] = Y
            l, u = bounds
            for k in range(st.n_out):
                ez = _e(zz[k])
                y = Y[k]
                if st.relu[k] and l[k] < 0 < u[k]:
                    s = u[k] / (u[k] - l[k]) * (1 + 8 * EPS)  # rounded up: s >= u / (u - l)
                    bld.add([(1.0, ez, _e(0))], "ineq", "z>=0")
                    bld.add([(1.0, _sub(ez, y), _e(0))], "ineq", "z>=y")
                    bld.add([(1.0, ez, _sub(ez, y))], "eq", "z(z-y)=0")
                    bld.add([(1.0, ez, _sub(_e(0, u[k]), ez))], "ineq", "uz>=z^2")
                    tri = (np.concatenate([y[0], [0], [zz[k]]]), np.concatenate([s * y[1], [-s * l[k]], [-1.0]]))
                    bld.add([(1.0, tri, _e(0))], "ineq", "triangle")
                    box[zz[k]] = u[k]
                elif st.relu[k] and u[k] <= 0:
                    bld.add([(1.0, ez, _e(0))], "eq", "z=0")
                    box[zz[k]] = 0.0
                else:  # identity coordinate or stable active ReLU: z = y
                    bld.add([(1.0, _sub(ez, y), _e(0))], "eq", "z=y")
                    bld.add([(1.0, _sub(ez, y), _sub(ez, y))], "eq", "(z-y)^2=0")
                    box[zz[k]] = max(abs(l[k]), abs(u[k]))
        # cross-network: (dz)(dy) - dz^2 >= 0 on ReLU coordinates
        for k in np.flatnonzero(st.relu):
            dz = (np.array([zi[j][k], hi[j][k]]), np.array([1.0, -1.0]))
            dy = _sub(ys["F"][k], ys["H"][k])
            bld.add([(1.0, dz, _sub(dy, dz))], "ineq", "cross")
    # box: B^2 - v_i^2 >= 0 for every hidden coordinate (also the repair direction)
    for i in range(1 + n0, N):
        bld.add([(box[i] ** 2, _e(0), _e(0)), (-1.0, _e(i), _e(i))], "ineq", "box")
    # objective: ||A_D v||^2, A_D = [b_L - bhat_L, M_L on z_{L-1}, -Mhat_L on zhat_{L-1}]
    last, lasth = F.stages[-1], Fhat.stages[-1]
    AD = np.zeros((last.n_out, N))
    Elast, dblast = stage_diff(F, Fhat, L - 1)
    AD[:, 0] = dblast
    if L == 1:
        AD[:, xi] = Elast
    else:
        AD[:, zi[-1]] = last.M
        AD[:, hi[-1]] = -lasth.M
    G, Gabs, terms_per_row = bld.matrix()
    kinds, family = bld.kinds + ["ineq"], bld.family + ["norm"]
    # diagonal scaling v = D v~ with D = diag(box) (1 where the box is 0): every coordinate of v~ lies in [-1, 1]; the
    # same problem, far better conditioned for the solver (Shor relaxations are not scale invariant in practice)
    d = np.where(box > 0, box, 1.0)
    d[0] = 1.0
    dd = np.kron(d, d)
    G = sp.diags(dd) @ G
    Gabs = sp.diags(dd) @ Gabs
    AD = AD * d[None, :]
    box = box / d
    # norm: W - ||w~||^2 >= 0 with W >= sup ||w~||^2 = sum of the scaled boxes (the refinement sets its multiplier)
    W = float(np.sum(box[1:] ** 2)) * (1 + 1e-12)
    rows = np.concatenate([[0], np.arange(1, N) * (N + 1)])
    col = sp.csr_matrix((np.concatenate([[W], -np.ones(N - 1)]), (rows, np.zeros(N, int))), shape=(N * N, 1))
    G = sp.hstack([G, col]).tocsr()
    Gabs = sp.hstack([Gabs, abs(col)]).tocsr()
    return N, AD, G, Gabs, terms_per_row + 3, np.array(kinds), np.array(family), box, d


def _lagrangian(AD, G, Gabs, terms_per_row, lam, kinds):
    """Q = C + sum_k lam_k G_k (C = A_D^T A_D, lam clipped to >= 0 on inequalities), symmetrised, and the entrywise
    rounding bound |Q_float - Q_exact| <= gamma_T |Q|_abs as its matrix |Q|_abs and gamma_T (T: products per entry
    (<= 4) + raw terms summed per entry + the objective's inner products + symmetrising)."""
    N = AD.shape[1]
    lam = np.where(kinds == "ineq", np.maximum(lam, 0.0), lam)
    Q = AD.T @ AD + (G @ lam).reshape(N, N)
    Q = (Q + Q.T) / 2
    Qabs = np.abs(AD).T @ np.abs(AD) + (Gabs @ np.abs(lam)).reshape(N, N)
    return Q, Qabs, _gamma(terms_per_row + AD.shape[0] + 8)


def _v2(box) -> float:
    """V2 >= ||v||^2 on the feasible set (|v_i| <= box_i)."""
    return float(np.sum(box ** 2)) * (1 + 1e-12)


def _certify_multipliers(AD, G, Gabs, terms_per_row, t, lam, kinds, box, lam_min_guess: float | None = None):
    """Statement 12.12 (i): a float64 upper bound on sup_{feasible v} ||A_D v||^2 from a solver's (t, lam).

    With S = t e0 e0^T - Q: for feasible v (v_0 = 1), ||A_D v||^2 <= t - v^T S v <= t + (mu_c + delta) V2, where
    -mu_c <= lambda_min of the computed S (Cholesky of fl(S + mu I), §11.5 with any real mu), delta bounds the
    rounding between the computed and the exact S, and V2 >= ||v||^2 on the feasible set. ``lam_min_guess``: a
    guess of lambda_min(S) (e.g. from Lanczos) used instead of a dense eigvalsh; only the shift of the Cholesky at a
    guess depends on it, never the validity. Returns (bound, mu_c, allowance)."""
    N = AD.shape[1]
    t = float(t)
    Q, Qabs, gT = _lagrangian(AD, G, Gabs, terms_per_row, lam, kinds)
    S = -Q
    S[0, 0] += t
    Qabs[0, 0] += abs(t)
    lam_min = float(np.linalg.eigvalsh(S)[0]) if lam_min_guess is None else float(lam_min_guess)
    scale = max(1.0, float(np.abs(S).max()))
    mu = max(0.0, -lam_min) * (1 + 1e-6) + 1e-13 * scale
    for _ in range(60):
        slack = _cholesky_slack(S + mu * np.eye(N))  # the shift mu I - G with G = -S (§11.5)
        if slack is not None:
            break
        mu = 2 * mu + 1e-12 * scale
    else:
        raise ProbPruneError("SDP certificate: could not certify the smallest eigenvalue of the dual matrix")
    mu_c = mu + slack  # lambda_min(S) >= -mu_c
    delta = gT * float(np.linalg.norm(Qabs)) * 1.01
    allowance = (mu_c + delta) * _v2(box)
    bound = max(t + allowance, 0.0) * (1 + 4 * EPS)
    return bound, mu_c, allowance


def _certify_schur(AD, G, Gabs, terms_per_row, lam, kinds, box, lam_max_guess: float | None = None):
    """Statement 12.12 (ii): with Q = [[q00, q^T], [q, Q11]] and Q11 <= -m I (m > 0 certified by Cholesky at a
    guess, §11.5), sup_{v_0 = 1} v^T Q v <= q(w) + ||q + Q11 w||^2 / m for any w (strong concavity), evaluated at
    w = (-Q11)^{-1} q with rounding allowances. ``lam_max_guess``: a guess of lambda_max(Q11) (e.g. from Lanczos)
    instead of a dense eigvalsh (only the Cholesky shift depends on it). Returns (bound, m, allowance) or None when
    Q11 is not certified negative definite."""
    from scipy.linalg import cho_factor, cho_solve

    N = AD.shape[1]
    Q, Qabs, gT = _lagrangian(AD, G, Gabs, terms_per_row, lam, kinds)
    Q11, q, q00 = Q[1:, 1:], Q[0, 1:], Q[0, 0]
    lam_max = float(np.linalg.eigvalsh(Q11)[-1]) if lam_max_guess is None else float(lam_max_guess)
    if not lam_max < 0:
        return None
    m0 = -lam_max / 2
    slack = _cholesky_slack(-m0 * np.eye(N - 1) - Q11)  # mu I - G with mu = -m0, G = Q11 (§11.5, any real mu)
    if slack is None:
        return None
    m = m0 - slack  # lambda_max(Q11) <= -m
    if not m > 0:
        return None
    w = cho_solve(cho_factor(-Q11), q)
    aw = np.abs(w)
    n = N + 2
    val = float(q00 + 2 * q @ w + w @ Q11 @ w)
    val_allow = _gamma(2 * n) * float(abs(q00) + 2 * np.abs(q) @ aw + aw @ np.abs(Q11) @ aw)
    res = float(np.linalg.norm(q + Q11 @ w)) + float(np.linalg.norm(_gamma(n) * (np.abs(q) + np.abs(Q11) @ aw)))
    delta = gT * float(np.linalg.norm(Qabs)) * 1.01
    allowance = val_allow + res * res / m * (1 + 1e-6) + delta * _v2(box)
    return max(val + allowance, 0.0) * (1 + 4 * EPS), m, allowance


def lifted_dim(F: Chain) -> int:
    """N = 1 + inputs + 2 x hidden units: the size of the lifted problem (§12.6)."""
    return 1 + F.n_in + 2 * sum(st.n_out for st in F.stages[:-1])


def check_lifted_dim(F: Chain, max_dim: int | None = None) -> int:
    """Refuse (ProbPruneError naming the size) when the lifted problem exceeds ``max_dim`` (default MAX_DIM)."""
    max_dim = MAX_DIM if max_dim is None else max_dim
    N = lifted_dim(F)
    if N > max_dim:
        raise ProbPruneError(f"sdp certificate: the lifted problem has {N} coordinates (input + hidden units of both "
                             f"networks), above max_dim={max_dim}; use --bound mixed / auto")
    return N


def sigma_star(Q: np.ndarray, W: float):
    """The norm multiplier of Statement 12.12 (ii) set optimally for a symmetric Q = [[q00, q^T], [q, Q11]] (dense
    eigendecomposition of Q11): sigma* = argmin_{sigma >= max(0, lambda_max(Q11))} sigma W + q00 + q^T (sigma I -
    Q11)^{-1} q (a monotone secular equation, bisection). Returns (value, w* = (sigma* I - Q11)^{-1} q, sigma*)."""
    ev, U = np.linalg.eigh(Q[1:, 1:])
    p = U.T @ Q[0, 1:]
    p2 = p * p
    lo = max(0.0, float(ev[-1]))
    a = lo + 1e-12 * max(1.0, abs(lo)) + 1e-300

    def dfun(sg):
        return W - float(np.sum(p2 / (sg - ev) ** 2))
    if dfun(a) >= 0:
        sg = a
    else:
        b = max(2 * lo, 1.0)
        while dfun(b) < 0:
            b *= 2
        for _ in range(200):
            mid = (a + b) / 2
            if dfun(mid) < 0:
                a = mid
            else:
                b = mid
            if b - a <= 1e-15 * b:
                break
        sg = b
    val = float(Q[0, 0] + sg * W + np.sum(p2 / (sg - ev)))
    w = U @ (p / (sg - ev))
    return val, w, sg


def _refine(AD, G, kinds, family, lam0, maxiter: int):
    """Minimise the extended dual function over the multipliers (L-BFGS-B, lam >= 0 on inequalities):
    phi(lam) = min_{sigma >= 0, sigma I > Q11} sigma W + q00 + q^T (sigma I - Q11)^{-1} q, the Lagrangian bound with the
    norm constraint's multiplier (index ``family == 'norm'``, W its constant) set optimally; convex in lam, finite
    everywhere, gradient v*^T G_k v* (envelope theorem). Returns lam with the norm multiplier set to sigma*."""
    from scipy.optimize import minimize

    N = AD.shape[1]
    C = AD.T @ AD
    GT = G.T.tocsr()
    kn = int(np.flatnonzero(family == "norm")[0])
    W = float(G[0, kn])
    lam0 = np.where(kinds == "ineq", np.maximum(lam0, 0.0), lam0)
    lam0[kn] = 0.0

    def inner(lam):
        Q = C + (G @ lam).reshape(N, N)
        Q = (Q + Q.T) / 2
        return sigma_star(Q, W)

    def phi(lam):
        val, w, _ = inner(lam)
        v = np.concatenate([[1.0], w])
        g = GT @ np.outer(v, v).ravel()
        g[kn] = 0.0
        return val, g

    bounds = [(0.0, 0.0) if k == kn else ((0.0, None) if kinds[k] == "ineq" else (None, None)) for k in range(len(kinds))]
    res = minimize(phi, lam0, jac=True, method="L-BFGS-B", bounds=bounds,
                   options=dict(maxiter=int(maxiter), maxfun=2 * int(maxiter), maxcor=50, ftol=1e-15, gtol=1e-12))
    lam = res.x.copy()
    _, _, sg = inner(lam)
    Q = C + (G @ lam).reshape(N, N)
    lam[kn] = sg + 1e-6 * max(sg, float(np.abs(Q[1:, 1:]).max()), 1e-12)  # strict: certifiable by Cholesky
    return lam, int(res.nit)


def ball(F: Chain, radius, center) -> tuple[float, np.ndarray]:
    """(r, c) of the input ball ||x - c||_2 <= r, checked (r finite and >= 0; c None = the origin, F.n_in entries)."""
    r = float(radius)
    if not (math.isfinite(r) and r >= 0):
        raise ProbPruneError(f"radius must be finite and >= 0, got {radius!r}")
    c = np.zeros(F.n_in) if center is None else np.asarray(center, float).reshape(-1)
    if c.size != F.n_in:
        raise ProbPruneError(f"center has {c.size} entries, the network input has {F.n_in}")
    return r, c


def sdp_certificate(F: Chain, Fhat: Chain, radius: float = 1.0, center=None, *, max_dim: int = MAX_DIM,
                    max_iters: int = 2000, solver_eps: float = 1e-6, refine_iters: int = 3000, crown=None
                    ) -> SDPCertificate:
    """Statements 12.11-12.12 (THEORY §12.6): certified upper bound on sup_{||x - c||_2 <= r} ||F(x) - F_hat(x)||_2
    from the dual of the cross-network Shor relaxation. ``crown``: optional (crown_F, crown_H), per hidden stage
    (idx, l, u) CROWN pre-activation bounds to tighten the intervals (must be sound). Refuses (ProbPruneError)
    when the lifted dimension exceeds ``max_dim`` or cvxpy is missing."""
    t0 = time.perf_counter()
    r, c = ball(F, radius, center)
    check_lifted_dim(F, max_dim)
    try:
        import cvxpy as cp
    except ImportError as e:  # pragma: no cover - cvxpy is a dependency
        raise ProbPruneError("sdp certificate needs cvxpy (pip install cvxpy)") from e
    cF, cH = crown if crown is not None else (None, None)
    N, AD, G, Gabs, tpr, kinds, family, box, _ = build_qcqp(F, Fhat, c, r, cF, cH)
    K = G.shape[1]
    # dual SDP: min t  s.t.  t e0 e0^T - C - sum lam_k G_k >= 0 (PSD), lam >= 0 on inequalities
    solve_k = np.flatnonzero(family != "norm")  # the norm multiplier is set by the refinement only
    lam = cp.Variable(len(solve_k))
    t = cp.Variable()
    E00 = np.zeros((N, N))
    E00[0, 0] = 1.0
    Qlin = cp.reshape(G[:, solve_k] @ lam, (N, N), order="C")
    S = t * E00 - AD.T @ AD - Qlin
    cons = [(S + S.T) / 2 >> 0]
    ineq = np.flatnonzero(kinds[solve_k] == "ineq")
    if len(ineq):
        cons.append(lam[ineq] >= 0)

    prob = cp.Problem(cp.Minimize(t), cons)
    status = "not run"
    try:
        with warnings.catch_warnings():  # "inaccurate" is expected and recorded in solver_status; the bound is
            warnings.simplefilter("ignore")  # re-certified below either way
            prob.solve(solver="SCS", max_iters=int(max_iters), eps_abs=float(solver_eps), eps_rel=float(solver_eps),
                       verbose=False)
        status = str(prob.status)
    except Exception as e:  # the solver only proposes multipliers; failure -> fall back to zero multipliers
        status = f"solver error: {type(e).__name__}"
    lam_v = np.zeros(K)
    if lam.value is not None:
        lam_v[solve_k] = np.where(np.isfinite(lam.value), lam.value, 0.0)
    solver_val = float(t.value) if t.value is not None and np.isfinite(t.value) else float("nan")
    # any t is valid in form (i); without a solver value, t = 0 and the eigenvalue term carries the bound
    bound, mu_c, allow = _certify_multipliers(AD, G, Gabs, tpr, solver_val if np.isfinite(solver_val) else 0.0,
                                              lam_v, kinds, box)
    lam_r, nit = _refine(AD, G, kinds, family, lam_v, refine_iters) if refine_iters > 0 else (lam_v, 0)
    sch = _certify_schur(AD, G, Gabs, tpr, lam_r, kinds, box)
    if sch is not None and sch[0] < bound:
        bound, allow = sch[0], sch[2]
    return SDPCertificate(eps=math.sqrt(bound) * (1 + 4 * EPS), bound_sq=bound, solver_value_sq=solver_val,
                          lifted_dim=N, n_constraints=K, mu_certified=mu_c, allowance=allow,
                          solver="SCS", solver_status=status, seconds=time.perf_counter() - t0)


__all__ = ["SDPCertificate", "sdp_certificate", "build_qcqp", "lifted_dim", "check_lifted_dim", "crown_bounds"]
