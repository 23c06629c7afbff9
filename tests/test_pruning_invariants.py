"""Property tests for scores -> densities -> masks (issue 3 acceptance: ordering, counts, ERK, nesting)."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from probprune.core.errors import ProbPruneError
from probprune.pruning import (erk_densities, er_densities, global_topk_mask, layerwise_topk_mask, pruned_count,
                               random_mask, threshold_mask, uniform_densities)
from probprune.pruning.sampling import layerwise_count_mask

shapes_st = st.lists(
    st.one_of(st.tuples(st.integers(1, 12), st.integers(1, 12)),
              st.tuples(st.integers(1, 6), st.integers(1, 4), st.integers(1, 3), st.integers(1, 3))),
    min_size=1, max_size=5)


def _scores(shapes, seed, ties=False):
    g = torch.Generator().manual_seed(seed)
    out = {}
    for i, s in enumerate(shapes):
        t = torch.rand(s, generator=g)
        if ties:
            t = (t * 4).floor() / 4  # many exact ties
        out[f"l{i}.weight"] = t
    return out


@settings(max_examples=60, deadline=None)
@given(shapes_st, st.floats(0, 0.999), st.integers(0, 10_000), st.booleans())
def test_layerwise_topk_order_and_count(shapes, s, seed, ties):
    sc = _scores(shapes, seed, ties)
    mask = layerwise_topk_mask(sc, s)
    for k, m in mask.items():
        n = m.numel()
        assert int((~m).sum()) == math.floor(s * n + 1e-9 * max(1, s * n))
        kept, pruned = sc[k][m], sc[k][~m]
        if kept.numel() and pruned.numel():
            assert float(kept.min()) >= float(pruned.max())


@settings(max_examples=60, deadline=None)
@given(shapes_st, st.floats(0, 0.999), st.integers(0, 10_000), st.booleans())
def test_global_topk_order_and_count(shapes, s, seed, ties):
    sc = _scores(shapes, seed, ties)
    mask = global_topk_mask(sc, s)
    tot = sum(v.numel() for v in sc.values())
    assert sum(int((~m).sum()) for m in mask.values()) == pruned_count(s, tot)
    kept = torch.cat([sc[k][mask[k]] for k in sc])
    pruned = torch.cat([sc[k][~mask[k]] for k in sc])
    if kept.numel() and pruned.numel():
        assert float(kept.min()) >= float(pruned.max())


@settings(max_examples=40, deadline=None)
@given(shapes_st, st.floats(0, 0.6), st.floats(0, 0.99), st.integers(0, 1000))
def test_repruning_respects_earlier_mask(shapes, s1, extra, seed):
    sc = _scores(shapes, seed)
    s2 = s1 + (0.999 - s1) * extra
    first = layerwise_topk_mask(sc, s1)
    # new scores that would prefer the pruned entries: the earlier mask must still win
    flipped = {k: 1.0 - v for k, v in sc.items()}
    second = layerwise_topk_mask(flipped, s2, prev_mask=first)
    g2 = global_topk_mask(flipped, max(s2, 1 - sum(int(m.sum()) for m in first.values()) /
                                       sum(m.numel() for m in first.values())), prev_mask=first)
    for k in sc:
        assert bool((second[k] <= first[k]).all()) and bool((g2[k] <= first[k]).all())
        assert int((~second[k]).sum()) == max(pruned_count(s2, sc[k].numel()), int((~first[k]).sum()))


def test_repruning_below_previous_raises():
    sc = _scores([(10, 10)], 0)
    first = layerwise_topk_mask(sc, 0.5)
    with pytest.raises(ProbPruneError):
        layerwise_topk_mask(sc, 0.2, prev_mask=first)


def test_count_mask_and_threshold():
    sc = _scores([(10, 10), (5, 4)], 1)
    first = layerwise_topk_mask(sc, 0.3)
    nxt = layerwise_count_mask(sc, {"l0.weight": 7, "l1.weight": 2}, first)
    assert int((~nxt["l0.weight"]).sum()) == 37 and int((~nxt["l1.weight"]).sum()) == 6 + 2
    th = threshold_mask(sc, 0.5)
    assert all(bool(((v >= 0.5) == th[k]).all()) for k, v in sc.items())


@pytest.mark.parametrize("s,n,floor_,round_,ceil_", [(0.3, 10, 3, 3, 3), (0.25, 10, 2, 2, 3), (0.35, 10, 3, 4, 4),
                                                     (0.0, 7, 0, 0, 0), (0.999, 5, 4, 5, 5)])
def test_pruned_count_rounding(s, n, floor_, round_, ceil_):
    assert pruned_count(s, n, "floor") == floor_
    assert pruned_count(s, n, "round") == round_  # banker's: 2.5 -> 2
    assert pruned_count(s, n, "ceil") == ceil_
    with pytest.raises(ProbPruneError):
        pruned_count(s, n, "nearest")


@settings(max_examples=80, deadline=None)
@given(shapes_st, st.floats(0.0, 0.99), st.floats(0.0, 2.0))
def test_erk_budget_and_cap(shapes, S, gamma):
    sh = {f"l{i}.weight": s for i, s in enumerate(shapes)}
    a = erk_densities(sh, S, erk_power_scale=gamma)
    N = {k: int(np.prod(v)) for k, v in sh.items()}
    assert all(-1e-12 <= d <= 1 + 1e-12 for d in a.densities.values())
    zeros = sum((1 - a.densities[k]) * N[k] for k in sh)
    target = sum(math.floor(S * N[k]) for k in sh)
    assert abs(zeros - target) <= 1e-9 * max(1, target)
    assert a.target_zeros == target
    # after exact sampling the realised zeros differ from the target by at most the number of layers
    m = random_mask(sh, a.densities, seed=0, sampling="exact")
    realised = sum(int((~v).sum()) for v in m.values())
    assert abs(realised - target) <= len(sh)
    # ERK matches uniform's total non-zeros within rounding
    u = random_mask(sh, uniform_densities(sh, S).densities, seed=0)
    assert abs(sum(int(v.sum()) for v in u.values()) - sum(int(v.sum()) for v in m.values())) <= len(sh)


def test_erk_ties_made_dense_together_and_reference_values():
    # two identical small layers tie for the largest raw probability and must become dense together
    sh = {"a": (4, 4), "b": (4, 4), "c": (200, 100)}
    a = erk_densities(sh, 0.5)
    assert set(a.dense) == {"a", "b"} and a.densities["a"] == a.densities["b"] == 1.0
    # hand computation: zeros target = 8 + 8 + 10000; dense a,b contribute 0 zeros -> c holds all 10016 zeros
    assert math.isclose(a.densities["c"], 1 - 10016 / 20000)
    # without capping (no layer above 1) ERK densities are eps * raw, raw = sum(shape)/prod(shape)
    b = erk_densities({"x": (10, 20), "y": (30, 40)}, 0.8)
    raw = {"x": 30 / 200, "y": 70 / 1200}
    eps = (200 - 160 + 1200 - 960) / (raw["x"] * 200 + raw["y"] * 1200)
    assert math.isclose(eps, 2.8)
    assert all(math.isclose(b.densities[k], eps * raw[k]) for k in raw) and not b.dense


def test_er_ignores_kernel_and_custom_layers():
    sh = {"conv": (8, 4, 3, 3), "fc": (10, 32)}
    er = er_densities(sh, 0.7)
    assert math.isclose(er.raw["conv"], (8 + 4) / 32)
    erk = erk_densities(sh, 0.7)
    assert math.isclose(erk.raw["conv"], (8 + 4 + 3 + 3) / (8 * 4 * 9))
    # custom layer outside the budget (RigL): the other layers alone meet floor(S N) over themselves
    c = erk_densities({**sh, "out": (3, 10)}, 0.7, custom={"out": 1.0})
    assert c.densities["out"] == 1.0
    z = sum((1 - c.densities[k]) * np.prod(sh[k]) for k in sh)
    assert math.isclose(z, sum(math.floor(0.7 * np.prod(sh[k])) for k in sh))
    # counted inside the budget: the dense custom layer's weights are paid for by the others
    ci = erk_densities({**sh, "out": (3, 10)}, 0.7, custom={"out": 1.0}, custom_in_budget=True)
    zi = sum((1 - ci.densities[k]) * np.prod(sh[k]) for k in sh)
    assert math.isclose(zi, math.floor(0.7 * 288) + math.floor(0.7 * 320) + math.floor(0.7 * 30))
    with pytest.raises(ProbPruneError):
        erk_densities(sh, 0.99, custom={"fc": 1.0, "conv": 1.0}, custom_in_budget=True)
    with pytest.raises(ProbPruneError):
        erk_densities(sh, 0.5, custom={"nope": 1.0})


@pytest.mark.parametrize("bad", [1.0, -0.1, float("nan"), 2])
def test_sparsity_out_of_range(bad):
    with pytest.raises(ProbPruneError):
        uniform_densities({"a": (3, 3)}, bad)
    with pytest.raises(ProbPruneError):
        erk_densities({"a": (3, 3)}, bad)


def test_random_masks_bernoulli_vs_exact():
    sh = {"a": (100, 100), "b": (50, 20)}
    e = random_mask(sh, {"a": 0.3, "b": 0.8}, seed=1, sampling="exact")
    assert int(e["a"].sum()) == 10000 - math.floor(0.7 * 10000) and int(e["b"].sum()) == 1000 - 200
    b = random_mask(sh, {"a": 0.3, "b": 0.8}, seed=1, sampling="bernoulli")
    sd = math.sqrt(0.3 * 0.7 / 10000)
    assert abs(float(b["a"].float().mean()) - 0.3) < 5 * sd
    assert torch.equal(random_mask(sh, 0.5, seed=3)["a"], random_mask(sh, 0.5, seed=3)["a"])
    assert not torch.equal(random_mask(sh, 0.5, seed=3)["a"], random_mask(sh, 0.5, seed=4)["a"])
    with pytest.raises(ProbPruneError):
        random_mask(sh, 0.5, seed=0, sampling="poisson")


def test_random_scores_comparable_across_layers():
    """Global random pruning with i.i.d. scores prunes every layer at about the global rate (Torch-Pruning #498)."""
    from probprune.pruning import random_scores

    sh = {"big": (200, 200), "small": (20, 20)}
    m = global_topk_mask(random_scores(sh, 0), 0.8)
    for k in sh:
        assert abs(float((~m[k]).float().mean()) - 0.8) < 0.05
