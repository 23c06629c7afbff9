"""Trials (probprune.mc.trials): pruning rules, seeds, library methods, verdict logic."""
import numpy as np
import pytest
import torch

from probprune.mc import MCConfig
from probprune.mc.trials import evaluate_unit, groups, prune_batched, trial_rng
from probprune.networks import fcn_spec, sample_weights


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


def test_rows_bracket_and_verdicts_consistent():
    cfg = MCConfig(widths=(8,), depths=(2,), activations=("relu", "identity"), methods=("magnitude", "random"),
                   fractions=(0.3,), deltas=(0.05, 0.5), n_trials=6, batch_size=6, pgd_iters=10)
    for g in groups(cfg):
        df = evaluate_unit(cfg, 3, g.index, 0)
        assert (df["err_lb"] <= df["err_ub"] * (1 + 1e-9)).all()
        thr = df["bound"] * (1 + 1e-9)
        sat, vio = df["err_ub"] <= thr, df["err_lb"] > thr
        assert ((df["verdict"] == "satisfied") == sat).all() and ((df["verdict"] == "violated") == vio).all()
        assert np.allclose(df["looseness_lb"], df["bound"] / df["err_lb"])
    # the weights stream depends on (seed, network, law, trial) only
    g0 = groups(cfg)[0]
    a = trial_rng(0, g0, 5, 0).random(3)
    assert np.array_equal(a, trial_rng(0, g0, 5, 0).random(3)) and not np.array_equal(a, trial_rng(0, g0, 6, 0).random(3))


def test_cnn_unit_with_dataset_average_error():
    cfg = MCConfig(widths=(), depths=(), cnns=({"input_shape": [1, 8, 8], "convs": [{"c_out": 3, "kernel": 3,
                   "padding": 1, "pool": ["max", 2, 2]}], "fc": [5]},), activations=("relu",), laws=("gaussian",),
                   methods=("magnitude",), fractions=(0.3,), deltas=(0.1,), n_trials=3, batch_size=3, pgd_iters=8,
                   dataset="digits", dataset_n=50)
    df = evaluate_unit(cfg, 0, 0, 0)
    assert df["network"].iloc[0] == "cnn:1x8x8-c3k3s1p1-max2s2-fc5"
    assert (df["avg_err"] <= df["avg_err_max"]).all() and (df["avg_err_max"] <= df["err_ub"]).all()
    assert (df["err_lb"] > 0).all() and (df["err_lb"] <= df["err_ub"] * (1 + 1e-9)).all()
