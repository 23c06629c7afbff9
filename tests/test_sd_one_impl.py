"""Issue 22 items 4-5 (helper SD): the single implementations and behaviour registries, each against an independent
ground truth (brute force, the formula written out here, Monte Carlo frequencies, the old recursion)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from probprune.core import registry
from probprune.core.errors import ProbPruneError
from probprune.core.stats import coverage_rank, order_statistic
from probprune.pruning.sampling import bernoulli_keep_mask, magnitude_pruned


# ------------------------------------------------------------------------------------------------ core.stats
def test_order_statistic_and_coverage_rank_brute_force():
    rng = np.random.default_rng(0)
    for n in (1, 2, 7, 20):
        v = rng.normal(size=n)
        for k in range(1, n + 1):
            assert order_statistic(v, k) == sorted(v.tolist())[k - 1]
        for delta in (0.05, 0.1, 0.5):
            k = coverage_rank(n, delta)
            # smallest k with k >= (1 - delta) n (exact rational arithmetic for the 1e-12 guard)
            assert k == min(j for j in range(0, n + 1) if j >= (1 - delta) * n - 1e-12)
    assert coverage_rank(10, 0.1) == 9  # 0.9 * 10 = 9.000000000000002 must not round up
    with pytest.raises(ProbPruneError, match="rank"):
        order_statistic([1.0, 2.0], 3)


# ------------------------------------------------------------------------------------------------ pruning.sampling
def test_bernoulli_keep_mask_is_the_documented_draw_and_has_rate_p():
    a = bernoulli_keep_mask(np.random.default_rng(3), (4, 5), 0.3)
    u = np.random.default_rng(3).random((4, 5))
    assert np.array_equal(a, u >= 0.3)
    big = bernoulli_keep_mask(np.random.default_rng(1), 200_000, 0.3)
    assert abs(1 - big.mean() - 0.3) < 5 * math.sqrt(0.3 * 0.7 / 200_000)


def test_magnitude_pruned_brute_force_with_ties():
    w = np.array([[0.5, -0.1, 0.1], [2.0, -0.5, 0.0]])
    for k in range(w.size + 1):
        got = magnitude_pruned(w, k)
        # brute force: stable sort of |w| by (|w|, flat index); zero the first k
        order = sorted(range(w.size), key=lambda i: (abs(w.ravel()[i]), i))
        ref = w.ravel().copy()
        ref[order[:k]] = 0.0
        assert np.array_equal(got, ref.reshape(w.shape)), k


# ------------------------------------------------------------------------------------------------ registries
@pytest.mark.parametrize("law", ["uniform", "gaussian"])
def test_law_sampler_moments_and_threshold_by_monte_carlo(law):
    L = registry.law(law)
    x = L.sample(np.random.default_rng(0), 0.7, 400_000)
    assert abs(np.mean(x * x) - L.second_moment(0.7)) < 0.01 * L.second_moment(0.7)
    for q in (0.1, 0.5, 0.9):
        assert abs(np.mean(np.abs(x) < L.magnitude_threshold(q, 0.7)) - q) < 0.005
    assert L.magnitude_threshold(1.0, 0.7) == (0.7 if law == "uniform" else math.inf)


def test_method_prune_batched_matches_the_rules_written_out():
    g = torch.Generator().manual_seed(0)
    w = torch.rand((3, 4, 5), generator=g, dtype=torch.float64) * 2 - 1
    u = torch.rand((3, 4, 5), generator=g, dtype=torch.float64)
    q, a = 0.35, 1.0
    M = registry.METHODS
    assert torch.equal(M["magnitude"].prune_batched(w, u, q, a), w.abs() < q * a)
    assert torch.equal(M["random"].prune_batched(w, u, q, a), u < q)
    assert torch.equal(M["random_rescaled"].prune_batched(w, u, q, a), u < q) and M["random_rescaled"].rescaled
    k = int(math.floor(q * 20))
    for name, score in (("magnitude_exact", w.abs()), ("random_exact", u)):
        P = M[name].prune_batched(w, u, q, a)
        for t in range(3):  # exactly k per trial, and the k lowest scores (stable by index)
            s = score[t].reshape(-1)
            idx = sorted(range(20), key=lambda i: (float(s[i]), i))[:k]
            ref = torch.zeros(20, dtype=torch.bool)
            ref[idx] = True
            assert torch.equal(P[t].reshape(-1), ref)
    with pytest.raises(ProbPruneError, match="batched"):
        M["snip"].prune_batched(w, u, q, a)
    assert [m for m in M if M[m].random_mask] == ["random", "random_rescaled", "random_exact"]


def test_bound_evaluate_runs_the_statement():
    b = registry.bound("beta-def")
    assert b.evaluate(1.0, 1.0, 2.0) == b.function(1.0, 1.0, 2.0)


def test_prune_families_are_the_registry_families():
    from probprune.pruning.api import FAMILIES, FAMILY_RULES

    assert FAMILIES == tuple(dict.fromkeys(m.family for m in registry.METHODS.values()))
    assert set(FAMILY_RULES) == set(FAMILIES)


# ------------------------------------------------------------------------------------------------ Lemma A, one loop
def test_compose_bound_is_the_section_4_4_recursion():
    from probprune.subsetsum.construction import compose_bound

    rng = np.random.default_rng(2)
    for depth in (1, 2, 4):
        w, x, L = rng.uniform(0.2, 2, depth), rng.uniform(0, 0.3, depth), rng.uniform(0.5, 1.5, depth)
        e, P = 0.0, 1.0  # the recursion as printed in THEORY §4.4
        for wi, xi, Li in zip(w, x, L):
            e, P = Li * (wi * e + xi * (P + e)), Li * wi * P
        got = compose_bound(w, x, L)
        assert e <= got <= e * (1 + 1e-11)  # an upper bound: the recursion times the float64 allowance


def test_lemma_a_chain_equals_graph_recursion_on_a_chain_graph():
    from probprune.certificates.lemma import certify
    from probprune.mc.measure import lemma_a_batched
    from probprune.net.templates import fcn_spec, sample_weights

    spec = fcn_spec([6, 5, 4, 3], "relu")
    W = sample_weights(spec, 0)
    Wh = [magnitude_pruned(w, w.size // 3) for w in W]
    c = certify(spec, W, Wh)
    assert float(lemma_a_batched(c.norm_W, c.norm_What, c.norm_E, [1.0, 1.0, 1.0])) == c.eps


def test_cert_r_chain_is_the_graph_one_and_sound_with_pooling():
    """certify_random (chain) delegates to certify_random_graph: the same number on a chain's graph, and the
    caller's ||W|| bounds are reused."""
    from probprune.certificates.lemma import certify_random, certify_random_graph
    from probprune.net import Graph
    from probprune.net.templates import fcn_spec, sample_weights

    spec = fcn_spec([8, 6, 4], "relu")
    W = sample_weights(spec, 1)
    a = certify_random(spec, W, 0.2, 0.05)
    b = certify_random_graph(Graph.from_spec(spec, W), 0.2, 0.05)
    assert a.eps == b.eps and a.kind == "Cert-R"
    nw = certify_random(spec, W, 0.2, 0.05, norm_W=list(a.norm_W))
    assert nw.eps == a.eps


