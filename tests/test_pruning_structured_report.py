"""Structured pruning (whole rows/filters, dead downstream weights), reports and the prune() API (issue 3)."""
import math

import pytest
import torch

from probprune.core.errors import ProbPruneError
from probprune.net.zoo import lenet5, mlp
from probprune.pruning import apply_mask, neuron_sparsity, prune, structured_mask


@pytest.mark.parametrize("norm", ["l1", "l2"])
def test_structured_mlp_rows_and_dead_columns(norm):
    m = mlp((8, 10, 6, 3), seed=0)
    r = structured_mask(m, 0.4, norm=norm)
    w0 = m[0].weight.detach()
    p = 1 if norm == "l1" else 2
    norms = w0.norm(p=p, dim=1)
    rows = r.removed_units["0.weight"]
    assert len(rows) == 4 and len(r.removed_units["2.weight"]) == math.floor(0.4 * 6)
    assert float(norms[rows].max()) <= float(norms[[i for i in range(10) if i not in rows]].min())
    # whole rows (and their biases) removed, nothing else
    assert bool((~r.mask["0.weight"][rows]).all()) and int((~r.mask["0.weight"]).sum()) == 4 * 8
    assert bool((~r.mask["0.bias"][rows]).all())
    # output layer never unit-pruned; dead counts are the kept entries in the columns of removed units
    assert int((~r.mask["4.weight"]).sum()) == 0
    assert r.dead["2.weight"] == int(r.mask["2.weight"][:, rows].sum()) == 4 * (6 - 2)
    assert r.dead["4.weight"] == 3 * 2


def test_dead_weights_are_functionally_dead_in_conv_net():
    """Perturbing the counted dead weights leaves the output unchanged; perturbing a live weight does not."""
    torch.manual_seed(0)
    shape = (1, 8, 8)
    m = lenet5(shape, seed=0)
    r = structured_mask(m, 0.5, scope="global")
    apply_mask(m, r.mask)
    x = torch.rand(5, *shape)
    y0 = m(x).detach()
    assert r.total_dead > 0
    # rebuild the dead sets: the columns reading removed units of the previous layer
    layers = ["0.weight", "3.weight", "7.weight", "9.weight", "11.weight"]
    params = dict(m.named_parameters())
    with torch.no_grad():
        for prev, cur in zip(layers[:-1], layers[1:]):
            gone = r.removed_units.get(prev, [])
            if not gone:
                continue
            w = params[cur]
            if w.dim() == 4:
                w[:, gone] += 1.0
            else:
                hw = w.shape[1] // params[prev].shape[0]
                cols = [c * hw + j for c in gone for j in range(hw)]
                w[:, cols] += 1.0
    assert torch.allclose(m(x), y0, atol=1e-6)
    with torch.no_grad():
        params["11.weight"][0, 0] += 1.0 if 0 not in r.removed_units["9.weight"] else 0.0
        params["11.weight"][:, [i for i in range(84) if i not in r.removed_units["9.weight"]][0]] += 1.0
    assert not torch.allclose(m(x), y0, atol=1e-6)


def test_report_counts_flops_and_compression():
    shape = (1, 8, 8)
    m = lenet5(shape, seed=1)
    res = prune(m, "magnitude", 0.5, input_shape=shape)
    rep = res.report
    for row in rep.rows:
        assert row["pruned"] == math.floor(0.5 * row["numel"])
        assert row["realised_sparsity"] == row["pruned"] / row["numel"]
    # conv MACs: 6*1*3*3 weights used at 8*8 positions, then 16*6*9 at 4*4 (padding 1, after pool)
    assert rep.rows[0]["flops_dense"] == 54 * 64 and rep.rows[1]["flops_dense"] == 864 * 16
    assert rep.flops_dense == 54 * 64 + 864 * 16 + 64 * 120 + 120 * 84 + 84 * 10
    total = sum(p.numel() for p in m.parameters())
    assert rep.total_params == total and rep.total_nonzero == total - sum(r["pruned"] for r in rep.rows)
    assert math.isclose(rep.compression_ratio, total / rep.total_nonzero)
    assert rep.realised_sparsity_all < rep.realised_sparsity_maskable  # biases are dense
    assert rep.rounding == "floor" and rep.requested_sparsity == 0.5


def test_neuron_sparsity_values():
    mask = {"w": torch.tensor([[True, False, False, False], [True, True, True, True], [False] * 4])}
    ns = neuron_sparsity(mask)["w"]
    assert ns["values"] == [0.75, 0.0, 1.0] and ns["fully_pruned"] == 1 and ns["untouched"] == 1


def test_report_requested_per_tensor_for_random_erk():
    m = mlp((20, 30, 10), seed=0)
    res = prune(m, "random", 0.9, scheme="erk", seed=3)
    rep = res.report
    assert abs(rep.realised_sparsity_maskable - 0.9) <= 2 / rep.maskable_params
    assert all(abs(r["requested_sparsity"] - r["realised_sparsity"]) <= 1 / r["numel"] + 1e-12 for r in rep.rows)
    assert rep.scheme == "erk" and rep.sampling == "exact" and rep.seeds == {"mask": 3}
    # the pruned weights are zero in the model
    assert bool((m[0].weight[~res.mask["0.weight"]] == 0).all())


def test_prune_api_errors():
    m = mlp((6, 5, 3))
    with pytest.raises(ProbPruneError, match="unknown pruning method"):
        prune(m, "optimal_brain_surgeon", 0.5)
    for bad in (1.0, -0.2, 1.5):
        with pytest.raises(ProbPruneError):
            prune(m, "magnitude", bad)
    with pytest.raises(ProbPruneError, match="scheme"):
        prune(m, "random", 0.5, scheme="powerlaw")
    with pytest.raises(ProbPruneError, match="batch"):
        prune(m, "snip", 0.5)
    with pytest.raises(ProbPruneError):
        prune(m, "magnitude", 0.5, sampling="bernoulli")
    with pytest.raises(ProbPruneError):
        prune(m, "magnitude", 0.5, prev_mask={"0.weight": torch.ones(3, 3, dtype=torch.bool)})
    with pytest.raises(ProbPruneError):
        prune(m, "magnitude", 0.5, scope="row")


def test_exclude_first_last_and_snip_ratio():
    torch.manual_seed(0)
    m = mlp((6, 12, 8, 3), seed=0)
    res = prune(m, "magnitude", 0.5, exclude_first=True, exclude_last=True, apply=False)
    assert list(res.mask) == ["2.weight"]
    X, y = torch.randn(40, 6), torch.randint(0, 3, (40,))
    r = prune(m, "random", 0.75, scheme="snip_ratio", X=X, y=y, seed=0, apply=False)
    kept = sum(int(v.sum()) for v in r.mask.values())
    assert abs(kept - (72 + 96 + 24) * 0.25) <= 3
    s = prune(m, "snip", 0.75, X=X, y=y, apply=False)
    assert sum(int(v.sum()) for v in s.mask.values()) == 192 - math.floor(0.75 * 192)
