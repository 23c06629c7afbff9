"""Speed work on the §12 certificates and the tight certified budget (issues 19 and 22): the content-keyed bound
cache of certificates/compose.py must be invisible (a cached value equals the uncached one, bit for bit; another
matrix never gets a cached value), the faster S-procedure primitives stay upper bounds, and the budget returned by
the faster search is still certified."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from probprune.certificates import compose as C
from probprune.certificates.lower import lower_graph_pair
from probprune.certificates.mixed import lemma_a_mixed
from probprune.certificates.propagate import Region
from probprune.certificates.tight import certify_chains
from probprune.net import from_torch


def _pair(seed: int, widths=(6, 9, 8, 7, 3), keep=0.6):
    torch.manual_seed(seed)
    mods = []
    for a, b in zip(widths[:-1], widths[1:]):
        mods += [nn.Linear(a, b), nn.ReLU()]
    m = nn.Sequential(*mods[:-1]).double()
    g = from_torch(m, (widths[0],))
    rng = np.random.default_rng(seed)
    masks = {n.op.fqn: rng.random(n.op.weight.shape) < keep for n in g.weight_nodes}
    return lower_graph_pair(g, g.with_masks(masks))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cached_equals_uncached_bit_for_bit(seed):
    F, Fh = _pair(seed)
    reg = Region(np.zeros((1, F.n_in)), 1.0, "l2")
    with C.bound_cache(False):
        p0 = C.lemma_a_pairs(F, Fh, 1.0)
        m0 = lemma_a_mixed(F, Fh, reg).eps
        a0 = certify_chains(F, Fh, "pairs").components
    C.clear_bound_cache()
    p1 = C.lemma_a_pairs(F, Fh, 1.0)  # fills the cache
    m1 = lemma_a_mixed(F, Fh, reg).eps  # pairs' factors served from it
    hits = C.CACHE_STATS["hits"]
    p2 = C.lemma_a_pairs(F, Fh, 1.0)  # all hits
    a1 = certify_chains(F, Fh, "pairs").components
    assert C.CACHE_STATS["hits"] > hits
    assert p0 == p1 == p2 and m0 == m1
    assert a0 == a1


def test_cache_never_serves_another_matrix():
    F, Fh = _pair(5)
    C.clear_bound_cache()
    v = C.lemma_a_pairs(F, Fh, 1.0)
    # the same structure with one weight of F changed by one ulp: every F-factor fingerprint changes
    s0 = F.stages[1]
    M = s0.M.copy()
    M[0, 0] = np.nextafter(M[0, 0], np.inf)
    assert C.fingerprint(M) != C.fingerprint(s0.M)
    assert C.fingerprint(s0.M.reshape(-1, 1)) != C.fingerprint(s0.M)  # shape is part of the key
    F2, Fh2 = _pair(6)  # another network of the same shapes
    with C.bound_cache(False):
        ref = C.lemma_a_pairs(F2, Fh2, 1.0)
    misses = C.CACHE_STATS["misses"]
    got = C.lemma_a_pairs(F2, Fh2, 1.0)
    assert got == ref and got != v
    assert C.CACHE_STATS["misses"] > misses  # computed, not served


def test_cache_key_holds_the_parameters(monkeypatch):
    F, Fh = _pair(3)
    C.clear_bound_cache()
    with_diag = C.lemma_a_pairs(F, Fh, 1.0)
    monkeypatch.setattr(C, "DIAG_STEPS", 0)
    with C.bound_cache(False):
        ref = C.lemma_a_pairs(F, Fh, 1.0)
    assert C.lemma_a_pairs(F, Fh, 1.0) == ref
    assert with_diag <= ref * (1 + 1e-12)


def _vertex_max(mats):
    """max over all 0/1 diagonal slopes of ||X_1 D_1 X_2 ... X_m|| (exhaustive: the sup over D in [0, I] is attained
    at a vertex, the norm being convex in each D_k)."""
    best = 0.0
    dims = [X.shape[1] for X in mats[:-1]]
    for ds in itertools.product(*[itertools.product((0.0, 1.0), repeat=d) for d in dims]):
        P = mats[0]
        for d, X in zip(ds, mats[1:]):
            P = (P * np.array(d)) @ X
        best = max(best, float(np.linalg.norm(P, 2)))
    return best


@pytest.mark.parametrize("seed", range(4))
def test_primitives_stay_upper_bounds(seed):
    rng = np.random.default_rng(seed)
    A, B, Cm = rng.normal(size=(3, 5)), rng.normal(size=(5, 4)), rng.normal(size=(4, 3))
    pb = C.pair_bound(A, B)
    assert _vertex_max([A, B]) <= pb <= np.linalg.norm(A, 2) * np.linalg.norm(B, 2) * (1 + 1e-6)
    for steps in (0, 20):
        cb = C.sproc_chain_bound([A, B, Cm], diag_steps=steps)
        assert _vertex_max([A, B, Cm]) <= cb
    assert abs(C.sproc_chain_bound([A, B], diag_steps=0) - pb) <= 1e-3 * pb


def test_lanczos_path_is_an_upper_bound_and_matches_exact_search():
    """Factors wide enough for the Krylov estimates (>= _ScaledGram.LANCZOS_MIN): the bound is the LAPACK value at
    the chosen t; it must be >= sampled vertices and match a search on exact eigenvalues to 1e-3."""
    from scipy.optimize import minimize_scalar

    rng = np.random.default_rng(7)
    n = C._ScaledGram.LANCZOS_MIN + 24
    A, B = rng.normal(size=(40, n)) / np.sqrt(n), rng.normal(size=(n, 150)) / np.sqrt(150)
    pb = C.pair_bound(A, B)
    for _ in range(50):
        d = (rng.random(n) < 0.5).astype(float)
        assert np.linalg.norm((A * d) @ B, 2) <= pb
    G = A.T @ A
    lam, V = np.linalg.eigh(G)
    lam = np.maximum(lam, 0) + (A.shape[0] + 10) * np.finfo(float).eps * float((A * A).sum())
    VB = V.T @ B

    def rho(s):
        t = lam[-1] / 2 * (1 + np.exp(s))
        w = t * t / (2 * t - lam)
        return np.linalg.eigvalsh((VB * np.sqrt(w)[:, None]) @ (VB * np.sqrt(w)[:, None]).T)[-1]

    ref = np.sqrt(minimize_scalar(rho, bounds=(-12, 6), method="bounded", options={"xatol": 1e-4}).fun)
    assert ref * (1 - 1e-9) <= pb <= ref * (1 + 1e-3)


def test_diagonal_step_gradient_is_danskin():
    """The numpy Adam of Statement 12.10's diagonal step uses d lambda / d log T_j = T_j (2 z_j u_j - 2 u_j^2)
    (Danskin): equal to central finite differences of the objective; the step improves on its scalar start, and its
    value_only form is the top eigenvalue of the matrix it returns."""
    rng = np.random.default_rng(2)
    A, X = rng.normal(size=(6, 8)), rng.normal(size=(8, 5))
    G = A.T @ A
    t0 = float(np.linalg.eigvalsh(G)[-1]) * 0.75
    T = t0 * np.exp(rng.normal(size=8) * 0.1)
    lam, g = C._diag_objective(G, X, T, 0.0)
    h = 1e-6
    for j in range(8):
        e = np.zeros(8)
        e[j] = h
        fd = (C._diag_objective(G, X, T * np.exp(e), 0.0, False)[0]
              - C._diag_objective(G, X, T * np.exp(-e), 0.0, False)[0]) / (2 * h)
        assert abs(fd - g[j]) <= 1e-5 * (1 + abs(lam))
    Gd = C._diagonal_step(G, X, t0, 20)
    val = C._diagonal_step(G, X, t0, 20, value_only=True)
    scalar = t0 * t0 * float(np.linalg.eigvalsh(X.T @ np.linalg.solve(2 * t0 * np.eye(8) - G, X))[-1])
    assert Gd is not None and val is not None
    top = float(np.linalg.eigvalsh(Gd)[-1])
    assert abs(top - val) <= 1e-9 * top
    assert val < scalar


def test_budget_from_the_faster_search_is_certified():
    from probprune.budgets import certified as bc

    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 4)).double()
    g = from_torch(m, (12,))
    w = bc.weight_norms(g)
    full = float(bc.graph_composition(g)(w, np.zeros(len(w)), w))
    eps = 0.1 * full
    r = bc.certified_budget(g, eps, tight_method="mixed")  # (auto adds the SDP at this size: slow for a unit test)
    assert r.certificate in ("tight:mixed", "lemma-a")
    counts = [L.max_prunable for L in r.layers]
    ac = bc.certify_allocation(g, counts, tight_method="mixed")
    assert ac.eps <= eps and abs(ac.eps - r.eps_achieved) <= 1e-12 * eps
    with C.bound_cache(False):
        assert bc.certify_allocation(g, counts, tight_method="mixed").eps == ac.eps  # the cache is invisible in the certificate


@pytest.mark.parametrize("steps", [0, 20])
def test_prefix_states_resume_bit_for_bit(steps):
    """A segment resumed from the stored state of its prefix (Statement 12.10's G_k) equals the segment computed
    from scratch, bit for bit; a prefix of another matrix is not resumed from."""
    rng = np.random.default_rng(11)
    A, B, Cm = rng.normal(size=(7, 9)), rng.normal(size=(9, 12)), rng.normal(size=(12, 5))
    with C.bound_cache(False):
        ref = C.sproc_chain_bound([A, B, Cm], diag_steps=steps)
        ref2 = C.sproc_chain_bound([A, B * 1.5, Cm], diag_steps=steps)
    C.clear_bound_cache()
    C.sproc_chain_bound([A, B], diag_steps=steps)  # stores the state after (A, B)
    assert len(C._STATE) >= 1
    assert C.sproc_chain_bound([A, B, Cm], diag_steps=steps) == ref
    assert C.sproc_chain_bound([A, B, Cm], diag_steps=steps) == ref  # resumed from the (A, B, Cm) prefix states
    assert C.sproc_chain_bound([A, B * 1.5, Cm], diag_steps=steps) == ref2


def test_fingerprint_edge_cases():
    """Empty, non-contiguous and non-float64 inputs; the shape is part of the fingerprint."""
    z = [C.fingerprint(np.zeros((0, 3))), C.fingerprint(np.zeros((3, 0)))]
    assert z[0] != z[1]
    a = np.arange(12.0).reshape(4, 3)
    assert C.fingerprint(a[:, ::2]) == C.fingerprint(np.ascontiguousarray(a[:, ::2]))
    assert C.fingerprint(np.ones(5, dtype=np.float32)) == C.fingerprint(np.ones(5))  # same float64 values
    assert C.fingerprint(np.ones(5)) != C.fingerprint(np.ones((5, 1)))


def test_trs_dual_bound_from_the_smaller_gram_side_is_sound_both_orientations():
    """Lemma 12.4's bound through an eigh of the smaller Gram matrix: >= max ||M u + g|| over sampled u on the
    sphere of radius r (and along +-v_1), for wide and tall M."""
    from probprune.certificates.propagate import trs_dual_bound

    rng = np.random.default_rng(7)
    for shape in [(3, 9), (9, 3), (5, 5), (1, 7), (7, 1)]:
        for _ in range(5):
            M = rng.standard_normal(shape) * 10 ** rng.uniform(-2, 2)
            g = rng.standard_normal(shape[0])
            r = float(rng.uniform(0.2, 2.0))
            U = rng.standard_normal((3000, shape[1]))
            U *= r / np.linalg.norm(U, axis=1, keepdims=True)
            v1 = np.linalg.svd(M)[2][0] * r
            lb = max(np.linalg.norm(U @ M.T + g, axis=1).max(), np.linalg.norm(M @ v1 + g), np.linalg.norm(g - M @ v1))
            assert lb <= trs_dual_bound(M, g, r)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_scalar_mixed_only_as_fallback_keeps_the_auto_value(seed):
    """certify_chains(scalar_if_mixed_fails=True) (the certified budget's final certification) skips the scalar
    mixed bound when the full mixed one finishes: the full mode's pair bounds are <= the scalar ones (Statement
    12.33), so the full mixed value is <= the scalar one and the auto minimum is unchanged bit for bit."""
    F, Fh = _pair(seed)
    full = certify_chains(F, Fh, "auto", 1.0, time_limit=None)
    lean = certify_chains(F, Fh, "auto", 1.0, time_limit=None, scalar_if_mixed_fails=True)
    assert "mixed_scalar" in full.components and "mixed_scalar" not in lean.components
    assert full.components["mixed"] <= full.components["mixed_scalar"]
    assert lean.eps == full.eps and lean.method == full.method


def test_scalar_mixed_fallback_runs_when_the_full_mixed_is_stopped(full_mixed_fails):
    """If the full mixed bound does not finish (here: it raises a numerical failure), the scalar variant still
    runs as the fallback, without the time limit."""
    F, Fh = _pair(0)
    lean = certify_chains(F, Fh, "auto", 1.0, time_limit=None, scalar_if_mixed_fails=True)
    assert "mixed" not in lean.components and "mixed_scalar" in lean.components


def test_magnitude_masks_from_stored_orders_equal_the_exact_k_rule():
    """magnitude_masks(_orders=...) (one sort per layer for a tight phase) gives the same masks as the exact-k rule,
    ties by flat index included, at every count 0..N."""
    from probprune.budgets.certified import magnitude_masks

    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 3)).double()
    with torch.no_grad():
        m[0].weight[:, :3] = 0.25  # ties
        m[2].weight[0] = -m[2].weight[1]
    g = from_torch(m, (5,))
    orders: dict = {}
    for k0 in range(31):
        for k1 in (0, 7, 18):
            a, b = magnitude_masks(g, [k0, k1]), magnitude_masks(g, [k0, k1], orders)
            assert a.keys() == b.keys() and all(np.array_equal(a[f], b[f]) for f in a)


@pytest.mark.parametrize("seed", [0, 1])
def test_lowering_without_op_norms_gives_the_same_stages_bit_for_bit(seed):
    """lower_graph(op_norms=False) (the certified budget's F_hat lowerings) differs only in the diagnostic
    factor_norms (nan): every stage array is bit-identical to the default lowering."""
    from probprune.certificates.lower import lower_graph

    torch.manual_seed(seed)
    m = nn.Sequential(nn.Linear(6, 9), nn.ReLU(), nn.Linear(9, 8), nn.ReLU(), nn.Linear(8, 3)).double()
    g = from_torch(m, (6,))
    rng = np.random.default_rng(seed)
    g = g.with_masks({n.op.fqn: rng.random(n.op.weight.shape) < 0.6 for n in g.weight_nodes})
    a, b = lower_graph(g, "F_hat"), lower_graph(g, "F_hat", op_norms=False)
    assert a.scale_exp == b.scale_exp and a.same_structure(b)
    for sa, sb in zip(a.stages, b.stages):
        assert np.array_equal(sa.M, sb.M) and np.array_equal(sa.b, sb.b) and np.array_equal(sa.relu, sb.relu)
        assert all(math.isnan(x) for x in sb.factor_norms)


def test_every_op_class_declares_its_lowering_and_lower_dispatches_on_it():
    """Each graph op class names how the §12 lowering treats it (net/ops.py ``lowering``); lower.py dispatches on that
    attribute, so a new linear op needs no change there, and an op without one is refused by name."""
    import pytest
    import torch.nn as nn

    from probprune.certificates.lower import lower_graph
    from probprune.core.errors import UnsupportedLayerError
    from probprune.net import from_torch as graph_from_torch
    from probprune.net import ops as O

    kinds = {"input", "add", "act", "max_pool", "concat", "affine", None}
    for cls in (O.Op, O.Input, O.Affine, O.Act, O.Lipschitz, O.LinearPool, O.MaxPool, O.Reshape, O.Permute,
                O.Concat, O.Gain, O.ConstShift, O.Add, O.ChannelAffine):
        assert cls.lowering in kinds, cls
    g = graph_from_torch(nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3)).double(), (4,))
    assert lower_graph(g).depth == 2
    node = next(n for n in g.nodes if n.op.kind == "act")
    object.__setattr__(node.op, "lowering", None)  # the instance now declares no lowering: refused, named
    try:
        with pytest.raises(UnsupportedLayerError, match="not supported by the tight certificates"):
            lower_graph(g)
    finally:
        object.__delattr__(node.op, "lowering")


@pytest.mark.parametrize("seed", [0, 1])
def test_pool_segments_cached_equals_uncached_bit_for_bit(seed):
    """THEORY §12.10 (Statement 12.41): the segments through max-pool blocks are memoised by the content of their
    factors and window incidences; a warm cache returns the same float as no cache, and the pool segments never make
    the mixed bound larger (the grouping keeps every earlier candidate)."""
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(2, 2, 3, padding=1),
                      nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8, 3), nn.ReLU(), nn.Linear(3, 2)).double()
    g = from_torch(m.eval(), (1, 8, 8))
    rng = np.random.default_rng(seed)
    F, Fh = lower_graph_pair(g, g.with_masks({k: rng.random(w.shape) < 0.6 for k, w in g.weights.items()}))
    reg = Region(np.zeros((1, F.n_in)), 1.0, "l2")
    C.clear_bound_cache()
    with C.bound_cache(False):
        ref = lemma_a_mixed(F, Fh, reg).eps
        without = lemma_a_mixed(F, Fh, reg, pool_segments=False).eps
    cold = lemma_a_mixed(F, Fh, reg).eps
    warm = lemma_a_mixed(F, Fh, reg).eps
    assert ref == cold == warm
    assert ref <= without


@pytest.mark.parametrize("seed", range(4))
def test_thin_pair_bound_equals_the_full_form_and_stays_above_vertices(seed):
    """Statement 12.2b: for a wide A (p < n) pair_bound decomposes A A^T; at the same multiplier t its value is the
    full form's (A^T A) up to rounding, and it is >= every vertex value of sup ||A D B||."""
    rng = np.random.default_rng(seed)
    n, p = 9, int(rng.integers(1, 9))
    A, B = rng.normal(size=(p, n)), rng.normal(size=(n, int(rng.integers(1, 12))))
    lmax, SG, w = C._thin_pair(A, B, None)
    lam, V = np.linalg.eigh(A.T @ A)
    _, _, SG2, lmax2, w2 = C._scalar_sproc(lam, V, B, (p + 10) * np.finfo(float).eps * float((A * A).sum()))
    for s in (-2.0, 0.0, 1.5):
        assert SG.exact(w(s)) == pytest.approx(SG2.exact(w2(s)), rel=1e-8)
    vmax = max(np.linalg.norm(A * np.array(d) @ B, 2) for d in itertools.product((0.0, 1.0), repeat=n))
    assert vmax <= C.pair_bound(A, B)


def test_scalar_and_full_mixed_share_the_wide_pair_bounds(monkeypatch):
    """The mixed bound's "scalar" and "full" modes compute a pair bound above DIAG_MAX_DIM once (one content key)."""
    monkeypatch.setattr(C, "DIAG_MAX_DIM", 2)  # every pair of this small net counts as wide
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3)).double()
    g = from_torch(m, (6,))
    masks = {k: np.random.default_rng(1).random(tuple(v.shape)) < 0.6 for k, v in g.weights.items()}
    F, Fh = lower_graph_pair(g, g.with_masks(masks))
    calls = []
    orig = C.pair_bound
    monkeypatch.setattr(C, "pair_bound", lambda *a, **k: calls.append(1) or orig(*a, **k))
    C.clear_bound_cache()
    reg = Region(np.zeros((1, 6)), 1.0)
    lemma_a_mixed(F, Fh, reg, pair_bounds="scalar")
    n_scalar = len(calls)
    assert n_scalar > 0
    lemma_a_mixed(F, Fh, reg, pair_bounds="full")
    assert len(calls) == n_scalar


