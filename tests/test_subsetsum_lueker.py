"""Lueker coverage (THEORY §4.1): the interval recursion against a brute-force sweep of all 2^n sums; estimator
bookkeeping; Clopper-Pearson; widths (§4.3, §4.5)."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binomtest

from probprune.core.errors import ProbPruneError
from probprune.subsetsum.lueker import (clopper_pearson, cover_indices, estimate_coverage, per_target_stats,
                                        sample_summands)
from probprune.subsetsum.solver import half_sums
from probprune.subsetsum.widths import (compare_widths, counting_lower_bound, da_cunha_conv_width, malach_width,
                                        orseau_block_width, pensia_block_width)


def _covered_brute(x, eps, r):
    """§4.1 alternative: sort all 2^n sums, keep those within reach of [-r, r], sweep for gaps > 2 eps."""
    s = np.sort(half_sums(np.asarray(x, float)[None, :])[0]) if len(x) else np.array([0.0])
    s = s[(s >= -r - eps) & (s <= r + eps)]
    if s.size == 0 or s[0] - eps > -r or s[-1] + eps < r:
        return False
    return bool(np.all(np.diff(s) <= 2 * eps))


def _hit_brute(x, eps, z):
    s = half_sums(np.asarray(x, float)[None, :])[0] if len(x) else np.array([0.0])
    return bool(np.min(np.abs(s - z)) <= eps)


@settings(max_examples=80, deadline=None)
@given(x=st.lists(st.floats(-1, 1), min_size=1, max_size=12), eps=st.sampled_from([0.02, 0.05, 0.1, 0.25]),
       r=st.sampled_from([1.0, 0.5]), z=st.floats(-1, 1))
def test_interval_recursion_matches_sorted_sweep(x, eps, r, z):
    x = np.array(x)
    z = z * r  # targets live in [-r, r]
    kc, kh = cover_indices(x, eps, r, targets=[z])
    for k in range(len(x) + 1):
        assert (kc <= k) == _covered_brute(x[:k], eps, r), k
        assert (kh[0] <= k) == _hit_brute(x[:k], eps, z), k


def test_target_outside_range_rejected():
    with pytest.raises(ProbPruneError, match="targets must lie"):
        cover_indices(np.array([0.5]), 0.1, 0.5, targets=[0.9])


def test_estimate_coverage_bookkeeping():
    res = estimate_coverage(range(2, 25, 2), 0.05, "uniform", trials=150, seed=1)
    p = np.array([r["p_hat"] for r in res.rows])
    assert np.all(np.diff(p) >= 0)  # prefixes of one draw: coverage events are nested
    assert p[0] == 0.0 and p[-1] > 0.9  # 2 summands cannot cover [-1, 1] at eps = 0.05
    for r in res.rows:
        assert r["ci_low"] <= r["p_hat"] <= r["ci_high"]
        assert r["per_target_hits"] >= r["covered"]  # covering [-1, 1] implies hitting any z in it
        assert r["lower_1s"] <= r["p_hat"]
    if res.n_min is not None:
        row = next(r for r in res.rows if r["n"] == res.n_min)
        assert row["lower_1s"] >= res.gamma
        assert res.C_hat_ln == pytest.approx(res.n_min / math.log(1 / 0.05))
        assert res.C_hat_log2 == pytest.approx(res.n_min / math.log2(1 / 0.05))
    # reproducible from the seed
    assert estimate_coverage(range(2, 25, 2), 0.05, "uniform", trials=150, seed=1).rows == res.rows


def test_product_law_needs_more_samples_than_uniform():
    """The product law v|u| has density -ln|z|/2 (more mass near 0): coverage is slower than for U[-1, 1]."""
    kw = dict(trials=300, seed=0)
    u = estimate_coverage([12], 0.02, "uniform", **kw).rows[0]["p_hat"]
    p = estimate_coverage([12], 0.02, "product", **kw).rows[0]["p_hat"]
    assert p < u


def test_product_law_density():
    x = sample_summands("product", 200_000, np.random.default_rng(0))
    h, edges = np.histogram(x, bins=20, range=(-1, 1), density=True)
    mid = 0.5 * (edges[1:] + edges[:-1])
    # exact bin averages of -ln|z|/2: [z ln z - z] differences
    F = lambda t: t * np.log(np.where(t > 0, t, 1)) - t  # noqa: E731
    a, b = np.abs(edges[:-1]), np.abs(edges[1:])
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    expect = -(F(hi) - F(lo)) / (2 * (hi - lo))
    assert np.max(np.abs(h - expect)) < 0.05, (mid, h, expect)


def test_clopper_pearson_matches_scipy_binomtest():
    for x, T in [(0, 50), (3, 50), (50, 50), (731, 1000)]:
        lo, hi = clopper_pearson(x, T, 0.95)
        ci = binomtest(x, T).proportion_ci(0.95, method="exact")
        assert lo == pytest.approx(ci.low, abs=1e-12) and hi == pytest.approx(ci.high, abs=1e-12)


def test_per_target_stats_close_to_burkholz_reference():
    """THEORY §4.1 reference [CODE]: n = 15, eps = 0.01: success 0.996 (uniform); 0.964 (products)."""
    u = per_target_stats(15, 0.01, "uniform", trials=3000, seed=0)
    assert u.ci_low - 0.01 <= 0.996 <= u.ci_high + 0.01
    assert 1.5 < u.mean_subset_size < 3.5


@pytest.mark.parametrize("kw, msg", [
    (dict(ns=[5], eps=0.0), "eps"),
    (dict(ns=[0, 5], eps=0.1), "n must be"),
    (dict(ns=[5], eps=0.1, law="cauchy"), "law"),
    (dict(ns=[5], eps=0.1, trials=0), "trials"),
    (dict(ns=[5], eps=2.0), "smaller than"),
])
def test_coverage_bad_input(kw, msg):
    with pytest.raises(ProbPruneError, match=msg):
        estimate_coverage(**kw)


# --------------------------------------------------------------------------------------------- widths
def test_pensia_width_formula_and_provenance():
    r = pensia_block_width(784, 500, 2, 0.01, 0.05, C=2.0, log_base=2)
    assert float(r.width) == pytest.approx(2 * 784 * math.log2(784 * 500 * 2 / 0.01))
    assert float(r.params) == pytest.approx(float(r.width) * (784 + 500))
    assert r.provenance == "[RC]" and r.constants["C"] == 2.0
    # log(1/eps) growth: halving eps adds C d ln 2
    a = pensia_block_width(100, 100, 2, 0.01, 0.5).width
    b = pensia_block_width(100, 100, 2, 0.005, 0.5).width
    assert b - a == pytest.approx(100 * math.log(2))


def test_other_widths():
    assert float(malach_width(10, 2, 0.1).width) == pytest.approx(10 ** 5 * 4 * 100)
    assert malach_width(10, 2, 0.1).provenance == "[RC]"
    o = orseau_block_width(10, 20, 2, 0.01, 0.05)
    p = pensia_block_width(10, 20, 2, 0.01, 0.05)
    assert float(o.width) == pytest.approx(20 * float(p.width))  # per-weight blocks: d_i times Pensia's
    dc = da_cunha_conv_width(3, 16, 32, 2, 0.01, 0.05)
    assert float(dc.width) == pytest.approx(math.log(9 * 16 * 32 * 2 / 0.01))
    lb = counting_lower_bound(100, 0.01)
    assert float(lb.params) == pytest.approx(100 ** 2 * math.log2(25)) and lb.provenance == "[D]"
    assert float(counting_lower_bound(10, 0.5).width) == 0.0
    rows = compare_widths([10, 100], 2, 0.01, 0.05)
    assert {r["formula"] for r in rows} == {"pensia", "malach", "orseau", "counting_lower_bound"}
    # Pensia's sufficient width is above the necessary width (both with C = 1) at these sizes
    for d in (10, 100, 1000):
        assert float(pensia_block_width(d, d, 2, 0.01, 0.05).width) >= float(counting_lower_bound(d, 0.01).width)


@pytest.mark.parametrize("fn, args", [
    (pensia_block_width, (10, 10, 2, 0.0, 0.05)),
    (pensia_block_width, (0, 10, 2, 0.1, 0.05)),
    (pensia_block_width, (10, 10, 2, 0.1, 1.5)),
    (malach_width, (10, 2, -0.1)),
    (counting_lower_bound, (10, 0.0)),
])
def test_widths_bad_input(fn, args):
    with pytest.raises(ProbPruneError):
        fn(*args)
