"""Issue 2: certificates (THEORY §3.11), operator norms (§3.5), torch bridge, and a Monte Carlo smoke test."""
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st
from scipy import stats

from probprune.theory.apriori import apriori_bound
from probprune.budgets.apriori import magnitude_prune_count
from probprune.budgets.certified import certified_budget
from probprune.certificates.lemma import certify, certify_parsed, certify_random, lemma_a_general
from probprune.theory.apriori import lemma_a
from probprune.core.errors import ProbPruneError, UnsupportedLayerError
from probprune.net.templates import ConvLayer, cnn_spec, fcn_spec, from_torch, sample_weights, to_torch
from probprune.theory.norms import conv_norm_fft, conv_norm_kernel_bound, power_iteration_norm, spectral_norm_upper


def _prune(W, spec, q, rng, method):
    out = []
    for w, L in zip(W, spec.layers):
        if method == "magnitude":
            out.append(w * (np.abs(w) >= q * L.half_width))
        else:
            out.append(w * (rng.random(w.shape) >= q))
    return out


@settings(max_examples=30, deadline=None)
@given(widths=st.lists(st.integers(2, 25), min_size=2, max_size=5), q=st.floats(0, 1), seed=st.integers(0, 10**6),
       method=st.sampled_from(["magnitude", "random"]))
def test_certificate_upper_bounds_exact_linear_error(widths, q, seed, method):
    spec = fcn_spec(widths, "identity")
    rng = np.random.default_rng(seed)
    W = sample_weights(spec, rng)
    Wh = _prune(W, spec, q, rng, method)
    eye = [np.eye(widths[0])]  # multi_dot needs >= 2 factors
    exact = np.linalg.norm(np.linalg.multi_dot(W[::-1] + eye) - np.linalg.multi_dot(Wh[::-1] + eye), 2)
    cert = certify(spec, W, Wh).eps
    assert exact <= cert * (1 + 1e-9) + 1e-12


def _relu_net_error(W, Wh, b, X):
    h, hh = X, X
    for i, (w, wh) in enumerate(zip(W, Wh)):
        bias = 0.0 if b is None or b[i] is None else b[i]
        h, hh = h @ w.T + bias, hh @ wh.T + bias
        if i < len(W) - 1:
            h, hh = np.maximum(h, 0), np.maximum(hh, 0)
    return np.linalg.norm(h - hh, axis=1)


@settings(max_examples=25, deadline=None)
@given(widths=st.lists(st.integers(2, 20), min_size=3, max_size=4), q=st.floats(0, 0.9), seed=st.integers(0, 10**6),
       with_bias=st.booleans())
def test_certificate_upper_bounds_sampled_relu_errors(widths, q, seed, with_bias):
    spec = fcn_spec(widths, "relu")
    rng = np.random.default_rng(seed)
    W = sample_weights(spec, rng)
    Wh = _prune(W, spec, q, rng, "magnitude")
    b = [rng.normal(size=L.d_out) if with_bias else None for L in spec.layers] if with_bias else None
    X = rng.normal(size=(400, widths[0]))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    X *= rng.uniform(0, 1, size=(400, 1)) ** 0.5
    err = _relu_net_error(W, Wh, b, X).max()
    assert err <= certify(spec, W, Wh, b).eps * (1 + 1e-9) + 1e-12


def test_general_lemma_a_reduces_to_lemma_a_without_biases():
    rng = np.random.default_rng(3)
    w, wh, e = rng.uniform(0.5, 2, (3, 5))
    fwd, bwd = lemma_a_general(w, wh, e, np.ones(5))
    assert math.isclose(min(fwd, bwd), lemma_a(w, wh, e), rel_tol=1e-12)


def _explicit_conv_operator(K, in_shape, stride, padding):
    n = int(np.prod(in_shape))
    cols = []
    for j in range(n):
        e = torch.zeros(n, dtype=torch.float64)
        e[j] = 1
        cols.append(F.conv2d(e.reshape(1, *in_shape), torch.as_tensor(K), stride=stride, padding=padding).reshape(-1))
    return torch.stack(cols, 1).numpy()


@settings(max_examples=20, deadline=None)
@given(k=st.integers(1, 5), s=st.integers(1, 3), p=st.integers(0, 2), hw=st.integers(5, 9),
       cin=st.integers(1, 3), cout=st.integers(1, 3), seed=st.integers(0, 1000))
def test_conv_operator_norm_bounds(k, s, p, hw, cin, cout, seed):
    if k > hw + 2 * p:
        return
    spec = cnn_spec((cin, hw, hw), [ConvLayer(cout, k, s, p)], [3])
    L = spec.layers[0]
    K = np.random.default_rng(seed).normal(size=L.weight_shape)
    T = _explicit_conv_operator(K, (cin, hw, hw), s, p)
    exact = np.linalg.norm(T, 2)
    fft = conv_norm_fft(K, L)
    kern = conv_norm_kernel_bound(K, L)
    assert exact <= fft * (1 + 1e-9)  # FFT norm of the periodic extension is an upper bound
    assert exact <= kern * (1 + 1e-9)  # Lemma C
    if s == 1:
        assert fft <= kern * (1 + 1e-9)  # for stride 1 the exact circulant norm is below Lemma C
    assert power_iteration_norm(L, K, iters=200) <= exact * (1 + 1e-6)  # power iteration approaches from below


