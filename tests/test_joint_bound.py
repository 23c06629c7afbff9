"""The joint S-procedure bound on the coupled chain (THEORY §12.12, Statement 12.60): exact on linear chains,
>= a strong attack on ReLU nets with biases and on hypothesis-generated max-pool CNNs, part of auto on MLPs (and
skipped with a reason on max-pool chains; started by predicted time under a limit), `certify --bound joint` from the
command line."""
import json
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _cli import run_cli
from maxpool_cnns import maxpool_cnn
from probprune.certificates.joint import joint_bound
from probprune.certificates.lower import lower_graph_pair
from probprune.certificates.tight import certify_chains, pool_pair_for, unscale
from probprune.core.errors import ProbPruneError
from probprune.measure.attack import pgd_sup_error
from probprune.net.trace import from_torch


def _pair(model, shape, seed, keep=0.6):
    g = from_torch(model.double().eval(), shape)
    rng = np.random.default_rng(seed)
    gh = g.with_masks({k: rng.random(w.shape) < keep for k, w in g.weights.items()})
    return g, gh, *lower_graph_pair(g, gh)


def _mlp(seed, widths, act=nn.ReLU, bias=True):
    torch.manual_seed(seed)
    layers = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b, bias=bias), act()]
    return nn.Sequential(*layers[:-1])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_on_linear_chains_with_biases(seed):
    """Identity activations: F - F_hat is affine, its sup over the ball is a trust-region problem; the joint bound
    (no slope is relaxed but the constant) equals it up to the floating-point margins."""
    g, gh, F, Fh = _pair(_mlp(seed, (6, 7, 5, 3), nn.Identity), (6,), seed)
    A, c, Ah, ch = np.eye(6), np.zeros(6), np.eye(6), np.zeros(6)
    for s, sh in zip(F.stages, Fh.stages):
        A, c, Ah, ch = s.M @ A, s.M @ c + s.b, sh.M @ Ah, sh.M @ ch + sh.b
    D, d = A - Ah, c - ch
    # exact: max over the sphere/ball by a dense sample of the secular equation's dual (any mu is an upper bound;
    # the maximum over a fine grid of directions is a lower bound)
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(200_000, 6))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    lower = float(np.linalg.norm(X @ D.T + d, axis=1).max())
    jb = joint_bound(F, Fh, 1.0, diag_steps=20).eps
    assert jb >= lower
    assert jb <= lower * 1.02  # the grid's lower bound is within 2 % of the exact sup in 6 dimensions


@pytest.mark.parametrize("seed", [3, 4, 5, 6])
def test_at_least_a_strong_attack_relu_with_biases(seed):
    g, gh, F, Fh = _pair(_mlp(seed, (5, 9, 7, 3)), (5,), seed)
    jb = unscale(joint_bound(F, Fh, 1.0, diag_steps=30).eps, F.scale_exp)
    a = pgd_sup_error(g.forward, gh.forward, (5,), restarts=64, steps=100, seed=seed).value
    assert jb >= a


def test_bias_free_and_nothing_pruned():
    g, gh, F, Fh = _pair(_mlp(7, (4, 6, 3), bias=False), (4,), 7, keep=1.0)
    assert joint_bound(F, Fh, 1.0).eps == 0.0
    g, gh, F, Fh = _pair(_mlp(7, (4, 6, 3), bias=False), (4,), 7, keep=0.5)
    a = pgd_sup_error(g.forward, gh.forward, (4,), restarts=64, steps=100, seed=7, homogeneous=True).value
    assert joint_bound(F, Fh, 1.0, diag_steps=10).eps >= a


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), hw=st.integers(4, 6), ch=st.integers(1, 2), two=st.booleans(),
       bias=st.booleans())
