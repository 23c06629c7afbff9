"""Iterative magnitude pruning (lottery tickets) with rewinding (THEORY.md §5).

Provenance: Frankle & Carbin, "The Lottery Ticket Hypothesis", ICLR 2019 (IMP, LeNet-300-100 rates 20% hidden /
10% output per round, Adam 1.2e-3, batch 60); Frankle, Dziugaite, Roy & Carbin, ICML 2020 (rewinding to step k);
Renda, Frankle & Carbin, ICLR 2020 (fine-tuning vs learning-rate rewinding); open_lth's level vocabulary and its
``sparse_global`` strategy (global magnitude over the remaining weights, output layer optionally ignored).

Level 0 trains the dense network from theta_0 and stores theta_k (the weights at ``rewind_step`` k). Level L >= 1
prunes, per layer group g, ``floor(f_g * R_g)`` of the R_g weights that survived level L-1 (``strategy="layerwise"``)
or ``floor(f * R)`` of all remaining weights by global magnitude (``strategy="global"``), then retrains:

* ``retrain="rewind"``: weights (and biases) reset to theta_k, training resumes at step k with the same data order and
  LR schedule (k = 0: the original LTH reset to initialisation);
* ``retrain="lr_rewind"``: keep the trained weights, replay the schedule from step k;
* ``retrain="finetune"``: keep the trained weights, train the same number of steps at the final learning rate.

Masks nest (m_L <= m_{L-1}) by construction: previously pruned entries are forced to stay pruned. Controls at each
level (optional): ``reinit`` trains the level's mask from a fresh random initialisation (the LTH control experiment);
``uniform`` / ``erk`` train a *random* mask of the same overall sparsity (exact-k sampling; densities uniform or
ERK) from theta_k; ``ticket_density`` trains a random mask with the ticket's own per-layer counts (exact-k in every
layer), so that it differs from the ticket only in *which* weights are kept, not in how many per layer.
When the dataset has a validation split, every row also records the early-stopping point on it (``es_iter``: the
global step of the best validation accuracy; ``es_test_acc``: the test accuracy there), for the ticket and for each
control (``{control}_es_iter``, ``{control}_es_acc``).

One-shot vs iterative: the LTH paper says each of n rounds "prunes p^{1/n}% of the weights that survive". That is
not arithmetically consistent with a total pruned fraction p (e.g. p = 0.9, n = 2 would prune 0.9^{1/2} = 94.9% per
round). The consistent per-round fraction is f = 1 - (1 - p)^{1/n}, so that (1 - f)^n = 1 - p: :func:`per_round_rate`.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Mapping

from probprune.core.errors import ProbPruneError, check_fraction
from probprune.net.train import TrainConfig, evaluate, train
from probprune.pruning.masks import full_mask, is_nested, maskable_parameters
from probprune.pruning.sampling import global_topk_mask, layerwise_count_mask, random_mask
from probprune.pruning.scores import magnitude_scores

RETRAIN = ("rewind", "lr_rewind", "finetune")
STRATEGIES = ("layerwise", "global")
CONTROLS = ("reinit", "uniform", "erk", "ticket_density")


def per_round_rate(p: float, n: int) -> float:
    """Per-round pruning fraction f = 1 - (1 - p)^{1/n} reaching total pruned fraction p after n rounds
    (the consistent reading of the LTH paper's "p^{1/n}%"; see module docstring)."""
    p = float(check_fraction(p, "total pruned fraction p", upper_open=True))
    if int(n) < 1:
        raise ProbPruneError(f"number of rounds must be >= 1, got {n}")
    return 1.0 - (1.0 - p) ** (1.0 / int(n))


def lth_rates(model, hidden: float = 0.2, output: float = 0.1, conv: float = 0.1) -> dict:
    """The LTH per-layer-group rates: Linear hidden layers ``hidden`` (20%), the output layer ``output`` (10%),
    conv layers ``conv`` (10%; the paper uses 10/10/15% for Conv-2/4/6)."""
    import torch.nn as nn

    names = list(maskable_parameters(model))
    convs = {f"{n}.weight" if n else "weight" for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    out = {}
    for i, k in enumerate(names):
        out[k] = output if i == len(names) - 1 else (conv if k in convs else hidden)
    for k, f in out.items():
        check_fraction(f, f"rate of {k}", upper_open=True)
    return out


def expected_remaining(sizes: Mapping[str, int], rates: Mapping[str, float], levels: int) -> list[float]:
    """Layer-wise IMP remaining fraction after each level 0..levels from the layer sizes, with the floor rounding
    applied per round: R_{L+1} = R_L - floor(f R_L)."""
    R = {k: int(n) for k, n in sizes.items()}
    tot = sum(R.values())
    out = [1.0]
    for _ in range(levels):
        R = {k: r - math.floor(rates.get(k, 0.0) * r + 1e-9 * max(1.0, rates.get(k, 0.0) * r)) for k, r in R.items()}
        out.append(sum(R.values()) / tot)
    return out


def imp_prune(model, prev_mask: Mapping, strategy: str = "layerwise", rates: Mapping[str, float] | None = None,
              global_rate: float = 0.2, exclude_output: bool = False) -> dict:
    """One IMP pruning step on the current (trained) weights: returns m_new <= prev_mask.
    ``layerwise``: prune floor(rates[k] * remaining_k) more entries of tensor k by |w|;
    ``global``: prune floor(global_rate * remaining) over all tensors (except the output layer when
    ``exclude_output``) by global |w|."""
    names = list(prev_mask)
    sc = magnitude_scores(model, names=names)
    if strategy == "layerwise":
        if rates is None:
            raise ProbPruneError("layerwise IMP needs per-layer rates")
        counts = {}
        for k in names:
            r = int(prev_mask[k].sum())
            f = float(rates.get(k, 0.0))
            counts[k] = math.floor(f * r + 1e-9 * max(1.0, f * r))
        return layerwise_count_mask(sc, counts, prev_mask)
    if strategy == "global":
        use = names[:-1] if exclude_output else names
        rem = sum(int(prev_mask[k].sum()) for k in use)
        k_new = math.floor(global_rate * rem + 1e-9 * max(1.0, global_rate * rem))
        sub = global_topk_mask({k: sc[k] for k in use}, prev_mask={k: prev_mask[k] for k in use}, extra_count=k_new)
        return {k: sub.get(k, prev_mask[k].clone()) for k in names}
    raise ProbPruneError(f"unknown IMP strategy {strategy!r}; use 'layerwise' or 'global'")


@dataclass(frozen=True)
class IMPConfig:
    """An IMP run. ``rates`` None = :func:`lth_rates` (20% hidden, 10% output, 10% conv)."""

    levels: int = 5
    strategy: str = "layerwise"
    rates: dict | None = None
    global_rate: float = 0.2
    exclude_output: bool = False
    rewind_step: int = 0
    retrain: str = "rewind"
    controls: tuple = ()
    control_sampling: str = "exact"
    init_seed: int = 0
    mask_seed: int = 0
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=1))

    def validate(self) -> None:
        if int(self.levels) < 0:
            raise ProbPruneError(f"levels must be >= 0, got {self.levels}")
        if self.strategy not in STRATEGIES:
            raise ProbPruneError(f"unknown IMP strategy {self.strategy!r}; use one of {', '.join(STRATEGIES)}")
        if self.retrain not in RETRAIN:
            raise ProbPruneError(f"unknown retraining mode {self.retrain!r}; use one of {', '.join(RETRAIN)}")
        for c in self.controls:
            if c not in CONTROLS:
                raise ProbPruneError(f"unknown IMP control {c!r}; use any of {', '.join(CONTROLS)}")
        check_fraction(self.global_rate, "global_rate", upper_open=True)
        if int(self.rewind_step) < 0:
            raise ProbPruneError(f"rewind_step must be >= 0, got {self.rewind_step}")