def test_spectral_norm_upper_is_an_upper_bound():
    rng = np.random.default_rng(0)
    for shape in [(1, 1), (3, 7), (50, 20), (200, 200)]:
        M = rng.normal(size=shape)
        s = np.linalg.svd(M, compute_uv=False)[0]
        u = spectral_norm_upper(M)
        assert s <= u <= s * (1 + 1e-8)


def test_cnn_certificate_upper_bounds_sampled_errors():
    spec = cnn_spec((1, 8, 8), [ConvLayer(3, 3, 1, 1, ("max", 2, 2)), ConvLayer(4, 3, 2, 0)], [5])
    rng = np.random.default_rng(1)
    W = sample_weights(spec, rng)
    Wh = [w * (np.abs(w) >= 0.3 * L.half_width) for w, L in zip(W, spec.layers)]
    net, netp = to_torch(spec, W), to_torch(spec, Wh)
    X = torch.as_tensor(rng.normal(size=(300, 1, 8, 8)))
    X = X / X.flatten(1).norm(dim=1)[:, None, None, None]
    with torch.no_grad():
        err = (net(X) - netp(X)).norm(dim=1).max().item()
    for method in ("fft", "kernel"):
        assert err <= certify(spec, W, Wh, conv_method=method).eps


def test_cert_r_holds_over_masks_for_fixed_weights():
    spec = fcn_spec([30, 40, 10], "identity")
    rng = np.random.default_rng(5)
    W = sample_weights(spec, rng)
    p, delta = 0.2, 0.1
    cr = certify_random(spec, W, p, delta)
    exceed = 0
    for t in range(200):
        Wh = [w * (rng.random(w.shape) >= p) for w in W]
        exact = np.linalg.norm(W[1] @ W[0] - Wh[1] @ Wh[0], 2)
        exceed += exact > cr.eps
    assert exceed == 0  # Cert-R is loose; a single exceedance in 200 draws would already be suspicious


def test_from_torch_round_trip_and_refusals():
    m = nn.Sequential(nn.Linear(6, 8, bias=False), nn.ReLU(), nn.Linear(8, 3, bias=False))
    p = from_torch(m)
    assert p.spec.widths == (6, 8, 3) and p.names == ["0.weight", "2.weight"] and not p.has_bias
    m2 = to_torch(p.spec, p.weights)
    x = torch.randn(5, 6, dtype=torch.float64)
    assert torch.allclose(m2(x), m.double()(x))
    with pytest.raises(UnsupportedLayerError, match="BatchNorm1d"):
        from_torch(nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)))
    with pytest.raises(UnsupportedLayerError, match="groups"):
        from_torch(nn.Sequential(nn.Conv2d(2, 2, 3, groups=2), nn.Flatten(), nn.Linear(2, 2)), (2, 3, 3))
    bad = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    with torch.no_grad():
        bad[0].weight[0, 0] = float("nan")
    with pytest.raises(ProbPruneError, match="NaN"):
        from_torch(bad)
    with pytest.raises(ProbPruneError, match="input_shape"):
        from_torch(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2, 2)))


def test_certify_parsed_checks_masks():
    m = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    p = from_torch(m)
    with pytest.raises(ProbPruneError, match="shape"):
        certify_parsed(p, {"0.weight": np.ones((3, 3))})
    with pytest.raises(ProbPruneError, match="unknown"):
        certify_parsed(p, {"9.weight": np.ones((8, 6))})
    c = certify_parsed(p, {"0.weight": np.ones((8, 6))})
    assert c.eps == 0.0


def test_certified_budget_holds_for_trained_like_net():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 5))
    p = from_torch(m)
    r = certified_budget(p, 0.3, "magnitude", "optimal", certificate="lemma-a")  # a Cert-D test
    assert r.eps_achieved <= 0.3
    Wh = [magnitude_prune_count(w, L.max_prunable) for w, L in zip(p.weights, r.layers)]
    assert certify(p.spec, p.weights, Wh, p.biases).eps <= 0.3
    assert r.total_prunable >= r.uniform_total - 2


@pytest.mark.parametrize("activation_name", ["identity", "relu"])
def test_monte_carlo_smoke_bound_coverage(activation_name):
    """Draws from the paper's law: how often the exact (linear) or certified (ReLU) error exceeds the bound.
    The violation count must be consistent with <= delta (one-sided Clopper-Pearson at alpha = 0.05)."""
    spec = fcn_spec([12, 24, 24, 6], activation_name)
    delta, T, alpha = 0.1, 150, 0.05
    rng = np.random.default_rng(2024)
    results = {}
    for method in ("magnitude", "random"):
        q = 0.2
        b = apriori_bound(spec, q, delta, method).eps
        exceed = 0
        for _ in range(T):
            W = sample_weights(spec, rng)
            Wh = _prune(W, spec, q, rng, method)
            if activation_name == "identity":
                err = np.linalg.norm(W[2] @ W[1] @ W[0] - Wh[2] @ Wh[1] @ Wh[0], 2)
            else:
                err = certify(spec, W, Wh).eps  # an upper bound on the true error
            exceed += err > b
        lower = 0.0 if exceed == 0 else stats.beta.ppf(alpha, exceed, T - exceed + 1)
        upper = 1.0 if exceed == T else stats.beta.ppf(1 - alpha, exceed + 1, T - exceed)
        results[method] = (exceed, lower, upper)
        assert lower <= delta, f"bound refuted: {exceed}/{T} exceedances for {method}"
        assert upper <= delta, f"inconclusive coverage: {exceed}/{T}"