def test_maxpool_cnns_at_least_the_attack(seed, hw, ch, two, bias):
    """`--bound joint` accepts max-pool chains (trees of ReLU(a - b) stages): every value >= a 64-restart PGD."""
    m = maxpool_cnn(seed, hw, ch, two, bias)
    g, gh, F, Fh = _pair(m, (1, hw, hw), seed)
    c = certify_chains(F, Fh, "joint", 1.0)
    a = pgd_sup_error(g.forward, gh.forward, (1, hw, hw), restarts=64, steps=80, seed=seed).value
    assert c.eps >= a
    # Statement 12.64: the same pair lowered with ReLU after max pooling (what `certify --bound joint` uses)
    cr = certify_chains(F, Fh, "joint", 1.0, pool_pair=pool_pair_for(g, gh, "joint"))
    assert any("Statement 12.64" in s.get("stage", "") for s in cr.stages)
    assert cr.eps >= a


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_relu_after_max_pooling_lowers_the_same_functions(seed):
    """Statement 12.64 in the lowering: with ``commute_relu_pool`` every ReLU whose only consumer is a max pooling
    is applied after it; the chains compute F and F_hat as before (float64 rounding), a ReLU with another consumer
    stays where it is, and the rewritten chain has a quarter of the pooled layer's ReLU coordinates."""
    from probprune.certificates.lower import relu_pool_pairs

    class Branchy(nn.Module):  # h = ReLU(conv(x)) feeds a max pooling and a convolution: it stays where it is
        def __init__(self):
            super().__init__()
            self.c1, self.c2 = nn.Conv2d(1, 2, 3, padding=1), nn.Conv2d(2, 2, 3, padding=1)
            self.fc = nn.Linear(2 * 4 * 4 * 2, 3)

        def forward(self, x):
            h = torch.relu(self.c1(x))
            p = nn.functional.max_pool2d(h, 2)
            r = nn.functional.max_pool2d(torch.relu(self.c2(h)), 2)
            return self.fc(torch.cat([torch.flatten(p, 1), torch.flatten(r, 1)], 1))

    for m, shape in ((maxpool_cnn(seed, 6, 2, True, True), (1, 6, 6)), (Branchy().double().eval(), (1, 8, 8))):
        torch.manual_seed(seed)
        g, gh, F, Fh = _pair(m, shape, seed)
        F2, Fh2 = lower_graph_pair(g, gh, commute_relu_pool=True)
        x = torch.randn(64, *shape, dtype=torch.float64)
        with torch.no_grad():
            y, yh = g.forward(x).numpy(), gh.forward(x).numpy()
        for C, ref in ((F, y), (F2, y), (Fh, yh), (Fh2, yh)):
            assert np.allclose(C.forward(x.numpy()), ref, rtol=1e-10, atol=1e-12)
        moved = relu_pool_pairs(g)
        relus = lambda C: sum(int(s.relu.sum()) for s in C.stages)  # noqa: E731
        if isinstance(m, nn.Sequential):
            assert len(moved) == 2 and relus(F2) < relus(F)
        else:
            assert len(moved) == 1  # h feeds a pooling and a slice: it stays; relu(c2(h)) moves


def test_auto_uses_it_on_mlps_and_names_why_not_on_maxpool():
    g, gh, F, Fh = _pair(_mlp(8, (16, 48, 48, 5)), (16,), 8)  # lifted 209 > 160: no SCS SDP in auto (seconds)
    c = certify_chains(F, Fh, "auto", 1.0)
    assert "joint" in c.components
    assert c.eps == min(c.components.values())
    assert any("§12.12" in s.get("stage", "") for s in c.stages)
    m = maxpool_cnn(3, 4, 1, False, True)
    g, gh, F, Fh = _pair(m, (1, 4, 4), 3)
    c = certify_chains(F, Fh, "auto", 1.0, time_limit=2.0)  # the reason is recorded before any time check
    skipped = next(s for s in c.stages if s.get("stage") == "skipped components")
    assert "max-pool" in skipped["joint"]


def test_refusals():
    g, gh, F, Fh = _pair(_mlp(9, (4, 5, 2)), (4,), 9)
    with pytest.raises(ProbPruneError, match="origin"):
        certify_chains(F, Fh, "joint", 1.0, center=np.ones(4))
    with pytest.raises(ProbPruneError, match="max_dim"):
        joint_bound(F, Fh, 1.0, max_dim=5)


def test_cli_bound_joint(capsys, tmp_path):
    torch.manual_seed(0)
    p = tmp_path / "m.pt"
    torch.save(nn.Sequential(nn.Linear(12, 10), nn.ReLU(), nn.Linear(10, 4)), p)
    code, out, _ = run_cli(capsys, ["certify", "--model", str(p), "--fraction", "0.4", "--bound", "joint", "--json"])
    assert code == 0
    d = json.loads(out)
    assert d["certificate"]["bound"] == "tight:joint"
    assert d["tight"]["method"] == "joint"
    assert d["certificate"]["eps"] == pytest.approx(d["tight"]["eps"])


