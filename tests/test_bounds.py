"""Issue 2: the a-priori bounds (THEORY §3), their inverse (§3.9) and their monotonicity."""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from probprune.theory.apriori import (
    DeltaAllocation,
    apriori_bound,
    beta,
    exact_k_bound,
    lemma_a,
    paper_width_condition,
    product_form,
    random_mask_bound,
)
from probprune.budgets.apriori import equal_share_closed_form, max_prunable, min_width
from probprune.core.errors import HypothesisError, ProbPruneError
from probprune.net.templates import ConvLayer, cnn_spec, fcn_spec

METHODS = ["magnitude", "random", "random_rescaled"]
widths_st = st.lists(st.integers(2, 60), min_size=3, max_size=5)


def test_beta_solves_bernstein_equation():
    rng = np.random.default_rng(0)
    s2, R, lam = rng.uniform(0, 3, 50), rng.uniform(0, 2, 50), rng.uniform(0.1, 10, 50)
    t = beta(s2, R, lam)
    np.testing.assert_allclose(t**2 / 2, lam * (s2 + R * t / 3), rtol=1e-12)
    assert np.all(t > 0)


def test_lemma_a_matches_product_form_at_its_worst_case():
    # with ||What_j|| = B_j + eta_j and ||W_j|| = B_j, A-fwd equals (A*) exactly (Corollary A1)
    B = np.array([1.3, 0.7, 2.0, 1.1])
    eta = np.array([0.1, 0.05, 0.2, 0.0])
    fwd = lemma_a(B, B + eta, eta)
    assert fwd <= product_form(B, eta) + 1e-12
    from probprune.theory.apriori import _unroll

    assert math.isclose(_unroll(eta, B, B + eta), product_form(B, eta), rel_tol=1e-12)


@settings(max_examples=40, deadline=None)
@given(widths=widths_st, q1=st.floats(1e-4, 0.98), q2=st.floats(1e-4, 0.98), method=st.sampled_from(METHODS),
       delta=st.floats(1e-4, 0.5), K=st.floats(0.2, 3))
def test_bound_monotone_in_fraction(widths, q1, q2, method, delta, K):
    spec = fcn_spec(widths, "relu", K)
    lo, hi = sorted((q1, q2))
    b_lo = apriori_bound(spec, lo, delta, method).eps
    b_hi = apriori_bound(spec, hi, delta, method).eps
    assert b_lo <= b_hi * (1 + 1e-12)


@settings(max_examples=40, deadline=None)
@given(widths=widths_st, q=st.floats(1e-4, 0.9), method=st.sampled_from(METHODS),
       d1=st.floats(1e-6, 0.9), d2=st.floats(1e-6, 0.9))
def test_bound_monotone_in_delta(widths, q, method, d1, d2):
    spec = fcn_spec(widths)
    lo, hi = sorted((d1, d2))
    assert apriori_bound(spec, q, lo, method).eps >= apriori_bound(spec, q, hi, method).eps * (1 - 1e-12)


@settings(max_examples=25, deadline=None)
@given(d=st.integers(3, 400), extra=st.integers(1, 400), q=st.floats(1e-3, 0.9), method=st.sampled_from(METHODS))
def test_bound_monotone_in_width_at_fixed_entry_scale(d, extra, q, method):
    # at a fixed half-width a (entries do not shrink), a wider hidden layer can only increase the bound
    def spec(h):
        return fcn_spec([10, h, h, 5], "relu", half_widths=[0.1, 0.1, 0.1])

    assert apriori_bound(spec(d), q, 0.05, method).eps <= apriori_bound(spec(d + extra), q, 0.05, method).eps * (1 + 1e-12)


@settings(max_examples=25, deadline=None)
@given(d=st.integers(20, 2000), extra=st.integers(1, 2000), q=st.floats(1e-3, 0.5), method=st.sampled_from(["magnitude", "random"]))
def test_relative_layer_error_decreases_with_width_under_paper_scaling(d, extra, q, method):
    # paper law a = K/sqrt(m): eta_i/B_i falls towards its limit q^{3/2} (magnitude) or p^{1/2} (random), §3.10
    def ratio(h):  # §3.10 is about the matrix-Bernstein terms of §3.4
        r = apriori_bound(fcn_spec([h, h]), q, 0.05, method, statement="bernstein")
        return float(r.eta[0] / r.B[0])

    assert ratio(d + extra) <= ratio(d) * (1 + 1e-12)
    limit = q**1.5 if method == "magnitude" else q**0.5
    assert ratio(d) >= limit * (1 - 1e-9)


