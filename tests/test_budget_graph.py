"""Certified budgets for every graph the certificates accept, inverting the auto rule's certificate (issue 22 item 2):
residual additions + BatchNorm, max pooling (Cert-D fallback while the §12 certificates refuse it), the certificate
recomputed independently at the returned allocation (same exact-k masks, same certificate) <= eps, the tight inversion
at least as large as the Cert-D one, and a many-restart PGD on the pruned network below the certificate."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from proofs_check.ground_truth import exact_k_masks
from probprune.budgets import certified as bc
from probprune.budgets.apriori import BudgetResult
from probprune.certificates.lemma import certify_graph
from probprune.certificates.lower import lower_graph_pair
from probprune.certificates.tight import certify_chains
from probprune.core.errors import ProbPruneError
from probprune.measure.attack import pgd_sup_error
from probprune.net import from_torch


class _ResBN(nn.Module):
    """Linear -> BatchNorm1d -> ReLU, a residual block (Linear, BatchNorm, ReLU, Linear) added to it, ReLU, Linear."""

    def __init__(self, seed: int, d_in: int = 6, h: int = 8, d_out: int = 3):
        super().__init__()
        torch.manual_seed(seed)
        self.fc1 = nn.Linear(d_in, h)
        self.bn1 = nn.BatchNorm1d(h)
        self.fa = nn.Linear(h, h)
        self.bna = nn.BatchNorm1d(h)
        self.fb = nn.Linear(h, h)
        self.out = nn.Linear(h, d_out)
        with torch.no_grad():  # non-trivial running statistics and affine parameters (evaluation mode)
            for bn in (self.bn1, self.bna):
                bn.running_mean.uniform_(-0.3, 0.3)
                bn.running_var.uniform_(0.5, 2.0)
                bn.weight.uniform_(0.5, 1.5)
                bn.bias.uniform_(-0.2, 0.2)

    def forward(self, x):
        h = torch.relu(self.bn1(self.fc1(x)))
        r = self.fb(torch.relu(self.bna(self.fa(h))))
        return self.out(torch.relu(h + r))


def _graph(model, shape):
    return from_torch(model.double().eval(), shape)


def _recertify(graph, counts, method="auto"):
    """What ``certify --bound auto`` computes for these masks: min(Cert-D, certify_chains(..., "auto")) (or the given
    §12 method, as ``certify --bound <method>`` next to Cert-D)."""
    masks = exact_k_masks(graph, counts)
    d = certify_graph(graph, masks).eps
    try:
        F, Fh = lower_graph_pair(graph, graph.with_masks(masks))
    except ProbPruneError:
        return d, None
    t = certify_chains(F, Fh, method).eps
    return min(d, t), t


def _counts(r):
    return [L.max_prunable for L in r.layers]


def _check_residual_budget(method, evaluations):
    g = _graph(_ResBN(0), (6,))
    assert not g.is_chain and any(n.op.folded for n in g.weight_nodes)
    eps = 0.3
    r = bc.certified_budget(g, eps, tight_evaluations=evaluations, tight_method=method)
    d = r.as_dict()
    for key in ("layers", "total_prunable", "eps_achieved", "uniform", "certificate", "certificate_detail"):
        assert key in d
    assert r.certificate.startswith("tight:") or r.certificate == "lemma-a"
    assert isinstance(r, bc.CertifiedBudgetResult) and isinstance(r, BudgetResult)
    assert r.eps_achieved <= eps
    val, tight = _recertify(g, _counts(r), method)
    assert tight is not None  # residual additions and BatchNorm lower exactly (§12.1)
    assert val <= eps
    assert val == pytest.approx(r.eps_achieved, rel=1e-12, abs=1e-15)  # same masks, same certificate
    assert d["certificate_detail"]["at_allocation"]["certificate"] == r.certificate
    if r.uniform_total > 0:  # the uniform allocation is certified too
        u = d["certificate_detail"]["uniform_at_allocation"]
        assert u["eps"] <= eps
    return r, bc.certified_budget(g, eps, certificate="lemma-a")


def test_residual_batchnorm_budget_is_certified_at_its_allocation():
    r, rd = _check_residual_budget("propagate", 4)
    assert r.certificate == "tight:propagate"  # far below Cert-D on this net
    assert r.total_prunable >= rd.total_prunable and r.uniform_total >= rd.uniform_total


@pytest.mark.slow
def test_residual_batchnorm_budget_full_auto_rule():
    """The default: every §12 method that applies at this size (the SDP included: seconds per evaluation)."""
    r, rd = _check_residual_budget("auto", 3)
    assert r.total_prunable >= rd.total_prunable


def test_tight_inversion_prunes_at_least_as_much_as_cert_d_on_an_mlp():
    torch.manual_seed(1)
    m = nn.Sequential(nn.Linear(8, 12), nn.ReLU(), nn.Linear(12, 10), nn.ReLU(), nn.Linear(10, 4))
    g = _graph(m, (8,))
    eps = 0.4
    d = bc.certified_budget(g, eps, certificate="lemma-a")
    a = bc.certified_budget(g, eps, tight_evaluations=5, tight_method="propagate")
    assert d.certificate == "lemma-a" and d.as_dict()["certificate"] == "lemma-a"
    assert a.total_prunable >= d.total_prunable
    assert a.uniform_total >= d.uniform_total
    assert a.eps_achieved <= eps
    val, _ = _recertify(g, _counts(a), "propagate")
    assert val <= eps
    # the Cert-D inversion's own allocation is certified by Cert-D (the old behaviour, unchanged)
    assert certify_graph(g, exact_k_masks(g, _counts(d))).eps <= eps


def test_pgd_on_the_pruned_network_stays_below_the_budget():
    g = _graph(_ResBN(2), (6,))
    eps = 0.25
    r = bc.certified_budget(g, eps, mode="uniform", tight_evaluations=4, tight_method="propagate")
    gh = g.with_masks(exact_k_masks(g, _counts(r)))
    a = pgd_sup_error(g.forward, gh.forward, (6,), restarts=128, steps=80, seed=3)
    assert a.value <= r.eps_achieved * (1 + 1e-9) <= eps * (1 + 1e-9)


def test_max_pooling_cnn_is_handled():
    torch.manual_seed(3)
    m = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(3 * 3 * 3, 4))
    g = _graph(m, (1, 6, 6))
    eps = 0.3
    r = bc.certified_budget(g, eps, tight_evaluations=3, tight_method="propagate")
    assert r.eps_achieved <= eps and r.total_prunable > 0
    masks = exact_k_masks(g, _counts(r))
    if r.certificate == "lemma-a":  # the §12 certificates refuse max pooling: Cert-D fallback, said so
        assert certify_graph(g, masks).eps <= eps
        reason = bc.tight_refusal(g)
        if reason is not None:
            assert "MaxPool" in reason or "max" in reason.lower()
            assert any("Cert-D inverted" in n for n in r.assumptions)
    else:  # once the §12 certificates cover max pooling
        val, _ = _recertify(g, _counts(r), "propagate")
        assert val <= eps
    gh = g.with_masks(masks)
    a = pgd_sup_error(g.forward, gh.forward, (1, 6, 6), restarts=64, steps=60, seed=0)
    assert a.value <= r.eps_achieved * (1 + 1e-9)


def test_magnitude_masks_match_the_independent_rule_and_certify_allocation():
    g = _graph(_ResBN(4), (6,))
    counts = [5, 17, 3, 9]
    lib = bc.magnitude_masks(g, counts)
    ind = exact_k_masks(g, counts)
    assert set(lib) == set(ind) and all(np.array_equal(lib[k], ind[k]) for k in lib)
    assert all(int((~lib[n.op.fqn]).sum()) == k for n, k in zip(g.weight_nodes, counts))
    ac = bc.certify_allocation(g, counts, tight_method="propagate")
    val, tight = _recertify(g, counts, "propagate")
    assert ac.eps == pytest.approx(val, rel=1e-12) and ac.tight_eps == pytest.approx(tight, rel=1e-12)
    named = bc.magnitude_masks(g, {n.op.fqn: k for n, k in zip(g.weight_nodes, counts)})
    assert all(np.array_equal(named[k], lib[k]) for k in lib)
    with pytest.raises(ProbPruneError, match="counts"):
        bc.magnitude_masks(g, [1, 2])
    with pytest.raises(ProbPruneError, match="unknown"):
        bc.magnitude_masks(g, {"nope": 1})


def test_size_gate_refuses_before_densifying():
    m = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(64 * 64 * 64, 2))
    g = from_torch(m.eval(), (3, 64, 64))
    reason = bc.tight_refusal(g)
    assert reason is not None and "dense" in reason


def test_refusals_and_time_limit():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 2))
    g = _graph(m, (5,))
    with pytest.raises(ProbPruneError, match="certificate"):
        bc.certified_budget(g, 0.1, certificate="sdp-please")
    with pytest.raises(ProbPruneError, match="tight_method"):
        bc.certified_budget(g, 0.1, tight_method="magic")
    with pytest.raises(ProbPruneError, match="tight_evaluations"):
        bc.certified_budget(g, 0.1, tight_evaluations=-1)
    with pytest.raises(ProbPruneError, match="time_limit"):
        bc.certified_budget(g, 0.1, time_limit=0)
    with pytest.raises(ProbPruneError, match="time_limit"):
        bc.certified_budget(g, 0.1, time_limit=math.nan)
    # no tight evaluations: the Cert-D allocation, certified by the auto rule (never larger than Cert-D)
    r0 = bc.certified_budget(g, 0.2, tight_evaluations=0, tight_method="propagate")
    rd = bc.certified_budget(g, 0.2, certificate="lemma-a")
    assert r0.total_prunable == rd.total_prunable and r0.eps_achieved <= rd.eps_achieved * (1 + 1e-12)
    # random pruning keeps Cert-R (the §12 certificates are for a given mask)
    rr = bc.certified_budget(g, 0.5, "random", delta=0.1)
    assert rr.certificate == "cert-r"


def test_budget_allocation_equals_the_library_certify_ta():
    """The budget's certificate at its allocation is what ``probprune.api.certify`` (the library behind
    ``probprune certify --bound auto``) reports for the same exact-k masks, in uniform and optimal mode."""
    from probprune import api

    torch.manual_seed(3)
    m = nn.Sequential(nn.Linear(8, 12), nn.ReLU(), nn.Linear(12, 10), nn.ReLU(), nn.Linear(10, 4))
    g = _graph(m, (8,))
    for mode in ("uniform", "optimal"):
        r = bc.certified_budget(g, 0.4, mode=mode, tight_method="propagate", tight_evaluations=4)
        assert r.eps_achieved <= 0.4
        rep = api.certify(g, masks=exact_k_masks(g, _counts(r)), bound=r.certificate.split(":")[-1]
                          if r.certificate.startswith("tight:") else "lemma-a")
        assert rep.certificate["eps"] == pytest.approx(r.eps_achieved, rel=1e-12, abs=1e-15)


def test_scale_search_a_value_that_falls_as_t_grows_is_not_a_plateau():
    """A searched certificate (the joint bound's Adam multipliers) can be smaller at a larger t: the search then goes
    on by the power law from its largest feasible point, not to the top of the bracket (issue 22's digits CNN under
    --refine joint: 9.46 at t = 0.284, 6.75 at 0.338, then t = 1.02 with value 824)."""
    N = np.array([10_000, 4_000])
    calls = []

    def value(k):  # the truth is 10 t^1.5 (eps = 1: t* = 0.215); the first evaluation comes out high
        t = k[0] / N[0]
        calls.append(t)
        return 0.9 if len(calls) == 1 else 10 * t ** 1.5

    t, k, v, log = bc._scale_search(value, np.ones(2), N, 0.1, 1.0, 5, math.inf)
    assert max(calls) < 0.5  # no jump towards t = 1
    assert v is not None and v <= 1.0 and t > 0.2


@pytest.mark.parametrize("p_true", [1.0, 1.5, 2.2])
def test_scale_search_returns_feasible_scale_within_its_tolerance_ta(p_true):
    """_scale_search on a synthetic value c t^p (known largest feasible t*): every returned scale is feasible, within
    the relative tolerance of t* (on the fraction), with at most a few evaluations."""
    N = np.array([10_000, 4_000])
    shape = np.ones(2)
    eps, c = 1.0, 10.0
    t_star = (eps / c) ** (1 / p_true)
    calls = []

    def value(k):
        t = k[0] / N[0]
        calls.append(t)
        return c * t ** p_true

    for rtol in (bc.SCALE_RTOL, bc.FINAL_RTOL):
        calls.clear()
        t, k, v, log = bc._scale_search(value, shape, N, 0.3 * t_star, eps, 8, math.inf, rtol=rtol)
        assert value(k) <= eps
        assert t <= t_star and t >= t_star / (1 + rtol) - 2e-4  # the floor to integer counts
        assert len(log) <= 6


def test_refine_phase_returns_only_an_allocation_its_method_certifies_ta():
    """refine="sdp" (the SCS SDP, tiny net): the returned allocation is certified by the named method (what
    ``api.certify(bound="sdp")`` reports for the same masks) <= eps and prunes at least what the auto search found;
    a refine method that cannot beat the auto allocation leaves it (and its certificate) unchanged."""
    from probprune import api

    torch.manual_seed(5)
    m = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 3))
    g = _graph(m, (5,))
    eps = 0.3
    base = bc.certified_budget(g, eps, mode="uniform", tight_method="mixed", tight_evaluations=4)
    r = bc.certified_budget(g, eps, mode="uniform", tight_method="mixed", tight_evaluations=4, refine="sdp",
                            refine_evaluations=2)
    assert r.eps_achieved <= eps and r.total_prunable >= base.total_prunable
    ref = r.certificate_detail["refine"]
    assert ref["method"] == "sdp" and "evaluations" in ref
    bound = r.certificate.split(":")[-1] if r.certificate.startswith("tight:") else "lemma-a"
    rep = api.certify(g, masks=exact_k_masks(g, _counts(r)), bound=bound)
    assert rep.certificate["eps"] == pytest.approx(r.eps_achieved, rel=1e-9, abs=1e-12)
    assert rep.certificate["eps"] <= eps
    # composed (looser than mixed here) cannot grow the allocation: the auto allocation is kept
    rc = bc.certified_budget(g, eps, mode="uniform", tight_method="mixed", tight_evaluations=4, refine="composed")
    assert rc.total_prunable >= base.total_prunable and rc.eps_achieved <= eps
    if rc.certificate == base.certificate:
        assert rc.total_prunable == base.total_prunable
    with pytest.raises(ProbPruneError):
        bc.certified_budget(g, eps, refine="nope")


def test_refine_joint_on_a_maxpool_cnn_inverts_the_rewritten_joint_bound():
    """refine="joint" on a CNN with ReLU -> max pooling: the refine phase runs the joint bound on Statement 12.64's
    lowering (as ``certify --bound joint``), so the returned allocation's certificate equals what
    ``api.certify(bound="joint")`` reports for the same masks, is <= eps, and is >= a PGD attack there."""
    from probprune import api

    torch.manual_seed(2)
    m = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                      nn.Linear(12, 4)).double()
    g = _graph(m, (1, 4, 4))
    base = bc.certified_budget(g, 1.0, mode="uniform", tight_evaluations=3)
    eps = 0.8 * base.eps_achieved if base.eps_achieved > 0 else 0.5
    r = bc.certified_budget(g, eps, mode="uniform", tight_evaluations=3, refine="joint", refine_evaluations=3)
    ref = r.certificate_detail["refine"]
    assert ref["method"] == "joint" and "skipped" not in ref and ref["evaluations"] >= 1
    assert r.eps_achieved <= eps
    masks = exact_k_masks(g, _counts(r))
    bound = r.certificate.split(":")[-1] if r.certificate.startswith("tight:") else "lemma-a"
    rep = api.certify(g, masks=masks, bound=bound)
    assert rep.certificate["eps"] == pytest.approx(r.eps_achieved, rel=1e-9, abs=1e-12)
    # the refine's first evaluation is at the auto allocation: there it is `certify --bound joint` (rewritten)
    kept = "kept" in ref
    rj = api.certify(g, masks=exact_k_masks(g, _counts(r)), bound="joint") if kept else rep
    assert "Statement 12.64" in rj.tight["stages"][0]["stage"]
    if kept:
        assert rj.certificate["eps"] == pytest.approx(ref["log"][0][3], rel=1e-9)
    gh = g.with_masks(masks)
    a = pgd_sup_error(g.forward, gh.forward, (1, 4, 4), restarts=32, steps=60, seed=0).value
    assert r.eps_achieved >= a * (1 - 1e-9)


def test_uniform_reference_is_certified_at_its_reported_counts_tf():
    """Optimal mode: the uniform reference allocation (``uniform_counts``) is certified <= eps by the value in
    ``uniform_at_allocation``; where that value is the tight search's own (``source``), the named §12 method
    recomputed at those counts gives it exactly (what ``certify --bound <method>`` prints there)."""
    torch.manual_seed(1)
    m = nn.Sequential(nn.Linear(8, 12), nn.ReLU(), nn.Linear(12, 10), nn.ReLU(), nn.Linear(10, 4))
    g = _graph(m, (8,))
    eps = 0.4
    seen_source = False
    for method in ("mixed", "propagate"):
        r = bc.certified_budget(g, eps, tight_evaluations=4, tight_method=method)
        d = r.certificate_detail
        counts = d["uniform_counts"]
        assert sum(counts) == r.uniform_total
        u = d["uniform_at_allocation"]
        assert u["eps"] <= eps
        val, tight = _recertify(g, counts, method)
        assert val <= eps
        if "source" in u:
            seen_source = True
            assert u["certificate"] == f"tight:{method}"
            assert tight == pytest.approx(u["eps"], rel=1e-12, abs=1e-15)
        assert certify_graph(g, exact_k_masks(g, counts)).eps >= val  # the auto rule is <= Cert-D
    assert seen_source


@pytest.mark.parametrize("t_first_rel", [0.7, 0.98, 1.4])
def test_scale_search_from_a_predicted_first_point_tf(t_first_rel):
    """_scale_search with ``t_first`` (a predicted scale) and ``accept_feasible`` (a reference): the first evaluation
    is at t_first; a feasible one is accepted as is (one evaluation); an infeasible one is followed by the power-law
    step from it, and the returned scale is always feasible and >= t_lo."""
    N = np.array([10_000, 4_000])
    shape = np.ones(2)
    eps, c, p = 1.0, 10.0, 1.5
    t_star = (eps / c) ** (1 / p)
    calls = []

    def value(k):
        t = k[0] / N[0]
        calls.append(t)
        return c * t ** p

    t, k, v, log = bc._scale_search(value, shape, N, 0.3 * t_star, eps, 6, math.inf, t_first=t_first_rel * t_star,
                                    accept_feasible=True)
    assert calls[0] == pytest.approx(t_first_rel * t_star, rel=1e-3)
    assert value(k) <= eps and t >= 0.3 * t_star
    if t_first_rel < 1:
        assert len(log) == 1 and t == pytest.approx(t_first_rel * t_star)
    else:
        assert 2 <= len(log) <= 4 and t >= t_star / (1 + bc.SCALE_RTOL) ** 2


@pytest.mark.parametrize("mode", ["uniform", "optimal"])
def test_search_method_above_the_final_rule_is_searched_again_under_it_tf(monkeypatch, mode):
    """Found on issue 22's residual digits net: the search's joint bound (SEARCH_JOINT_STEPS Adam steps) certified a
    uniform allocation at which the final auto rule (what ``certify`` prints) is above eps; the budget then returned
    Cert-D's allocation as its layers beside the search's uniform fraction. Here the search's probes are made
    optimistic (x0.8) so that the final rule rejects what they find: the result must re-search under the final rule
    and report one allocation whose recomputed certificate is its ``eps_achieved`` <= eps (uniform mode: layers =
    uniform counts = uniform total)."""
    g = _graph(_ResBN(0), (6,))
    eps = 0.3
    real = bc._tight_eps

    def optimistic(F, graph, masks, method, Fh=None, lean=False, joint=None, joint_steps=None, joint_e2e=None):
        v, how, comps = real(F, graph, masks, method, Fh, lean=lean, joint=joint, joint_steps=joint_steps,
                             joint_e2e=joint_e2e)
        return (0.8 * v if not lean else v), how, comps  # lean: the final certification

    monkeypatch.setattr(bc, "_tight_eps", optimistic)
    r = bc.certified_budget(g, eps, mode=mode, tight_evaluations=8, tight_method="propagate")
    monkeypatch.setattr(bc, "_tight_eps", real)
    base = bc.certified_budget(g, eps, certificate="lemma-a", mode=mode)
    assert r.eps_achieved <= eps
    val, _ = _recertify(g, _counts(r), "propagate")
    assert val == pytest.approx(r.eps_achieved, rel=1e-12, abs=1e-15) and val <= eps
    assert any(e[0] == "final_rule" for e in r.certificate_detail["log"])
    assert r.total_prunable >= base.total_prunable
    if mode == "uniform":
        assert _counts(r) == r.certificate_detail["uniform_counts"]
        assert r.total_prunable == r.uniform_total


def test_optimal_tight_budget_of_a_small_net_prunes_at_least_its_searched_uniform_reference_tf():
    """Optimal mode on a small net (<= REFERENCE_SEARCHED_MAX_WEIGHTS): the uniform reference is searched (not one
    predicted evaluation) and is a candidate, so the optimal allocation prunes at least as many weights; both are
    certified <= eps by the full rule recomputed at their counts."""
    g = _graph(_ResBN(1), (6,))
    eps = 0.3
    r = bc.certified_budget(g, eps, tight_evaluations=5)
    d = r.certificate_detail
    assert "scale search" in d["uniform_reference"]
    assert r.total_prunable >= r.uniform_total > 0
    for counts in (_counts(r), d["uniform_counts"]):
        val, _ = _recertify(g, counts)
        assert val <= eps
