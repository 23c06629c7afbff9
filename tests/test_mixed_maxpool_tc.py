"""Statement 12.41 (THEORY §12.10, Statement 12.41): slope-product segments through max-pool blocks (compose.pool_chain_bound,
block_windows) and their use in the mixed bound (mixed.lemma_a_mixed, pair_bounds="full").

Ground truths: (1) the exact sup over every vertex (selections of one element per window, 0/1 ReLU slopes) of
||A D_a P D_b B|| on tiny factors -- the norm is convex in each slope and P ranges over the convex hull of the
selections, so the sup is attained at a vertex; (2) on hypothesis-generated small max-pool CNNs, a many-restart PGD
attack on the networks themselves (the mixed bound must stay >= it)."""
from __future__ import annotations

import itertools
from unittest import mock

import numpy as np
import pytest
import torch
import torch.nn as nn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from probprune.certificates import compose as C
from probprune.certificates.lower import lower_graph_pair
from probprune.certificates.mixed import lemma_a_mixed
from probprune.certificates.propagate import Region
from probprune.measure.attack import pgd_sup_error
from probprune.net.trace import from_torch

from maxpool_cnns import maxpool_cnn


def _windows(n_in, size, stride):
    rows = []
    for start in range(0, n_in - size + 1, stride):
        r = np.zeros(n_in)
        r[start:start + size] = 1
        rows.append(r)
    return np.array(rows)


def _exact_sup(A, J, B, relu_before=True):
    """max over selections sigma (one input per window) and 0/1 slopes d (before the pool) of ||A P_sigma D B||."""
    wins = [np.flatnonzero(r) for r in J]
    best = 0.0
    n_in = J.shape[1]
    slopes = itertools.product((0.0, 1.0), repeat=n_in) if relu_before else [np.ones(n_in)]
    slopes = [np.array(s) for s in slopes]
    for sel in itertools.product(*wins):
        P = np.zeros(J.shape)
        P[np.arange(len(sel)), sel] = 1.0
        for d in slopes:
            best = max(best, np.linalg.norm(A @ P @ (d[:, None] * B), 2))
    return best


@pytest.mark.parametrize("seed", range(12))
def test_pool_segment_bounds_the_exact_sup(seed):
    rng = np.random.default_rng(seed)
    size, stride = [(2, 2), (3, 2), (2, 1)][seed % 3]
    n_in = 6
    J = _windows(n_in, size, stride)
    A = rng.normal(size=(3, J.shape[0]))
    B = rng.normal(size=(n_in, 4))
    exact = _exact_sup(A, J, B)
    ub = C.pool_chain_bound([A, ("pool", J), B])
    with mock.patch.object(C, "POOL_GAMMAS", (0.0, 1.0)), mock.patch.object(C, "POOL_OPT_STEPS", 0):
        ub0 = C.pool_chain_bound([A, ("pool", J), B])
    prod = np.linalg.norm(A, 2) * np.sqrt(J.sum(0).max()) * np.linalg.norm(B, 2)
    assert ub >= exact * (1 - 1e-9)
    assert ub0 >= exact * (1 - 1e-9)
    assert ub0 <= prod * (1 + 1e-5)  # never worse than the product with the block's L (gamma = 0 candidate)
    # a leading and a trailing block
    assert C.pool_chain_bound([("pool", J), B]) >= _exact_sup(np.eye(J.shape[0]), J, B) * (1 - 1e-9)
    assert C.pool_chain_bound([A, ("pool", J)]) >= _exact_sup(A, J, np.eye(n_in), relu_before=False) * (1 - 1e-9)


def test_pool_lift_dominates_windows_max():
    """sum_j T_j Q_j >= the max over each window: y^T G' y >= sum_j t_j max_{i in window j} y_i^2 for T >= G."""
    rng = np.random.default_rng(0)
    J = _windows(8, 3, 2)
    A = rng.normal(size=(5, J.shape[0]))
    G = A.T @ A
    for gm in C.POOL_GAMMAS:
        for sh in (0.0, 0.5, 0.9):
            Gp = C._pool_lift(G, J, gm, sh)
            for _ in range(200):
                y = rng.normal(size=8)
                w = np.array([y[np.flatnonzero(r)][np.argmax(np.abs(y[np.flatnonzero(r)]))] for r in J])
                w *= rng.random(w.size)  # any slope after the block
                assert y @ Gp @ y >= w @ G @ w * (1 - 1e-9)


