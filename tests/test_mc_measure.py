"""Batched measurement (THEORY §6): exact linear error, PGD lower bound, Cert-D upper bound, batched forward."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from probprune.certificates.lemma import certify
from probprune.mc import measure as M
from probprune.net.templates import ConvLayer, cnn_spec, fcn_spec, sample_weights, to_torch


def _stack(spec, seed, n, law="uniform"):
    return [torch.from_numpy(w) for w in sample_weights(spec, seed, law, n=n)]


def _magnitude(spec, W, q):
    return [torch.where(w.abs() < q * L.half_width, torch.zeros_like(w), w) for w, L in zip(W, spec.layers)]


def _random(W, p, seed):
    g = torch.Generator().manual_seed(seed)
    return [torch.where(torch.rand(w.shape, generator=g, dtype=torch.float64) < p, torch.zeros_like(w), w) for w in W]


def _gens(n, base=0):
    return [torch.Generator().manual_seed(base + i) for i in range(n)]


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000), depth=st.integers(1, 3), width=st.integers(3, 24), q=st.floats(0.05, 0.6),
       method=st.sampled_from(["magnitude", "random"]))
def test_pgd_never_above_exact_and_within_one_percent(seed, depth, width, q, method):
    torch.set_num_threads(1)
    spec = fcn_spec([width] * (depth + 1), "identity")
    n = 6
    W = _stack(spec, seed, n)
    Wh = _magnitude(spec, W, q) if method == "magnitude" else _random(W, q, seed)
    exact = M.exact_linear_error(spec, W, Wh)
    # pure ascent: random Gaussian starts only (no +-e_j, no SVD start), so the optimiser itself must get there
    lb = M.pgd_lower_bound(spec, W, Wh, n_random=64, iters=60, generators=_gens(n, seed), basis=False,
                           svd_start=False)
    assert torch.all(lb <= exact * (1 + 1e-12)), (lb / exact)
    assert torch.all(lb >= 0.99 * exact), (lb / exact)
    # full protocol (SVD start included) is exact up to rounding
    lb2 = M.pgd_lower_bound(spec, W, Wh, generators=_gens(n, seed))
    assert torch.all(lb2 <= exact * (1 + 1e-12)) and torch.all(lb2 >= exact * (1 - 1e-9))


def test_exact_error_matches_dense_product_and_cert_dominates():
    spec = fcn_spec([5, 30, 20, 4], "identity")
    W = _stack(spec, 1, 4)
    Wh = _magnitude(spec, W, 0.3)
    ex = M.exact_linear_error(spec, W, Wh).numpy()
    for k in range(4):
        P = W[2][k] @ W[1][k] @ W[0][k] - Wh[2][k] @ Wh[1][k] @ Wh[0][k]
        assert ex[k] == pytest.approx(np.linalg.norm(P.numpy(), 2), rel=1e-12)
    nW, nWh = M.operator_norms_upper(spec, W).numpy(), M.operator_norms_upper(spec, Wh).numpy()
    nE = M.operator_norms_upper(spec, [a - b for a, b in zip(W, Wh)]).numpy()
    cert = M.cert_d(spec, nW, nWh, nE)
    assert np.all(ex <= cert)
    # batched Cert-D equals the package's per-network certificate
    for k in range(4):
        c = certify(spec, [w[k].numpy() for w in W], [w[k].numpy() for w in Wh])
        assert cert[k] == pytest.approx(c.eps, rel=1e-12)


def test_batched_forward_matches_torch_modules():
    torch.set_num_threads(1)
    for spec in (fcn_spec([7, 12, 9, 3], "relu"), fcn_spec([7, 12, 3], "tanh"),
                 cnn_spec((2, 9, 9), [ConvLayer(3, 3, 1, 1, ("max", 2, 2)), ConvLayer(4, 2, 2, 0)], [6, 3], "relu"),
                 cnn_spec((1, 8, 8), [ConvLayer(3, 3, 2, 1, ("avg", 2, 2))], [2], "leaky_relu")):
        Wn = sample_weights(spec, 3, n=3)
        W = [torch.from_numpy(w) for w in Wn]
        x = torch.randn(5, *spec.input_shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        y = M.batched_forward(spec, W, x)
        for k in range(3):
            ref = to_torch(spec, [w[k] for w in Wn])(x)
            assert torch.allclose(y[k], ref.reshape(5, -1), rtol=1e-12, atol=1e-12)


def test_relu_pgd_reaches_dense_grid_maximum_in_two_dimensions():
    """d_0 = 2: the sup over the circle can be brute-forced on a fine grid; PGD must match it."""
    torch.set_num_threads(1)
    spec = fcn_spec([2, 40, 40, 3], "relu")
    n = 8
    W = _stack(spec, 7, n)
    Wh = _random(W, 0.3, 7)
    th = torch.linspace(0, 2 * np.pi, 20001, dtype=torch.float64)
    grid = torch.stack([th.cos(), th.sin()], 1)
    with torch.no_grad():
        gmax = (M.batched_forward(spec, W, grid) - M.batched_forward(spec, Wh, grid)).norm(dim=-1).max(dim=1).values
    lb = M.pgd_lower_bound(spec, W, Wh, generators=_gens(n))
    assert torch.all(lb >= gmax * (1 - 1e-4)), lb / gmax
    assert torch.all(lb <= gmax * (1 + 1e-4)), lb / gmax  # the grid is fine enough that PGD cannot beat it by more


def test_pgd_bracket_relu_cnn_and_tanh_ball():
    torch.set_num_threads(1)
    for spec in (cnn_spec((1, 8, 8), [ConvLayer(3, 3, 1, 1, ("max", 2, 2))], [5], "relu"),
                 fcn_spec([6, 20, 20, 4], "tanh")):
        W = _stack(spec, 2, 4)
        Wh = _random(W, 0.4, 2)
        lb = M.pgd_lower_bound(spec, W, Wh, generators=_gens(4), iters=30).numpy()
        nW, nWh = M.operator_norms_upper(spec, W).numpy(), M.operator_norms_upper(spec, Wh).numpy()
        nE = M.operator_norms_upper(spec, [a - b for a, b in zip(W, Wh)]).numpy()
        ub = M.cert_d(spec, nW, nWh, nE)
        assert np.all(lb > 0) and np.all(lb <= ub * (1 + 1e-9))


def test_average_error_below_sup_and_scaling():
    spec = fcn_spec([64, 32, 10], "relu")
    W = _stack(spec, 4, 3)
    Wh = _random(W, 0.3, 4)
    from probprune.net.data import load_dataset

    X = M.scale_into_ball(load_dataset("digits").X_test[:100])
    assert float(X.flatten(1).norm(dim=1).max()) == pytest.approx(1.0)
    mean, mx = M.average_error(spec, W, Wh, X)
    lb = M.pgd_lower_bound(spec, W, Wh, generators=_gens(3), iters=20)
    nW, nWh = M.operator_norms_upper(spec, W).numpy(), M.operator_norms_upper(spec, Wh).numpy()
    nE = M.operator_norms_upper(spec, [a - b for a, b in zip(W, Wh)]).numpy()
    ub = M.cert_d(spec, nW, nWh, nE)
    assert torch.all(mean <= mx) and np.all(mx.numpy() <= ub)
