"""THEORY §12.11, Statement 12.51 (issue 19, helper TG): the mixed bound without bound propagation.

(1) term by term >= the propagated variant and >= a many-restart PGD on hypothesis-generated max-pool CNNs;
(2) auto reports it as mixed_none only where the propagated mixed_none did not finish (named in the stage report);
where the propagated one finishes, auto's result is unchanged."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import probprune.certificates.compose as C
import probprune.certificates.tight as T
from probprune.certificates.lower import lower_graph_pair
from probprune.certificates.mixed import lemma_a_mixed
from probprune.certificates.propagate import Region
from probprune.measure.attack import pgd_sup_error
from probprune.net.trace import from_torch

from maxpool_cnns import maxpool_cnn


def _cnn(seed, hw, ch, two, bias):
    return maxpool_cnn(seed, hw, ch, two, bias, hidden=4)


def _pair(seed, hw=6, ch=2, two=True, bias=True, keep=0.6):
    m = _cnn(seed, hw, ch, two, bias)
    shape = (1, hw, hw)
    g = from_torch(m, shape)
    rng = np.random.default_rng(seed)
    gh = g.with_masks({k: rng.random(w.shape) < keep for k, w in g.weights.items()})
    return g, gh, shape


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), hw=st.integers(4, 7), ch=st.integers(1, 3), two=st.booleans(),
       bias=st.booleans(), keep=st.floats(0.3, 0.9))
def test_mixed_without_propagation_above_propagated_and_attack(seed, hw, ch, two, bias, keep):
    g, gh, shape = _pair(seed, hw, ch, two, bias, keep)
    F, Fh = lower_graph_pair(g, gh)
    reg = Region(np.zeros((1, F.n_in)), 1.0)
    att = pgd_sup_error(g.forward, gh.forward, shape, 128, 60, seed).value
    with C.bound_cache(False):
        for mode in ("none", "scalar"):
            a = lemma_a_mixed(F, Fh, reg, pair_bounds=mode)
            b = lemma_a_mixed(F, Fh, reg, None, pair_bounds=mode, propagation=False)
            assert all(tb >= ta * (1 - 1e-12) for ta, tb in zip(a.terms, b.terms)), (mode, a.terms, b.terms)
            assert b.eps >= att * (1 - 1e-9), (mode, b.eps, att)


def test_auto_uses_it_only_when_the_propagated_one_does_not_finish(monkeypatch):
    g, gh, shape = _pair(3)
    F, Fh = lower_graph_pair(g, gh)
    with C.bound_cache(False):
        full = T.certify_chains(F, Fh, "auto", 1.0, time_limit=None)
    assert "mixed_none" in full.components
    assert not any("without propagation" in s.get("stage", "") for s in full.stages)

    class NoProp:  # the propagator stage "runs out of time"
        def __init__(self, *a, **k):
            raise C.TimeLimitReached()

    monkeypatch.setattr(T, "CoupledPropagator", NoProp)
    with C.bound_cache(False):
        c = T.certify_chains(F, Fh, "auto", 1.0, time_limit=None)
    np_val = lemma_a_mixed(F, Fh, Region(np.zeros((1, F.n_in)), 1.0), None, pair_bounds="none",
                           propagation=False).eps
    assert c.components["mixed_none"] == pytest.approx(np_val, rel=1e-12)
    assert c.components["mixed_none"] >= full.components["mixed_none"] * (1 - 1e-12)
    note = [s for s in c.stages if "without propagation" in s.get("stage", "")]
    assert note and "propagator" in note[0]["propagated_variant"]
    skipped = next(s for s in c.stages if s.get("stage") == "skipped components")
    assert "mixed_none" not in skipped and "mixed_none_np" not in skipped
    att = pgd_sup_error(g.forward, gh.forward, shape, 64, 60, 3).value
    assert c.eps >= att * (1 - 1e-9)



def test_auto_has_it_when_the_limit_ends_during_the_propagator(monkeypatch):
    """The limit is reached while the propagator is built (a slow propagator): mixed_none is the value of Statement
    12.51 and the propagated variant is named in the stage note."""
    g, gh, shape = _pair(5)
    F, Fh = lower_graph_pair(g, gh)
    real = T.CoupledPropagator

    def slow(*a, **k):
        import time as _t

        _t.sleep(1.2)
        C.check_deadline()
        return real(*a, **k)

    monkeypatch.setattr(T, "CoupledPropagator", slow)
    t0 = __import__("time").perf_counter()
    c = T.certify_chains(F, Fh, "auto", 1.0, time_limit=1.0, clock_start=t0)
    assert {"composed_fwd", "composed_bwd", "mixed_none"} <= set(c.components)
    note = next(s for s in c.stages if "without propagation" in s.get("stage", ""))
    assert "time limit" in note["propagated_variant"]
    att = pgd_sup_error(g.forward, gh.forward, shape, 64, 60, 5).value
    assert min(c.components.values()) >= att * (1 - 1e-9)
