"""S9.14 (THEORY §9.14): the exact fourth moment of ||prod W - prod What||_F for small conv networks with identity
activations (weight sharing), and its Cantelli/Markov threshold. Exactness against sampling with operators built by
torch conv2d; coverage on the issue-20 conv family (exact error = spectral norm of the linear map's difference) with
the one-sided Clopper-Pearson rule; apriori_bound takes and names it; architectures it does not cover get no
candidate (fail closed), rules it does not cover are refused."""
from __future__ import annotations

import numpy as np
import pytest

from probprune.core.errors import ProbPruneError
from probprune.mc.stats import cp_lower
from probprune.net.templates import ConvLayer, cnn_spec, fcn_spec, sample_weights
from probprune.theory import conv_moments as cf
from probprune.theory.apriori import apriori_bound
from probprune.theory.trace_moments import entry_even_moments
from sharp_sampling import unit_kernel_ops as _ops

ALPHA = 0.001


def _D(spec, method, q, T, seed):
    rng = np.random.default_rng(seed)
    W = sample_weights(spec, rng, "uniform", n=T)
    P = Ph = None
    for w, L in zip(W, spec.layers):
        O = _ops(L)
        flat = w.reshape(T, -1)
        m = np.abs(flat) < q * L.half_width if method == "magnitude" else rng.random(flat.shape) < q
        Of = O.reshape(O.shape[0], -1)  # a BLAS product instead of an einsum loop (same sums)
        A = (flat @ Of).reshape(T, *O.shape[1:])
        Ah = (np.where(m, 0.0, flat) @ Of).reshape(T, *O.shape[1:])
        P = A if P is None else A @ P
        Ph = Ah if Ph is None else Ah @ Ph
    return P - Ph


@pytest.mark.parametrize("method", ["magnitude", pytest.param("random", marks=pytest.mark.slow)])
def test_conv_fourth_moment_exact_against_sampling(method):
    spec = cnn_spec((1, 5, 5), [ConvLayer(2, 3, 1, 1), ConvLayer(2, 3, 2, 0)], [3], "identity")
    D = _D(spec, method, 0.4, 100_000, [41, len(method)])
    y = (D**2).sum(axis=(1, 2))
    lm = [tuple(float(x) for x in entry_even_moments(method, "uniform", L.half_width, 0.4, 2)) for L in spec.layers]
    m4 = cf.frobenius_fourth_moment_conv(spec, lm)
    assert abs((y**2).mean() - m4) <= 5 * (y**2).std() / np.sqrt(y.size), ((y**2).mean(), m4)
    _, m2, m4b = cf.conv_fourth_moment_bound(spec, np.full(3, 0.4), 0.05, method, "uniform")
    assert m4b == pytest.approx(m4, rel=1e-12) and abs(y.mean() - m2) <= 5 * y.std() / np.sqrt(y.size)


@pytest.mark.parametrize("method,q", [("magnitude", 0.1), pytest.param("random", 0.3, marks=pytest.mark.slow)])
def test_conv_fourth_moment_coverage_on_the_issue_family(method, q):
    spec = cnn_spec((2, 8, 8), [ConvLayer(4, 3, 1, 1), ConvLayer(4, 3, 2, 1)], [10], "identity")
    T = 600
    D = _D(spec, method, q, T, [42, len(method), int(100 * q)])
    err = np.linalg.norm(D, 2, axis=(1, 2))
    for delta in (0.05, 0.3):
        b = apriori_bound(spec, q, delta, method)
        assert b.eps_source == "conv-fourth-moment" and "§9.14" in b.as_dict()["eps_statement"]
        assert cp_lower(int(np.sum(err > b.eps)), T, ALPHA) <= delta


def test_conv_fourth_moment_fails_closed():
    pooled = cnn_spec((1, 8, 8), [ConvLayer(2, 3, 1, 1, pool=("avg", 2, 2))], [3], "identity")
    relu = cnn_spec((1, 8, 8), [ConvLayer(2, 3, 1, 1)], [3], "relu")
    big = cnn_spec((1, 28, 28), [ConvLayer(2, 3, 1, 1)], [3], "identity")
    costly = cnn_spec((1, 8, 8), [ConvLayer(4, 3, 1, 1), ConvLayer(4, 3, 1, 1)], [10], "identity")  # 256 x 256
    for spec in (pooled, relu, big, costly, fcn_spec([4, 4, 4], "identity")):
        assert not cf.applies(spec) or all(L.kind != "conv" for L in spec.layers)
    assert apriori_bound(big, 0.1, 0.05, "magnitude").eps_source != "conv-fourth-moment"
    small = cnn_spec((1, 4, 4), [ConvLayer(2, 3, 1, 1)], [3], "identity")
    with pytest.raises(ProbPruneError):
        cf.conv_fourth_moment_bound(small, np.full(2, 0.1), 0.05, "magnitude_exact", "uniform")
    with pytest.raises(ProbPruneError):
        cf.diagram_closings(relu)
