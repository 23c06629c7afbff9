"""§12.9 (issue 19 item 2): the coupled propagation applies large sparse stage matrices (convolutions, pooling,
max-pool trees, carried identity blocks) as sparse operators. The bounds are the same sums in another order: the
dense and the operator path agree to 1e-9 relative, and both stay above a PGD attack."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from probprune.certificates import propagate as P
from probprune.certificates.lower import lower_graph_pair
from probprune.certificates.mixed import lemma_a_mixed
from probprune.certificates.propagate import CoupledPropagator, Region, region_error_bound
from probprune.core.errors import ProbPruneError
from probprune.measure.attack import pgd_sup_error
from probprune.net.trace import from_torch


def _pair(seed=0, hw=8, pool="max", keep=0.6):
    torch.manual_seed(seed)
    P2 = nn.MaxPool2d(2) if pool == "max" else nn.AvgPool2d(2)
    m = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), P2, nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(),
                      nn.Flatten(), nn.Linear(6 * (hw // 2) ** 2, 5)).double().eval()
    g = from_torch(m, (1, hw, hw))
    rng = np.random.default_rng(seed)
    masks = {k: rng.random(p.shape) < keep for k, p in m.named_parameters() if k.endswith("weight")}
    gh = g.with_masks(masks)
    return g, gh


@pytest.mark.parametrize("pool", ["max", "avg"])
@pytest.mark.parametrize("center", [False, True])
def test_dense_and_operator_paths_agree(pool, center):
    g, gh = _pair(1, 8, pool)
    F, Fh = lower_graph_pair(g, gh)
    c = np.zeros((1, F.n_in)) if not center else np.random.default_rng(3).random((1, F.n_in))
    reg = Region(c, 1.0)
    pd = CoupledPropagator(F, Fh, reg, operators="dense")
    ps = CoupledPropagator(F, Fh, reg, operators="sparse")
    assert pd.n_sparse == 0 and ps.n_sparse > 0
    for a, b in zip(pd.pre_bounds, ps.pre_bounds):
        if a is None:
            assert b is None
            continue
        for x, y in zip(a[1:], b[1:]):
            np.testing.assert_allclose(y, x, rtol=1e-9, atol=1e-12 * (1 + np.abs(x).max()))
    ed = region_error_bound(F, Fh, reg, pd)
    es = region_error_bound(F, Fh, reg, ps)
    np.testing.assert_allclose(es.eps, ed.eps, rtol=1e-9)
    md, ms = lemma_a_mixed(F, Fh, reg, pd), lemma_a_mixed(F, Fh, reg, ps)
    np.testing.assert_allclose(ms.eps, md.eps, rtol=1e-9)
    if not center:
        lb = pgd_sup_error(g.forward, gh.forward, (1, 8, 8), 32, 40, 0).value
        assert min(es.eps[0], ms.eps) >= lb


def test_auto_uses_operators_only_for_large_sparse_stages():
    g, gh = _pair(2, 16, "max")
    F, Fh = lower_graph_pair(g, gh)
    p = CoupledPropagator(F, Fh, Region(np.zeros((1, F.n_in)), 1.0))
    big = [A for A in p.M if A.numel() >= P.SPARSE_MIN_SIZE
           and int(torch.count_nonzero(A)) <= P.SPARSE_MAX_DENSITY * A.numel()]
    assert big and p.n_sparse >= len(big)


def test_unknown_operator_mode_refused():
    g, gh = _pair(0)
    F, Fh = lower_graph_pair(g, gh)
    with pytest.raises(ProbPruneError, match="operators"):
        CoupledPropagator(F, Fh, Region(np.zeros((1, F.n_in)), 1.0), operators="fft")


def test_hat_only_propagator_gives_the_same_mixed_bound_and_refuses_other_queries():
    g, gh = _pair(4, 8, "max")
    F, Fh = lower_graph_pair(g, gh)
    reg = Region(np.zeros((1, F.n_in)), 1.0)
    full, hat = CoupledPropagator(F, Fh, reg), CoupledPropagator(F, Fh, reg, modes="hat")
    a, b = lemma_a_mixed(F, Fh, reg, full), lemma_a_mixed(F, Fh, reg, hat)
    assert a.eps == b.eps and a.V == b.V and a.beta == b.beta
    with pytest.raises(ProbPruneError, match="modes='hat'"):
        region_error_bound(F, Fh, reg, hat)
    with pytest.raises(ProbPruneError, match="modes"):
        CoupledPropagator(F, Fh, reg, modes="F")


@pytest.mark.parametrize("pool", ["max", "avg"])
def test_mixed_with_cheap_slope_products_is_ordered_and_sound(pool):
    """Statement 12.33: pair_bounds "none" (single norms) >= "scalar" (12.2, scalar multiplier) >= "full"
    (compose's pair and segment bounds), all >= PGD."""
    g, gh = _pair(5, 8, pool)
    F, Fh = lower_graph_pair(g, gh)
    reg = Region(np.zeros((1, F.n_in)), 1.0)
    e = {m: lemma_a_mixed(F, Fh, reg, pair_bounds=m).eps for m in ("full", "scalar", "none")}
    assert e["full"] <= e["scalar"] * (1 + 1e-9) and e["scalar"] <= e["none"] * (1 + 1e-9), e
    lb = pgd_sup_error(g.forward, gh.forward, (1, 8, 8), 64, 60, 0).value
    assert min(e.values()) >= lb
    with pytest.raises(ProbPruneError, match="pair_bounds"):
        lemma_a_mixed(F, Fh, reg, pair_bounds="segments")