# ------------------------------------------------------------------------------------------------ tracer tables
def test_every_supported_leaf_has_a_handler_and_unknown_ones_none():
    from probprune.net.trace import _module_handler, _supported_leaf

    for m in (nn.Linear(2, 2), nn.Conv1d(1, 1, 1), nn.Conv2d(1, 1, 1), nn.BatchNorm1d(2), nn.BatchNorm2d(2),
              nn.ReLU(), nn.Tanh(), nn.Sigmoid(), nn.LeakyReLU(), nn.Hardtanh(), nn.Identity(), nn.Dropout(),
              nn.MaxPool1d(2), nn.MaxPool2d(2), nn.AvgPool1d(2), nn.AvgPool2d(2), nn.AdaptiveAvgPool1d(1),
              nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Unflatten(1, (1, 2))):
        assert _module_handler(m) is not None and _supported_leaf(m), type(m).__name__
    for m in (nn.LSTM(2, 2), nn.GELU(), nn.Conv3d(1, 1, 1), nn.LayerNorm(2)):
        assert _module_handler(m) is None and not _supported_leaf(m), type(m).__name__


def test_traced_ops_through_the_tables_reproduce_forward():
    from probprune.net import from_torch

    class Small(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(2, 4, 3, padding=1)
            self.bn = nn.BatchNorm2d(4)
            self.fc = nn.Linear(8, 3)

        def forward(self, x):
            h = torch.relu(self.bn(self.c(x)))
            h = h + 0.5 * h - h / 4
            h = torch.nn.functional.max_pool2d(h, 2)
            h = torch.cat([h, -h], dim=1).mean(dim=(2, 3), keepdim=True)
            return self.fc(h.permute(0, 2, 3, 1).flatten(1))

    m = Small().double().eval()
    g = from_torch(m, (2, 4, 4))  # from_torch compares the graph's forward with the model's (fails closed)
    kinds = [n.kind for n in g.nodes]
    for k in ("affine", "act", "add", "gain", "maxpool", "concat", "avgpool", "permute", "reshape"):
        assert k in kinds, (k, kinds)
