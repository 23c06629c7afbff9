"""Certified budget search (THEORY §11.3): optimality against brute force on tiny nets, soundness of the reported
certificate against ``certify_graph`` (recomputed independently from the pruned weights), graphs and refusals."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from probprune.budgets import certified as bc
from probprune.budgets.certified import certified_budget as reexported
from probprune.certificates.lemma import certify_graph
from probprune.core.errors import ProbPruneError
from probprune.net import Graph
from probprune.net import from_torch as graph_from_torch
from probprune.net.templates import from_torch
from probprune.pruning.sampling import exact_k_order, exact_k_prune_mask


def cert_d_budget(*args, **kw):
    """The Cert-D inversion (§11.3 search): these tests are about the search; the §12 inversion
    (certificate="auto", the default) is tested in tests/test_budget_graph.py."""
    return bc.certified_budget(*args, certificate="lemma-a", **kw)


def _mlp(widths, seed, bias=True):
    torch.manual_seed(seed)
    mods = []
    for i in range(len(widths) - 1):
        mods.append(torch.nn.Linear(widths[i], widths[i + 1], bias=bias))
        if i < len(widths) - 2:
            mods.append(torch.nn.ReLU())
    return torch.nn.Sequential(*mods)


def _graph(parsed):
    return Graph.from_spec(parsed.spec, parsed.weights, parsed.biases, parsed.names or None)


def _masks_for(graph, k):
    out = {}
    for n, kk in zip(graph.weight_nodes, k):
        flat = np.abs(np.asarray(n.op.weight, float).ravel())
        order = np.argsort(flat, kind="stable")
        m = np.ones(flat.size, bool)
        m[order[:kk]] = False
        out[n.op.fqn] = m.reshape(np.shape(n.op.weight))
    return out


def _brute_force(g, eps):
    """max sum k over all count vectors with comp(exact certified curves) <= eps."""
    curves = bc._Curves(g, bc.weight_norms(g), exact=True)
    grids = [range(int(n) + 1) for n in curves.N]
    K = np.array(list(itertools.product(*grids)), dtype=np.int64)
    ok = bc._comp_batch(curves, bc.graph_composition(g), K) <= eps
    tot = np.where(ok, K.sum(axis=1), -1)
    return int(tot.max()), K[int(np.argmax(tot))]


@pytest.mark.parametrize("seed,eps,bias", [(0, 0.05, True), (1, 0.2, True), (2, 0.5, False), (3, 0.1, True)])
def test_optimal_within_one_percent_of_brute_force(seed, eps, bias):
    p = from_torch(_mlp([4, 5, 4, 3], seed, bias))
    g = _graph(p)
    opt, _ = _brute_force(g, eps)
    r = cert_d_budget(p, eps, exact_search=True)
    assert r.total_prunable >= 0.99 * opt
    assert r.total_prunable <= opt
    # the reported certificate is the graph certificate of the pruned network, recomputed independently
    k = [L.max_prunable for L in r.layers]
    c = certify_graph(g, _masks_for(g, k))
    assert c.eps <= eps
    assert r.eps_achieved == pytest.approx(c.eps, rel=1e-9)


def test_fast_search_is_sound_and_close_to_exact_search():
    p = from_torch(_mlp([30, 20, 10], 5))
    g = _graph(p)
    fast = cert_d_budget(p, 0.3, exact_search=False)
    exact = cert_d_budget(p, 0.3, exact_search=True)
    k = [L.max_prunable for L in fast.layers]
    assert certify_graph(g, _masks_for(g, k)).eps <= 0.3
    assert fast.total_prunable >= 0.97 * exact.total_prunable


def test_uniform_mode_and_reexport():
    p = from_torch(_mlp([6, 5, 3], 7))
    r = reexported(p, 0.2, mode="uniform", certificate="lemma-a")
    assert r.eps_achieved <= 0.2
    assert r.total_prunable == r.uniform_total
    fr = [L.fraction for L in r.layers]
    assert max(fr) - min(fr) <= 1.0 / min(L.n_weights for L in r.layers)  # one common fraction, floored


def test_random_method_cert_r_holds():
    from probprune.certificates.lemma import certify_random_graph

    p = from_torch(_mlp([20, 15, 5], 3))
    r = cert_d_budget(p, 2.0, "random", delta=0.1)
    g = _graph(p)
    ps = {L.name: L.fraction for L in r.layers}
    assert certify_random_graph(g, ps, 0.1).eps <= 2.0 + 1e-12
    assert r.eps_achieved <= 2.0


def test_conv_and_residual_graph_budget_is_certified():
    torch.manual_seed(0)

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = torch.nn.Conv2d(3, 4, 3, padding=1)
            self.bn = torch.nn.BatchNorm2d(4)
            self.c2 = torch.nn.Conv2d(4, 3, 3, padding=1, bias=False)
            self.fc = torch.nn.Linear(3 * 6 * 6, 5)

        def forward(self, x):
            h = x + self.c2(torch.relu(self.bn(self.c1(x))))
            return self.fc(torch.relu(h).flatten(1))

    m = Block().eval()
    with torch.no_grad():
        m.bn.running_mean.uniform_(-0.1, 0.1)
        m.bn.running_var.uniform_(0.5, 1.5)
    g = graph_from_torch(m, (3, 6, 6))
    tim = {}
    r = cert_d_budget(g, 1.0, timings=tim)
    c = certify_graph(g, _masks_for(g, [L.max_prunable for L in r.layers]))
    # conv layers are certified through Cholesky at the probe's estimate (§11.5): at most ~1e-6 above the
    # eigenvalue bound that certify_graph uses; both are upper bounds and both fit eps
    assert c.eps <= r.eps_achieved * (1 + 1e-9) <= 1.0 * (1 + 1e-9) and r.eps_achieved <= c.eps * (1 + 1e-5)
    assert r.total_prunable > 0
    assert set(tim) >= {"build_and_norm_W", "search", "certify", "total"}


def test_refusals():
    p = from_torch(_mlp([4, 3, 2], 0))
    with pytest.raises(ProbPruneError):
        cert_d_budget(p, 0.1, method="structured")
    with pytest.raises(ProbPruneError):
        cert_d_budget(p, 0.1, mode="equal_share")
    with pytest.raises(ProbPruneError):
        cert_d_budget(p, 0.1, prunable=["nope"])
    with pytest.raises(ProbPruneError):
        cert_d_budget(p, -1.0)


def test_running_group_max_matches_loop():
    rng = np.random.default_rng(0)
    v2 = rng.random(200)
    g = rng.integers(0, 7, 200)
    acc = np.zeros(7)
    ref = []
    m = 0.0
    for a, b in zip(v2, g):
        acc[b] += a
        m = max(m, acc[b])
        ref.append(m)
    assert np.allclose(bc._running_group_max(v2, g), ref)


def test_running_group_max_times_matches_loop_rows_and_columns():
    """The row-wise-sort version used by the curve shapes (rows and columns of a weight matrix) == the loop."""
    rng = np.random.default_rng(1)
    m, n = 13, 17
    f = rng.standard_normal(m * n)
    o = exact_k_order(np.abs(f))
    v2 = f[o] ** 2
    t = np.empty(m * n, np.int64)
    t[o] = np.arange(m * n)
    t = t.reshape(m, n)
    for groups, times in ((o // n, np.sort(t, axis=1)), (o % n, np.sort(t.T, axis=1))):
        acc, ref, mx = np.zeros(max(m, n)), [], 0.0
        for a, b in zip(v2, groups):
            acc[b] += a
            mx = max(mx, acc[b])
            ref.append(mx)
        assert np.allclose(np.maximum.accumulate(bc._group_sums_at_times(v2, times)), ref, rtol=1e-12)


def test_uniform_reference_can_be_skipped():
    p = from_torch(_mlp([10, 8, 4], 9))
    r = cert_d_budget(p, 0.2, uniform_reference=False)
    assert r.uniform_total == -1 and np.isnan(r.uniform_fraction)
    assert any("uniform allocation not computed" in a for a in r.assumptions)
    full = cert_d_budget(p, 0.2)
    assert full.uniform_total >= 0 and r.total_prunable >= 0.99 * full.total_prunable


def test_cert_r_budget_refuses_grouped_conv():
    from probprune.core.errors import UnsupportedLayerError

    m = torch.nn.Sequential(torch.nn.Conv2d(4, 4, 3, padding=1, groups=2), torch.nn.ReLU(), torch.nn.Flatten(),
                            torch.nn.Linear(4 * 5 * 5, 3))
    g = graph_from_torch(m.eval(), (4, 5, 5))
    with pytest.raises(UnsupportedLayerError, match="grouped"):
        cert_d_budget(g, 0.5, "random", delta=0.1)
    assert cert_d_budget(g, 0.5).eps_achieved <= 0.5  # Cert-D handles groups (max over groups)


def test_magnitude_order_is_the_stable_order_with_ties():
    rng = np.random.default_rng(3)
    for _ in range(50):
        f = rng.integers(-4, 5, size=int(rng.integers(1, 200))).astype(float)
        assert np.array_equal(exact_k_order(np.abs(f)), np.argsort(np.abs(f), kind="stable"))


def test_warm_conv_estimate_matches_full_estimate():
    """The warm estimate (direct DFT at the kept frequencies) equals the full float32 estimate when every frequency
    is kept, and when the maximising frequency is kept (same kernel)."""
    from probprune.theory.norms import conv_norm_fft_estimate

    rng = np.random.default_rng(4)
    for co, ci, kh, kw, ins, pad, dil in [(8, 5, 3, 3, (7, 9), 1, 1), (6, 4, 3, 2, (8, 5), (1, 0), (2, 1))]:
        W = rng.standard_normal((co, ci, kh, kw))
        ref = conv_norm_fft_estimate(W, ins, pad, dil)
        for top in (10 ** 6, 3):
            v0, st = bc._conv_estimate_warm(W, ins, pad, dil, None, top=top)
            v1, _ = bc._conv_estimate_warm(W, ins, pad, dil, st, top=top)
            assert v0 == pytest.approx(ref, rel=1e-6) and v1 == pytest.approx(ref, rel=1e-5)


def test_warm_conv_estimate_wide_blocks_cholesky_search():
    """Blocks wider than the small-block threshold: the first (full) estimate takes §11.6's search and equals the
    all-eigenvalue estimate; the warm estimate at the kept frequencies is <= it and close; the certificate at the
    estimate as hint is >= the explicit-operator-free certified value (no hint) to 1e-5."""
    from probprune.theory import norms
    from probprune.theory.norms import conv_norm_fft_estimate, conv_norm_fft_upper

    rng = np.random.default_rng(8)
    W = rng.standard_normal((40, 36, 3, 3))
    ins, pad, dil = (5, 6), 1, 1
    v0, st = bc._conv_estimate_warm(W, ins, pad, dil, None, top=4)
    ref = conv_norm_fft_estimate(W, ins, pad, dil)
    ub = conv_norm_fft_upper(W, ins, 1, pad, dil)
    assert v0 == pytest.approx(ref, rel=1e-5) and v0 == pytest.approx(ub, rel=1e-5)
    v1, _ = bc._conv_estimate_warm(W, ins, pad, dil, st, top=4)
    assert v1 == pytest.approx(v0, rel=1e-5)  # the maximising frequency is among the kept ones
    assert conv_norm_fft_upper(W, ins, 1, pad, dil, hint=v0) >= ub * (1 - 1e-9)
    assert norms.SMALL_BLOCK < 36


def test_exact_k_order_prefix_is_the_exact_k_mask():
    """The budget's curves and its masks use one exact-k rule: the first k of exact_k_order are what
    exact_k_prune_mask prunes (ties included)."""
    rng = np.random.default_rng(5)
    for _ in range(30):
        f = rng.integers(-3, 4, size=int(rng.integers(1, 120))).astype(float)
        k = int(rng.integers(0, f.size + 1))
        mask = np.zeros(f.size, bool)
        mask[exact_k_order(np.abs(f))[:k]] = True
        assert np.array_equal(mask, exact_k_prune_mask(np.abs(f), k))


def test_predicted_scale_inverts_the_scaled_cert_d_curve_tf():
    """_predicted_scale: the largest scale whose ratio x Cert-D curve value is <= the target (the curves here are the
    exact certified ones, nondecreasing along a uniform scale): at ratio 1 and the curve's own value at t0 it returns
    t0 or a scale just above it with the same counts' value; a larger ratio gives a smaller scale; a target below the
    curve everywhere returns t_lo."""
    p = from_torch(_mlp([6, 7, 5], 11))
    g = _graph(p)
    curves = bc._Curves(g, bc.weight_norms(g), exact=True)
    comp = bc.graph_composition(g)
    N, shape = curves.N, np.ones(len(curves.N))
    t0 = 0.37
    target = float(bc._comp_batch(curves, comp, bc._counts_at(t0, shape, N)))
    t = bc._predicted_scale(curves, comp, shape, N, 0.01, 1.0, target)
    assert float(bc._comp_batch(curves, comp, bc._counts_at(t, shape, N))) <= target
    assert t >= t0 * (1 - 1e-3)
    t2 = bc._predicted_scale(curves, comp, shape, N, 0.01, 2.0, target)
    assert t2 < t and 2.0 * float(bc._comp_batch(curves, comp, bc._counts_at(t2, shape, N))) <= target
    assert bc._predicted_scale(curves, comp, shape, N, 0.2, 1e6, target) == 0.2