def test_large_width_ratio_limits():
    # §3.10's limits are statements about the matrix-Bernstein terms of §3.4
    r = apriori_bound(fcn_spec([200000, 200000]), 0.2, 0.05, "magnitude", statement="bernstein")
    assert abs(r.eta[0] / r.B[0] - 0.2**1.5) / 0.2**1.5 < 0.1
    r = apriori_bound(fcn_spec([200000, 200000]), 0.2, 0.05, "random", statement="bernstein")
    assert abs(r.eta[0] / r.B[0] - 0.2**0.5) / 0.2**0.5 < 0.1


def test_rescaled_is_never_better_than_plain_random():
    spec = fcn_spec([50, 80, 80, 10])
    for p in (0.01, 0.1, 0.5, 0.9):
        assert apriori_bound(spec, p, 0.05, "random_rescaled").eps >= apriori_bound(spec, p, 0.05, "random").eps


def test_vectorised_over_fractions_matches_loop():
    spec = fcn_spec([30, 40, 40, 10])
    Q = np.random.default_rng(1).uniform(0.01, 0.5, size=(7, 3))
    vec = apriori_bound(spec, Q, 0.05).eps
    loop = [apriori_bound(spec, q, 0.05).eps for q in Q]
    np.testing.assert_allclose(vec, loop, rtol=1e-13)
    assert vec.shape == (7,)


def test_delta_split_sums_to_delta():
    spec = fcn_spec([30, 40, 40, 10])
    r = apriori_bound(spec, [0.1, 0.0, 0.2], 0.05)
    total = r.delta_W.sum() + r.delta_E.sum()
    assert math.isclose(total, 0.05) and r.allocation.n_events == 5
    assert r.eta[1] == 0.0


def test_conv_layers_pick_up_sqrt_r():
    spec = cnn_spec((1, 12, 12), [ConvLayer(4, 3, 1, 1), ConvLayer(4, 4, 2, 1)], [10])
    assert [L.r for L in spec.layers] == [9, 4, 1]
    r = apriori_bound(spec, 0.1, 0.05)
    assert r.B[0] > 0


def _budget_inverts_bound(method, q, widths):
    spec = fcn_spec(widths)
    eps = apriori_bound(spec, q, 0.05, method).eps
    res = max_prunable(spec, eps, 0.05, method, mode="uniform")
    # the §9 bound can be flat in q (e.g. line-count quantiles saturate on tiny layers), so the inverse is the
    # largest q with the same bound: at least q, never above eps
    assert res.uniform_fraction >= q - 1e-9
    assert res.eps_achieved <= eps * (1 + 1e-12)
    old = apriori_bound(spec, q, 0.05, method, statement="bernstein").eps  # strictly increasing in q: exact inverse
    res_old = max_prunable(spec, old, 0.05, method, mode="uniform", statement="bernstein")
    assert abs(res_old.uniform_fraction - q) < 1e-9


def _budget_monotone_in_eps_and_respects_it(e1, e2, method, mode):
    spec = fcn_spec([40, 60, 30, 10])
    lo, hi = sorted((e1, e2))
    r_lo = max_prunable(spec, lo, 0.05, method, mode)
    r_hi = max_prunable(spec, hi, 0.05, method, mode)
    assert r_lo.eps_achieved <= lo * (1 + 1e-9) and r_hi.eps_achieved <= hi * (1 + 1e-9)
    if mode == "uniform":
        assert r_lo.uniform_fraction <= r_hi.uniform_fraction + 1e-12
    # the optimal allocation is never worse than the uniform one (up to integer rounding)
    r_opt = max_prunable(spec, hi, 0.05, method, "optimal")
    assert r_opt.total_prunable >= r_opt.uniform_total - spec.depth


# The optimal inversion calls the §9 bound ~12 times per budget (1-2 s CPU each on LeNet-size specs), so the
# default run draws few examples and the slow run many; same property, same strategies.
_MON_ST = dict(e1=st.floats(0.01, 5), e2=st.floats(0.01, 5), method=st.sampled_from(["magnitude", "random"]),
               mode=st.sampled_from(["uniform", "equal_share", "optimal"]))


@settings(max_examples=4, deadline=None)
@given(**_MON_ST)
def test_budget_monotone_in_eps_and_respects_it(e1, e2, method, mode):
    _budget_monotone_in_eps_and_respects_it(e1, e2, method, mode)


