"""Calibrated statements (THEORY §10.1-10.3): the order-statistic rank, the per-draw certified errors, and the
soundness of the calibrated eps and budget against fresh draws (violation rate within its Clopper-Pearson interval
of <= delta)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from probprune.budgets.calibrated import (
    DrawSet,
    calibrated_bound,
    calibrated_uniform_budget,
    certified_errors,
    empirical_uniform_budget,
    linear_error_upper,
    measured_errors,
    min_trials,
    order_statistic_rank,
    output_scale,
    prune_stack,
)
from probprune.core.errors import ProbPruneError
from probprune.mc.measure import exact_linear_error
from probprune.mc.trials import prune_batched
from probprune.net.templates import fcn_spec


def cp_lower(x: int, n: int, alpha: float = 0.01) -> float:
    return 0.0 if x == 0 else float(stats.beta.ppf(alpha, x, n - x + 1))


def test_rank_definition_and_refusal():
    for T, d, g in ((59, 0.05, 0.05), (300, 0.05, 0.05), (500, 0.1, 1e-3)):
        k = order_statistic_rank(T, d, g)
        assert stats.binom.cdf(k - 1, T, 1 - d) >= 1 - g
        assert k == 1 or stats.binom.cdf(k - 2, T, 1 - d) < 1 - g
    assert order_statistic_rank(59, 0.05, 0.05) == 59  # the maximum at T_min
    assert min_trials(0.05, 0.05) == 59
    with pytest.raises(ProbPruneError, match="at least 59 trials"):
        order_statistic_rank(58, 0.05, 0.05)
    with pytest.raises(ProbPruneError):
        order_statistic_rank(100, 0.05, 1.5)


def test_linear_error_and_pruning_match_the_mc_code():
    spec = fcn_spec([12, 20, 16, 5], "identity", 1.0)
    ds = DrawSet(spec, "uniform", 7, seed=1, masks=True)
    (c,) = list(ds.chunks())
    for method in ("magnitude", "random", "random_rescaled", "magnitude_exact", "random_exact"):
        mine = prune_stack(spec, c.W, c.U, 0.3, method, "uniform")
        ref, _ = prune_batched(spec, c.W, c.U, method, 0.3, "uniform")
        for a, b in zip(mine, ref):
            assert torch.equal(a, b), method
        e = linear_error_upper(spec, c.W, mine)  # the certified norm (§11.1): >= the float SVD, within 1e-8
        ex = exact_linear_error(spec, c.W, mine)
        assert bool((e >= ex).all()), method
        np.testing.assert_allclose(e.numpy(), ex.numpy(), rtol=1e-8)


@pytest.mark.parametrize("law", ["uniform", "gaussian"])
def test_prune_stack_per_layer_fractions_equal_the_mc_rules(law):
    """Per-layer fractions: every layer equals prune_batched at that layer's fraction (fixed seeds); exact-k layers
    prune exactly floor(q N_i) entries."""
    spec = fcn_spec([9, 14, 11, 3], "relu", 1.0)
    (c,) = list(DrawSet(spec, law, 5, seed=3, masks=True).chunks())
    q = [0.0, 0.45, 0.8]
    for method in ("magnitude", "random", "random_rescaled", "magnitude_exact", "random_exact"):
        mine = prune_stack(spec, c.W, c.U, q, method, law)
        for i, (L, qi) in enumerate(zip(spec.layers, q)):
            ref, _ = prune_batched(spec, c.W, c.U, method, qi, law)
            assert torch.equal(mine[i], ref[i]), (method, i)
            if method.endswith("_exact"):
                pruned = (mine[i] == 0).reshape(5, -1).sum(dim=1)
                assert bool((pruned == math.floor(qi * L.N)).all()), (method, i)


def test_linear_error_upper_is_sound_at_extreme_scales():
    """The certified norm neither underflows nor overflows (§11.1): tiny and huge weights give an upper bound of the
    exact error (the float SVD of the rescaled product difference, scaled back)."""
    spec = fcn_spec([6, 8, 4], "identity", 1.0)
    (c,) = list(DrawSet(spec, "uniform", 4, seed=5, masks=False).chunks())
    What = prune_stack(spec, c.W, None, 0.4, "magnitude", "uniform")
    ref = exact_linear_error(spec, c.W, What)
    for s in (1e-90, 1e80):  # product entries ~ s^2: 1e-180 / 1e160
        e = linear_error_upper(spec, [w * s for w in c.W], [w * s for w in What])
        assert bool(torch.isfinite(e).all()) and bool((e > 0).all())
        assert bool((e >= ref * s * s * (1 - 1e-12)).all())
        np.testing.assert_allclose(e.numpy(), (ref * s * s).numpy(), rtol=1e-7)


@pytest.mark.parametrize("act,method", [("identity", "magnitude"), ("identity", "random"), ("relu", "magnitude")])
def test_calibrated_eps_is_sound_on_fresh_draws(act, method):
    spec = fcn_spec([10, 24, 16, 4], act, 1.0)
    delta, gamma = 0.1, 0.05
    cb = calibrated_bound(spec, 0.2, delta, gamma, method, trials=100, seed=11)
    assert cb.rank == order_statistic_rank(100, delta, gamma)
    fresh = DrawSet(spec, "uniform", 1500, seed=12345, masks=method.startswith("random"))
    U, _ = certified_errors(fresh, np.full(3, 0.2), method)  # err <= U: violations of U bound those of err
    v = int(np.sum(U > cb.eps))
    assert cp_lower(v, len(U)) <= delta, (v, cb.eps)


def test_calibrated_budget_is_sound_and_below_empirical_for_a_linear_net():
    spec = fcn_spec([16, 32, 24, 6], "identity", 1.0)
    sc = output_scale(spec, trials=100, seed=3)
    assert sc.upper >= sc.upper_median >= sc.lower_median * (1 - 1e-9) > 0
    eps = 0.1 * sc.upper
    cal = calibrated_uniform_budget(spec, eps, 0.05, 0.05, "magnitude", trials=300, seed=4)
    grid = calibrated_uniform_budget(spec, eps, 0.05, 0.05, "magnitude", trials=300, seed=4, depth=6, pilot_trials=None)
    assert grid.grid_points == 65 and grid.fraction <= cal.fraction * 1.2
    emp = empirical_uniform_budget(spec, eps, 0.05, "magnitude", trials=300, seed=5)
    assert 0 < cal.fraction <= 1 and cal.quantile_at_fraction <= eps
    assert cal.rank == order_statistic_rank(300, 0.05, 0.05 / cal.grid_points)
    # soundness at the returned fraction
    fresh = DrawSet(spec, "uniform", 2000, seed=999, masks=False)
    U, _ = certified_errors(fresh, np.full(3, cal.fraction), "magnitude")
    assert cp_lower(int(np.sum(U > eps)), len(U)) <= 0.05
    # the empirical point estimate: at its fraction the measured error is within eps in >= 95% of its draws
    e, _ = measured_errors(DrawSet(spec, "uniform", 300, seed=5, masks=False), np.full(3, emp.fraction), "magnitude")
    assert np.mean(e <= eps) >= 0.95
    assert cal.fraction <= emp.fraction * 1.25  # a grid step or two apart at most on this concentrated example


def test_budget_refuses_too_few_trials_for_the_grid():
    spec = fcn_spec([8, 8, 4], "identity", 1.0)
    with pytest.raises(ProbPruneError, match="trials"):
        calibrated_uniform_budget(spec, 0.1, 0.05, 0.05, trials=100, pilot_trials=None)  # >= 166 for 257 points
    with pytest.raises(ProbPruneError, match="trials"):
        calibrated_uniform_budget(spec, 0.1, 0.05, 0.05, trials=90)  # the 8-point ladder needs >= 99
