"""Per-network certificates (THEORY.md §3.11): Cert-D and the Cert-R decompositions."""
from __future__ import annotations

import numpy as np
import sympy as sp

from . import formulas as F
from ._core import register, require, sym_zero
from .checks_lemma_a import _random_net, _random_pruning, _sampled_err, lemma_a_reference

_beta_np = sp.lambdify((F.s2, F.R, F.lam), F.beta(F.s2, F.R, F.lam), "numpy")


@register("cert-D", "Cert-D = Lip min(A-fwd, A-bwd) >= sampled sup error (ReLU, magnitude/exact-k/random/structured)",
          "§3.11", "numeric", covers=["cert-D"])
def _chk_cert_d():
    rng = np.random.default_rng(311)
    relu = lambda x: np.maximum(x, 0.0)  # noqa: E731
    n = 0
    for trial in range(40):
        l = int(rng.integers(2, 5))
        W = _random_net(rng, l, scale=1.5)
        kind = trial % 4
        if kind == 3:  # structured: zero whole rows
            Wh = [M * (rng.random((M.shape[0], 1)) > 0.3) for M in W]
        elif kind == 2:  # exact-k magnitude per layer
            Wh = []
            for M in W:
                k = int(0.4 * M.size)
                idx = np.argsort(np.abs(M), axis=None, kind="stable")[:k]
                Mh = M.copy().reshape(-1)
                Mh[idx] = 0.0
                Wh.append(Mh.reshape(M.shape))
        else:
            Wh = _random_pruning(rng, W, ("magnitude", "random")[kind])
        fwd, bwd = lemma_a_reference(W, Wh, [1.0] * l)
        err = _sampled_err(W, Wh, relu, rng)
        require(err <= min(fwd, bwd) * (1 + 1e-9), f"Cert-D violated: {err} > {min(fwd, bwd)}")
        n += 1
    return f"{n} ReLU networks"


@register("cert-R-algebra", "What = (1-p)W - (E - pW); entry laws of W(P-p) and W(P-p)/(1-p)", "§3.11", "symbolic",
          covers=["cert-R-bern", "cert-R-rescaled"])
def _chk_cert_r_algebra():
    w, b = sp.symbols("w b", real=True)
    p = sp.Symbol("p", positive=True)
    E = w * b  # R-Bern: E = W ⊙ P, What = W ⊙ (1 - P)
    What = w * (1 - b)
    sym_zero((1 - p) * w - (E - p * w) - What, "What = (1-p)W - (E - pW)")
    Eb = lambda f: p * f.subs(b, 1) + (1 - p) * f.subs(b, 0)  # noqa: E731
    sym_zero(Eb(w * (b - p)), "E[w(b-p)] = 0")
    sym_zero(Eb((w * (b - p)) ** 2) - w ** 2 * p * (1 - p), "Var w(b-p) = w^2 p(1-p)")
    # |w (b - p)| <= |w| max(p, 1-p): b - p in {1 - p, -p}
    require({sp.Abs(1 - p), sp.Abs(-p)} == {sp.Abs(1 - p), p}, "values of b - p")
    # rescaled: E = W - W(1-P)/(1-p) = W(P - p)/(1-p)
    Er = w - w * (1 - b) / (1 - p)
    sym_zero(Er - w * (b - p) / (1 - p), "rescaled E")
    sym_zero(sp.simplify(Eb(Er)), "rescaled E is centred")
    sym_zero(sp.simplify(Eb(Er ** 2) - w ** 2 * p / (1 - p)), "Var rescaled = w^2 p/(1-p)")
    # line sums: sum_c w_rc^2 p(1-p) <= p(1-p) rho^2 with rho the largest row/column norm
    return "decomposition, means, variances, ranges"