def test_deadline_keeps_a_valid_value():
    """Under a deadline the diagonal steps stop early (keeping the best multipliers) and the value stays an upper
    bound; a deadline already passed stops the bound (TimeLimitReached), never a partial value."""
    import time

    from probprune.certificates.compose import TimeLimitReached, deadline

    g, gh, F, Fh = _pair(_mlp(11, (8, 12, 12, 3)), (8,), 11)
    full = joint_bound(F, Fh, 1.0, diag_steps=50).eps
    with deadline(time.perf_counter() + 0.3):
        quick = joint_bound(F, Fh, 1.0, diag_steps=10_000).eps
    a = pgd_sup_error(g.forward, gh.forward, (8,), restarts=64, steps=100, seed=11).value
    assert quick >= a and full >= a
    with pytest.raises(TimeLimitReached):
        with deadline(time.perf_counter() - 1.0):
            joint_bound(F, Fh, 1.0, diag_steps=5)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), exps=st.lists(st.integers(-120, 120), min_size=3, max_size=3),
       keep=st.floats(0.2, 0.9))
def test_extreme_scales_linear_chains_exact_or_refused(seed, exps, keep):
    """Linear chains with layer scales 10^k (|k| <= 120): the joint bound is >= the exact sup ||M - M_hat|| (computed
    at unit scale and rescaled exactly) or refuses; never a value below it (issue 19, U1/U2)."""
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Linear(4, 5, bias=False), nn.Linear(5, 4, bias=False), nn.Linear(4, 3, bias=False)).double()
    rng = np.random.default_rng(seed)
    masks = [rng.random(l.weight.shape) < keep for l in m]
    with torch.no_grad():
        W = [l.weight.detach().numpy().copy() for l in m]
        for l, e in zip(m, exps):
            l.weight.mul_(10.0 ** e)
    g = from_torch(m.eval(), (4,))
    gh = g.with_masks({k: mk for k, mk in zip(sorted(g.weights), masks)})
    try:
        F, Fh = lower_graph_pair(g, gh)
        jb = unscale(joint_bound(F, Fh, 1.0, diag_steps=5).eps, F.scale_exp)
    except ProbPruneError:
        return
    P = W[2] @ W[1] @ W[0]
    Ph = (W[2] * masks[2]) @ (W[1] * masks[1]) @ (W[0] * masks[0])
    exact_unit = float(np.linalg.norm(P - Ph, 2))
    if exact_unit == 0.0:
        assert jb >= 0.0
        return
    # in log10, since 10^sum(exps) may leave the float64 range (a bound of inf is valid, 0 is not)
    assert jb > 0.0
    assert math.log10(jb) >= math.log10(exact_unit) + sum(exps) - 1e-7


