"""Task-level budgets (THEORY §10.3-10.4): the exact sqrt(2) margin condition, certified accuracy of a pruning, the
accuracy-drop budget, and the CLI options --eps-rel / --calibrated / --empirical / --max-acc-drop."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from probprune.budgets.apriori import magnitude_prune_count
from _cli import run_cli
from probprune.net.templates import ParsedModel, fcn_spec, sample_weights
from probprune.budgets.task import (
    SQRT2,
    _torch_model,
    budget_for_accuracy_drop,
    certified_accuracy,
    margins,
    network_output_scale,
    prediction_stable,
)


def test_margin_condition_is_exact():
    z = np.array([[3.0, 1.0, 0.0]])
    e_star = 2.0 / SQRT2
    assert prediction_stable(z, e_star * (1 - 1e-9))[0]
    assert not prediction_stable(z, e_star)[0]  # the extremal d = e (e_1 - e_0)/sqrt(2) ties
    d = e_star * (np.array([0, 1, 0]) - np.array([1, 0, 0])) / SQRT2
    zz = z[0] + d
    assert math.isclose(zz[0], zz[1], rel_tol=1e-12) and np.linalg.norm(d) == pytest.approx(e_star)
    c, m = margins(np.array([[1.0, 1.0], [0.0, 2.0]]))
    assert m.tolist() == [0.0, 2.0] and c[1] == 1


def _toy(seed=0, bias=False):
    """A small ReLU net and a labelled data set on which it is right on the confident half of the inputs."""
    rng = np.random.default_rng(seed)
    spec = fcn_spec([10, 32, 4], "relu", 1.0)
    W = sample_weights(spec, rng)
    b = [rng.normal(size=L.d_out) * 0.1 if bias else None for L in spec.layers]
    pm = ParsedModel(spec, W, b, [L.name for L in spec.layers])
    X = rng.normal(size=(400, 10))
    with torch.no_grad():
        Z = _torch_model(pm)(torch.as_tensor(X)).numpy()
    y = np.argmax(Z, 1)
    flip = rng.random(400) < 0.2
    y[flip] = (y[flip] + 1) % 4
    return pm, X, y


@pytest.mark.parametrize("bias", [False, True])
def test_certified_accuracy_lower_bounds_the_pruned_accuracy(bias):
    pm, X, y = _toy(1, bias)
    for frac in (0.0, 0.02, 0.1, 0.5):
        Wh = [magnitude_prune_count(w, int(frac * w.size)) for w in pm.weights]
        ca = certified_accuracy(pm, Wh, X, y)
        assert ca.certified_accuracy <= ca.pruned_accuracy + 1e-12
        assert ca.certified_accuracy <= ca.accuracy + 1e-12
        if frac == 0.0:
            assert ca.certified_accuracy == pytest.approx(np.mean(margins(_logits(pm, X))[0] == y))


def _logits(pm, X):
    with torch.no_grad():
        return _torch_model(pm)(torch.as_tensor(X)).numpy()


@pytest.mark.parametrize("method", ["magnitude", "random"])
def test_accuracy_drop_budget_keeps_certified_accuracy(method):
    pm, X, y = _toy(2)
    Z = _logits(pm, X)
    c, m = margins(Z)
    nrm = np.linalg.norm(X, axis=1)
    r = nrm / nrm.max()  # bias-free ReLU: per-input radii (Statement 10.4b)
    totals = []
    for A in (1.0, 10.0):
        ab = budget_for_accuracy_drop(pm, X, y, A, method, delta=0.05 if method == "random" else None)
        assert ab.check.certified_accuracy >= ab.check.accuracy - A / 100 - 1e-12
        # the tolerance recomputed independently from the margins (Statement 10.4c): t_(need), need-th largest
        need = int(math.ceil(len(y) * (np.mean(c == y) - A / 100) - 1e-9))
        t = np.sort((m / (SQRT2 * r))[c == y])[::-1]
        assert ab.eps_needed == pytest.approx(t[need - 1], rel=1e-8) and ab.eps_needed < t[need - 1]
        if ab.budget["total_prunable"] > 0:  # the allocation's certificate is within the tolerance
            assert ab.budget["eps_achieved"] <= ab.eps_needed
        totals.append(ab.budget["total_prunable"])
    assert totals[0] <= totals[1]  # a larger allowed drop never prunes less
    if method == "magnitude":
        assert totals[1] > 0  # Cert-D leaves room at a 10-point drop on this net (8 weights at the time of writing)


def test_output_scale_brackets_sampled_outputs():
    pm, X, _ = _toy(3, bias=True)
    sc = network_output_scale(pm, X)
    assert 0 < sc.lower <= sc.upper


def run(capsys, *argv):
    return run_cli(capsys, argv)


def test_cli_budget_relative_calibrated_empirical_json(capsys):
    code, out, err = run(capsys, "budget", "--widths", "16,32,24,6", "--activation", "identity", "--eps-rel", "0.1",
                         "--calibrated", "--empirical", "--trials", "200", "--json")
    assert code == 0, err
    d = json.loads(out)
    assert {"eps", "layers", "total_prunable", "total_weights", "eps_rel", "calibrated", "empirical"} <= set(d)
    assert d["eps"] == pytest.approx(0.1 * d["eps_rel"]["upper"])
    assert d["eps_rel"]["eps_over_lower"] < 1  # not vacuous: below sup ||F||
    assert d["calibrated"]["fraction"] <= 1 and d["empirical"]["fraction"] > 0
    assert d["empirical"]["ratio_analytic_over_empirical"] == pytest.approx(
        d["uniform"]["fraction"] / d["empirical"]["fraction"])


def test_cli_tolerance_options_refused_together(capsys):
    code, _, err = run(capsys, "budget", "--widths", "10,10", "--eps", "0.5", "--eps-rel", "0.1")
    assert code == 2 and "either --eps" in err


def test_cli_bound_calibrated_keeps_eps(capsys):
    code, out, err = run(capsys, "bound", "--widths", "12,20,5", "--activation", "identity", "--fraction", "0.1",
                         "--calibrated", "--trials", "100", "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["eps"] > 0 and 0 < d["calibrated"]["eps"] and d["calibrated"]["rank"] <= 100


def test_trained_empirical_is_above_the_certified_uniform_fraction():
    from probprune.budgets.certified import certified_budget
    from probprune.budgets.task import trained_empirical

    from probprune.certificates.lemma import certify

    pm, X, y = _toy(4)
    eps = 0.05  # well below sup ||F|| (pruning everything measures ~0.23 here), so the search is not vacuous
    cert = certified_budget(pm, eps, "magnitude", "uniform")
    emp = trained_empirical(pm, eps, "magnitude", 0.05, seed=0)
    q = emp["fraction"]
    assert 0 < q < 1 and emp["measured_at_fraction"] <= eps
    # Cert-D >= err >= PGD: at the certified uniform fraction the PGD error is within eps, so the bisection over the
    # geometric grid (ratio 1.055) ends at most one grid step below it
    assert q >= cert.uniform_fraction / 1.06
    # soundness cross-check at the empirical fraction: the measured (lower) value never exceeds the certificate
    Wh = [magnitude_prune_count(w, int(math.floor(q * w.size))) for w in pm.weights]
    assert emp["measured_at_fraction"] <= certify(pm.spec, pm.weights, Wh, pm.biases).eps * (1 + 1e-9)
