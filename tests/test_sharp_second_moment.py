"""S9.11 (THEORY §9.11): the exact second moment of ||prod W - prod What||_F for networks with identity activations,
dense or conv, and its Markov bound. Coverage: T networks drawn from the law, pruned by each rule the statement covers,
exact error (spectral norm of the linear map's difference) against the bound; refuted when the one-sided
Clopper-Pearson lower limit of the violation rate exceeds delta (as in tests/test_sharp_coverage.py). Also: the trace
factor of dense nets, the bound is taken by apriori_bound where it is smaller (conv families), and pooled or ReLU
nets get no S9.11 candidate (fail closed)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from probprune.core.errors import ProbPruneError
from probprune.mc.stats import cp_lower
from probprune.net.templates import ConvLayer, cnn_spec, fcn_spec, sample_weights
from probprune.theory import sharp
from probprune.theory.apriori import apriori_bound
from sharp_sampling import dense_product_difference as _dense_D, unit_kernel_ops as _ops

ALPHA = 0.001
RULES = ("magnitude", "random", "random_rescaled", "magnitude_exact", "random_exact")





def _draw_D(spec, law, method, q, T, seed):
    """T draws of the difference of the two linear maps (T, d_out, d_in) and the counts k_i."""
    rng = np.random.default_rng(seed)
    W = sample_weights(spec, rng, law, n=T)
    A = B = None
    ks = []
    for w, L in zip(W, spec.layers):
        O = _ops(L)
        flat = w.reshape(T, -1)
        k = int(np.floor(q * L.N))
        ks.append(k)
        if method == "magnitude":
            thr = q * L.half_width if law == "uniform" else stats.norm.ppf((1 + q) / 2) * L.half_width
            P = np.abs(flat) < thr
        elif method in ("random", "random_rescaled"):
            P = rng.random(flat.shape) < q
        else:
            key = np.abs(flat) if method == "magnitude_exact" else rng.random(flat.shape)
            P = np.zeros(flat.shape, bool)
            np.put_along_axis(P, np.argsort(key, axis=1)[:, :k], True, axis=1)
        wh = np.where(P, 0.0, flat) / ((1 - q) if method == "random_rescaled" else 1.0)
        Of = O.reshape(O.shape[0], -1)  # a BLAS product instead of an einsum loop (same sums)
        Xk, Xh = (flat @ Of).reshape(-1, *O.shape[1:]), (wh @ Of).reshape(-1, *O.shape[1:])
        A = Xk if A is None else Xk @ A
        B = Xh if B is None else Xh @ B
    return A - B, ks


def test_trace_factor_dense_is_product_of_widths():
    assert sharp.frobenius_trace_factor(fcn_spec([7, 5, 3, 2], "identity")) == 7 * 5 * 3 * 2


def test_fail_closed_for_pooling_and_relu():
    pooled = cnn_spec((1, 8, 8), [ConvLayer(2, 3, 1, 1, pool=("avg", 2, 2))], [3], "identity")
    relu = cnn_spec((1, 8, 8), [ConvLayer(2, 3, 1, 1)], [3], "relu")
    for spec in (pooled, relu):
        assert not sharp.second_moment_applies(spec)
        with pytest.raises(ProbPruneError):
            sharp.frobenius_trace_factor(spec)
        b = apriori_bound(spec, 0.1, 0.05, "magnitude")
        assert b.eps_source != "second-moment"
    with pytest.raises(ProbPruneError):
        sharp.second_moment_bound(fcn_spec([3, 3], "identity"), "structured", "uniform", 0.05, q=0.1)


def test_taken_on_the_conv_family_and_named():
    conv = cnn_spec((2, 8, 8), [ConvLayer(4, 3, 1, 1), ConvLayer(4, 3, 2, 1)], [10], "identity")
    for method in RULES:
        b = apriori_bound(conv, 0.1, 0.05, method)
        x, _ = sharp.second_moment_bound(conv, method, "uniform", 0.05, q=np.full(3, 0.1),
                                         ks=[int(np.floor(0.1 * L.N)) for L in conv.layers])
        assert b.eps <= float(x) + 1e-15
        if method in ("magnitude", "random"):  # S9.14 (exact fourth moment with weight sharing) is sharper there
            assert b.eps_source == "conv-fourth-moment" and "§9.14" in b.as_dict()["eps_statement"]
        else:
            assert b.eps_source == "second-moment"
            assert "§9.11" in b.as_dict()["eps_statement"]
    # the baseline (A*) with Lemma C is far above: S9.11 is what brought the conv families to ~10x (THEORY §9.9)
    assert apriori_bound(conv, 0.1, 0.05, "magnitude", statement="bernstein").eps > 10 * apriori_bound(
        conv, 0.1, 0.05, "magnitude").eps


@pytest.mark.parametrize("law", ["uniform", "gaussian"])
@pytest.mark.parametrize("method", RULES)
def test_coverage_conv(method, law):
    spec = cnn_spec((1, 6, 6), [ConvLayer(2, 3, 1, 1), ConvLayer(2, 3, 2, 1)], [4], "identity")
    T, q = 1500, 0.2
    D, ks = _draw_D(spec, law, method, q, T, [3, RULES.index(method), law == "gaussian"])
    err = np.linalg.norm(D, 2, axis=(1, 2))
    f2 = (D**2).sum(axis=(1, 2))
    for delta in (0.05, 0.5, 0.9):
        x, ed2 = sharp.second_moment_bound(spec, method, law, delta, q=np.full(spec.depth, q), ks=ks)
        V = int(np.sum(err > float(x)))
        assert cp_lower(V, T, ALPHA) <= delta, f"{method} {law} delta={delta}: {V}/{T} violations"
    se = f2.std() / np.sqrt(T)
    assert abs(f2.mean() - float(ed2)) <= 5 * se, (f2.mean(), float(ed2), se)


def test_coverage_dense_narrow_deep():
    spec = fcn_spec([6, 5, 4, 3, 2], "identity")
    T = 3000
    for method in ("magnitude", "random_exact"):
        D, ks = _draw_D(spec, "uniform", method, 0.3, T, [9, RULES.index(method)])
        err = np.linalg.norm(D, 2, axis=(1, 2))
        x, ed2 = sharp.second_moment_bound(spec, method, "uniform", 0.5, q=np.full(spec.depth, 0.3), ks=ks)
        assert cp_lower(int(np.sum(err > float(x))), T, ALPHA) <= 0.5
        f2 = (D**2).sum(axis=(1, 2))
        assert abs(f2.mean() - float(ed2)) <= 5 * f2.std() / np.sqrt(T)


# ------------------------------------------------------------------------------------------- S9.12 fourth moment
@pytest.mark.parametrize("law", ["uniform", "gaussian"])
@pytest.mark.parametrize("method", ["magnitude", "random", "random_rescaled"])
def test_fourth_moment_exact_against_sampling(method, law):
    spec, D = _dense_D([4, 3, 3, 2], method, law, 0.4, 200_000, [11, len(method), law == "gaussian"])
    f4 = ((D**2).sum(axis=(1, 2))) ** 2
    _, m4 = sharp.fourth_moment_bound(spec.widths, [L.half_width for L in spec.layers], np.full(3, 0.4), 0.05,
                                      method, law)
    assert abs(f4.mean() - float(m4)) <= 5 * f4.std() / np.sqrt(f4.size), (f4.mean(), float(m4))


@pytest.mark.parametrize("widths,method,q", [([32, 32, 32, 32, 32], "magnitude", 0.01), ([32, 32, 32], "random", 0.01),
                                             ([32, 32, 32, 32], "random", 0.1), ([24, 16, 8], "magnitude", 0.3),
                                             ([32, 32, 32, 32], "random_rescaled", 0.03)])
def test_fourth_moment_coverage(widths, method, q):
    T = 2000
    spec, D = _dense_D(widths, method, "uniform", q, T, [12, len(widths), int(q * 100)])
    err = np.linalg.norm(D, 2, axis=(1, 2))
    for delta in (0.05, 0.2, 0.5):
        x, _ = sharp.fourth_moment_bound(spec.widths, [L.half_width for L in spec.layers],
                                         np.full(spec.depth, q), delta, method, "uniform")
        V = int(np.sum(err > float(x)))
        assert cp_lower(V, T, ALPHA) <= delta, f"{widths} {method} q={q} delta={delta}: {V}/{T}"
        b = apriori_bound(spec, q, delta, method)
        assert b.eps <= float(x) * (1 + 1e-12)
        assert cp_lower(int(np.sum(err > b.eps)), T, ALPHA) <= delta


def test_fourth_moment_taken_and_named_on_sparse_families():
    spec = fcn_spec([32] * 5, "identity")
    b = apriori_bound(spec, 0.01, 0.05, "magnitude")
    x4, _ = sharp.fourth_moment_bound(spec.widths, [L.half_width for L in spec.layers], np.full(4, 0.01), 0.05,
                                      "magnitude", "uniform")
    # S9.12 beats every statement before it here; S9.13 (issue 20, §9.13) may beat it since
    assert b.eps_source in ("fourth-moment", "trace-moment") and b.eps <= float(x4) * (1 + 1e-12)
    spec3 = fcn_spec([32, 32, 1], "identity")  # one output: ||D|| = ||D||_F, Cantelli on ||D||_F^2 wins
    b3 = apriori_bound(spec3, 0.3, 0.05, "random")
    assert b3.eps_source == "fourth-moment" and "§9.12" in b3.as_dict()["eps_statement"]
    with pytest.raises(ProbPruneError):
        sharp.fourth_moment_bound(spec.widths, [1.0] * 4, np.full(4, 0.1), 0.05, "random_exact", "uniform")


def _exact_k_D(widths, method, q, T, seed):
    rng = np.random.default_rng(seed)
    spec = fcn_spec(widths, "identity")
    W = sample_weights(spec, rng, "uniform", n=T)
    P = Ph = None
    ks = []
    for w, L in zip(W, spec.layers):
        flat = w.reshape(T, -1)
        k = int(np.floor(q * L.N))
        ks.append(k)
        key = np.abs(flat) if method == "magnitude_exact" else rng.random(flat.shape)
        M = np.zeros(flat.shape, bool)
        np.put_along_axis(M, np.argsort(key, axis=1)[:, :k], True, axis=1)
        wh = np.where(M, 0.0, flat).reshape(w.shape)
        P = w if P is None else w @ P
        Ph = wh if Ph is None else wh @ Ph
    return spec, ks, P - Ph


@pytest.mark.parametrize("method", ["magnitude_exact", "random_exact"])
def test_exact_k_fourth_moment_against_sampling_and_coverage(method):
    spec, ks, D = _exact_k_D([4, 3, 3, 2], method, 0.4, 200_000, [21, len(method)])
    f4 = ((D**2).sum(axis=(1, 2))) ** 2
    _, m4 = sharp.exact_k_fourth_moment_bound(spec.widths, [L.half_width for L in spec.layers], ks, 0.05, method)
    assert abs(f4.mean() - m4) <= 5 * f4.std() / np.sqrt(f4.size), (f4.mean(), m4)
    spec, ks, D = _exact_k_D([32, 32, 32, 32], method, 0.1, 2000, [22, len(method)])
    err = np.linalg.norm(D, 2, axis=(1, 2))
    for delta in (0.05, 0.5):
        b = apriori_bound(spec, 0.1, delta, method)
        assert b.eps_source == "fourth-moment"
        assert cp_lower(int(np.sum(err > b.eps)), err.size, ALPHA) <= delta


def test_exact_k_fourth_moments_sum_to_the_full_moments():
    m = sharp.exact_k_fourth_moments("magnitude_exact", 50, 10, 1.0)
    assert m[0] + m[1] == pytest.approx(1 / 3) and m[2] + m[3] == pytest.approx(1 / 5)
    assert m[4] + 2 * m[5] + m[6] == pytest.approx(1 / 9)  # E[w_p^2 w_p'^2] = (E w^2)^2
    with pytest.raises(ProbPruneError):
        sharp.exact_k_fourth_moments("magnitude_exact", 50, 10, 1.0, law="gaussian")