@pytest.mark.parametrize("seed", [21, 22, 23])
def test_residual_bn_carried_coordinates_fixed(seed):
    """A residual MLP with BatchNorm: the lowering carries h past the block as identity coordinates, which the joint
    bound keeps at slope 1 (Statement 12.60 (b) with a fixed set); the value is >= a 64-restart PGD and >= 4,000
    sampled inputs, by method "joint" and inside auto."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from proofs_check.checks_budget_graph import residual_bn_net

    m = residual_bn_net(seed).double().eval()
    g, gh, F, Fh = _pair(m, (5,), seed)
    assert any(not np.all(s.relu) for s in F.stages[:-1])  # carried (identity) coordinates exist
    jb = certify_chains(F, Fh, "joint", 1.0).eps
    a = pgd_sup_error(g.forward, gh.forward, (5,), restarts=64, steps=100, seed=seed).value
    X = np.random.default_rng(seed).normal(size=(4000, 5))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    with torch.no_grad():
        t = torch.as_tensor(X)
        smp = float(np.linalg.norm((g.forward(t) - gh.forward(t)).numpy(), axis=1).max())
    assert jb >= max(a, smp)
    c = certify_chains(F, Fh, "auto", 1.0, time_limit=1.5)
    assert "joint" in c.components and c.eps >= max(a, smp)


def _pool_nets():
    """CNNs with pooling in every position: at the input, between convolutions (average and max), before the dense
    head (adaptive average), with BatchNorm."""
    def first(seed):
        torch.manual_seed(seed)
        return nn.Sequential(nn.AvgPool2d(2), nn.Conv2d(1, 2, 2), nn.ReLU(), nn.Flatten(), nn.Linear(2, 2))

    def middle(seed):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), nn.ReLU(), nn.AvgPool2d(2),
                             nn.Conv2d(2, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(2, 2))

    def last(seed):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                             nn.Linear(3, 2))
    def scaled(build):  # input-side weights x 10: on the unit ball the ReLUs switch (else the error can be 0 there)
        def make(seed):
            m = build(seed)
            conv = next(mod for mod in m if isinstance(mod, nn.Conv2d))
            with torch.no_grad():
                conv.weight.mul_(10.0)
            return m
        return make
    return {"pool-first": scaled(first), "pool-middle-bn": scaled(middle), "pool-last": scaled(last)}


@pytest.mark.parametrize("where", ["pool-first", "pool-middle-bn", "pool-last"])
def test_pooling_in_every_position_at_least_the_attack(where):
    m = _pool_nets()[where](32)
    if where == "pool-middle-bn":
        with torch.no_grad():
            m[1].running_mean.uniform_(-0.3, 0.3)
            m[1].running_var.uniform_(0.5, 2.0)
    g, gh, F, Fh = _pair(m, (1, 4, 4), 32)
    jb = certify_chains(F, Fh, "joint", 1.0).eps
    a = pgd_sup_error(g.forward, gh.forward, (1, 4, 4), restarts=64, steps=100, seed=32).value
    assert jb >= a > 0


def test_adam_stop_shares_time_and_keeps_a_valid_value():
    """``adam_stop``: the diagonal steps of every recursion step end by then (each step its share), the value stays
    >= a strong attack, and it is never below the value without Adam steps' best (the start is kept)."""
    import time

    g, gh, F, Fh = _pair(_mlp(12, (8, 40, 40, 40, 3)), (8,), 12)
    scalar = joint_bound(F, Fh, 1.0, diag_steps=0)
    t = time.perf_counter()
    quick = joint_bound(F, Fh, 1.0, diag_steps=100_000, adam_stop=time.perf_counter() + 0.5)
    took = time.perf_counter() - t
    assert took < scalar.seconds * 3 + 0.5 + 1.0  # the share plus the recursion's own work (loaded CI machines)
    a = pgd_sup_error(g.forward, gh.forward, (8,), restarts=64, steps=100, seed=12).value
    assert quick.eps >= a
    assert quick.eps <= scalar.eps * (1 + 1e-9)


