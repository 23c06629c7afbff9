"""The Monte Carlo engine on the one network graph (issue 10): its ``cert`` column is `probprune certify`'s Cert-D for
the same network and mask (bias-free FCN, biased MLP with sigma(0) != 0, CNN with conv + pooling + biases, residual
CNN with BatchNorm), and fixed network graphs (residual, BatchNorm) run under `probprune mc run` with measured <= cert.
"""
import json

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from probprune.cli import main
from probprune.mc import MCConfig, evaluate_unit
from probprune.mc.trials import groups, trial_rng

REL = 1e-9


def _cli(capsys, *argv):
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
        raise SystemExit(0)
    out = capsys.readouterr()
    return exc.value.code or 0, out.out, out.err


def _certify_eps(capsys, path, q, input_shape=None) -> float:
    """`probprune certify --json` (Lemma A, layer-wise exact-k magnitude mask): certificate.eps."""
    argv = ["certify", "--model", path, "--fraction", str(q), "--method", "magnitude", "--bound", "lemma-a", "--json"]
    if input_shape:
        argv += ["--input-shape", ",".join(map(str, input_shape))]
    code, out, err = _cli(capsys, *argv)
    assert code == 0, err
    return float(json.loads(out)["certificate"]["eps"])


def _entry(path, input_shape):
    return {"path": str(path), "input_shape": list(input_shape)} if input_shape else str(path)


def _mc_rows(path, input_shape, methods=("magnitude_exact",), q=0.3, n=2, **kw):
    cfg = MCConfig(models=(_entry(path, input_shape),), methods=methods, fractions=(q,), deltas=(0.1,), n_trials=n,
                   batch_size=n, pgd_starts=64, pgd_iters=6, **kw)
    return cfg, evaluate_unit(cfg, 0, 0, 0)


class ResBN(nn.Module):
    """conv(bias) -> BN -> ReLU -> residual block (conv -> BN, + skip, ReLU) -> MaxPool(2) -> flatten -> fc(bias)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 3, 3, padding=1)
        self.bn0 = nn.BatchNorm2d(3)
        self.conv = nn.Conv2d(3, 3, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(3)
        self.fc = nn.Linear(27, 4)

    def forward(self, x):
        h = F.relu(self.bn0(self.stem(x)))
        h = F.relu(h + self.bn1(self.conv(h)))
        return self.fc(torch.flatten(F.max_pool2d(h, 2), 1))


def _resbn():
    torch.manual_seed(3)
    m = ResBN()
    for bn in (m.bn0, m.bn1):
        bn.running_mean.uniform_(-0.3, 0.3)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.2, 0.2)
    return m.eval()


MODELS = {
    "fcn_bias_free": (lambda: nn.Sequential(nn.Linear(10, 16, bias=False), nn.ReLU(), nn.Linear(16, 12, bias=False),
                                            nn.ReLU(), nn.Linear(12, 3, bias=False)), None),
    "mlp_biased_sigmoid": (lambda: nn.Sequential(nn.Linear(10, 16), nn.Sigmoid(), nn.Linear(16, 3)), None),
    "cnn_pool_bias": (lambda: nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                            nn.Conv2d(4, 4, 3), nn.Tanh(), nn.AvgPool2d(2, 1), nn.Flatten(),
                                            nn.Linear(4, 3)), (2, 8, 8)),
    "resnet_bn": (_resbn, (1, 6, 6)),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_mc_cert_equals_certify_cli(capsys, tmp_path, name):
    """Same network, same mask (layer-wise exact-k magnitude): the MC row's cert == `probprune certify`'s
    certificate.eps (rel 1e-9), for (a) a bias-free FCN (fast path), (b) a biased MLP with sigma(0) != 0, (c) a CNN
    with conv + max/avg pooling + biases, (d) a residual CNN with BatchNorm (graph path)."""
    make, ishape = MODELS[name]
    torch.manual_seed(0)
    path = tmp_path / f"{name}.pt"
    torch.save(make().eval(), path)
    q = 0.3
    eps = _certify_eps(capsys, str(path), q, ishape)
    cfg, df = _mc_rows(path, ishape, q=q)
    assert groups(cfg)[0].network.graph_model == (name == "resnet_bn")
    assert np.isfinite(eps) and eps > 0
    np.testing.assert_allclose(df["cert"].to_numpy(), eps, rtol=REL)
    assert (df["err_lb"] <= df["err_ub"] * (1 + REL)).all() and (df["err_lb"] > 0).all()


def test_mc_cert_equals_certify_graph_for_random_masks_on_a_residual_model(tmp_path):
    """Random masks: each trial's mask is rebuilt from the documented stream 1 (prune where u < q, one u per weight in
    graph.weight_nodes order) and certified by certificates.certify_graph: equal to the row's cert."""
    from probprune.certificates.lemma import certify_graph
    from probprune.mc.trials import read_model

    path = tmp_path / "res.pt"
    torch.save(_resbn(), path)
    cfg, df = _mc_rows(path, (1, 6, 6), methods=("random",), q=0.25, n=3)
    g = groups(cfg)[0]
    graph = read_model(str(path), (1, 6, 6))[1]
    n_weights = sum(node.op.weight.size for node in graph.weight_nodes)
    for t in range(cfg.n_trials):
        r = trial_rng(0, g, t, 1)
        masks = {node.op.fqn: r.random(node.op.weight.shape) >= 0.25 for node in graph.weight_nodes}
        c = certify_graph(graph, masks)
        row = df[df.trial == t].iloc[0]
        assert row["cert"] == pytest.approx(c.eps, rel=REL)
        assert row["realized_fraction"] == pytest.approx(
            sum(int((~m).sum()) for m in masks.values()) / n_weights, rel=1e-12)


