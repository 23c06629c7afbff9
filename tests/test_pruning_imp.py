"""Iterative magnitude pruning: nesting, schedule arithmetic, rewinding, retraining modes, controls (issue 3)."""
import math

import pytest
import torch

from probprune.net.data import load_dataset
from probprune.core.errors import ProbPruneError
from probprune.net.zoo import lenet_300_100, mlp
from probprune.pruning import full_mask, is_nested
from probprune.pruning.imp import IMPConfig, expected_remaining, imp_prune, lth_rates, per_round_rate, run_imp
from probprune.net.train import TrainConfig


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", max_train=400)


def test_per_round_rate_applied_by_imp_reaches_the_total():
    """n rounds of imp_prune at the per-round rate f = per_round_rate(p, n) leave (1 - p) N weights, up to the
    floor rounding of each round (at most one weight per round and layer, derived: r_{k+1} = r_k - floor(f r_k)
    lies in [(1 - f) r_k, (1 - f) r_k + 1))."""
    m = mlp((30, 40, 10), seed=0)
    sizes = {k: p.numel() for k, p in m.named_parameters() if k.endswith("weight")}
    for p, n in ((0.9, 3), (0.5, 1), (0.99, 5)):
        f = per_round_rate(p, n)
        mk = full_mask(m)
        for _ in range(n):
            mk = imp_prune(m, mk, "layerwise", {k: f for k in sizes})
        for k, N in sizes.items():
            kept = int(mk[k].sum())
            assert (1 - p) * N - 1e-6 <= kept < (1 - p) * N + n + 1e-6, (p, n, k, kept)
    # the LTH paper's literal reading, p^(1/n) per round, applied by the code: two rounds at 0.9^(1/2) keep
    # 1 - 0.9 = 10% of 10% = 0.27% instead of 10% of the weights
    mk = full_mask(m)
    for _ in range(2):
        mk = imp_prune(m, mk, "layerwise", {k: 0.9 ** 0.5 for k in sizes})
    kept = sum(int(v.sum()) for v in mk.values()) / sum(sizes.values())
    assert kept < 0.01
    with pytest.raises(ProbPruneError):
        per_round_rate(1.0, 3)
    with pytest.raises(ProbPruneError):
        per_round_rate(0.5, 0)


def test_imp_prune_removes_the_smallest_magnitudes():
    """Threshold separation, checked on the model's own weights (not the code's scores): layer-wise, within each
    layer every newly pruned |w| <= every kept |w|; global, the same across all layers."""
    m = mlp((20, 30, 10), seed=4)
    W = {k: p.detach().abs() for k, p in m.named_parameters() if k.endswith("weight")}
    mk0 = full_mask(m)
    lw = imp_prune(m, mk0, "layerwise", {k: 0.3 for k in W})
    for k in W:
        pruned, kept = W[k][~lw[k]], W[k][lw[k]]
        assert len(pruned) == math.floor(0.3 * W[k].numel()) and pruned.max() <= kept.min()
    gl = imp_prune(m, mk0, "global", global_rate=0.3)
    pruned = torch.cat([W[k][~gl[k]] for k in W])
    kept = torch.cat([W[k][gl[k]] for k in W])
    assert len(pruned) == math.floor(0.3 * sum(v.numel() for v in W.values())) and pruned.max() <= kept.min()
    # the global rule prunes unevenly: torch's init U[+-1/sqrt(fan_in)] makes the second layer (fan-in 30)
    # smaller in magnitude than the first (fan-in 20), so it loses a larger share
    first, second = list(W)
    assert 1 - gl[second].float().mean() > 1 - gl[first].float().mean() + 0.05


def test_lenet_schedule_from_layer_sizes():
    """The layer-wise LTH schedule on LeNet-300-100 (no training needed: prune the init repeatedly)."""
    m = lenet_300_100(seed=0)
    rates = lth_rates(m)
    assert rates == {"0.weight": 0.2, "2.weight": 0.2, "4.weight": 0.1}
    sizes = {k: p.numel() for k, p in m.named_parameters() if k.endswith("weight")}
    exp = expected_remaining(sizes, rates, 12)
    masks = [full_mask(m)]
    for L in range(12):
        masks.append(imp_prune(m, masks[-1], "layerwise", rates))
        assert is_nested(masks[-1], masks[-2])
        kept = sum(int(v.sum()) for v in masks[-1].values())
        assert kept / 266200 == exp[L + 1]  # exact, floor rounding per round
        ideal = sum(n * (1 - rates[k]) ** (L + 1) for k, n in sizes.items()) / 266200
        assert abs(kept / 266200 - ideal) < 1e-4
    # reference value independent of the code: hidden 0.8^12, output 0.9^12
    assert abs(exp[12] - (265200 * 0.8 ** 12 + 1000 * 0.9 ** 12) / 266200) < 1e-4


def test_global_strategy_nested_and_output_excluded():
    m = mlp((10, 20, 5), seed=0)
    mk = full_mask(m)
    for _ in range(4):
        new = imp_prune(m, mk, "global", global_rate=0.3, exclude_output=True)
        assert is_nested(new, mk)
        assert bool(new["2.weight"].all())
        rem = int(mk["0.weight"].sum())
        assert int(new["0.weight"].sum()) == rem - math.floor(0.3 * rem)
        mk = new
    with pytest.raises(ProbPruneError):
        imp_prune(m, mk, "random")


