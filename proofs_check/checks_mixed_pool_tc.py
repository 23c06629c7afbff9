"""THEORY.md §12.10 (issue 19, helper TC): beta anchored at the centre (Statement 12.40) and S-procedure segments
through max-pool blocks (Statement 12.41).

Symbolic: the window forms Q(s) satisfy e_i^T Q(s)^{-1} e_i = 1 (hence Q(s) >= e_i e_i^T). Numeric: the segment
bound against the exhaustive sup over the vertices (one element per window, 0/1 slopes) on tiny factors, and the
anchored beta against sampled ||shat_i(x)|| on a tiny max-pool CNN."""
from __future__ import annotations

import itertools

import numpy as np
import sympy as sp

from ._core import register, require, sym_zero


def tiny_maxpool_pair(seed: int, keep: float = 0.6):
    """(g, g_hat, F, F_hat): conv 3x3 (2 channels) -> ReLU -> max pool 2 -> fc 4 -> ReLU -> fc 2 on 1x4x4 inputs,
    float64, weights from torch.manual_seed(seed), masks keeping each weight with probability ``keep`` (numpy seed)."""
    import torch
    import torch.nn as nn

    from probprune.certificates.lower import lower_graph_pair
    from probprune.net.trace import from_torch

    torch.manual_seed(seed)
    m = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8, 4),
                      nn.ReLU(), nn.Linear(4, 2)).double().eval()
    g = from_torch(m, (1, 4, 4))
    rng = np.random.default_rng(seed)
    gh = g.with_masks({k: rng.random(w.shape) < keep for k, w in g.weights.items()})
    return g, gh, *lower_graph_pair(g, gh)


@register("mixed-pool-window-form-tc", "Q(s) = (1/(Ks)) 11^T/K + ((K-1)/(K(1-s))) (I - 11^T/K) >= e_i e_i^T",
          "§12.10", "symbolic", covers=["mixed-pool-segment-tc"])
def _chk_window_form():
    s = sp.Symbol("s", positive=True)
    for K in (2, 3, 4, 9):
        one = sp.ones(K, K) / K
        Q = one / (K * s) + (K - 1) / (K * (1 - s)) * (sp.eye(K) - one)
        Qinv = one * K * s + K * (1 - s) / (K - 1) * (sp.eye(K) - one)
        sym_zero(sp.simplify((Q * Qinv - sp.eye(K))[0, 0]), f"Q Q^-1 = I (K={K})")
        sym_zero(sp.simplify((Q * Qinv)[0, 1]), f"Q Q^-1 off-diagonal (K={K})")
        sym_zero(sp.simplify(Qinv[0, 0] - 1), f"e_1^T Q^-1 e_1 = 1 (K={K})")
        sym_zero(sp.simplify(Q.subs(s, sp.Rational(1, K)) - sp.eye(K)).norm(), f"Q(1/K) = I (K={K})")
    return "Q(s)^{-1} and e^T Q^{-1} e = 1 proved for K in {2, 3, 4, 9}; Q(1/K) = I"


def _exact_sup(A, J, B):
    wins = [np.flatnonzero(r) for r in J]
    best = 0.0
    for sel in itertools.product(*wins):
        P = np.zeros(J.shape)
        P[np.arange(len(sel)), sel] = 1.0
        for d in itertools.product((0.0, 1.0), repeat=J.shape[1]):
            best = max(best, np.linalg.norm(A @ P @ (np.array(d)[:, None] * B), 2))
    return best


@register("mixed-pool-segment-tc", "segment bound through a max-pool block >= exact vertex sup of ||A D P D B||",
          "§12.10", "numeric", covers=["mixed-pool-segment-tc"])
def _chk_pool_segment():
    from probprune.certificates.compose import pool_chain_bound

    rng = np.random.default_rng(4101)
    worst = np.inf
    n = 0
    for size, stride in [(2, 2), (3, 2), (2, 1), (3, 3)]:
        n_in = 6
        J = np.array([[1.0 if st <= i < st + size else 0.0 for i in range(n_in)]
                      for st in range(0, n_in - size + 1, stride)])
        for _ in range(4):
            A = rng.normal(size=(3, J.shape[0]))
            B = rng.normal(size=(n_in, 3))
            ex = _exact_sup(A, J, B)
            ub = pool_chain_bound([A, ("pool", J), B])
            require(ub >= ex * (1 - 1e-9), f"segment {ub} < exact {ex} (window {size}, stride {stride})")
            worst = min(worst, ub / ex)
            n += 1
    return f"{n} instances: bound >= exhaustive sup (smallest ratio {worst:.3f})"


@register("mixed-anchored-beta-tc", "beta_i <= ||shat_i(x0)|| + g(Mhat_i..Mhat_1) rho >= sampled ||shat_i(x)||",
          "§12.10", "numeric", covers=["mixed-anchored-beta-tc"])
def _chk_anchored_beta():
    from probprune.certificates.mixed import lemma_a_mixed
    from probprune.certificates.propagate import Region

    g, gh, F, Fh = tiny_maxpool_pair(4102)
    rng = np.random.default_rng(4102)
    for w in g.weights.values():  # the mask draws of tiny_maxpool_pair: the stream continues as before
        rng.random(w.shape)
    x0 = rng.normal(size=F.n_in) * 0.3
    res = lemma_a_mixed(F, Fh, Region(x0[None, :], 0.7), pair_bounds="full", anchored_beta=True)
    X = rng.normal(size=(4000, F.n_in))
    X = x0 + 0.7 * X / np.linalg.norm(X, axis=1, keepdims=True) * rng.random((4000, 1)) ** (1 / F.n_in)
    s = X
    for i, st in enumerate(Fh.stages[:-1]):
        z = s @ st.M.T + st.b
        s = np.where(st.relu, np.maximum(z, 0.0), z)
        require(np.linalg.norm(s, axis=1).max() <= res.beta[i] * (1 + 1e-9), f"beta_{i} below a sampled norm")
    return f"beta_i >= sampled sup ||shat_i|| on 4000 points, {len(res.beta)} stages"