def test_grid_cnn_cert_equals_certify_of_the_trial_network():
    """A grid CNN (random weights per trial, no file): the cert column equals certificates.certify on the trial's
    weights (redrawn from stream 0) and exact-k magnitude mask (FFT conv norms, as certify)."""
    from probprune.budgets.apriori import magnitude_prune_count
    from probprune.certificates.lemma import certify
    from probprune.mc.trials import _draw_weights

    cfg = MCConfig(cnns=({"input_shape": [1, 6, 6], "convs": [{"c_out": 3, "kernel": 3, "padding": 1,
                                                                "pool": ["max", 2, 2]}], "fc": [4]},),
                   activations=("relu",), methods=("magnitude_exact",), fractions=(0.3,), deltas=(0.1,), n_trials=2,
                   batch_size=2, pgd_starts=64, pgd_iters=6)
    g = groups(cfg)[0]
    spec = g.network.spec(g.activation, cfg.K)
    df = evaluate_unit(cfg, 5, 0, 0)
    for t in range(2):
        W = _draw_weights(spec, g.law, trial_rng(5, g, t, 0))
        Wh = [magnitude_prune_count(w, int(np.floor(0.3 * w.size))) for w in W]
        assert df[df.trial == t]["cert"].iloc[0] == pytest.approx(certify(spec, W, Wh).eps, rel=REL)


def test_residual_model_verdict_rows(tmp_path):
    """Random pruning of a fixed residual BN model: Cert-R on the graph as the bound, verdicts decided, measured (PGD
    through the graph) <= cert; exact-k magnitude has no bound; the library's layer-wise magnitude pruning (module
    masks by FQN) gives the same masks as magnitude_exact."""
    path = tmp_path / "res.pt"
    torch.save(_resbn(), path)
    cfg, df = _mc_rows(path, (1, 6, 6), methods=("random", "magnitude_exact", "lib_magnitude_layer"), q=0.2, n=3)
    assert (df["err_lb"] > 0).all() and (df["err_lb"] <= df["cert"] * (1 + REL)).all()
    rnd = df[df.method == "random"]
    assert rnd["bound"].nunique() == 1 and np.isfinite(rnd["bound"]).all()
    assert set(rnd["verdict"]) <= {"satisfied", "undecided", "violated"} and (rnd["verdict"] != "violated").all()
    assert (df[df.method != "random"]["verdict"] == "no_bound").all()
    a = df[df.method == "lib_magnitude_layer"].reset_index(drop=True)
    b = df[df.method == "magnitude_exact"].reset_index(drop=True)
    np.testing.assert_allclose(a["cert"], b["cert"], rtol=1e-12)
    np.testing.assert_allclose(a["realized_fraction"], b["realized_fraction"], rtol=1e-12)