@pytest.mark.slow
@settings(max_examples=20, deadline=None)
@given(**_MON_ST)
def test_budget_monotone_in_eps_and_respects_it_many(e1, e2, method, mode):
    _budget_monotone_in_eps_and_respects_it(e1, e2, method, mode)


@pytest.mark.parametrize("method", ["magnitude", "random"])
@settings(max_examples=6, deadline=None)
@given(q=st.floats(0.005, 0.95), widths=widths_st)
def test_budget_inverts_bound(method, q, widths):
    _budget_inverts_bound(method, q, widths)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["magnitude", "random"])
@settings(max_examples=20, deadline=None)
@given(q=st.floats(0.005, 0.95), widths=widths_st)
def test_budget_inverts_bound_many(method, q, widths):
    _budget_inverts_bound(method, q, widths)


def _invert_eta_by_bisection(spec, alloc, method, targets, iters=60):
    """Per layer, the largest q with eta_i(q) <= target_i (THEORY §3.9) by plain bisection on error_bound: the
    independent reference for the closed forms (the library's own inversion goes through max_prunable)."""
    from probprune.theory.apriori import error_bound

    def ok(q):
        return error_bound(spec, q, alloc.delta_E, method, "uniform", delta_T=alloc.delta_T) <= targets

    lo, hi = np.zeros(len(targets)), np.ones(len(targets))
    ok_hi = ok(hi)
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        good = ok(mid)
        lo, hi = np.where(good, mid, lo), np.where(good, hi, mid)
    return np.where(ok_hi, 1.0, lo)


def test_equal_share_closed_forms_match_bisection():
    spec = fcn_spec([100, 300, 300, 10])
    for method in ("magnitude", "random"):
        alloc = DeltaAllocation.equal_split(0.05, np.ones(3, bool))
        from probprune.theory.apriori import norm_bound

        B = norm_bound(spec, alloc.delta_W)
        targets = 0.05 * B
        q_bis = _invert_eta_by_bisection(spec, alloc, method, targets)
        a = np.array([L.half_width for L in spec.layers])
        m = np.array([L.m for L in spec.layers])
        lam = np.log(np.array([L.n for L in spec.layers]) / alloc.delta_E)
        q_cf = equal_share_closed_form(targets, a, m, lam, method)
        np.testing.assert_allclose(q_cf, q_bis, atol=1e-9)


def test_budget_latency_is_small_and_json_fields():
    spec = fcn_spec([784, 300, 100, 10])
    r = max_prunable(spec, 0.5, 0.05)
    d = r.as_dict()
    for k in ("eps", "delta", "method", "layers", "total_prunable", "total_weights"):
        assert k in d
    assert d["total_weights"] == 266200
    assert all({"name", "n_weights", "max_prunable", "fraction"} <= set(L) for L in d["layers"])


def test_random_budget_jump_at_zero():
    # RR's eta(0+) = 2 a lam / 3 > 0: a budget below Lip prod B (prod(1 + eta(0+)/B) - 1) allows no random pruning
    spec = fcn_spec([50, 50, 10])
    r = max_prunable(spec, 1e-6, 0.05, "random", "uniform", statement="bernstein")
    assert r.total_prunable == 0 and r.uniform_fraction == 0.0


def test_min_width_is_the_first_feasible_width():
    w = min_width(2.0, 0.05, 0.05, 20, 5, 3)
    assert w.width is not None

    def b(d):
        return apriori_bound(fcn_spec([20, d, d, 5]), 0.05, 0.05).eps

    assert b(w.width) <= 2.0 and (w.width == 1 or 2.0 < b(w.width - 1))


def _bernstein_root(v, R, lam):
    """The positive root t of t^2/2 = lam (v + R t/3), solved by hand (THEORY §3.2)."""
    h = R * lam / 3.0
    return h + math.sqrt(h * h + 2.0 * v * lam)


def test_mask_bound_equals_rr_mask_written_out():
    """RR-mask (THEORY §3.4) for 40-60-10 with D = (5, 0), K = 1: a_i = 1/sqrt(60), delta split over the 3 events
    present (two W, one E), B_i = beta(m a^2/3, a, ln(n_i/delta_e)), eta_1 = beta(D a^2/3, a, ln(n_1/delta_e)),
    eta_2 = 0 and eps = (B_1 + eta_1) B_2 - B_1 B_2 = eta_1 B_2 ((A*) with one pruned layer)."""
    spec = fcn_spec([40, 60, 10])
    r = random_mask_bound(spec, [5, 0], 0.05)
    a, de = 1 / math.sqrt(60), 0.05 / 3
    B = [_bernstein_root(60 * a * a / 3, a, math.log(100 / de)), _bernstein_root(60 * a * a / 3, a, math.log(70 / de))]
    eta1 = _bernstein_root(5 * a * a / 3, a, math.log(100 / de))
    np.testing.assert_allclose(r.B, B, rtol=1e-12)
    np.testing.assert_allclose(r.eta, [eta1, 0.0], rtol=1e-12, atol=0)
    assert r.eps == pytest.approx(eta1 * B[1], rel=1e-12) and math.isfinite(r.eps)