def test_auto_gates_the_joint_bound_by_predicted_time():
    """auto starts the joint bound only when its recursion is predicted to fit in JOINT_TIME_SHARE of the time left
    (no width cap below JOINT_MAX_DIM): a 450-wide MLP (coupled width 901) gets it within the limit; a vanishing
    time left names the prediction; max-pool chains are skipped whatever the time."""
    import time

    from probprune.certificates.joint import predicted_joint_seconds
    from probprune.certificates.tight import JOINT_TIME_SHARE, joint_auto_skip

    g, gh, F, Fh = _pair(_mlp(13, (20, 450, 30, 4)), (20,), 13)
    assert joint_auto_skip(F) is None
    assert predicted_joint_seconds(F) > 0
    why = joint_auto_skip(F, seconds_left=1e-9)
    assert why is not None and "predicted" in why and f"{JOINT_TIME_SHARE:g}" in why
    t = time.perf_counter()
    c = certify_chains(F, Fh, "auto", 1.0, time_limit=20.0, clock_start=t)
    assert time.perf_counter() - t <= 20.0 + 0.5
    assert "joint" in c.components
    a = pgd_sup_error(g.forward, gh.forward, (20,), restarts=64, steps=100, seed=13).value
    assert min(c.components.values()) >= a
    m = maxpool_cnn(3, 4, 1, False, True)
    _, _, Fm, _ = _pair(m, (1, 4, 4), 3)
    assert "max-pool" in joint_auto_skip(Fm, seconds_left=1e9)


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_end_to_end_multipliers_certified_and_at_least_the_attack(seed):
    """Statement 12.62: the end-to-end multipliers (Adam on all steps against the final bound) give a value that is
    certified at them, never above the greedy one, and >= a strong attack; the certified recursion at the greedy
    multipliers reproduces the greedy value."""
    from probprune.certificates.joint import _recursion, _recursion_relu_at, coupled_chain, heuristic_scales, relu_rows

    g, gh, F, Fh = _pair(_mlp(seed, (5, 9, 7, 3)), (5,), seed)
    mats, rel = coupled_chain(F, Fh, heuristic_scales(F, Fh, 1.0))
    used: list = []
    vg, _ = _recursion(mats, rel, 1.0, 10, None, used)
    rows = relu_rows(F, Fh, heuristic_scales(F, Fh, 1.0))
    zero = [np.zeros(rw.n_nu) for rw in rows]
    assert _recursion_relu_at(mats, rel, rows, used, zero, 1.0) == pytest.approx(vg, rel=1e-8)  # nu = 0: 12.60
    tiny = [None if T is None else 1e-12 * T for T in used]
    assert _recursion_relu_at(mats, rel, rows, tiny, zero, 1.0) == math.inf  # inadmissible T
    assert _recursion_relu_at(mats, rel, rows, used, [-1.0 - z for z in zero], 1.0) == math.inf  # nu < 0 refused
    r0 = joint_bound(F, Fh, 1.0, diag_steps=10)
    r1 = joint_bound(F, Fh, 1.0, diag_steps=10, e2e_steps=40)  # with the ReLU constraints (Statement 12.63)
    assert r1.eps <= r0.eps
    if r1.end_to_end is not None:
        assert r1.eps == r1.end_to_end
    a = pgd_sup_error(g.forward, gh.forward, (5,), restarts=128, steps=100, seed=seed).value
    assert unscale(r1.eps, F.scale_exp) >= a
    # the proposal in float32 with a decaying double step (the rewritten max-pool lowering's settings): still
    # certified in float64 at its multipliers, never above the greedy value, >= the attack
    from probprune.certificates.joint import E2EOptions
    from probprune.certificates.tight import JOINT_LONG_E2E

    r2 = joint_bound(F, Fh, 1.0, diag_steps=10, e2e_steps=40, e2e_options=JOINT_LONG_E2E)
    assert r2.eps <= r0.eps and unscale(r2.eps, F.scale_exp) >= a
    if r2.end_to_end is not None:
        assert r2.eps == r2.end_to_end
    for bad in ({"dtype": "float16"}, {"lr_scale": 0.0}, {"lr_end": 1.5}, {"lr_end": float("nan")}):
        with pytest.raises(ProbPruneError):
            E2EOptions(**bad)


def test_end_to_end_step_counts_follow_the_shape():
    from probprune.certificates.joint import e2e_steps_for, joint_work
    from probprune.certificates.tight import JOINT_E2E_STEPS

    _, _, F, _ = _pair(_mlp(1, (16, 32, 32, 4)), (16,), 1)
    assert e2e_steps_for(F, JOINT_E2E_STEPS) == JOINT_E2E_STEPS  # small: the cap
    _, _, F, _ = _pair(_mlp(1, (784, 300, 100, 10)), (784,), 1)
    assert 25 < joint_work(F) < 40 and e2e_steps_for(F, JOINT_E2E_STEPS) == 0  # LeNet-300-100's shape: none


@pytest.mark.parametrize("seed", range(8))
def test_relu_constraints_above_a_fine_grid_on_2d_nets(seed):
    """Statement 12.63 against a near-exact ground truth: on 2-D ReLU nets with biases the end-to-end joint bound with
    the ReLU constraints stays >= the maximum over 640,000 points of the unit disk."""
    widths = ((2, 6, 5, 2), (2, 8, 2), (2, 5, 5, 5, 2))[seed % 3]
    g, gh, F, Fh = _pair(_mlp(100 + seed, widths), (2,), 100 + seed, keep=0.5)
    jb = unscale(joint_bound(F, Fh, 1.0, diag_steps=10, e2e_steps=60).eps, F.scale_exp)
    th = np.linspace(0, 2 * np.pi, 3201)[:-1]
    rad = np.sqrt(np.linspace(0, 1, 201))
    disk = torch.as_tensor(np.concatenate([np.c_[r * np.cos(th), r * np.sin(th)] for r in rad]))
    with torch.no_grad():
        grid = float(np.linalg.norm((g.forward(disk) - gh.forward(disk)).numpy(), axis=1).max())
    assert jb >= grid