def test_graph_batched_forward_matches_the_graph_per_trial(tmp_path):
    from probprune.net import from_torch
    from probprune.mc import measure as M

    m = _resbn()
    g = from_torch(m, (1, 6, 6))
    rng = np.random.default_rng(0)
    W = [torch.from_numpy(np.stack([n.op.weight * (rng.random(n.op.weight.shape) > 0.3) for _ in range(3)]))
         for n in g.weight_nodes]
    x = torch.randn(5, 1, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = M.graph_batched_forward(g, W, x)
    for k in range(3):
        gk = g.with_weights({n.op.fqn: W[i][k].numpy() for i, n in enumerate(g.weight_nodes)})
        torch.testing.assert_close(y[k], gk.forward(x).reshape(5, -1), rtol=1e-12, atol=1e-13)
    dense = [torch.from_numpy(n.op.weight[None]) for n in g.weight_nodes]  # the unpruned network = the module
    with torch.no_grad():
        torch.testing.assert_close(M.graph_batched_forward(g, dense, x)[0], m.double()(x).reshape(5, -1),
                                   rtol=1e-10, atol=1e-12)


def test_mc_run_end_to_end_on_a_residual_model_file(capsys, tmp_path):
    """`probprune mc run CONFIG` on a YAML config whose models entry is a residual BN CNN file."""
    from probprune.mc import load_run

    path = tmp_path / "res.pt"
    torch.save(_resbn(), path)
    cfg = tmp_path / "res.yaml"
    cfg.write_text(f"name: res\nmodels:\n  - path: {path}\n    input_shape: [1, 6, 6]\nmethods: [random]\n"
                   "fractions: [0.2]\ndeltas: [0.1]\nn_trials: 4\nbatch_size: 2\npgd_starts: 64\npgd_iters: 4\n")
    code, out, err = _cli(capsys, "mc", "run", str(cfg), "--workers", "1", "--out", str(tmp_path / "out"),
                          "--no-progress", "--json")
    assert code == 0, err
    runs = list((tmp_path / "out").iterdir())
    assert len(runs) == 1
    _, df, complete = load_run(runs[0])
    assert complete and len(df) == 4 and (df["err_lb"] <= df["err_ub"] * (1 + REL)).all()
    assert df["network"].iloc[0].startswith("model:res.pt:") and (df["kind"] == "model").all()


class Named(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(10, 12)
        self.fc2 = nn.Linear(12, 3)

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(x)))


def test_library_methods_on_a_fixed_chain_model_mask_its_own_parameters(tmp_path):
    """A fixed chain model whose parameters are not named 0.weight, 2.weight: lib_magnitude_layer masks the module's
    own FQNs (fc1.weight, fc2.weight) and equals the built-in exact-k magnitude rows."""
    torch.manual_seed(1)
    path = tmp_path / "named.pt"
    torch.save(Named(), path)
    cfg, df = _mc_rows(path, None, methods=("lib_magnitude_layer", "magnitude_exact"), q=0.3)
    assert not groups(cfg)[0].network.graph_model
    a = df[df.method == "lib_magnitude_layer"].reset_index(drop=True)
    b = df[df.method == "magnitude_exact"].reset_index(drop=True)
    np.testing.assert_allclose(a["cert"], b["cert"], rtol=1e-12)
    np.testing.assert_allclose(a["realized_fraction"], b["realized_fraction"], rtol=1e-12)
