"""`probprune certify --model` on models that are graphs (residual, BatchNorm, functional activations, pools in any
position), `budget --model` on the same graphs, `bound --K 1e200` refused (issue 10)."""
import json

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from _cli import run_cli


def run(capsys, *argv):
    return run_cli(capsys, argv)


class ResidualDigits(nn.Module):
    """8x8 digits: conv -> BN -> ReLU -> MaxPool(3, stride 1) -> residual conv block with a gain -> global pool -> fc."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.pool = nn.MaxPool2d(3, stride=1, padding=1)
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.gap = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        h = self.pool(F.relu(self.bn(self.stem(x))))
        h = h + 0.5 * torch.relu(self.conv(h))
        return self.fc(self.gap(h).flatten(1))


@pytest.fixture
def residual_file(tmp_path):
    torch.manual_seed(0)
    m = ResidualDigits().eval()
    m.bn.running_var.uniform_(0.5, 2.0)
    p = tmp_path / "res.pt"
    torch.save(m, p)
    return str(p)


@pytest.mark.parametrize("method", ["magnitude", "random"])
def test_certify_a_residual_model_file(capsys, residual_file, method):
    code, out, _ = run(capsys, "certify", "--model", residual_file, "--input-shape", "1,8,8", "--method", method,
                       "--fraction", "0.2", "--json")
    assert code == 0, out
    d = json.loads(out)
    c = d["certificate"]
    assert c["eps"] > 0 and np.isfinite(c["eps"]) and [L["name"] for L in c["layers"]] == [
        "stem.weight", "conv.weight", "fc.weight"]
    assert d["measured"]["dataset"] == "digits" and d["measured"]["max_error"] <= c["eps"]
    assert any("residual" in a for a in c["assumptions"]) and any("BatchNorm" in a for a in c["assumptions"])


def test_budget_for_a_residual_model(capsys, residual_file):
    """Issue 22: budget takes every network certify takes (residual + BatchNorm + pooling); the certificate
    recomputed at the returned allocation (magnitude, exact-k per layer) is <= eps."""
    code, out, err = run(capsys, "budget", "--model", residual_file, "--input-shape", "1,8,8", "--eps", "1",
                         "--certificate", "lemma-a", "--json")  # the auto inversion: tests/test_api.py
    assert code == 0, err
    d = json.loads(out)
    assert d["eps_achieved"] <= d["eps"] == 1 and d["total_prunable"] > 0 and d["inverted_certificate"]
    assert [L["name"] for L in d["layers"]] == ["stem.weight", "conv.weight", "fc.weight"]
    from probprune.api import certify, read_network
    from probprune.budgets.apriori import magnitude_prune_count

    g = read_network(residual_file, None, (1, 8, 8)).graph
    k = {L["name"]: L["max_prunable"] for L in d["layers"]}
    # "auto": the min of every certificate, so <= whichever one the budget inverted
    c = certify(g, pruned={n: magnitude_prune_count(w, k[n]) for n, w in g.weights.items()})
    assert c.eps <= 1.0


class Rec(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(8, 8, batch_first=True)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        return self.fc(self.rnn(x)[0][:, -1])


def test_certify_refuses_an_lstm_model_naming_it(capsys, tmp_path):
    p = tmp_path / "lstm.pt"
    torch.save(Rec(), p)
    code, _, err = run(capsys, "certify", "--model", str(p), "--input-shape", "8,8", "--fraction", "0.1")
    assert code == 2 and "'rnn' (LSTM)" in err


class _Enc(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = nn.Sequential(Rec())

    def forward(self, x):
        return self.enc(x)


@pytest.mark.parametrize("make, shape, fqn", [(Rec, None, "'rnn' (LSTM)"), (_Enc, None, "'enc.0.rnn' (LSTM)"),
                                              (_Enc, "8,8", "'enc.0.rnn' (LSTM)"),
                                              (lambda: nn.Sequential(nn.LSTM(8, 8)), None, "'0' (LSTM)")])
def test_certify_lstm_error_is_one_line_naming_it_with_or_without_input_shape(capsys, tmp_path, make, shape, fqn):
    """The refusal names the unsupported leaf module by its FQN and type, also when no --input-shape is given
    (before: 'pass input_shape ...', which did not say that the model holds an LSTM)."""
    p = tmp_path / "lstm.pt"
    torch.save(make(), p)
    code, _, err = run(capsys, "certify", "--model", str(p), "--fraction", "0.1",
                       *(("--input-shape", shape) if shape else ()))
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:")
    assert "LSTM" in lines[0] and fqn in lines[0] and "unsupported layer" in lines[0]


def test_bound_with_huge_K_is_refused_not_null(capsys):
    code, out, err = run(capsys, "bound", "--K", "1e200", "--fraction", "0.05", "--json")
    assert code == 2 and '"eps": null' not in out


def test_one_reader_for_train_files_including_mc(tmp_path):
    """A conv state dict written like `probprune train` does (arch + input shape) loads in certify's reader and in the
    Monte Carlo engine's, without --input-shape."""
    from probprune.mc.trials import load_model as mc_load
    from probprune.net.io import read_network, save_model
    from probprune.net.zoo import build_model

    m = build_model("conv2", (1, 8, 8), 10, bias=True, seed=0)
    p = str(tmp_path / "conv2.pt")
    save_model(m, p, arch="conv2", input_shape=(1, 8, 8))
    _, g = read_network(p)
    assert g.input_shape == (1, 8, 8) and len(g.weight_names) == 5
    pm = mc_load(p)
    assert pm.spec.input_shape == (1, 8, 8) and pm.names == list(g.weight_names)
