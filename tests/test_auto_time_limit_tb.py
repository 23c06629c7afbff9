"""TB (issue 19, time budget of ``certify --bound auto``): auto runs the cheap mixed bounds before the full searches
and the coupled propagation, every stage but the composed bound checks the deadline (counted from ``clock_start``,
which may precede the lowering), and the reordering changes no value: with no limit every component equals the
explicit method's bound bit for bit."""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch
import torch.nn as nn

from probprune.certificates import tight as T
from probprune.certificates.compose import TimeLimitReached, bound_cache, deadline
from probprune.certificates.lower import lower_graph_pair
from probprune.certificates.mixed import lemma_a_mixed
from probprune.certificates.propagate import CoupledPropagator, Region, region_error_bound
from probprune.certificates.tight import certify_chains
from probprune.measure.attack import pgd_sup_error
from probprune.net.trace import from_torch


def _pair(seed=0, hw=8, pool="max", keep=0.6, c=4):
    torch.manual_seed(seed)
    P2 = nn.MaxPool2d(2) if pool == "max" else nn.AvgPool2d(2)
    m = nn.Sequential(nn.Conv2d(1, c, 3, padding=1), nn.ReLU(), P2, nn.Conv2d(c, 6, 3, padding=1), nn.ReLU(),
                      nn.Flatten(), nn.Linear(6 * (hw // 2) ** 2, 5)).double().eval()
    g = from_torch(m, (1, hw, hw))
    rng = np.random.default_rng(seed)
    masks = {k: rng.random(p.shape) < keep for k, p in m.named_parameters() if k.endswith("weight")}
    return g, g.with_masks(masks)


@pytest.mark.parametrize("pool", ["max", "avg"])
def test_auto_without_limit_equals_the_explicit_methods_bit_for_bit(pool):
    g, gh = _pair(1, 8, pool)
    F, Fh = lower_graph_pair(g, gh)
    reg = Region(np.zeros((1, F.n_in)), 1.0)
    with bound_cache(False):
        c = certify_chains(F, Fh, "auto", 1.0, time_limit=None)
        assert c.components["mixed"] == certify_chains(F, Fh, "mixed", 1.0).eps
        assert c.components["propagate"] == certify_chains(F, Fh, "propagate", 1.0).eps
        assert c.components["composed_bwd"] == certify_chains(F, Fh, "composed", 1.0).components["composed_bwd"]
        full = CoupledPropagator(F, Fh, reg)
        # on max-pool chains the scalar variant runs only where the full mixed bound was stopped (THEORY §12.9)
        modes = ("none",) if pool == "max" else ("scalar", "none")
        for mode in modes:
            assert c.components["mixed_" + mode] == lemma_a_mixed(F, Fh, reg, full, pair_bounds=mode).eps
    if pool == "max":
        skipped = next(st for st in c.stages if st.get("stage") == "skipped components")
        assert "mixed_scalar" not in c.components and "full mixed bound finished" in skipped["mixed_scalar"]
    else:
        assert c.components["mixed_scalar"] <= c.components["mixed_none"] * (1 + 1e-12)
    assert c.eps == min(v for k, v in c.components.items() if k not in ("propagate_coordinate", "propagate_affine"))
    assert c.components["mixed"] <= c.components["mixed_none"] * (1 + 1e-12)
    lb = pgd_sup_error(g.forward, gh.forward, (1, 8, 8), 32, 40, 0).value
    assert c.components["mixed_none"] >= lb and c.eps >= lb


def test_max_pool_chains_run_the_scalar_mixed_bound_only_when_the_full_one_stops(full_mixed_fails):
    """On max-pool chains "auto" runs the full mixed bound right after the single-norm one (its segments through the
    pools are what the scalar variant lacks, THEORY §12.9); where the full one fails, the scalar one still runs."""
    g, gh = _pair(1, 8, "max")
    F, Fh = lower_graph_pair(g, gh)
    with bound_cache(False):
        c = certify_chains(F, Fh, "auto", 1.0, time_limit=None)
    assert "mixed" not in c.components and "mixed_scalar" in c.components
    assert c.components["mixed_scalar"] <= c.components["mixed_none"] * (1 + 1e-12)


def test_upgraded_hat_propagator_equals_the_full_one_bit_for_bit():
    g, gh = _pair(2, 8, "max")
    F, Fh = lower_graph_pair(g, gh)
    reg = Region(np.zeros((1, F.n_in)), 1.0)
    full = CoupledPropagator(F, Fh, reg)
    up = CoupledPropagator(F, Fh, reg, modes="hat")
    lemma_a_mixed(F, Fh, reg, up, pair_bounds="none")  # memoised queries on the way
    up.upgrade()
    assert up.modes == "all" and up.upgrade() is up
    a, b = region_error_bound(F, Fh, reg, full), region_error_bound(F, Fh, reg, up)
    assert np.array_equal(a.eps, b.eps) and np.array_equal(a.coord_upper, b.coord_upper)
    for x, y in zip(full.pre_bounds, up.pre_bounds):
        assert (x is None) == (y is None)
        if x is not None:
            assert all(np.array_equal(u, v) for u, v in zip(x, y))
    assert full.bounds == up.bounds


def test_memoised_mixed_queries_give_the_same_bound():
    g, gh = _pair(3, 8, "avg")
    F, Fh = lower_graph_pair(g, gh)
    reg = Region(np.zeros((1, F.n_in)), 1.0)
    p = CoupledPropagator(F, Fh, reg, modes="hat")
    a = lemma_a_mixed(F, Fh, reg, p, pair_bounds="none")
    assert len(p._memo) > 0
    b = lemma_a_mixed(F, Fh, reg, p, pair_bounds="none")
    c = lemma_a_mixed(F, Fh, reg, CoupledPropagator(F, Fh, reg, modes="hat"), pair_bounds="none")
    assert a == b == c


def test_propagator_is_interruptible():
    g, gh = _pair(0, 16, "max", c=8)
    F, Fh = lower_graph_pair(g, gh)
    with pytest.raises(TimeLimitReached):
        with deadline(time.perf_counter() - 1.0):
            CoupledPropagator(F, Fh, Region(np.zeros((1, F.n_in)), 1.0))


def test_tiny_limit_names_the_stages_skipped_for_time_and_returns_the_composed_bound():
    """A mid-size CNN (16x16, max pooling) with a limit already spent (clock started 100 s ago): the composed bound
    (the guaranteed component) and nothing else; every other stage named in the skipped report."""
    g, gh = _pair(0, 16, "max", c=8)
    t = time.perf_counter()
    F, Fh = lower_graph_pair(g, gh)
    c = certify_chains(F, Fh, "auto", 1.0, time_limit=0.5, clock_start=t - 100.0)
    assert time.perf_counter() - t < 120.0  # generous: only the composed bound runs
    assert set(c.components) == {"composed_fwd", "composed_bwd"} and c.method.startswith("composed")
    sk = next(s for s in c.stages if s.get("stage") == "skipped components")
    for name in ("propagate", "pairs", "mixed_none", "mixed_scalar", "mixed"):
        assert "time limit" in sk[name], sk
    assert c.components["composed_bwd"] == certify_chains(F, Fh, "composed", 1.0).components["composed_bwd"]


def test_pairs_stage_not_started_and_mixed_leaves_out_slow_pairs(monkeypatch):
    """A pair bound predicted past the limit: the "pairs" stage is not started; the mixed bounds run and leave such
    pairs out one by one (single norms there), naming how many; their value is then the single-norm one."""
    from probprune.certificates import compose as C

    g, gh = _pair(0, 8, "max")
    F, Fh = lower_graph_pair(g, gh)
    monkeypatch.setattr(T, "predicted_pair_seconds", lambda F: 1e9)
    monkeypatch.setattr(C, "predicted_pair_seconds", lambda d, rows=None, cols=None: 1e9)
    monkeypatch.setattr(C, "DIAG_MAX_DIM", 0)  # every pair goes through the scalar (predicted) path
    c = certify_chains(F, Fh, "auto", 1.0, time_limit=60.0)
    sk = next(s for s in c.stages if s.get("stage") == "skipped components")
    assert sk["pairs"].startswith("not started: one pair bound is predicted"), sk
    left = next(s for s in c.stages if s.get("stage") == "pair bounds left out for time")
    assert "pair bound(s) left out" in left["mixed"]
    assert {"mixed_none", "mixed", "propagate"} <= set(c.components)
    assert c.components["mixed"] <= c.components["mixed_none"] * (1 + 1e-9)
    assert T.predicted_pair_seconds.__name__ == "<lambda>"


def test_pool_pass_keeps_the_terms_finished_before_the_deadline(monkeypatch):
    """The mixed bound's second pass (segments through max-pool blocks) stopped after its first term: that term's
    improvement is kept, the others keep their first-pass values (each term bounds its own sup, Statement 12.8)."""
    from probprune.certificates import compose as C
    from probprune.certificates.mixed import lemma_a_mixed
    from probprune.certificates.propagate import Region

    g, gh = _pair(0, 8, "max")
    F, Fh = lower_graph_pair(g, gh)
    reg = Region(np.zeros((1, F.n_in)), 1.0)
    full = lemma_a_mixed(F, Fh, reg)
    first = lemma_a_mixed(F, Fh, reg, pool_segments=False)
    orig = C._pool_segment_fn
    calls = {"n": 0}

    def stopping(*a, **k):
        fn = orig(*a, **k)

        def wrapped(keys):
            calls["n"] += 1
            if calls["n"] > 1:
                raise C.TimeLimitReached()
            return fn(keys)
        return wrapped
    monkeypatch.setattr(C, "_pool_segment_fn", stopping)
    part = lemma_a_mixed(F, Fh, reg)
    assert full.eps <= part.eps * (1 + 1e-12) <= first.eps * (1 + 1e-9)
    assert all(p >= f * (1 - 1e-12) for p, f in zip(part.terms, full.terms))


def test_pair_cost_prediction_is_zero_on_small_chains():
    g, gh = _pair(0, 8, "max")
    F, _ = lower_graph_pair(g, gh)
    assert T.predicted_pair_seconds(F) == 0.0


def test_a_pair_bound_predicted_to_end_past_the_deadline_is_not_started():
    import time as _time

    from probprune.certificates import compose as C

    with C.deadline(_time.perf_counter() + 5.0):
        C.check_deadline()  # time left, nothing predicted
        with pytest.raises(C.TimeLimitReached):
            C.check_deadline(predicted=60.0)
    assert C.predicted_pair_seconds(C.PAIR_COST_MIN_DIM) == 0.0
    assert C.predicted_pair_seconds(2 * C.PAIR_COST_MIN_DIM) > 0.0