def _cert_r_terms(W, p, delta, variant):
    d1, d0 = W.shape
    n = d1 + d0
    rho = max(np.linalg.norm(W, axis=1).max(), np.linalg.norm(W, axis=0).max())
    mu = np.abs(W).max()
    w = np.linalg.norm(W, 2)
    lam = np.log(n / delta)
    if variant == "bern":
        return _beta_np(p * (1 - p) * rho ** 2, max(p, 1 - p) * mu, lam), w
    if variant == "rescaled":
        return _beta_np(p * rho ** 2 / (1 - p), mu * max(p, 1 - p) / (1 - p), lam), w
    return _beta_np(p * rho ** 2, mu + w / W.size, lam), w


@register("cert-R-mc", "Cert-R bounds hold for fixed W over redrawn masks (R-Bern, rescaled, R-exact); v, R inputs",
          "§3.11", "numeric", covers=["cert-R-bern", "cert-R-rescaled", "cert-R-exact"])
def _chk_cert_r_mc():
    rng = np.random.default_rng(3110)
    W = rng.standard_normal((40, 30)) * (rng.random((40, 30)) < 0.8) / np.sqrt(40)
    W[3] *= 4.0  # an inhomogeneous row: rho is not ~ sqrt(d) times an entry
    delta = 0.05
    worst = {}
    for variant in ("bern", "rescaled", "exact"):
        for p in (0.1, 0.5, 0.8):
            t, w = _cert_r_terms(W, p, delta, variant)
            # the variance proxy of the centred sum is <= the one used by t
            if variant == "bern":
                V = W ** 2 * p * (1 - p)
                vproxy = p * (1 - p) * max(np.linalg.norm(W, axis=1).max(), np.linalg.norm(W, axis=0).max()) ** 2
                require(max(V.sum(1).max(), V.sum(0).max()) <= vproxy * (1 + 1e-12), "variance proxy")
            fails = 0
            for _ in range(100):
                if variant == "exact":
                    k = int(round(p * W.size))
                    P = np.zeros(W.size, bool)
                    P[rng.permutation(W.size)[:k]] = True
                    P = P.reshape(W.shape)
                else:
                    P = rng.random(W.shape) < p
                if variant == "rescaled":
                    E = W * (P - p) / (1 - p)
                    Wh = W - E
                    okE = np.linalg.norm(E, 2) <= t
                    okW = np.linalg.norm(Wh, 2) <= w + t
                else:
                    E = W * P
                    Wh = W - E
                    okE = np.linalg.norm(E, 2) <= p * w + t
                    okW = np.linalg.norm(Wh, 2) <= (1 - p) * w + t
                fails += int(not (okE and okW))
            worst[(variant, p)] = fails
            # 100 draws, delta = 0.05: more than 15 failures would refute the bound (binomial tail < 1e-4)
            require(fails <= 15, f"Cert-R {variant} p={p}: {fails}/100 failures at delta={delta}")
    # R-exact surrogate: Z = w_e E_e - W/N (one draw with replacement) has ||Z|| <= mu + ||W||/N and
    # sum_k E Z Z^T <= k diag(row norms^2)/N, so v <= p rho^2 (exact second moments on a small matrix)
    Ws = rng.standard_normal((4, 5))
    N = Ws.size
    k = 7
    ZZt = np.zeros((4, 4))
    ZtZ = np.zeros((5, 5))
    for r in range(4):
        for c in range(5):
            Z = -Ws / N
            Z[r, c] += Ws[r, c]
            require(np.linalg.norm(Z, 2) <= np.abs(Ws).max() + np.linalg.norm(Ws, 2) / N + 1e-12, "||Z|| bound")
            ZZt += Z @ Z.T / N
            ZtZ += Z.T @ Z / N
    rho = max(np.linalg.norm(Ws, axis=1).max(), np.linalg.norm(Ws, axis=0).max())
    v = k * max(np.linalg.norm(ZZt, 2), np.linalg.norm(ZtZ, 2))
    require(v <= (k / N) * rho ** 2 * (1 + 1e-12), f"surrogate v = {v} > p rho^2 = {k / N * rho ** 2}")
    return f"max failures per 100 masks: {max(worst.values())}; surrogate v <= p rho^2"
