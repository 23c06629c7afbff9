"""Trials (probprune.mc.trials): pruning rules, seeds, library methods, verdict logic."""
import numpy as np
import pytest
import torch

from probprune.mc import MCConfig
from probprune.mc.trials import evaluate_unit, groups, prune_batched, trial_rng
from probprune.net.templates import fcn_spec, sample_weights


def test_pruning_rules_threshold_nested_and_exact_k():
    spec = fcn_spec([40, 60, 30], "identity")
    W = [torch.from_numpy(w) for w in sample_weights(spec, 0, n=20)]
    U = [torch.from_numpy(np.random.default_rng(1).random(w.shape)) for w in W]
    for q in (0.1, 0.3):
        Wh, real = prune_batched(spec, W, U, "magnitude", q, "uniform")
        assert abs(real.mean() - q) < 0.01  # |w|/a ~ U[0,1]: E[#pruned] = q N (§1.5)
        for w, wh, L in zip(W, Wh, spec.layers):
            assert torch.equal(wh == 0, w.abs() < q * L.half_width)
    a, _ = prune_batched(spec, W, U, "random", 0.2, "uniform")
    b, _ = prune_batched(spec, W, U, "random", 0.4, "uniform")
    assert all(torch.all((x == 0) <= (y == 0)) for x, y in zip(a, b))  # nested masks across p
    c, _ = prune_batched(spec, W, U, "random_rescaled", 0.4, "uniform")
    assert torch.allclose(c[0][b[0] != 0], W[0][b[0] != 0] / 0.6)
    for m in ("magnitude_exact", "random_exact"):
        d, real = prune_batched(spec, W, U, m, 0.25, "uniform")
        for wh, L in zip(d, spec.layers):
            assert torch.all((wh == 0).reshape(20, -1).sum(1) == int(0.25 * L.N))


def test_library_method_matches_builtin_exact_k_magnitude():
    cfg = MCConfig(widths=(10,), depths=(2,), activations=("identity",), methods=("lib_magnitude_layer",
                   "magnitude_exact"), fractions=(0.3,), deltas=(0.1,), n_trials=5, batch_size=5)
    df = evaluate_unit(cfg, 0, 0, 0)
    a = df[df.method == "lib_magnitude_layer"].reset_index(drop=True)
    b = df[df.method == "magnitude_exact"].reset_index(drop=True)
    np.testing.assert_allclose(a["err_lb"], b["err_lb"], rtol=1e-12)
    assert (a["verdict"] == "no_bound").all()


def test_linear_rows_match_independent_exact_error_and_verdicts():
    """Linear nets: the row's error equals the exact sup error recomputed here from scratch (the weights are redrawn
    from the documented stream 0, pruned by hand, and the error is the largest singular value of the product
    difference, numpy SVD); the verdict is then fixed by that value against the bound."""
    from probprune.net.templates import sample_weights

    cfg = MCConfig(widths=(8,), depths=(2,), activations=("identity",), methods=("magnitude", "random"),
                   fractions=(0.3,), deltas=(0.05, 0.5), n_trials=6, batch_size=6)
    g = groups(cfg)[0]
    spec = g.network.spec(g.activation, cfg.K)
    df = evaluate_unit(cfg, 3, g.index, 0)
    for t in range(cfg.n_trials):
        W = sample_weights(spec, trial_rng(3, g, t, 0), "uniform")
        u_rng = trial_rng(3, g, t, 1)
        U = [u_rng.random(w.shape) for w in W]
        pruned = {"magnitude": [np.where(np.abs(w) < 0.3 * L.half_width, 0.0, w) for w, L in zip(W, spec.layers)],
                  "random": [np.where(u < 0.3, 0.0, w) for w, u in zip(W, U)]}
        for method, Wh in pruned.items():
            exact = np.linalg.norm(W[1] @ W[0] - Wh[1] @ Wh[0], 2)
            rows = df[(df.trial == t) & (df.method == method)]
            np.testing.assert_allclose(rows["err_lb"], exact, rtol=1e-9)
            for _, r in rows.iterrows():
                assert r["verdict"] == ("satisfied" if exact <= r["bound"] else "violated")


def test_relu_rows_bracket():
    cfg = MCConfig(widths=(8,), depths=(2,), activations=("relu",), methods=("magnitude", "random"),
                   fractions=(0.3,), deltas=(0.05,), n_trials=6, batch_size=6, pgd_iters=10)
    df = evaluate_unit(cfg, 3, groups(cfg)[0].index, 0)
    assert (df["err_lb"] > 0).all() and (df["err_lb"] <= df["err_ub"] * (1 + 1e-9)).all()
    assert set(df["verdict"]) <= {"satisfied", "violated", "undecided"}
    # the weights stream depends on (seed, network, law, trial) only
    g0 = groups(cfg)[0]
    a = trial_rng(0, g0, 5, 0).random(3)
    assert np.array_equal(a, trial_rng(0, g0, 5, 0).random(3)) and not np.array_equal(a, trial_rng(0, g0, 6, 0).random(3))