def test_run_imp_rewind_with_controls(digits):
    m = mlp((64, 32, 10), seed=0)
    theta0 = {k: v.clone() for k, v in m.state_dict().items()}
    cfg = IMPConfig(levels=2, controls=("reinit", "uniform", "erk"), train=TrainConfig(epochs=1, seed=0))
    res = run_imp(m, digits, cfg)
    assert res.nested() and len(res.rows) == 3 and len(res.masks) == 3
    assert [r["level"] for r in res.rows] == [0, 1, 2]
    assert res.rows[2]["remaining"] == pytest.approx(expected_remaining(res.sizes, res.rates, 2)[2])
    for r in res.rows[1:]:
        assert abs(r["uniform_remaining"] - r["remaining"]) < 2 / 2368 and 0 <= r["erk_acc"] <= 1
    # the final model is the last ticket: pruned weights are zero
    assert bool((m[0].weight[~res.masks[-1]["0.weight"]] == 0).all())
    # weights were trained away from theta_0
    assert not torch.equal(m[2].weight, theta0["2.weight"])


def test_rewind_reproduces_level0_training_when_nothing_pruned(digits):
    """Rewinding to step 0 with a zero pruning rate retrains the exact same network (same init, data order)."""
    m = mlp((64, 16, 10), seed=1)
    cfg = IMPConfig(levels=1, rates={"0.weight": 0.0, "2.weight": 0.0}, train=TrainConfig(epochs=1, seed=3))
    res = run_imp(m, digits, cfg)
    assert res.rows[1]["test_acc"] == res.rows[0]["test_acc"]
    assert res.rows[1]["final_train_loss"] == res.rows[0]["final_train_loss"]


@pytest.mark.parametrize("mode,k", [("finetune", 5), ("lr_rewind", 5), ("rewind", 7)])
def test_retrain_modes(digits, mode, k):
    m = mlp((64, 16, 10), seed=2)
    cfg = IMPConfig(levels=2, retrain=mode, rewind_step=k,
                    train=TrainConfig(epochs=1, seed=0, schedule="step", optimizer="sgd", lr=0.05))
    res = run_imp(m, digits, cfg)
    assert res.nested()
    assert bool((m[0].weight[~res.masks[-1]["0.weight"]] == 0).all())


@pytest.mark.parametrize("kw", [dict(strategy="random"), dict(retrain="restart"), dict(controls=("shuffle",)),
                                dict(levels=-1), dict(global_rate=1.0), dict(rewind_step=-3)])
def test_imp_config_errors(digits, kw):
    with pytest.raises(ProbPruneError):
        run_imp(mlp((64, 8, 10)), digits, IMPConfig(**kw))


def test_rewind_step_beyond_training(digits):
    with pytest.raises(ProbPruneError):
        run_imp(mlp((64, 8, 10)), digits, IMPConfig(levels=1, rewind_step=10_000, train=TrainConfig(epochs=1)))


def test_validation_split_and_early_stopping_point(digits):
    """with_validation carves a stratified, disjoint validation split out of the training set; training records the
    epoch with the best validation accuracy and the TEST accuracy of that epoch (recomputed here independently)."""
    from probprune.net.data import with_validation
    from probprune.net.train import evaluate, train

    ds = with_validation(digits, 100, seed=0)
    assert ds.n_train == digits.n_train - 100 and ds.n_val == 100
    allx = torch.cat([ds.X_train, ds.X_val])
    assert torch.equal(torch.sort(allx.sum(1)).values, torch.sort(digits.X_train.sum(1)).values)  # a partition
    assert set(ds.y_val.tolist()) == set(range(10))  # stratified
    m = mlp((64, 32, 10), seed=0)
    h = train(m, ds, config=TrainConfig(epochs=4, seed=0))
    vals = [r["val_acc"] for r in h.rows]
    best = max(range(len(vals)), key=lambda i: (vals[i], -i))  # first epoch with the best validation accuracy
    assert h.es_epoch == best + 1 and h.es_val_acc == vals[best]
    assert h.es_test_acc == h.rows[best]["test_acc"] and h.es_step == h.rows[best]["step"]
    assert h.rows[-1]["test_acc"] == pytest.approx(evaluate(m, ds.X_test, ds.y_test))
    with pytest.raises(ProbPruneError, match="n_val"):
        with_validation(digits, digits.n_train)


def test_ticket_density_control_matches_the_tickets_layer_counts(digits):
    """The ticket-density control keeps exactly the ticket's number of weights in every layer (a random mask with the
    ticket's per-layer densities), so it differs from the ticket only in which weights are kept."""
    from probprune.net.data import with_validation

    ds = with_validation(digits, 100, seed=0)
    cfg = IMPConfig(levels=2, controls=("ticket_density",), train=TrainConfig(epochs=2, seed=0))
    res = run_imp(mlp((64, 32, 10), seed=0), ds, cfg)
    for r, mk in zip(res.rows[1:], res.masks[1:]):
        assert r["ticket_density_remaining"] == pytest.approx(r["remaining"], abs=1e-12)
        assert 0 <= r["ticket_density_es_acc"] <= 1 and r["ticket_density_es_iter"] > 0
        assert r["es_iter"] > 0 and 0 <= r["es_test_acc"] <= 1
