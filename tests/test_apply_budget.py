"""`probprune apply-budget` prunes exactly what a budget certified (issue 20 item 1): the counts of a certified
budget of a given network, and the certificate at the pruned model is <= the budget's eps."""
import json

import numpy as np
import torch
import torch.nn as nn

from _cli import run_cli
import probprune


def test_apply_budget_prunes_the_certified_counts(tmp_path, capsys):
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 4)).eval()
    path = tmp_path / "m.pt"
    torch.save(m, path)
    code, out, err = run_cli(capsys, ["budget", "--model", str(path), "--eps", "0.3", "--certificate", "lemma-a",
                                      "--json"])
    assert code == 0, err
    b = json.loads(out)
    bfile = tmp_path / "b.json"
    bfile.write_text(out)
    code, out, err = run_cli(capsys, ["apply-budget", "--model", str(path), "--budget", str(bfile), "--out",
                                      str(tmp_path / "p.pt"), "--json"])
    assert code == 0, err
    d = json.loads(out)
    assert d["rule"] == "exact_k"
    assert [L["pruned"] for L in d["layers"]] == [L["max_prunable"] for L in b["layers"]]
    pruned = torch.load(tmp_path / "p.pt", weights_only=False)
    sd = pruned["state_dict"] if isinstance(pruned, dict) and "state_dict" in pruned else pruned.state_dict()
    zeros = sum(int((sd[L["name"]] == 0).sum()) for L in b["layers"])
    assert zeros == b["total_prunable"]
    # the pruned weights are the smallest |w| of each layer, and the certificate there is within eps
    Wh = {L["name"]: sd[L["name"]].double().numpy() for L in b["layers"]}
    for L in b["layers"]:
        w = dict(m.named_parameters())[L["name"]].detach().double().numpy().ravel()
        kept = Wh[L["name"]].ravel() != 0
        if (~kept).any() and kept.any():
            assert np.abs(w[~kept]).max() <= np.abs(w[kept]).min()
    assert probprune.certify(str(path), pruned=Wh, bound="lemma-a").eps <= 0.3 * (1 + 1e-12)


def test_apply_budget_refuses_bad_input(tmp_path, capsys):
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(12, 4)).eval()
    path = tmp_path / "m.pt"
    torch.save(m, path)
    (tmp_path / "junk.json").write_text("not json")
    code, _, err = run_cli(capsys, ["apply-budget", "--model", str(path), "--budget", str(tmp_path / "junk.json")])
    assert code == 2 and err.startswith("error: ") and "not JSON" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "other.json").write_text(json.dumps({"method": "magnitude", "source": "certificate",
                                                     "layers": [{"name": "fc.weight", "max_prunable": 1}]}))
    code, _, err = run_cli(capsys, ["apply-budget", "--model", str(path), "--budget", str(tmp_path / "other.json")])
    assert code == 2 and "fc.weight" in err