def test_config_verdicts_against_scipy_binomtest():
    """The per-configuration verdict of ``summarize`` against one-sided Clopper-Pearson limits computed here with
    scipy.stats.binomtest (two-sided exact interval at level 1 - 2 alpha = two one-sided limits at alpha), on a
    real linear run where delta = 0.5 is large and delta = 0.001 is below what T = 40 trials can certify."""
    from scipy.stats import binomtest

    from probprune.mc import summarize

    cfg = MCConfig(widths=(8,), depths=(2,), activations=("identity",), methods=("magnitude",),
                   fractions=(0.3,), deltas=(0.001, 0.5), n_trials=40, batch_size=40)
    df = evaluate_unit(cfg, 0, 0, 0)
    s = summarize(df, alpha=0.05).set_index("delta")
    for delta, row in s.iterrows():
        V = int((df[df.delta == delta]["verdict"] != "satisfied").sum())
        ci = binomtest(V, 40).proportion_ci(confidence_level=0.90, method="exact")
        assert np.isclose(row["rate_upper"], ci.high, rtol=1e-7)
        expected = "refuted" if ci.low > delta else ("consistent" if ci.high <= delta else "inconclusive")
        assert row["verdict"] == expected
    # hand-derived: with 0 violations in 40 trials the 95% upper limit is 1 - 0.05^(1/40) = 0.0722 > 0.001
    if int(s.loc[0.001, "V_u"]) == 0:
        assert np.isclose(s.loc[0.001, "rate_upper"], 1 - 0.05 ** (1 / 40)) and s.loc[0.001, "verdict"] == "inconclusive"


def test_cnn_unit_with_dataset_average_error():
    cfg = MCConfig(widths=(), depths=(), cnns=({"input_shape": [1, 8, 8], "convs": [{"c_out": 3, "kernel": 3,
                   "padding": 1, "pool": ["max", 2, 2]}], "fc": [5]},), activations=("relu",), laws=("gaussian",),
                   methods=("magnitude",), fractions=(0.3,), deltas=(0.1,), n_trials=3, batch_size=3, pgd_iters=8,
                   dataset="digits", dataset_n=50)
    df = evaluate_unit(cfg, 0, 0, 0)
    assert df["network"].iloc[0] == "cnn:1x8x8-c3k3s1p1-max2s2-fc5"
    assert (df["avg_err"] <= df["avg_err_max"]).all() and (df["avg_err_max"] <= df["err_ub"]).all()
    assert (df["err_lb"] > 0).all() and (df["err_lb"] <= df["err_ub"] * (1 + 1e-9)).all()


def test_fixed_trained_network_with_biases_against_cert_r(tmp_path):
    """A fixed torch model (biases, tanh): only the masks are random; random pruning is checked against Cert-R
    (probability over the mask), magnitude gets the Cert-D bracket only; the file's md5 enters the config hash."""
    import torch.nn as nn

    from probprune.mc import run, load_run, summarize
    from probprune.core.errors import ProbPruneError

    torch.manual_seed(0)
    path = tmp_path / "net.pt"
    torch.save(nn.Sequential(nn.Linear(10, 24), nn.Tanh(), nn.Linear(24, 3)), path)
    cfg = MCConfig(models=(str(path),), methods=("random", "magnitude_exact"), fractions=(0.2,), deltas=(0.1,),
                   n_trials=20, batch_size=10, pgd_iters=10)
    assert cfg.models[0]["md5"] and groups(cfg)[0].law == "fixed"
    _, df, complete = load_run(run(cfg, out_root=tmp_path / "out", workers=1, progress=False).run_dir)
    assert complete and (df["err_lb"] <= df["err_ub"] * (1 + 1e-9)).all() and (df["err_lb"] > 0).all()
    s = summarize(df).set_index("method")
    assert s.loc["magnitude_exact", "verdict"] == "no_bound" and s.loc["random", "verdict"] != "refuted"
    assert df[df.method == "random"]["bound"].nunique() == 1  # Cert-R depends on the weights only
    torch.save(nn.Sequential(nn.Linear(10, 24), nn.Tanh(), nn.Linear(24, 3)), path)  # the file changes
    with pytest.raises(ProbPruneError, match="changed"):
        MCConfig(**{**cfg.to_dict(), "n_trials": 20})
