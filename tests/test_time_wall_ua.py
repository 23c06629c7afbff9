"""UA (issue 19 item 5, times): ``certify_chains(..., "auto", time_limit=)`` is a hard wall counted from
``clock_start`` (before the lowering): the stages are stopped *before* a step predicted to end past the deadline
(compose.StepClock between the steps of the propagator and S-procedure loops, the measured query rate of the mixed
bound), a stopped stage contributes nothing (the best completed bound is returned), and the skipped report names
what did not run."""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch
import torch.nn as nn

from probprune.certificates.compose import StepClock, TimeLimitReached, bound_cache, deadline
from probprune.certificates.lower import lower_graph_pair
from probprune.certificates.tight import certify_chains
from probprune.measure.attack import pgd_sup_error
from probprune.net.trace import from_torch


def _cnn(seed=0, hw=14, c=4, keep=0.6):
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Conv2d(1, c, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(c, 2 * c, 3, padding=1),
                      nn.ReLU(), nn.Flatten(), nn.Linear(2 * c * (hw // 2) ** 2, 10)).double().eval()
    g = from_torch(m, (1, hw, hw))
    rng = np.random.default_rng(seed)
    masks = {k: rng.random(p.shape) < keep for k, p in m.named_parameters() if k.endswith("weight")}
    return g, g.with_masks(masks)


def test_auto_time_limit_is_a_hard_wall_on_a_cnn():
    g, gh = _cnn()  # lowering + composed bound ~0.3 s, auto without a limit ~6 s (one BLAS thread, load 2.7)
    with bound_cache(False):  # no pair bound from an earlier test: the stages do their full work
        t = time.perf_counter()
        F, Fh = lower_graph_pair(g, gh)
        c = certify_chains(F, Fh, "auto", 1.0, time_limit=1.5, clock_start=t)
        wall = time.perf_counter() - t
    assert wall <= 1.5 + 0.3, wall
    skipped = next(s for s in c.stages if s.get("stage") == "skipped components")
    # seconds-long searches on this CNN do not all fit in 1.5 s (the full mixed bound may, since on max-pool chains
    # it runs before the scalar one, THEORY §12.9): what the limit stopped is named and contributes nothing
    timed = {k for k, v in skipped.items() if k != "stage" and "time limit" in v}
    assert "pairs" in timed, skipped
    for k in timed:
        assert k not in c.components
    assert "composed_bwd" in c.components and c.eps == min(
        v for k, v in c.components.items() if k not in ("propagate_coordinate", "propagate_affine"))
    lb = pgd_sup_error(g.forward, gh.forward, (1, 14, 14), 16, 40, 0).value
    assert c.eps >= lb > 0


def test_step_clock_stops_before_a_step_predicted_past_the_deadline():
    steps: dict = {}
    with deadline(time.perf_counter() + 0.4, steps):
        clock = StepClock("k")
        clock.check(work=2.0)  # no step measured yet: predicted 0
        time.sleep(0.1)  # a 0.1 s step of work 2; 0.3 s left: the next one, work 2 (predicted 0.125 s), starts
        clock.check(work=2.0)
        time.sleep(0.1)  # 0.2 s left: the next one, work 4 (predicted 0.25 s), is not started
        with pytest.raises(TimeLimitReached):
            clock.check(work=4.0)
    assert 0.045 <= steps["k"] <= 0.2  # seconds per unit of work, kept for the next loop of this kind
    with deadline(time.perf_counter() + 0.1, steps):
        with pytest.raises(TimeLimitReached):  # a new loop: its first step predicted from the kind's history
            StepClock("k").check(work=4.0)
    clock = StepClock()  # no deadline: never raises
    clock.check()
    time.sleep(0.01)
    clock.check()


def test_api_certify_counts_the_limit_from_its_entry_with_a_10_s_default(tmp_path, monkeypatch):
    import probprune
    import probprune.certificates.tight as T

    torch.manual_seed(0)
    p = tmp_path / "m.pt"
    # 256 lifted coordinates: no SCS solve (seconds) in auto
    torch.save(nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)), p)
    seen = {}
    real = T.certify_chains

    def spy(*a, **k):
        seen.update(k, t_call=time.perf_counter())
        return real(*a, **k)

    monkeypatch.setattr(T, "certify_chains", spy)
    t = time.perf_counter()
    rep = probprune.certify(str(p), fraction=0.4)
    assert t <= seen["clock_start"] < seen["t_call"] and seen["time_limit"] == 10.0
    tl = rep.tight["time_limit"]
    assert tl["seconds"] == 10.0 and tl["default"] is True
    rep = probprune.certify(str(p), fraction=0.4, time_limit=3.0)
    assert seen["time_limit"] == 3.0 and rep.tight["time_limit"]["default"] is False


def test_auto_does_not_start_an_scs_solve_predicted_past_the_limit():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(64, 24), nn.ReLU(), nn.Linear(24, 10)).double().eval()  # 113 lifted coordinates
    g = from_torch(m, (64,))
    rng = np.random.default_rng(0)
    gh = g.with_masks({k: rng.random(p.shape) < 0.6 for k, p in m.named_parameters() if k.endswith("weight")})
    F, Fh = lower_graph_pair(g, gh)
    t = time.perf_counter()
    c = certify_chains(F, Fh, "auto", 1.0, time_limit=0.5)  # SCS took 5-6 s here (predicted >= 800 eigh256)
    assert time.perf_counter() - t <= 0.5 + 0.3
    skipped = next(s for s in c.stages if s.get("stage") == "skipped components")
    assert skipped["sdp"].startswith("not started: the SCS solve is predicted") and "sdp" not in c.components
    lb = pgd_sup_error(g.forward, gh.forward, (64,), 16, 40, 0).value
    assert c.eps >= lb > 0