@dataclass
class IMPResult:
    """Tidy rows (one per level) and the nested masks (``masks[L]`` = mask used at level L; level 0 all-kept)."""

    config: IMPConfig
    rows: list = field(default_factory=list)
    masks: list = field(default_factory=list)
    rates: dict = field(default_factory=dict)
    sizes: dict = field(default_factory=dict)

    def nested(self) -> bool:
        return all(is_nested(self.masks[i + 1], self.masks[i]) for i in range(len(self.masks) - 1))


def _reinit(model_template, seed: int):
    """A copy of the model with every module's parameters re-drawn by ``reset_parameters`` under ``seed``."""
    import torch

    m = copy.deepcopy(model_template)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        for mod in m.modules():
            if hasattr(mod, "reset_parameters"):
                mod.reset_parameters()
    return m


def run_imp(model, dataset, config: IMPConfig, progress: Callable[[dict], None] | None = None) -> IMPResult:
    """Run IMP on ``model`` (its current weights are theta_0) and ``dataset``. Returns :class:`IMPResult`;
    ``progress`` receives each level's row as it completes. The model ends with the last level's trained ticket."""
    import torch

    config.validate()
    tc = config.train
    names = list(maskable_parameters(model))
    sizes = {k: int(p.numel()) for k, p in maskable_parameters(model).items()}
    rates = dict(config.rates) if config.rates is not None else lth_rates(model)
    unknown = [k for k in rates if k not in sizes]
    if unknown:
        raise ProbPruneError(f"IMP rate for unknown parameter {unknown[0]!r}")
    total_steps = tc.total_steps(len(dataset.y_train))
    k = int(config.rewind_step)
    if k > total_steps:
        raise ProbPruneError(f"rewind_step {k} exceeds the {total_steps} training steps")
    n_all = sum(p.numel() for p in model.parameters())
    template = copy.deepcopy(model)
    res = IMPResult(config=config, rates=rates, sizes=sizes)

    mask = full_mask(model)
    t0 = time.perf_counter()
    h = train(model, dataset, config=tc, snapshot_steps=(k,), eval_each_epoch=False)
    theta_k = h.snapshots[k]
    res.masks.append(mask)

    def row_for(level, mask, acc, hist, seconds):
        kept = sum(int(m.sum()) for m in mask.values())
        tot = sum(m.numel() for m in mask.values())
        r = {"level": level, "remaining": kept / tot, "remaining_all": (n_all - (tot - kept)) / n_all,
             "kept": kept, "test_acc": acc, "final_train_loss": hist.final_train_loss, "seconds": seconds,
             "es_iter": hist.es_step, "es_test_acc": hist.es_test_acc, "es_val_acc": hist.es_val_acc}
        for name in names:
            r[f"density[{name}]"] = float(mask[name].float().mean())
        return r

    row = row_for(0, mask, h.final_test_acc, h, time.perf_counter() - t0)
    for c in config.controls:
        row[f"{c}_acc"] = h.final_test_acc  # level 0 is the dense network for every control
        row[f"{c}_es_acc"], row[f"{c}_es_iter"] = h.es_test_acc, h.es_step
    res.rows.append(row)
    if progress:
        progress(row)

    for level in range(1, int(config.levels) + 1):
        t0 = time.perf_counter()
        mask = imp_prune(model, mask, config.strategy, rates, config.global_rate, config.exclude_output)
        if config.retrain == "rewind":
            model.load_state_dict(theta_k)
            h = train(model, dataset, config=tc, masks=mask, start_step=k, eval_each_epoch=False)
        elif config.retrain == "lr_rewind":
            h = train(model, dataset, config=tc, masks=mask, start_step=k, eval_each_epoch=False)
        else:
            h = train(model, dataset, config=tc, masks=mask, start_step=k,
                      constant_lr=tc.lr_at(total_steps, total_steps), eval_each_epoch=False)
        res.masks.append(mask)
        row = row_for(level, mask, h.final_test_acc, h, time.perf_counter() - t0)
        sparsity = 1.0 - row["remaining"]
        for c in config.controls:
            if c == "reinit":
                cm = _reinit(template, seed=config.init_seed + 1_000_003 * level + 17)
                hc = train(cm, dataset, config=tc, masks=mask, start_step=k, eval_each_epoch=False)
            else:
                shapes = {n: tuple(mask[n].shape) for n in names}
                cseed = config.mask_seed + 7919 * level + {"uniform": 0, "erk": 1, "ticket_density": 2}[c]
                if c == "ticket_density":  # the ticket's own per-layer densities, exact-k per layer
                    dens = {n: float(mask[n].sum()) / mask[n].numel() for n in names}
                    rm = random_mask(shapes, dens, seed=cseed, sampling="exact", rounding="round")
                else:
                    from probprune.pruning.densities import allocate

                    alloc = allocate(c, shapes, sparsity)  # c: "uniform" or "erk" (CONTROLS)
                    rm = random_mask(shapes, alloc.densities, seed=cseed, sampling=config.control_sampling)
                cm = copy.deepcopy(template)
                cm.load_state_dict(theta_k)
                hc = train(cm, dataset, config=tc, masks=rm, start_step=k, eval_each_epoch=False)
                row[f"{c}_remaining"] = sum(int(v.sum()) for v in rm.values()) / sum(v.numel() for v in rm.values())
            row[f"{c}_acc"] = hc.final_test_acc
            row[f"{c}_es_acc"], row[f"{c}_es_iter"] = hc.es_test_acc, hc.es_step
        row["seconds_total"] = time.perf_counter() - t0
        res.rows.append(row)
        if progress:
            progress(row)
    return res
