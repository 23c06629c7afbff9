"""Pensia construction (THEORY §4.2, §4.4) and its conv version: the pruned network computes what the theory says."""
import numpy as np
import pytest
import torch
import torch.nn as nn

from probprune.core.errors import ProbPruneError, UnsupportedLayerError
from probprune.subsetsum.construction import (ConstructionConfig, compose_bound, construct, entry_tolerance,
                                              evaluate_on_data, sup_error_lower_bound)

torch.set_num_threads(1)


def _fcn(widths, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    mods = []
    for i in range(1, len(widths)):
        lin = nn.Linear(widths[i - 1], widths[i], bias=False).double()
        with torch.no_grad():
            w = torch.rand(lin.weight.shape, generator=g, dtype=torch.float64) * 2 - 1
            lin.weight.copy_(scale * w / torch.linalg.matrix_norm(w, 2))  # ||W_i|| = scale
        mods.append(lin)
        if i < len(widths) - 1:
            mods.append(nn.ReLU())
    return nn.Sequential(*mods).eval()


@pytest.fixture(scope="module")
def small():
    target = _fcn([5, 8, 3], seed=1)
    return target, construct(target, eps=0.2, seed=0)


def test_relu_split_identity():
    g = torch.Generator().manual_seed(0)
    W = torch.randn(4, 6, generator=g, dtype=torch.float64)
    x = torch.randn(100, 6, generator=g, dtype=torch.float64)
    r = torch.relu
    torch.testing.assert_close(x @ W.T, r(x) @ W.T - r(-x) @ W.T, rtol=0, atol=1e-12)
    u = torch.rand(6, generator=g, dtype=torch.float64)  # u > 0: s(ux) = u s(x); u < 0: s(ux) = |u| s(-x)
    torch.testing.assert_close(r(u * x), u * r(x), rtol=0, atol=1e-15)
    torch.testing.assert_close(r(-u * x), u * r(-x), rtol=0, atol=1e-15)


def test_first_block_computes_split_approximation(small):
    """Block 1 of the pruned net is exactly x -> W+ s(x) + W- s(-x) with the solver's subset sums."""
    target, c = small
    Wp, Wm = c.W_hat[0]["+"], c.W_hat[0]["-"]
    x = torch.randn(64, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    block = c.model[:3]
    expect = torch.relu(x) @ torch.as_tensor(Wp).T + torch.relu(-x) @ torch.as_tensor(Wm).T
    torch.testing.assert_close(block(x), expect, rtol=0, atol=1e-12)
    # block 2 acts on post-ReLU inputs: y -> W_hat y exactly for y >= 0
    y = torch.rand(64, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    torch.testing.assert_close(c.model[4:](y), y @ torch.as_tensor(c.W_hat[1]["+"]).T, rtol=0, atol=1e-12)


def test_per_weight_errors_within_tolerance_when_success(small):
    target, c = small
    rep = c.report
    assert rep.success and rep.failures == 0
    for i, L in enumerate(rep.layers):
        assert L.tol == pytest.approx(entry_tolerance(c.target.spec.layers[i], i, 2, rep.config))
        for err in L.errors.values():
            assert np.all(err <= L.tol * (1 + 1e-9))
        W = c.target.weights[i]
        for key, sign in (("+", 1), ("-", -1)):
            if key in c.W_hat[i]:
                assert np.all(np.abs(c.W_hat[i][key] - sign * W) <= L.tol * (1 + 1e-9))
        # Frobenius of the entry errors <= eps_i (§4.2 step 6)
        assert L.fro_E <= rep.config.eps / 4 * (1 + 1e-9)


def test_composed_bound_holds_on_sampled_inputs(small):
    target, c = small
    rep = c.report
    assert rep.bound_tolerance is not None and rep.bound_tolerance <= rep.config.eps
    assert rep.bound_realized <= rep.bound_tolerance * (1 + 1e-9)
    x = torch.randn(2000, 5, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    with torch.no_grad():
        dev = (target(x) - c.model(x)).norm(dim=1) / x.norm(dim=1)
    assert float(dev.max()) <= rep.bound_realized * (1 + 1e-9)
    lb = sup_error_lower_bound(target, c.model, (5,), n_starts=16, iters=60)
    assert 0 < lb <= rep.bound_realized * (1 + 1e-9)


def test_masks_params_and_pruned_zeros(small):
    target, c = small
    rep = c.report
    kept = sum(int(m.sum()) for m in c.masks.values())
    assert kept == rep.params_after
    assert rep.params_before == sum(p.numel() for p in c.model.parameters())
    sd = c.model.state_dict()
    for k, m in c.masks.items():
        assert torch.all(sd[k][~m] == 0) and torch.all(sd[k][m] != 0)
    # block-diagonal first mask: every kept hidden unit reads exactly one input
    m0 = c.masks["0.weight"]
    assert torch.all(m0.sum(dim=1) <= 1)
    assert rep.params_before > 10 * rep.target_params > rep.params_after / 20


def test_failures_are_reported_per_weight():
    target = _fcn([4, 6, 2], seed=2)
    c = construct(target, eps=0.01, units_per_input=2, seed=0)  # far too narrow: many entries must fail
    rep = c.report
    assert not rep.success and rep.failures > 0
    assert rep.failures == sum(L.failures for L in rep.layers)
    assert rep.bound_tolerance is None  # not valid once an entry failed
    fl = rep.failure_list
    assert len(fl) == rep.failures
    for f in fl:
        assert f["error"] > f["tol"]
        i = int(f["layer"].split(".")[0]) // 2
        W = c.target.weights[i]
        a, j = f["index"]
        assert f["target"] == pytest.approx(W[a, j] if f["branch"] == "+" else -W[a, j])
    # the realized bound stays valid even with failures
    x = torch.randn(500, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with torch.no_grad():
        dev = (target(x) - c.model(x)).norm(dim=1) / x.norm(dim=1)
    assert float(dev.max()) <= rep.bound_realized * (1 + 1e-9)
    assert rep.as_dict()["failures"] == rep.failures


def test_conv_construction_small():
    torch.manual_seed(0)
    target = nn.Sequential(nn.Conv2d(1, 2, 3, bias=False), nn.ReLU(), nn.MaxPool2d(2),
                           nn.Conv2d(2, 2, 3, padding=1, bias=False), nn.ReLU(), nn.Flatten(),
                           nn.Linear(2 * 3 * 3, 3, bias=False)).double().eval()
    with torch.no_grad():
        for m in target:
            if hasattr(m, "weight"):
                m.weight.mul_(0.5 / m.weight.abs().max())
    c = construct(target, eps=0.05, tolerance="per-weight", units_per_input=14, input_shape=(1, 8, 8), seed=1)
    rep = c.report
    assert [type(m).__name__ for m in c.model[:3]] == ["Conv2d", "ReLU", "Conv2d"]
    assert c.model[0].kernel_size == (1, 1)
    for L in rep.layers:
        for err in L.errors.values():
            ok = err <= L.tol * (1 + 1e-9)
            assert ok.sum() == err.size - sum(1 for f in L.failure_list if f["branch"] in L.errors)
    x = torch.randn(300, 1, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ev = evaluate_on_data(target, c.model, x)
    assert ev["max_dev_over_norm"] <= rep.bound_realized * (1 + 1e-9)


def test_compose_bound_reduces_to_product_form():
    e = [0.01, 0.02, 0.03]
    assert compose_bound([1, 1, 1], e, [1, 1, 1]) == pytest.approx(np.prod(1 + np.array(e)) - 1)


def test_bad_targets_and_config():
    with pytest.raises(UnsupportedLayerError, match="ReLU"):
        construct(nn.Sequential(nn.Linear(3, 4, bias=False), nn.Tanh(), nn.Linear(4, 2, bias=False)), eps=0.1)
    with pytest.raises(UnsupportedLayerError, match="bias"):
        construct(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)), eps=0.1)
    with pytest.raises(UnsupportedLayerError):
        construct(nn.Sequential(nn.Linear(3, 4, bias=False), nn.BatchNorm1d(4), nn.Linear(4, 2, bias=False)), eps=0.1)
    with pytest.raises(ProbPruneError, match="coverable range"):
        construct(_fcn([3, 4, 2], scale=5.0), eps=0.1)
    with pytest.raises(ProbPruneError, match="eps"):
        construct(_fcn([3, 4, 2]), eps=0.0)
    with pytest.raises(ProbPruneError, match="tolerance"):
        construct(_fcn([3, 4, 2]), eps=0.1, tolerance="loose")
    with pytest.raises(ProbPruneError, match="units_per_input"):
        ConstructionConfig(units_per_input=0).validate()