@pytest.mark.parametrize("seed", [0, 1])
def test_relu_constraints_on_residual_batchnorm_nets_at_least_the_attack(seed):
    from test_budget_graph import _ResBN

    g, gh, F, Fh = _pair(_ResBN(seed), (6,), seed)
    r0 = joint_bound(F, Fh, 1.0, diag_steps=10)
    r1 = joint_bound(F, Fh, 1.0, diag_steps=10, e2e_steps=40)
    assert r1.eps <= r0.eps
    a = pgd_sup_error(g.forward, gh.forward, (6,), restarts=128, steps=100, seed=seed).value
    assert unscale(r1.eps, F.scale_exp) >= a


def test_end_to_end_interrupted_at_the_deadline_keeps_the_greedy_value(monkeypatch):
    """A deadline inside the end-to-end phase drops its proposal and keeps the (complete, valid) greedy value."""
    from probprune.certificates import joint as J
    from probprune.certificates.compose import TimeLimitReached

    g, gh, F, Fh = _pair(_mlp(21, (5, 9, 7, 3)), (5,), 21)
    r0 = joint_bound(F, Fh, 1.0, diag_steps=10)

    def stop(*a, **k):
        raise TimeLimitReached("deadline")

    monkeypatch.setattr(J, "_end_to_end", stop)
    r1 = joint_bound(F, Fh, 1.0, diag_steps=10, e2e_steps=40)
    assert r1.eps == r0.eps and r1.end_to_end is None


def test_cli_bound_joint_on_a_maxpool_cnn_uses_the_rewritten_lowering(capsys, tmp_path):
    """`certify --bound joint` on a CNN with ReLU -> max pooling: the joint stage names Statement 12.64 and the value
    is the library's (its soundness against PGD: test_maxpool_cnns_at_least_the_attack)."""
    m = maxpool_cnn(5, 6, 2, True, True)
    p = tmp_path / "cnn.pt"
    torch.save(m, p)
    code, out, _ = run_cli(capsys, ["certify", "--model", str(p), "--input-shape", "1,6,6", "--fraction", "0.4",
                                    "--bound", "joint", "--json"])
    assert code == 0, out
    d = json.loads(out)
    assert d["tight"]["method"] == "joint"
    assert any("Statement 12.64" in s.get("stage", "") for s in d["tight"]["stages"])
    import probprune

    lib = probprune.certify(m, fraction=0.4, bound="joint", input_shape=(1, 6, 6))
    assert d["certificate"]["eps"] == pytest.approx(lib.as_dict()["certificate"]["eps"], rel=1e-12)


def test_auto_with_time_to_spare_runs_the_rewritten_joint_bound_on_maxpool_cnns():
    """Statement 12.64 under "auto": with at least JOINT_LONG_MIN_SECONDS of the limit left the joint bound runs on the
    lowering with ReLU after max pooling (named in its stage), and the certificate is >= a strong attack; under the
    default 10 s it is not run and the reason names the statement."""
    from probprune.certificates.tight import JOINT_LONG_MIN_SECONDS

    m = maxpool_cnn(11, 6, 2, True, True)
    g, gh, F, Fh = _pair(m, (1, 6, 6), 11)
    assert pool_pair_for(g, gh, "auto", 10.0) is None and pool_pair_for(g, gh, "mixed") is None
    c = certify_chains(F, Fh, "auto", 1.0, time_limit=JOINT_LONG_MIN_SECONDS + 40,
                       pool_pair=pool_pair_for(g, gh, "auto", JOINT_LONG_MIN_SECONDS + 40))
    assert "joint" in c.components and c.eps == min(c.components.values())
    assert any("Statement 12.64" in s.get("stage", "") for s in c.stages)
    a = pgd_sup_error(g.forward, gh.forward, (1, 6, 6), restarts=128, steps=100, seed=11).value
    assert c.eps >= a
    c10 = certify_chains(F, Fh, "auto", 1.0, time_limit=10.0)
    skipped = next(s for s in c10.stages if s.get("stage") == "skipped components")
    assert "Statement 12.64" in skipped["joint"] and "joint" not in c10.components


