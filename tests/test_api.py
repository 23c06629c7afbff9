"""Issue 22: the library decides, the command line renders. ``probprune.certify / budget / bound`` return the numbers
that ``probprune certify / budget / bound --json`` print (less the envelope keys ``schema``, ``nonfinite``,
``probprune_version`` and the timing key ``query_ms``; docs/cli.md), on four models: an MLP, the LeNet-300-100 shape, a
small CNN with max pooling, a residual net with BatchNorm. Law statements refuse a given network."""
import json

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import probprune
import probprune.api
from _cli import run_cli
from probprune.cli.common import to_json

ENVELOPE = ("schema", "nonfinite", "probprune_version")


class ResBN(nn.Module):
    """64 inputs: fc -> BN -> ReLU -> residual block (fc -> ReLU) -> fc."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(64, 24)
        self.bn = nn.BatchNorm1d(24)
        self.fc2 = nn.Linear(24, 24)
        self.out = nn.Linear(24, 10)

    def forward(self, x):
        h = F.relu(self.bn(self.fc1(x)))
        h = h + F.relu(self.fc2(h))
        return self.out(h)


def _mlp():
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def _lenet():
    from probprune.net.zoo import lenet_300_100

    return lenet_300_100(bias=True, seed=0)


def _cnn():
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(4 * 4 * 4, 10))


def _res():
    m = ResBN()
    with torch.no_grad():
        m.bn.running_var.uniform_(0.5, 2.0)
        m.bn.running_mean.uniform_(-0.1, 0.1)
    return m


MODELS = {"mlp": (_mlp, None), "lenet": (_lenet, None), "cnn": (_cnn, "1,8,8"), "res": (_res, None)}


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("api_models")
    out = {}
    for name, (make, shape) in MODELS.items():
        torch.manual_seed(0)
        m = make().eval()
        torch.save(m, d / f"{name}.pt")
        out[name] = (str(d / f"{name}.pt"), shape)
    return out


TIMING = ("query_ms", "seconds", "timings")  # wall-clock times (docs/cli.md): not part of the answer


def _strip(d: dict) -> dict:
    def rec(x):
        if isinstance(x, dict):
            return {k: rec(v) for k, v in x.items() if k not in TIMING}
        if isinstance(x, list):
            return [rec(v) for v in x]
        return x

    return rec({k: v for k, v in d.items() if k not in ENVELOPE})


def _lib(rep) -> dict:
    """The library result through the same JSON converter (numpy -> lists, non-finite -> null)."""
    return _strip(json.loads(to_json(rep.as_dict(), "x")))


def _cli(capsys, argv) -> dict:
    code, out, err = run_cli(capsys, argv + ["--json"])
    assert code == 0, err
    return _strip(json.loads(out))


def _shape(s):
    return None if s is None else tuple(int(v) for v in s.split(","))


# no time limit in the equality tests: with one, which §12 components run depends on the machine's speed
NO_LIMIT = 3600.0


@pytest.mark.parametrize("name", list(MODELS))
def test_certify_json_equals_library(name, model_files, capsys, monkeypatch):
    import probprune.certificates.tight as T

    # with no binding limit auto runs the joint bound's long search on wide chains (LeNet-300-100): 300 float32 steps
    # there take ~50 s per call; 20 keep the path and its equality check at a test's cost
    monkeypatch.setattr(T, "JOINT_LONG_E2E_STEPS", 20)
    path, shape = model_files[name]
    argv = ["certify", "--model", path, "--fraction", "0.3", "--time-limit", str(NO_LIMIT)] + (
        ["--input-shape", shape] if shape else [])
    cli = _cli(capsys, argv)
    rep = probprune.certify(path, fraction=0.3, input_shape=_shape(shape), time_limit=NO_LIMIT)
    assert cli == _lib(rep)
    assert cli["certificate"]["eps"] == rep.eps > 0
    if "measured" in cli:
        assert cli["measured"]["max_error"] <= rep.eps


# the default run inverts the auto certificate on the two graphs that are not chains and Cert-D on the two chains
# (the tight search on LeNet-300-100 costs a minute); every model with every certificate runs under -m slow
BUDGET_CASES = [pytest.param("mlp", "lemma-a"), pytest.param("lenet", "lemma-a"), pytest.param("cnn", "auto"),
                pytest.param("res", "auto")] + [pytest.param(n, c, marks=pytest.mark.slow) for n, c in
                                                (("mlp", "auto"), ("lenet", "auto"), ("cnn", "lemma-a"),
                                                 ("res", "lemma-a"))]


@pytest.mark.parametrize("name, certificate", BUDGET_CASES)
def test_budget_json_equals_library(name, certificate, model_files, capsys):
    path, shape = model_files[name]
    argv = ["budget", "--model", path, "--eps-rel", "0.1", "--certificate", certificate, "--time-limit",
            str(NO_LIMIT)] + (["--input-shape", shape] if shape else [])
    cli = _cli(capsys, argv)
    rep = probprune.budget(path, eps_rel=0.1, input_shape=_shape(shape), certificate=certificate,
                           time_limit=NO_LIMIT)
    assert cli == _lib(rep)
    assert cli["total_prunable"] == rep.total_prunable and [L["name"] for L in cli["layers"]] == [
        L["name"] for L in rep.layers]
    assert cli["eps_achieved"] <= cli["eps"] and cli["inverted_certificate"]


@pytest.mark.parametrize("widths", ["64,32,10", "784,300,100,10", "64,16,16,10", "40,20,5"])
def test_bound_json_equals_library(widths, capsys):
    cli = _cli(capsys, ["bound", "--widths", widths, "--fraction", "0.1"])
    rep = probprune.bound([int(v) for v in widths.split(",")], fraction=0.1)
    assert cli == _lib(rep) and cli["eps"] == rep.eps


def test_law_budget_json_equals_library(capsys):
    cli = _cli(capsys, ["budget", "--widths", "16,24,6", "--activation", "identity", "--eps-rel", "0.1",
                        "--empirical", "--trials", "100"])
    rep = probprune.budget([16, 24, 6], activation="identity", eps_rel=0.1, empirical=True, trials=100)
    assert cli == _lib(rep) and cli["eps"] == pytest.approx(0.1 * cli["eps_rel"]["upper"])


def test_residual_certify_library_equals_cli(model_files, capsys):
    """Issue 22: certify_graph said 1.2485 and `probprune certify` 0.1296 on a residual net: one answer now."""
    path, _ = model_files["res"]
    cli = _cli(capsys, ["certify", "--model", path, "--fraction", "0.2"])
    rep = probprune.certify(torch.load(path, weights_only=False), fraction=0.2)
    assert rep.eps == cli["certificate"]["eps"] and rep.certificate["bound"] == cli["certificate"]["bound"]
    # the library also takes the traced graph
    from probprune.net import from_torch

    g = from_torch(torch.load(path, weights_only=False))
    assert probprune.certify(g, fraction=0.2).eps == rep.eps


@pytest.mark.parametrize("name", ["res", "cnn"])
def test_budget_allocation_certifies_within_eps(name, model_files):
    """Budget on residual+BatchNorm and CNN models; the certificate recomputed at the allocation is <= eps."""
    path, shape = model_files[name]
    rep = probprune.budget(path, eps=0.5, input_shape=_shape(shape))
    from probprune.budgets.apriori import magnitude_prune_count

    g = probprune.api.read_network(path, None, _shape(shape)).graph
    counts = {L["name"]: L["max_prunable"] for L in rep.layers}
    Wh = {k: magnitude_prune_count(w, counts[k]) for k, w in g.weights.items()}
    c = probprune.certify(g, pruned=Wh, bound="auto")  # min of every certificate: <= the inverted one
    assert rep.total_prunable > 0
    assert c.eps <= 0.5 * (1 + 1e-9) and rep.budget["eps_achieved"] <= 0.5


def test_certify_masks_and_fraction_agree(model_files):
    path, _ = model_files["mlp"]
    g = probprune.api.read_network(path).graph
    # one fixed §12 method: under "auto" the components that finish within the time limit depend on the machine
    a = probprune.certify(g, fraction=0.25, bound="joint")
    from probprune.budgets.apriori import magnitude_prune_count

    masks = {k: magnitude_prune_count(w, int(0.25 * w.size)) != 0 for k, w in g.weights.items()}
    b = probprune.certify(g, masks=masks, bound="joint")
    assert a.eps == pytest.approx(b.eps, rel=1e-12)


def test_law_statements_refuse_a_given_network(model_files):
    path, _ = model_files["mlp"]
    m = torch.load(path, weights_only=False)
    with pytest.raises(probprune.ProbPruneError, match="not a draw"):
        probprune.bound(m, fraction=0.1)
    with pytest.raises(probprune.ProbPruneError, match="not a draw"):
        probprune.budget(m, calibrated=True)
    with pytest.raises(probprune.ProbPruneError, match="certificate"):
        probprune.budget(path, law="gaussian")


def test_budget_residual_max_acc_drop_and_accuracy(model_files):
    """Non-chain graphs get certified accuracy and the accuracy-drop budget (THEORY §10.4 on the traced graph)."""
    path, _ = model_files["res"]
    rep = probprune.budget(path, eps_rel=0.1, max_acc_drop=5.0)
    ca, ab = rep.certified_accuracy, rep.max_acc_drop
    assert ca["certified_accuracy"] <= ca["pruned_accuracy"] + 1e-12
    assert ab["check"]["certified_accuracy"] >= ab["check"]["accuracy"] - 0.05 - 1e-12


def test_import_probprune_stays_light():
    import subprocess
    import sys

    code = ("import sys, probprune; assert 'torch' not in sys.modules, 'torch imported'; "
            "assert callable(probprune.certify) and callable(probprune.budget) and callable(probprune.bound)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_graph_empirical_is_a_lower_bound_of_the_certificate(model_files):
    """--empirical on a non-chain graph (PGD through the traced graph): the measured error at the empirical fraction
    is within eps and below the certificate there; the certified uniform fraction is not above it by more than one
    grid step (Cert-D >= err >= PGD)."""
    path, _ = model_files["res"]
    g = probprune.api.read_network(path).graph
    eps = 0.5 * probprune.certify(g, fraction=1.0, bound="lemma-a").measured["max_error"]
    rep = probprune.budget(g, eps=eps, empirical=True, mode="uniform")
    e = rep.empirical
    q = e["fraction"]
    assert 0 < q < 1 and e["measured_at_fraction"] <= eps
    assert e["measured_at_fraction"] <= probprune.certify(g, fraction=q, bound="lemma-a").eps
    assert rep.budget["uniform"]["fraction"] <= q * 1.06
