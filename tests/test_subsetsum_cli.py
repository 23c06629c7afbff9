"""``probprune lottery ...`` end to end (JSON output, clear errors with exit code 2)."""
import json

import numpy as np
import pytest
import torch
import torch.nn as nn

from _cli import run_cli


def _run(capsys, argv):
    return run_cli(capsys, argv)


def test_solve_json(capsys):
    code, out, _ = _run(capsys, ["lottery", "subset-sum", "solve", "--coeffs", "0.5,0.3,-0.2,0.11",
                                 "--targets", "0.1,0.41", "--mode", "sparsest", "--eps", "0.005", "--json"])
    assert code == 0
    d = json.loads(out)
    assert d["successes"] == 2 and d["mode"] == "sparsest"
    assert d["rows"][0]["subset"] == [1, 2] and d["rows"][1]["subset"] == [1, 3]
    code, out, _ = _run(capsys, ["lottery", "subset-sum", "solve", "--n", "12", "--method", "milp", "--json"])
    assert code == 0 and json.loads(out)["method"] == "milp"


def test_coverage_and_per_target_json(capsys):
    code, out, _ = _run(capsys, ["lottery", "subset-sum", "coverage", "--n", "4:20:4", "--eps", "0.05",
                                 "--trials", "60", "--law", "product", "--json"])
    assert code == 0
    d = json.loads(out)
    assert [r["n"] for r in d["rows"]] == [4, 8, 12, 16, 20] and d["law"] == "product"
    code, out, _ = _run(capsys, ["lottery", "subset-sum", "per-target", "--n", "10", "--eps", "0.05",
                                 "--trials", "200", "--json"])
    assert code == 0 and 0 < json.loads(out)["success"] <= 1


def test_widths_json(capsys):
    code, out, _ = _run(capsys, ["lottery", "widths", "--d", "10", "--eps", "0.01", "--json"])
    assert code == 0 and len(json.loads(out)["rows"]) == 4


def test_construct_json(capsys, tmp_path):
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 6, bias=False), nn.ReLU(), nn.Linear(6, 2, bias=False))
    with torch.no_grad():
        for lin in (m[0], m[2]):
            lin.weight.div_(torch.linalg.matrix_norm(lin.weight, 2))
    path = tmp_path / "t.pt"
    torch.save(m, path)
    out_path = tmp_path / "pruned.pt"
    code, out, err = _run(capsys, ["lottery", "construct", "--model", str(path), "--eps", "0.2", "--json",
                                   "--out", str(out_path)])
    assert code == 0, err
    d = json.loads(out)
    assert d["success"] and d["failures"] == 0
    assert d["measured"]["sup_error_lower_bound"] <= d["bound_realized"] * (1 + 1e-9)
    pruned = torch.load(out_path, weights_only=False)
    x = torch.randn(50, 4, dtype=torch.float64)
    with torch.no_grad():
        dev = (m.double()(x) - pruned(x)).norm(dim=1) / x.norm(dim=1)
    assert float(dev.max()) <= d["bound_realized"] * (1 + 1e-9)
    # too narrow: failures -> listed and exit code 2
    code, out, err = _run(capsys, ["lottery", "construct", "--model", str(path), "--eps", "0.01",
                                   "--units-per-input", "1", "--json"])
    assert code == 2 and "missed their tolerance" in err
    assert json.loads(out)["failures"] > 0


@pytest.mark.parametrize("argv, msg", [
    (["lottery", "subset-sum", "solve", "--eps", "0", "--mode", "sparsest"], "eps"),
    (["lottery", "subset-sum", "solve", "--n", "0"], "--n"),
    (["lottery", "subset-sum", "solve", "--coeffs", "0.1,0.2", "--targets", "3"], "coverable range"),
    (["lottery", "subset-sum", "coverage", "--n", "0:5", "--trials", "5"], "n must be"),
    (["lottery", "subset-sum", "coverage", "--n", "5", "--eps", "-1", "--trials", "5"], "eps"),
    (["lottery", "construct", "--model", "/nonexistent.pt", "--eps", "0.1"], "not found"),
])
def test_cli_errors(capsys, argv, msg):
    code, _, err = _run(capsys, argv)
    assert code == 2 and err.startswith("error:") and msg in err


def test_construct_unsupported_layer(capsys, tmp_path):
    m = nn.Sequential(nn.Linear(3, 4, bias=False), nn.Tanh(), nn.Linear(4, 2, bias=False))
    p = tmp_path / "tanh.pt"
    torch.save(m, p)
    code, _, err = _run(capsys, ["lottery", "construct", "--model", str(p), "--eps", "0.1"])
    assert code == 2 and "ReLU" in err