def test_long_joint_search_on_wide_chains_with_time_to_spare(monkeypatch):
    """auto with ``joint_long`` (what probprune.certify passes): where auto's end-to-end count is 0 (a wide chain;
    simulated here by patching the count) and at least JOINT_LONG_MIN_SECONDS are left, the joint bound runs the long
    float32 search (named in its stage), never above the plain greedy value and >= a strong attack; without
    ``joint_long`` (the budget's probes) or below the threshold it stays plain. ``--bound joint`` runs it where the
    float64 count is cut by its work budget."""
    import probprune.certificates.tight as T

    monkeypatch.setattr(T, "e2e_steps_for", lambda F, cap, *a: 0)
    monkeypatch.setattr(T, "JOINT_LONG_E2E_STEPS", 30)
    m = _mlp(4, [5, 12, 12, 3])
    g, gh, F, Fh = _pair(m, (5,), 4)

    def joint_stage(c):
        return next(s for s in c.stages if "end_to_end_search" in s)

    plain = certify_chains(F, Fh, "auto", 1.0, time_limit=T.JOINT_LONG_MIN_SECONDS + 40)
    long = certify_chains(F, Fh, "auto", 1.0, time_limit=T.JOINT_LONG_MIN_SECONDS + 40, joint_long=True)
    short = certify_chains(F, Fh, "auto", 1.0, time_limit=T.JOINT_LONG_MIN_SECONDS - 5, joint_long=True)
    assert joint_stage(plain)["end_to_end_search"] == "plain" == joint_stage(short)["end_to_end_search"]
    js = joint_stage(long)
    assert js["end_to_end_search"].startswith("long") and js["end_to_end_steps_at_most"] == 30
    assert long.components["joint"] <= plain.components["joint"]
    assert long.components["joint"] < plain.components["joint"]  # the search pays on this chain (30 steps)
    a = pgd_sup_error(g.forward, gh.forward, (5,), restarts=128, steps=100, seed=4).value
    assert long.eps >= a
    # --bound joint: where the float64 count is cut by its work budget (5 < JOINT_EXPLICIT_E2E_STEPS), the long search
    monkeypatch.setattr(T, "e2e_steps_for", lambda F, cap, work: 5 if work == T.JOINT_EXPLICIT_E2E_WORK else 30)
    ex = certify_chains(F, Fh, "joint", 1.0)
    js = joint_stage(ex)
    assert js["end_to_end_search"].startswith("long") and js["end_to_end_steps_at_most"] == 30
    assert a <= ex.eps <= certify_chains(F, Fh, "joint", 1.0, joint_e2e=0).eps


def test_adam_step_decay_by_count_and_by_time():
    """compose.adam_log_multipliers with lr_end < 1: the step decays (cosine) from lr to lr_end x lr over the steps,
    or over the time to ``stop`` where that comes first; lr_end = 1 keeps the constant step."""
    import time as _time

    from probprune.certificates.compose import adam_log_multipliers

    def run(lr_end, stop=math.inf, pause=0.0):
        seen = []

        def evaluate(P, grad):  # a constant gradient: Adam's step is then exactly the scheduled lr
            seen.append(float(np.log(P[0])))
            if pause:
                _time.sleep(pause)
            return float(P[0]), (np.ones(1) if grad else None), None
        adam_log_multipliers(evaluate, 1.0, 1, 10, stop, lr=0.1, lr_end=lr_end)
        return -np.diff(seen[1:])

    const = run(1.0)
    assert np.allclose(const, 0.1)
    dec = run(0.1)
    assert dec[0] == pytest.approx(0.1) and np.all(np.diff(dec) < 0) and dec[-1] >= 0.01 - 1e-12
    # the time runs out before the steps: the first step (~0.05 s) predicts about 6 of the 10, and the decay follows
    timed = run(0.1, stop=_time.perf_counter() + 0.35, pause=0.05)
    assert timed.size >= 2 and timed[1] < dec[1] and timed[-1] < dec[timed.size - 1]


def test_adam_recovers_its_step_after_an_inadmissible_point():
    """recover=True: after an inadmissible T the halved step grows back; without it the step stays halved (the
    rewritten max-pool lowering's end-to-end phase uses recover: 33 inadmissible float32 points had frozen its Adam on
    issue 22's digits CNN at 10.4x the attack; with recover 4.1x)."""
    from probprune.certificates.compose import adam_log_multipliers

    def run(recover):
        seen, calls = [], [0]

        def evaluate(P, grad):
            calls[0] += 1
            if calls[0] == 4:  # one inadmissible point
                return None
            seen.append(float(np.log(P[0])))
            return float(P[0]), (np.ones(1) if grad else None), None
        adam_log_multipliers(evaluate, 1.0, 1, 20, lr=0.1, recover=recover)
        return -np.diff(seen[-6:])

    assert np.allclose(run(False), 0.05)
    assert np.all(run(True) > 0.09)
