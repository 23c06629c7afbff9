"""`probprune certify --bound ... --radius ...` (THEORY §12): tight certificate next to Cert-D, stability."""
import json

import pytest
import torch
import torch.nn as nn

from _cli import run_cli


def run(capsys, *argv):
    return run_cli(capsys, argv)


@pytest.fixture
def mlp_file(tmp_path):
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(64, 24), nn.ReLU(), nn.Linear(24, 10))
    p = tmp_path / "m.pt"
    torch.save(m, p)
    return str(p)


def test_auto_bound_and_stability(capsys, mlp_file):
    code, out, _ = run(capsys, "certify", "--model", mlp_file, "--fraction", "0.4", "--radius", "0.1",
                       "--n-inputs", "30", "--json")
    assert code == 0
    d = json.loads(out)
    c = d["certificate"]
    assert d["measured"]["max_error"] <= c["eps"]
    assert c["eps"] <= c.get("lemma_a_eps", c["eps"])
    assert c["eps"] == min(c.get("lemma_a_eps", c["eps"]), d["tight"]["eps"])
    st = d["tight"]["stability"]
    assert st["n"] == 30 and 0.0 <= st["fraction"] <= st["F_robust"] <= 1.0


def test_explicit_bound_and_refusal(capsys, mlp_file, tmp_path):
    code, out, _ = run(capsys, "certify", "--model", mlp_file, "--fraction", "0.4", "--bound", "propagate", "--json")
    assert code == 0 and json.loads(out)["certificate"]["bound"] == "tight:propagate"
    code, out, _ = run(capsys, "certify", "--model", mlp_file, "--fraction", "0.4", "--bound", "sdp", "--json")
    d = json.loads(out)
    assert code == 0 and d["certificate"]["bound"] == "tight:sdp"  # the cross-network SDP (§12.6)
    assert d["measured"]["max_error"] <= d["certificate"]["eps"]
    code, _, err = run(capsys, "certify", "--model", mlp_file, "--fraction", "0.4", "--bound", "lipsdp")
    assert code == 2 and "--bound" in err
    torch.manual_seed(0)
    mp = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32, 10))
    p = tmp_path / "mp.pt"
    torch.save(mp, p)
    # max pooling goes through the §12 certificates (THEORY §12.7: max(a, b) = b + ReLU(a - b)); auto is the smaller
    code, out, _ = run(capsys, "certify", "--model", str(p), "--input-shape", "1,8,8", "--fraction", "0.3",
                       "--bound", "composed", "--json")
    d = json.loads(out)
    assert code == 0 and d["certificate"]["bound"].startswith("tight:composed")
    assert d["measured"]["max_error"] <= d["certificate"]["eps"]
