"""Figure 12: Pensia et al. (NeurIPS 2020) Experiment 2 at a size this machine allows: edge-popup on random networks.

Edge-popup (Ramanujan et al., CVPR 2020) never trains the weights: every weight w gets a score s, the forward pass
uses ``w * 1[|s| among the top (1 - sparsity) of its layer]`` and the scores are trained with a straight-through
gradient. Pensia et al. run it on two random architectures that can represent the same target class
(THEORY §4.7, their code):

* **ours** (the subset-sum structure): each target layer ``in -> out`` becomes ``x -> W2 act(expand(x))`` where
  ``expand`` gives each input r = 5 private random scalars (``W1`` in R^{r x in}) and ``W2`` in R^{out x (in r)};
  act is the identity ("linear") or a ReLU; both matrices are pruned at the same sparsity;
* **wide**: a plain one-hidden-layer network with the same number of weights.

Their target is fc2 = 784-500-10 on full MNIST (wide width 2508, 1,991,420 / 1,991,352 weights), SGD (momentum 0.9,
weight decay 5e-4, batch 64, cosine, lr 0.1), the maximum over 5 runs. Here: 784-h-10 with h = 100 by default
(wide width chosen to match the weight count), the MNIST 5k subset (no package ships full MNIST offline), a few
epochs and one run per point. Both structures' weights are Kaiming-normal (std sqrt(2 / fan-in) of each matrix); the
paper's N(0, 2) for W1 is the same scale for fan-in 1. The published fc2 values (read from their plot, +-2 points)
are kept in :data:`PUBLISHED_FC2` and printed next to ours.

Verdicts (issue 21 item 3, THEORY §17): an arm counts as above chance only when its test accuracy is at least
``chance_margin`` above 10% and an exact one-sided binomial test against 10% gives p < ``chance_alpha``
(:func:`probprune.experiments.figure_verdicts.above_chance`); architectures are compared only at sparsities where
every arm is above chance, and a lead counts only beyond 1.96 standard errors of a difference of two proportions.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from probprune.core.errors import ProbPruneError
from probprune.experiments.base import Context, Experiment, distinct_colors, fmt, legend_below, register
from probprune.experiments.figure_verdicts import above_chance
from probprune.experiments.grammar import count, join_list

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081  # torchvision Normalize of their code; mnist5k pixels are in [0, 1] as ToTensor

# Pensia et al. Fig. (fc2), accuracy % read from the plot (THEORY §4.7), by sparsity (fraction removed)
PUBLISHED_FC2 = {"linear": {0.1: 96, 0.5: 98, 0.9: 96, 0.95: 89, 0.99: 39},
                 "relu": {0.1: 97, 0.5: 96.5, 0.9: 79, 0.95: 57, 0.99: 18},
                 "wide": {0.1: 97.5, 0.5: 98, 0.9: 97, 0.95: 95.5, 0.99: 88}}


def _subnet_fn():
    import torch

    class GetSubnet(torch.autograd.Function):
        """Top-k mask of (nonnegative) scores (k = keep fraction of the layer); straight-through gradient."""

        @staticmethod
        def forward(ctx, scores, keep):
            out = torch.zeros_like(scores)
            k = max(1, int(round(keep * scores.numel())))
            idx = torch.topk(scores.flatten(), k, sorted=False).indices
            out.view(-1)[idx] = 1.0
            return out

        @staticmethod
        def backward(ctx, g):
            return g, None

    return GetSubnet


def _masked_param(shape, std, gen):
    import torch

    w = torch.randn(shape, generator=gen) * std
    s = (torch.rand(shape, generator=gen) * 2 - 1) * math.sqrt(6.0 / shape[-1])  # kaiming-uniform-like scores
    return w, torch.nn.Parameter(s)


@dataclass(frozen=True)
class NetKind:
    """One random network of the comparison: ``wide`` (one wide hidden layer, the baseline) or the two-block
    construction of the target (r units per input), with a ReLU on the units (``unit_relu``: "relu") or without
    ("linear")."""

    name: str
    wide: bool = False
    unit_relu: bool = False


NET_KINDS = {k.name: k for k in (NetKind("linear"), NetKind("relu", unit_relu=True), NetKind("wide", wide=True))}


def build_network(kind: str, n_in: int, hidden: int, n_out: int, r: int, wide: int, seed: int):
    """The random network whose subnetwork edge-popup searches: kind in {"linear", "relu", "wide"} (:data:`NET_KINDS`)."""
    import torch
    import torch.nn as nn

    if kind not in NET_KINDS:
        raise ProbPruneError(f"unknown edge-popup network kind {kind!r}; use one of {', '.join(NET_KINDS)}")
    arch = NET_KINDS[kind]
    GetSubnet = _subnet_fn()
    gen = torch.Generator().manual_seed(seed)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.keep = 1.0
            self.frozen, self.scores = [], nn.ParameterList()
            if arch.wide:
                dims = [(wide, n_in), (n_out, wide)]
            else:
                dims = [(r, n_in), (hidden, n_in * r), (r, hidden), (n_out, hidden * r)]
            for i, shp in enumerate(dims):
                fan_in = 1 if (not arch.wide and i % 2 == 0) else shp[1]  # W1: one input per scalar, N(0, 2)
                w, s = _masked_param(shp, math.sqrt(2.0 / fan_in), gen)
                self.register_buffer(f"w{len(self.frozen)}", w)
                self.frozen.append(f"w{len(self.frozen)}")
                self.scores.append(s)

        def weights(self):
            # |s| goes through autograd (as in Ramanujan et al.'s code): a score pushed below zero must lose rank
            return [getattr(self, n) * GetSubnet.apply(s.abs(), self.keep) for n, s in zip(self.frozen, self.scores)]

        def forward(self, x):
            W = self.weights()
            if arch.wide:
                return torch.relu(x @ W[0].T) @ W[1].T
            h = x
            for j in range(2):
                W1, W2 = W[2 * j], W[2 * j + 1]
                u = (W1[:, None, :] * h[None, :, :]).permute(1, 2, 0).reshape(h.shape[0], -1)  # (batch, in*r)
                if arch.unit_relu:
                    u = torch.relu(u)
                h = u @ W2.T
                if j == 0:
                    h = torch.relu(h)  # the target network's own ReLU
            return h

        def n_weights(self):
            return sum(getattr(self, n).numel() for n in self.frozen)

    return Net()


@dataclass(frozen=True)
class EdgePopupConfig:
    hidden: int = 100
    r: int = 5
    sparsities: tuple = (0.1, 0.5, 0.9, 0.95, 0.99)
    kinds: tuple = ("linear", "relu", "wide")
    epochs: int = 4
    lr: float = 0.1
    batch_size: int = 64
    max_train: int | None = 2000
    runs: int = 1
    seed: int = 0
    chance: float = 0.1  # ten classes
    chance_margin: float = 0.05  # an arm counts as "above chance" only at accuracy >= chance + margin ...
    chance_alpha: float = 0.01  # ... and an exact one-sided binomial p-value against chance below alpha


def _train_scores(net, ds, cfg, seed):
    import torch
    import torch.nn.functional as F

    X = (torch.as_tensor(ds.X_train, dtype=torch.float32) - MNIST_MEAN) / MNIST_STD  # their normalisation
    y = torch.as_tensor(ds.y_train, dtype=torch.long)
    opt = torch.optim.SGD(net.scores.parameters(), lr=cfg.lr, momentum=0.9, weight_decay=5e-4)
    n = len(X)
    steps = cfg.epochs * math.ceil(n / cfg.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    g = torch.Generator().manual_seed(seed)
    for _ in range(cfg.epochs):
        perm = torch.randperm(n, generator=g)
        for b in range(0, n, cfg.batch_size):
            idx = perm[b:b + cfg.batch_size]
            opt.zero_grad()
            F.cross_entropy(net(X[idx]), y[idx]).backward()
            opt.step()
            sched.step()
    with torch.no_grad():
        Xt = (torch.as_tensor(ds.X_test, dtype=torch.float32) - MNIST_MEAN) / MNIST_STD
        return float((net(Xt).argmax(1).numpy() == np.asarray(ds.y_test)).mean())


def edge_popup(cfg: EdgePopupConfig, ctx: Context) -> dict:
    import time

    import matplotlib.pyplot as plt
    import torch

    from probprune.net.data import load_dataset

    torch.set_num_threads(1)
    ds = load_dataset("mnist5k", seed=0, max_train=cfg.max_train)
    n_in, n_out = ds.n_features, ds.n_classes
    ours = cfg.r * n_in + cfg.hidden * n_in * cfg.r + cfg.r * cfg.hidden + n_out * cfg.hidden * cfg.r
    wide = max(1, round(ours / (n_in + n_out)))
    rows = []
    for kind in cfg.kinds:
        for s in cfg.sparsities:
            for run in range(cfg.runs):
                net = build_network(kind, n_in, cfg.hidden, n_out, cfg.r, wide, seed=cfg.seed + 101 * run)
                net.keep = 1.0 - s
                t0 = time.perf_counter()
                acc = _train_scores(net, ds, cfg, seed=cfg.seed + run)
                rows.append({"kind": kind, "sparsity": s, "run": run, "test_acc": acc, "n_weights": net.n_weights(),
                             "seconds": time.perf_counter() - t0,
                             "published_fc2_acc": PUBLISHED_FC2[kind].get(s, np.nan) / 100})
                ctx.log(f"{kind} s={s}: accuracy {acc:.3f} ({rows[-1]['seconds']:.0f}s)")
    df = pd.DataFrame(rows)
    ctx.save_table(df)
    agg = df.groupby(["kind", "sparsity"], as_index=False).agg(acc=("test_acc", "max"), n_weights=("n_weights", "first"),
                                                               published=("published_fc2_acc", "first"))

    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    cols = dict(zip(cfg.kinds, distinct_colors(len(cfg.kinds))))
    label = {"linear": "ours (subset-sum structure), linear", "relu": "ours, ReLU", "wide": "wide, same #weights"}
    for kind in cfg.kinds:
        g = agg[agg["kind"] == kind].sort_values("sparsity")
        ax.plot(g["sparsity"], g["acc"], "o-", color=cols[kind], label=f"{label[kind]} (here)")
        ax.plot(g["sparsity"], g["published"], "x:", color=cols[kind], label=f"{label[kind]} (published fc2)")
    ax.axhline(cfg.chance + cfg.chance_margin, color="grey", ls="--", lw=0.8,
               label=f"chance + {100 * cfg.chance_margin:g} points (comparisons only above)")
    ax.set(xlabel="sparsity (fraction of weights removed)", ylabel="test accuracy",
           title=f"edge-popup on random networks, target 784-{cfg.hidden}-10, mnist5k")
    legend_below(ax, ncol=2)
    ctx.save_figure(fig)

    piv = agg.pivot_table(index="sparsity", columns="kind", values="acc")
    hi = max(cfg.sparsities)
    n_test = int(ds.n_test)
    # above chance (figure_verdicts.above_chance): comparisons are made only where the arms are above chance
    ch = {(k, sp): above_chance(float(piv.loc[sp, k]), n_test, cfg.chance, cfg.chance_margin, cfg.chance_alpha)
          for k in cfg.kinds for sp in piv.index}
    agg["chance_p"] = [ch[(k, sp)].p_value for k, sp in zip(agg["kind"], agg["sparsity"])]
    agg["above_chance"] = [ch[(k, sp)].above for k, sp in zip(agg["kind"], agg["sparsity"])]
    ctx.save_table(agg, "summary")
    all_above = [sp for sp in piv.index if all(ch[(k, sp)].above for k in cfg.kinds)]
    some_above = [sp for sp in piv.index if any(ch[(k, sp)].above for k in cfg.kinds)]
    others = [k for k in cfg.kinds if not NET_KINDS[k].wide]
    s_cmp = max(all_above) if all_above else None

    def ahead(a, b, sp):
        """a ahead of b at sparsity sp: the difference exceeds 1.96 standard errors of a difference of two
        proportions on n_test images (unpaired, so conservative for the same test set)."""
        pa, pb = float(piv.loc[sp, a]), float(piv.loc[sp, b])
        se = np.sqrt((pa * (1 - pa) + pb * (1 - pb)) / n_test)
        return pa - pb > 1.96 * se

    wide_ahead = ("wide" in cfg.kinds and bool(others) and s_cmp is not None
                  and all(ahead("wide", k, s_cmp) for k in others))
    wide_behind = ("wide" in cfg.kinds and bool(others) and s_cmp is not None
                   and all(ahead(k, "wide", s_cmp) for k in others))
    at_chance = {k: [sp for sp in piv.index if not ch[(k, sp)].above] for k in cfg.kinds}
    numbers = {"figTwelveHidden": str(cfg.hidden), "figTwelveWide": str(wide), "figTwelveOurs": f"{ours:,}",
               "figTwelveWideWeights": f"{wide * (n_in + n_out):,}", "figTwelveEpochs": str(cfg.epochs),
               "figTwelveHiSparsity": fmt(hi, 2), "figTwelveTest": f"{n_test:,}",
               "figTwelveChanceMargin": fmt(100 * cfg.chance_margin, 2), "figTwelveChanceAlpha": f"{cfg.chance_alpha:g}",
               "figTwelveCmpSparsity": fmt(s_cmp, 2) if s_cmp is not None else "n/a"}
    for kind, key in (("linear", "Linear"), ("relu", "Relu"), ("wide", "Wide")):
        if kind in cfg.kinds:
            numbers[f"figTwelve{key}Hi"] = fmt(piv.loc[hi, kind], 3)
            if 0.5 in piv.index:
                numbers[f"figTwelve{key}Half"] = fmt(piv.loc[0.5, kind], 3)
            if s_cmp is not None:
                numbers[f"figTwelve{key}Cmp"] = fmt(piv.loc[s_cmp, kind], 3)
            numbers[f"figTwelve{key}AtChance"] = (join_list(f"{v:g}" for v in at_chance[kind]) if at_chance[kind]
                                                  else "none")
    short = {"linear": "subset-sum structure, linear", "relu": "subset-sum structure, ReLU", "wide": "wide"}
    key = {"linear": "Linear", "relu": "Relu", "wide": "Wide"}
    chance_txt = "; ".join(f"{short[k]} at sparsity {numbers['figTwelve' + key[k] + 'AtChance']}"
                           for k in cfg.kinds if at_chance[k])
    caption = (
        f"Pensia et al.'s Experiment 2 at small size: edge-popup trains only scores that select a subnetwork of a "
        f"random network. Target 784-{cfg.hidden}-10 (theirs: 784-500-10), the subset-sum structure with "
        f"$r = {cfg.r}$ ({numbers['figTwelveOurs']} weights) against a wide network of width {wide} "
        f"({numbers['figTwelveWideWeights']} weights), {count(cfg.epochs, 'epoch')}, "
        f"{count(cfg.runs, 'run')} per point on the MNIST 5k subset (theirs: full MNIST, best of 5 runs; dotted: their "
        f"fc2 curve read from the plot). An arm counts as above chance only when its accuracy on the "
        f"{numbers['figTwelveTest']} test images is at least {numbers['figTwelveChanceMargin']} points above the 10\\% "
        f"of guessing and an exact binomial test against 10\\% gives $p < {numbers['figTwelveChanceAlpha']}$; arms are "
        "compared only where all of them are above chance. "
        + (f"At chance: {chance_txt}. " if chance_txt else "Every arm is above chance at every sparsity. ")
        + (f"At the highest sparsity where all arms are above chance ({numbers['figTwelveCmpSparsity']}) the accuracy "
           "is " + join_list(f"{numbers['figTwelve' + key[k] + 'Cmp']} ({short[k]})" for k in cfg.kinds)
           + ("; the wide network is ahead of both subset-sum structures there (difference beyond 1.96 standard "
              "errors), as in the paper" if wide_ahead else
              "; the subset-sum structures are ahead of the wide network there, unlike the paper" if wide_behind else
              "; the wide network is not ahead of both subset-sum structures there by more than 1.96 standard errors")
           if s_cmp is not None else "No sparsity has every arm above chance, so no comparison is made")
        + (f". At sparsity {numbers['figTwelveHiSparsity']} only the wide network is above chance "
           f"({numbers['figTwelveWideHi']}): there the subset-sum search failed rather than lost a comparison."
           if "wide" in cfg.kinds and hi in some_above and ch[("wide", hi)].above
           and not any(ch[(k, hi)].above for k in others) else ".")
    )
    return {"numbers": numbers, "caption": caption, "theory_held": None}


register(Experiment("edge_popup", 12, "Pensia et al. Exp. 2 (edge-popup)", EdgePopupConfig, edge_popup,
                    full=EdgePopupConfig(hidden=500, epochs=20, max_train=None, runs=5,
                                         sparsities=(0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.98, 0.99)),
                    description="edge-popup on random networks: subset-sum structure (linear/ReLU) vs wide, "
                                "next to the published fc2 curve"))
