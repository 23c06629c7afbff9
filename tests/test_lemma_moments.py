"""S9.15 (THEORY §9.15): Lemma A in one Markov event by exact layer trace moments; coverage against the exact error
(linear nets: spectral norm of the product difference) and a many-start PGD attack (ReLU nets)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from probprune.mc.measure import pgd_lower_bound
from probprune.net.templates import fcn_spec, sample_weights
from probprune.theory import lemma_moments as lm
from probprune.theory.apriori import apriori_bound
from proofs_check.checks_lemma_moments import index_sum_trace_moment
from sharp_sampling import prune_draws


@pytest.mark.parametrize("p,n,m", [(1, 3, 2), (2, 3, 3), (3, 2, 4), (4, 3, 2)])
def test_table_equals_brute_force(p, n, m):
    mom = [0.3, 0.2, 0.17, 0.15]
    assert lm.matrix_trace_moment(n, m, mom, p) == pytest.approx(index_sum_trace_moment(n, m, mom, p), rel=1e-12)


def test_batched_fractions_match_scalar_calls():
    q = np.array([[0.05, 0.2, 0.4], [0.3, 0.3, 0.3]])
    res = lm.lemma_moment_bound([10, 12, 8, 4], [0.3, 0.3, 0.3], q, 0.05, "magnitude", "uniform")
    for i in range(2):
        one = lm.lemma_moment_bound([10, 12, 8, 4], [0.3, 0.3, 0.3], q[i], 0.05, "magnitude", "uniform")
        assert res.eps[i] == pytest.approx(one.eps, rel=1e-12)


def test_refuses_dependent_rules():
    with pytest.raises(Exception, match="S9.15"):
        lm.layer_entry_moments("magnitude_exact", "uniform", 1.0, 0.1, 3)


def test_apriori_bound_uses_it_on_relu_nets():
    spec = fcn_spec([32, 32, 32, 32], "relu")
    best = apriori_bound(spec, 0.1, 0.05, "random")
    assert best.eps_source == "lemma-moment"
    assert any("§9.15" in a for a in best.assumptions)
    assert best.eps <= apriori_bound(spec, 0.1, 0.05, "random", statement="bernstein").eps


@pytest.mark.parametrize("method", ["magnitude", "random", "random_rescaled"])
def test_linear_coverage_exact_error(method):
    """Identity activations: err = ||prod W - prod What|| exactly; the frequency of err > eps stays <= delta."""
    rng = np.random.default_rng(11)
    dims, T, q, delta = [6, 8, 5], 3000, 0.3, 0.05
    spec = fcn_spec(dims, "identity")
    W = sample_weights(spec, rng, "uniform", n=T)
    Wh = prune_draws(rng, W, spec, method, "uniform", q)
    err = np.linalg.norm(W[1] @ W[0] - Wh[1] @ Wh[0], 2, axis=(1, 2))
    eps = lm.lemma_moment_bound(dims, [L.half_width for L in spec.layers], [q, q], delta, method, "uniform").eps
    assert np.mean(err > eps) <= delta
    assert np.max(err) <= eps * 1.5  # Markov at delta is far from the typical error: no draw comes close


@pytest.mark.parametrize("method,q", [("magnitude", 0.3), ("random", 0.1)])
def test_relu_coverage_pgd(method, q):
    rng = np.random.default_rng(5)
    dims, T, delta = [5, 8, 8, 3], 150, 0.05
    spec = fcn_spec(dims, "relu")
    W = sample_weights(spec, rng, "uniform", n=T)
    Wh = prune_draws(rng, W, spec, method, "uniform", q)
    gens = [torch.Generator().manual_seed(t) for t in range(T)]
    lb = pgd_lower_bound(spec, [torch.as_tensor(x) for x in W], [torch.as_tensor(x) for x in Wh],
                         n_random=16, iters=40, generators=gens).numpy()
    eps = apriori_bound(spec, q, delta, method).eps
    assert np.mean(lb > eps) <= delta


@pytest.mark.parametrize("method", ["magnitude", "random", "random_rescaled"])
def test_nondecreasing_in_every_fraction(method):
    qs = np.linspace(0.0, 0.9, 31)
    for i in range(3):
        q = np.full((31, 3), 0.2)
        q[:, i] = qs
        eps = lm.lemma_moment_bound([2, 2, 2, 2], [1.0, 1.0, 1.0], q, 0.5, method, "uniform").eps
        assert np.all(np.diff(eps) >= -1e-12 * eps[1:])


def test_optimal_budget_inverts_s915_on_relu_nets():
    """The optimal a-priori budget also solves S9.15's separable knapsack (THEORY §9.15, §10.5): on a ReLU LeNet shape
    it prunes more than the uniform budget, and the bound at its allocation is <= eps."""
    from probprune.budgets.apriori import _lemma_moment_allocation, max_prunable

    spec = fcn_spec([784, 300, 100, 10], "relu")
    opt = max_prunable(spec, eps=0.1, delta=0.05, method="magnitude", mode="optimal", rule="threshold")
    uni = max_prunable(spec, eps=0.1, delta=0.05, method="magnitude", mode="uniform", rule="threshold")
    assert opt.total_prunable > uni.total_prunable
    assert opt.eps_achieved <= 0.1
    q = _lemma_moment_allocation(spec, 0.1, 0.05, "magnitude", "uniform", np.ones(3, bool))
    assert q is not None and apriori_bound(spec, q, 0.05, "magnitude").eps <= 0.1