def _linear_error(W, Wh):
    return np.linalg.norm(W[1] @ W[0] - Wh[1] @ Wh[0], 2, axis=(1, 2))


def test_exact_k_and_mask_bounds_cover_the_exact_error():
    """Against the ground truth: the exact sup error ||W2 W1 - What2 What1|| of T = 1000 linear 40-60-10 nets under
    the paper's law, with exact-k random masks (k = floor(0.1 N_i)) and with one fixed mask of line count 5; the
    violation rate must be consistent with delta (one-sided Clopper-Pearson lower limit, alpha = 0.001)."""
    from probprune.mc.stats import cp_lower
    from probprune.net.templates import sample_weights

    spec, T, delta = fcn_spec([40, 60, 10], "identity"), 1000, 0.05
    rng = np.random.default_rng(7)
    W = sample_weights(spec, rng, "uniform", n=T)
    Wh = []
    for w in W:
        N, k = w[0].size, int(0.1 * w[0].size)
        idx = np.argpartition(rng.random((T, N)), k - 1, axis=1)[:, :k]
        P = np.zeros((T, N), bool)
        np.put_along_axis(P, idx, True, axis=1)
        Wh.append(np.where(P.reshape(w.shape), 0.0, w))
    r = exact_k_bound(spec, 0.1, delta)
    err = _linear_error(W, Wh)
    assert math.isfinite(r.eps) and cp_lower(int((err > r.eps).sum()), T, 0.001) <= delta
    mask = np.zeros(W[0].shape[1:], bool)
    mask[:5, :5] = True  # 5 pruned entries in each of 5 rows and 5 columns: line count D = 5
    Wh = [np.where(mask, 0.0, W[0]), W[1]]
    r = random_mask_bound(spec, [5, 0], delta)
    err = _linear_error(W, Wh)
    assert cp_lower(int((err > r.eps).sum()), T, 0.001) <= delta
    assert r.eps >= np.quantile(err, 1 - delta)


def test_paper_width_condition_shape():
    pw = paper_width_condition(0.1, 0.05, 0.5, 2.0, 1.0, 1.0, 3.0, 2.0)
    assert pw.d_min == max(4.0, 100.0, 400.0, 3 + 2 * math.log(20))
    assert pw.satisfied_by(400) and not pw.satisfied_by(399)


@pytest.mark.parametrize(
    "call",
    [
        lambda s: apriori_bound(s, 0.1, 0.0),
        lambda s: apriori_bound(s, 0.1, 1.0),
        lambda s: apriori_bound(s, 0.1, float("nan")),
        lambda s: apriori_bound(s, -0.1, 0.05),
        lambda s: apriori_bound(s, 1.5, 0.05),
        lambda s: apriori_bound(s, 1.0, 0.05, "random_rescaled"),
        lambda s: apriori_bound(s, 0.1, 0.05, "lottery"),
        lambda s: apriori_bound(s, [0.1, 0.2, 0.3], 0.05),
        lambda s: max_prunable(s, 0.0, 0.05),
        lambda s: max_prunable(s, -1.0, 0.05),
        lambda s: max_prunable(s, 1.0, 1.5),
        lambda s: max_prunable(s, 1.0, 0.05, mode="greedy"),
        lambda s: paper_width_condition(0.1, 0.05, 1.5, 1, 1, 1, 1, 1),
    ],
)
def test_bad_input_is_a_value_error(call):
    with pytest.raises(ValueError):
        call(fcn_spec([10, 20, 5]))


def test_bad_widths_and_activations():
    with pytest.raises(ProbPruneError):
        fcn_spec([10])
    with pytest.raises(ProbPruneError):
        fcn_spec([10, 0, 5])
    with pytest.raises(ProbPruneError):
        fcn_spec([10, 20, 5], "softmaxish")
    with pytest.raises(HypothesisError, match="sigma\\(0\\)"):
        apriori_bound(fcn_spec([10, 20, 5], "sigmoid"), 0.1, 0.05)
