"""Issue 2: the `probprune budget | bound | certify | width` commands, including one-line errors with exit code 2."""
import json

import pytest
import torch
import torch.nn as nn

from _cli import run_cli
from probprune.net.io import save_model


def run(capsys, *argv):
    return run_cli(capsys, argv)


def test_bound_json_has_eps_and_terms(capsys):
    code, out, _ = run(capsys, "bound", "--widths", "784,300,100,10", "--method", "magnitude", "--fraction", "0.1",
                       "--delta", "0.05", "--json")
    d = json.loads(out)
    assert code == 0 and d["eps"] > 0 and len(d["layers"]) == 3 and "B" in d["layers"][0]


def test_bound_every_registered_apriori_method_with_its_statement(capsys):
    """`bound --method` offers exactly the registry's methods with an a-priori statement; exact-k magnitude gets
    the §9.6 bound (registry statement sharp-S9.6) with a finite eps and its statement in the JSON."""
    from probprune.core import registry
    from probprune.cli.common import BoundMethod
    from probprune.net.templates import fcn_spec

    assert [m.value for m in BoundMethod] == [m.name for m in registry.METHODS.values() if m.apriori is not None]
    assert {"magnitude_exact", "random_exact"} <= {m.value for m in BoundMethod}
    assert registry.method("magnitude_exact").apriori == "sharp-S9.6"
    code, out, _ = run(capsys, "bound", "--method", "magnitude_exact", "--widths", "50,50,10", "--fraction", "0.1",
                       "--json")
    d = json.loads(out)
    assert code == 0 and d["method"] == "magnitude_exact" and 0 < d["eps"] < float("inf")
    assert "§9.6" in d["statement"] and "exact-k magnitude" in d["statement"]
    spec = fcn_spec((50, 50, 10), "relu", 1.0)
    assert registry.bound("sharp-S9.6").function(spec, 0.1, 0.05).eps == pytest.approx(d["eps"], rel=1e-12)


def test_budget_json_spec_only(capsys):
    code, out, _ = run(capsys, "budget", "--eps", "0.5", "--widths", "100,200,10", "--json")
    d = json.loads(out)
    assert code == 0
    assert {"eps", "delta", "method", "layers", "total_prunable", "total_weights"} <= set(d)
    assert d["total_weights"] == 100 * 200 + 200 * 10
    assert d["eps_achieved"] <= 0.5


@pytest.fixture
def saved_model(tmp_path):
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(64, 32, bias=False), nn.ReLU(), nn.Linear(32, 10, bias=False))
    p = tmp_path / "m.pt"
    torch.save(m, p)
    return str(p)


def test_certify_reports_certificate_above_measured(capsys, saved_model):
    code, out, _ = run(capsys, "certify", "--model", saved_model, "--fraction", "0.3", "--json")
    d = json.loads(out)
    assert code == 0 and d["measured"]["dataset"] == "digits"
    assert d["measured"]["max_error"] <= d["certificate"]["eps"]


def test_certify_random_and_state_dict(capsys, tmp_path):
    torch.manual_seed(1)
    m = nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
    p = str(tmp_path / "sd.pt")
    save_model(m, p, arch="mlp:16", input_shape=(64,))
    code, out, _ = run(capsys, "certify", "--model", p, "--method", "random", "--fraction", "0.2", "--json")
    d = json.loads(out)
    assert code == 0 and d["cert_R_before_mask"]["kind"] == "Cert-R"
    assert d["measured"]["max_error"] <= d["certificate"]["eps"]


def test_budget_for_a_model_file(capsys, saved_model):
    code, out, _ = run(capsys, "budget", "--model", saved_model, "--eps", "0.2", "--certificate", "lemma-a", "--json")
    d = json.loads(out)
    assert code == 0 and d["source"] == "certificate" and d["eps_achieved"] <= 0.2


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["bound", "--fraction", "0.1", "--delta", "1.5"], "delta"),
        (["bound", "--fraction", "1.2"], "fraction"),
        (["bound", "--fraction", "0.1", "--widths", "784"], "widths"),
        (["bound", "--fraction", "0.1", "--method", "voodoo"], "method"),
        (["budget", "--eps", "0", "--widths", "10,10"], "eps"),
        (["budget", "--eps", "-1", "--widths", "10,10"], "eps"),
        (["budget", "--eps", "0.1", "--delta", "0", "--widths", "10,10"], "delta"),
        (["budget", "--model", "/nonexistent/model.pt"], "not found"),
        (["bound", "--fraction", "0.1", "--activation", "sigmoid"], "sigma(0)"),
    ],
)
def test_cli_errors_are_one_line_exit_2(capsys, argv, needle):
    code, out, err = run(capsys, *argv)
    assert code == 2
    lines = [l for l in err.strip().splitlines() if l]
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0]


def test_corrupt_and_unsupported_model_files(capsys, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a torch file")
    code, _, err = run(capsys, "certify", "--model", str(bad), "--fraction", "0.1")
    assert code == 2 and "cannot read model file" in err
    lstm = tmp_path / "lstm.pt"
    torch.save(nn.Sequential(nn.Linear(4, 4), nn.LSTM(4, 4)), lstm)
    code, _, err = run(capsys, "certify", "--model", str(lstm), "--fraction", "0.1")
    assert code == 2 and "LSTM" in err and len(err.strip().splitlines()) == 1
    nan = tmp_path / "nan.pt"
    m = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    with torch.no_grad():
        m[2].weight[0, 0] = float("inf")
    torch.save(m, nan)
    code, _, err = run(capsys, "certify", "--model", str(nan), "--fraction", "0.1")
    assert code == 2 and "NaN/inf" in err


def test_width_command_with_paper_shape(capsys):
    code, out, _ = run(capsys, "width", "--eps", "3", "--fraction", "0.05", "--d0", "20", "--dl", "5",
                       "--alpha", "0.5", "--C", "1,1,1,1,1", "--json")
    d = json.loads(out)
    assert code == 0 and d["min_width_explicit"] >= 1 and d["paper_shape"]["d_min"] == 400.0