def _cnn(seed, hw, ch, two, bias):
    return maxpool_cnn(seed, hw, ch, two, bias, hidden=3)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), hw=st.integers(4, 6), ch=st.integers(1, 2), two=st.booleans(),
       bias=st.booleans(), keep=st.floats(0.3, 0.9))
def test_mixed_with_pool_segments_above_attack(seed, hw, ch, two, bias, keep):
    m = _cnn(seed, hw, ch, two, bias)
    shape = (1, hw, hw)
    g = from_torch(m, shape)
    rng = np.random.default_rng(seed)
    gh = g.with_masks({k: rng.random(w.shape) < keep for k, w in g.weights.items()})
    F, Fh = lower_graph_pair(g, gh)
    att = pgd_sup_error(g.forward, gh.forward, shape, 64, 60, seed).value
    reg = Region(np.zeros((1, F.n_in)), 1.0)
    with C.bound_cache(False):
        new = lemma_a_mixed(F, Fh, reg, pair_bounds="full").eps
        scalar = lemma_a_mixed(F, Fh, reg, pair_bounds="scalar", pool_segments=True).eps
        anch = lemma_a_mixed(F, Fh, reg, pair_bounds="full", anchored_beta=True).eps
    assert min(new, scalar, anch) >= att * (1 - 1e-9), (new, scalar, anch, att)


class _Res(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, c, 3, padding=1), nn.ReLU())
        self.body = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU(), nn.Conv2d(c, c, 3, padding=1))
        self.fc = nn.Linear(c * 16, 2)

    def forward(self, x):
        h = self.stem(x)
        return self.fc(torch.flatten(torch.relu(h + self.body(h)), 1))


@pytest.mark.parametrize("seed", range(3))
def test_mixed_long_segments_residual_above_attack(seed):
    """long_segment_dim (Statement 12.10 segments over the wide carried stages of a residual block): still >= PGD,
    and never above the default (a grouping with more candidates)."""
    torch.manual_seed(seed)
    m = _Res(2).double().eval()
    shape = (1, 4, 4)
    g = from_torch(m, shape)
    rng = np.random.default_rng(seed)
    gh = g.with_masks({k: rng.random(w.shape) < 0.5 for k, w in g.weights.items()})
    F, Fh = lower_graph_pair(g, gh)
    att = pgd_sup_error(g.forward, gh.forward, shape, 64, 60, seed).value
    reg = Region(np.zeros((1, F.n_in)), 1.0)
    with C.bound_cache(False), mock.patch.object(C, "SEGMENT_MAX_DIM", 8):
        short = lemma_a_mixed(F, Fh, reg, pair_bounds="full").eps
        long_ = lemma_a_mixed(F, Fh, reg, pair_bounds="full", long_segment_dim=4096).eps
    assert long_ >= att * (1 - 1e-9), (long_, att)
    assert long_ <= short * (1 + 1e-9)


def test_deadline_during_pool_segments_returns_the_first_pass():
    """A deadline reached while the max-pool segments run (Statement 12.41) gives the value without them, not an
    exception (auto keeps what it had); a full run is <= it."""
    m = _cnn(3, 6, 2, True, True)
    g = from_torch(m, (1, 6, 6))
    rng = np.random.default_rng(3)
    F, Fh = lower_graph_pair(g, g.with_masks({k: rng.random(w.shape) < 0.5 for k, w in g.weights.items()}))
    reg = Region(np.zeros((1, F.n_in)), 1.0)

    def boom(*a, **k):
        raise C.TimeLimitReached()

    with C.bound_cache(False):
        ref = lemma_a_mixed(F, Fh, reg, pool_segments=False).eps
        full = lemma_a_mixed(F, Fh, reg).eps
        with mock.patch.object(C, "pool_chain_prefix_bounds", boom):
            cut = lemma_a_mixed(F, Fh, reg).eps
    assert cut == ref
    assert full <= ref