def test_thin_joint_step_gives_the_full_steps_bound(monkeypatch):
    """Statement 12.61: the joint bound with the thin first step equals the one with every step in the full form."""
    from probprune.certificates import joint as J

    torch.manual_seed(3)
    m = nn.Sequential(nn.Linear(7, 12), nn.ReLU(), nn.Linear(12, 9), nn.ReLU(), nn.Linear(9, 3)).double()
    g = from_torch(m, (7,))
    masks = {k: np.random.default_rng(2).random(tuple(v.shape)) < 0.6 for k, v in g.weights.items()}
    F, Fh = lower_graph_pair(g, g.with_masks(masks))
    thin = J.joint_bound(F, Fh, 1.0).eps
    monkeypatch.setattr(J, "THIN_STEPS", False)
    assert thin == pytest.approx(J.joint_bound(F, Fh, 1.0).eps, rel=1e-9)


def test_a_cached_pair_bound_is_used_even_when_a_new_one_would_be_late(monkeypatch):
    """compose.scalar_pair_bound(skip_if_late=True) under a deadline: +inf for an uncached pair predicted past it
    (single norms stand in), the cached value for a pair computed before."""
    import time

    rng = np.random.default_rng(5)
    A, B = rng.normal(size=(5, 9)), rng.normal(size=(9, 4))
    fa, fb = C.fingerprint(A), C.fingerprint(B)
    C.clear_bound_cache()
    v = C.scalar_pair_bound(A, B, fa, fb)
    monkeypatch.setattr(C, "predicted_pair_seconds", lambda d, rows=None, cols=None: 1e9)
    with C.deadline(time.perf_counter() + 60.0), C.count_pair_skips() as skips:
        assert C.scalar_pair_bound(A, B, fa, fb, skip_if_late=True) == v
        assert skips == []
        B2 = B + 1.0
        assert C.scalar_pair_bound(A, B2, fa, C.fingerprint(B2), skip_if_late=True) == math.inf
        assert skips == [((5, 9), (9, 4))]
