"""CLI: ``probprune prune`` (one pruning method on a trained model) and ``probprune lth`` (IMP lottery tickets)."""
from __future__ import annotations

import math
import os
from typing import Optional

import typer

from probprune.cli.app import app
from probprune.cli.common import (CONTROLS, Dataset, NeuronNorm, Optimizer, PruneMethod, Retrain, Rounding, Sampling, Scheme,
                     Scope, Strategy, atomic_write, atomic_write_text, check_finite, check_int, check_output_path,
                     deprecated, emit, json_option, make_console, val)
from probprune.core.errors import ProbPruneError, UnsupportedLayerError, check_fraction

#: leaf modules a --model file may contain (weights are pruned in Linear/Conv2d; the rest are parameter-free)
_SUPPORTED_PARAM_MODULES = ("Linear", "Conv2d")


def _resolve_model(model: Optional[str], arch: Optional[str], model_file: Optional[str], cmd: str):
    """(arch, model file) from the options. ``--model PATH`` is a file; ``--model NAME`` of a built-in architecture
    (no such file) is the deprecated spelling of ``--arch NAME``; ``--model-file`` the deprecated one of ``--model``."""
    from probprune.net.zoo import MODELS

    if model_file is not None:
        deprecated(f"{cmd} --model-file PATH", "--model PATH")
        if model is not None and not os.path.exists(model) and model.split(":")[0] in MODELS:
            deprecated(f"{cmd} --model NAME", "--arch NAME")
            arch = arch or model
        elif model is not None:
            raise ProbPruneError("give the model file once: --model PATH (--model-file is its old spelling)")
        model = model_file
    if model is not None and not os.path.exists(model) and model.split(":")[0] in MODELS:
        deprecated(f"{cmd} --model NAME", "--arch NAME")
        return model, None
    if model is not None and not os.path.isfile(model):
        raise FileNotFoundError(f"model file not found: {model}") if not os.path.exists(model) else \
            ProbPruneError(f"--model {model} is a folder, not a model file")
    return arch, model


def _check_loaded(net, path: str) -> None:
    """Refuse what prune/lth cannot handle: parameters outside Linear/Conv2d layers (e.g. LSTM), no weight
    layer at all, NaN/inf weights."""
    import torch

    for name, mod in net.named_modules():
        own = list(mod.parameters(recurse=False))
        if own and type(mod).__name__ not in _SUPPORTED_PARAM_MODULES:
            raise UnsupportedLayerError(f"layer {name or '<root>'!r} of {path} is a {type(mod).__name__}: prune/lth "
                                        "handle Linear and Conv2d layers (with parameter-free activations) only")
    if not any(type(m).__name__ in _SUPPORTED_PARAM_MODULES for m in net.modules()):
        raise UnsupportedLayerError(f"{path} has no Linear or Conv2d layer to prune")
    for name, p in net.named_parameters():
        if not bool(torch.isfinite(p).all()):
            raise ProbPruneError(f"{path}: parameter {name!r} contains NaN/inf values")


def _setup(dataset: str, model: str, seed: int, data_seed: int, bias: bool = True, model_file: str | None = None):
    """(dataset, network, architecture name): a fresh ``model`` (default lenet_300_100), or ``model_file`` read once by
    :func:`probprune.net.io.load_model_and_arch` (name: ``model`` or the one stored in the file; None for a pickled
    module)."""
    import numpy as np
    import torch
    import torch.nn as nn

    from probprune.net.data import load_dataset
    from probprune.net.zoo import build_model, is_conv_model

    if model_file:
        from probprune.net.io import load_model_and_arch

        net, model = load_model_and_arch(model_file, arch=model)
        _check_loaded(net, model_file)
        conv = any(isinstance(m, nn.Conv2d) for m in net.modules())
        ds = load_dataset(dataset, seed=data_seed, images=conv)
        first = next(m for m in net.modules() if isinstance(m, (nn.Linear, nn.Conv2d)))
        need = first.in_features if isinstance(first, nn.Linear) else first.in_channels
        have = int(np.prod(ds.input_shape)) if isinstance(first, nn.Linear) else ds.input_shape[0]
        if need != have:
            raise ProbPruneError(f"model in {model_file} expects {need} inputs/channels, dataset {dataset} gives "
                                 f"{tuple(ds.input_shape)}")
        try:
            with torch.no_grad():
                out = net(ds.X_test[:2])
        except Exception as exc:
            raise ProbPruneError(f"model in {model_file} does not run on {dataset} inputs of shape "
                                 f"{tuple(ds.input_shape)}: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}") from None
        if out.ndim != 2 or out.shape[1] != ds.n_classes:
            raise ProbPruneError(f"model in {model_file} gives outputs of shape {tuple(out.shape[1:])}, dataset "
                                 f"{dataset} has {ds.n_classes} classes")
        return ds, net, model
    model = model or "lenet_300_100"
    ds = load_dataset(dataset, seed=data_seed, images=is_conv_model(model))
    net = build_model(model, ds.input_shape, ds.n_classes, bias=bias, seed=seed)
    return ds, net, model


def _fraction_and_seeds(fraction, old_value, old_option: str, seed: int, data_seed: int):
    """Check --seed / --data-seed; the fraction given as --fraction or by its deprecated spelling ``old_option``
    ("command --flag"), never both."""
    from probprune.core.errors import check_seed

    check_seed(seed, "--seed")
    check_seed(data_seed, "--data-seed")
    if old_value is None:
        return fraction
    deprecated(old_option, "--fraction")
    if fraction is not None:
        raise ProbPruneError(f"give the pruned fraction once: --fraction ({old_option.split()[-1]} is its old "
                             "spelling)")
    return old_value


def _check_prune_args(method, fraction, sparsity, scope, scheme, sampling, threshold, rounding, norm, erk_power_scale,
                      batch_for_scores, seed, data_seed, epochs, finetune_epochs, batch_size, lr, save_mask, save_model):
    """Every check of `probprune prune`'s options before any work (options the method would ignore are refused by
    pruning.api.check_prune_options); returns the fraction and the defaulted scope, scheme, rounding, norm, ERK
    exponent and score batch size."""
    from probprune.pruning.api import check_prune_options

    # options the method would ignore are refused before any work (pruning.api.check_prune_options)
    given = {k for k, v in (("fraction", fraction if fraction is not None else sparsity), ("threshold", threshold),
                            ("scope", scope), ("scheme", scheme), ("norm", norm), ("rounding", rounding),
                            ("erk_power_scale", erk_power_scale), ("batch_for_scores", batch_for_scores))
             if v is not None}
    check_prune_options(method, sampling, scheme, given, scope=scope, flag=lambda n: "--" + n.replace("_", "-"))
    scope = scope or ("global" if method == "snip" else "layer")
    scheme = scheme or "uniform"
    rounding = rounding or "floor"
    norm = norm or "l1"
    erk_power_scale = 1.0 if erk_power_scale is None else erk_power_scale
    batch_for_scores = 256 if batch_for_scores is None else batch_for_scores
    fraction = _fraction_and_seeds(fraction, sparsity, "prune --sparsity", seed, data_seed)
    from probprune.core import registry

    by_threshold = not registry.SAMPLINGS[sampling].fraction_given if sampling in registry.SAMPLINGS else False
    if by_threshold:  # the sampling model cuts at a given threshold (check_prune_options refused --fraction)
        if threshold is None:
            raise ProbPruneError(f"--sampling {sampling} needs --threshold TAU")
        check_finite(threshold, "--threshold", lo=0)
    elif fraction is None:
        raise ProbPruneError("missing option --fraction (the fraction of weights to prune, in [0, 1))")
    if fraction is not None:
        check_fraction(fraction, "--fraction", upper_open=True)
    check_int(epochs, "--epochs", 0)
    check_int(finetune_epochs, "--finetune-epochs", 0)
    check_int(batch_size, "--batch-size", 1)
    check_int(batch_for_scores, "--batch-for-scores", 1)
    check_finite(lr, "--lr", lo=0, lo_open=True)
    check_finite(erk_power_scale, "--erk-power-scale")
    check_output_path(save_mask, "--save-mask")
    check_output_path(save_model, "--save-model")
    return fraction, scope, scheme, rounding, norm, erk_power_scale, batch_for_scores


@app.command("prune")
def prune_cmd(
    method: PruneMethod = typer.Option(..., help="pruning method"),
    fraction: Optional[float] = typer.Option(None, help="fraction of the maskable weights to prune, in [0, 1) "
                                                        "(required unless --sampling threshold)"),
    sparsity: Optional[float] = typer.Option(None, hidden=True, help="deprecated spelling of --fraction"),
    arch: Optional[str] = typer.Option(None, help="built-in architecture [default: lenet_300_100]: lenet5 | conv2 | "
                                                   "mlp:W1,W2,... (a fresh model; with --model: the architecture of "
                                                   "a state dict, mlp alone reads the widths)"),
    model: Optional[str] = typer.Option(None, help="prune this saved model file (torch.save(model), or a state dict "
                                                   "from `probprune train`/`save_model`) instead of a fresh --arch"),
    dataset: Dataset = typer.Option("mnist5k", help="offline dataset"),
    scope: Optional[Scope] = typer.Option(None, help="layer | global (magnitude, grad, structured) [default: layer; "
                                                     "snip: global]"),
    scheme: Optional[Scheme] = typer.Option(None, help="random densities [default: uniform]"),
    sampling: Sampling = typer.Option("exact", help="exact | bernoulli (random) | threshold (magnitude)"),
    threshold: float = typer.Option(None, help="tau >= 0 for --sampling threshold: prune |w| < tau"),
    rounding: Optional[Rounding] = typer.Option(None, help="pruned-count rounding [default: floor]"),
    norm: Optional[NeuronNorm] = typer.Option(None, help="structured: l1 | l2 [default: l1]"),
    erk_power_scale: Optional[float] = typer.Option(None, help="ERK exponent gamma (--scheme erk) [default: 1]"),
    exclude_first: bool = typer.Option(False, help="keep the first weight layer dense"),
    exclude_last: bool = typer.Option(False, help="keep the output layer dense"),
    epochs: int = typer.Option(2, help="dense training epochs before pruning (0: prune at initialisation)"),
    finetune_epochs: int = typer.Option(0, help="epochs of masked fine-tuning after pruning"),
    lr: float = typer.Option(1.2e-3), batch_size: int = typer.Option(60),
    seed: int = typer.Option(0, help="seed for init, data order and mask"),
    data_seed: int = typer.Option(0, help="train/test split seed"),
    batch_for_scores: Optional[int] = typer.Option(None, help="batch size for snip / grad / snip_ratio scores "
                                                              "[default: 256]"),
    save_mask: str = typer.Option(None, help="write the mask to this .pt file"),
    model_file: Optional[str] = typer.Option(None, hidden=True, help="deprecated spelling of --model PATH"),
    save_model: str = typer.Option(None, help="write the pruned (fine-tuned) state dict to this file"),
    show_neurons: bool = typer.Option(False, help="print neuron-wise sparsity summaries"),
    json_out: bool = json_option(),
):
    """Train a model on an offline dataset, prune it with one method, and report accuracy and sparsity."""
    import torch

    from probprune.core.progress import progress_bar
    from probprune.pruning import prune, save_mask as _save
    from probprune.net.train import evaluate, train

    method, dataset, scope, scheme, sampling, rounding, norm = map(
        val, (method, dataset, scope, scheme, sampling, rounding, norm))
    fraction, scope, scheme, rounding, norm, erk_power_scale, batch_for_scores = _check_prune_args(
        method, fraction, sparsity, scope, scheme, sampling, threshold, rounding, norm, erk_power_scale,
        batch_for_scores, seed, data_seed, epochs, finetune_epochs, batch_size, lr, save_mask, save_model)
    arch, model_path = _resolve_model(model, arch, model_file, "prune")
    ds, net, model = _setup(dataset, arch, seed, data_seed, model_file=model_path)  # model: the architecture name
    model_file = model_path
    sparsity = fraction
    dense_acc = None
    show = not json_out
    if epochs:
        with progress_bar(epochs, "dense training", unit="epoch", enabled=show) as bar:
            train(net, ds, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, eval_each_epoch=False,
                  callback=lambda row: bar.update(1))
    dense_acc = evaluate(net, ds.X_test, ds.y_test)
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(ds.y_train), generator=g)[:batch_for_scores]
    res = prune(net, method, sparsity, scope=scope, scheme=scheme,  # None with a threshold sampling (refused with it)
                sampling=sampling, threshold=threshold, rounding=rounding, norm=norm, seed=seed,
                X=ds.X_train[idx], y=ds.y_train[idx], exclude_first=exclude_first, exclude_last=exclude_last,
                erk_power_scale=erk_power_scale, input_shape=ds.input_shape)
    pruned_acc = evaluate(net, ds.X_test, ds.y_test)
    ft_acc = None
    if finetune_epochs:
        with progress_bar(finetune_epochs, "fine-tuning", unit="epoch", enabled=show) as bar:
            train(net, ds, epochs=finetune_epochs, lr=lr, batch_size=batch_size, seed=seed + 1, masks=res.mask,
                  eval_each_epoch=False, callback=lambda row: bar.update(1))
        ft_acc = evaluate(net, ds.X_test, ds.y_test)
    rep = res.report.to_dict()
    if not show_neurons:
        for v in rep["neuron_sparsity"].values():
            v.pop("values", None)
    if save_model:
        from probprune.net.io import save_model as _save_model

        atomic_write(save_model, lambda tmp: _save_model(net, tmp, arch=model, input_shape=list(ds.input_shape)))
    if save_mask:
        meta = {"method": method, "sparsity": sparsity, "model": model_file or model, "dataset": dataset,
                "seed": seed, "scheme": scheme, "sampling": sampling}
        atomic_write(save_mask, lambda tmp: _save(res.mask, tmp, meta=meta))
    data = {"dataset": ds.describe(), "model": model_file or model, "arch": model, "method": method,
            "fraction": sparsity, "requested_sparsity": sparsity,
            "dense_test_acc": dense_acc, "pruned_test_acc": pruned_acc, "finetuned_test_acc": ft_acc,
            "train_epochs": epochs, "finetune_epochs": finetune_epochs, "seed": seed, "report": rep,
            "mask_file": save_mask, "model_file": model_file, "saved_model": save_model}

    emit(data, json_out, lambda d: _render_prune(d, show_neurons))


def _render_prune(d: dict, show_neurons: bool) -> None:
    """The text rendering of `probprune prune`'s result dictionary."""
    from rich.table import Table

    c = make_console()
    r = d["report"]
    c.print(f"[bold]{d['dataset']}[/bold]; model {d['model']}; method {r['method']}"
            + (f", scheme {r['scheme']}" if r["scheme"] else "")
            + f"; sampling {r['sampling']}; rounding {r['rounding']}; seed {d['seed']}")
    t = Table("tensor", "shape", "kept", "pruned", "requested", "realised", "dead downstream", "MACs kept")
    for row in r["rows"]:
        t.add_row(row["name"], "x".join(map(str, row["shape"])), str(row["kept"]), str(row["pruned"]),
                  "-" if row["requested_sparsity"] is None else f"{row['requested_sparsity']:.4f}",
                  f"{row['realised_sparsity']:.4f}", str(row["dead_downstream"]),
                  "-" if row["flops_pruned"] is None else str(row["flops_pruned"]))
    c.print(t)
    c.print(f"maskable: {r['maskable_kept']}/{r['maskable_params']} kept, realised sparsity "
            f"{r['realised_sparsity_maskable']:.4f}; all params: {r['total_nonzero']}/{r['total_params']} "
            f"non-zero, sparsity {r['realised_sparsity_all']:.4f}, compression {r['compression_ratio']:.2f}x")
    if r["flops_dense"]:
        c.print(f"MACs per example: {r['flops_dense']} dense -> {r['flops_pruned']} pruned "
                f"({r['flops_dense'] / max(r['flops_pruned'], 1):.2f}x)")
    if r["dead_downstream"]:
        c.print(f"dead downstream weights (reading an all-zero unit): {r['dead_downstream']}; "
                f"effectively kept {r['effective_kept']}")
    if show_neurons:
        for k, v in r["neuron_sparsity"].items():
            c.print(f"neuron-wise sparsity {k}: mean {v['mean']:.3f}, min {v['min']:.3f}, median "
                    f"{v['median']:.3f}, max {v['max']:.3f}, fully pruned {v['fully_pruned']}/{v['n_neurons']}")
    c.print(f"test accuracy: dense {d['dense_test_acc']:.4f} -> pruned {d['pruned_test_acc']:.4f}"
            + ("" if d["finetuned_test_acc"] is None else f" -> fine-tuned {d['finetuned_test_acc']:.4f}"))
    if d["mask_file"]:
        c.print(f"mask saved to {d['mask_file']}")


@app.command("lth")
def lth_cmd(
    dataset: Dataset = typer.Option("mnist5k", help="offline dataset"),
    arch: Optional[str] = typer.Option(None, help="built-in architecture [default: lenet_300_100]: lenet5 | conv2 | "
                                                   "mlp:W1,W2,... (with --model: the architecture of a state dict)"),
    model: Optional[str] = typer.Option(None, help="start from this saved model file instead of a fresh --arch"),
    levels: int = typer.Option(5, help="number of pruning levels after the dense level 0"),
    epochs: int = typer.Option(5, help="training epochs per level"),
    strategy: Strategy = typer.Option("layerwise", help="layerwise (per-layer-group rates) | global"),
    rate_hidden: Optional[float] = typer.Option(None, help="layerwise: per-level fraction of remaining hidden Linear "
                                                          "weights pruned [default: 0.2]"),
    rate_output: Optional[float] = typer.Option(None, help="layerwise: per-level fraction of remaining output weights "
                                                          "pruned [default: 0.1]"),
    rate_conv: Optional[float] = typer.Option(None, help="layerwise: per-level fraction of remaining conv weights "
                                                        "pruned [default: 0.1]"),
    global_rate: Optional[float] = typer.Option(None, help="global strategy: fraction of remaining weights per level "
                                                          "[default: 0.2]"),
    fraction: Optional[float] = typer.Option(None, help="reach this total pruned fraction p in --levels rounds: "
                                                        "every group prunes f = 1-(1-p)^(1/levels) per round"),
    target_sparsity: Optional[float] = typer.Option(None, hidden=True, help="deprecated spelling of --fraction"),
    exclude_output: bool = typer.Option(False, help="global strategy: never prune the output layer"),
    rewind_step: int = typer.Option(0, help="rewind to this training step (0 = initialisation)"),
    retrain: Retrain = typer.Option("rewind", help="retraining after each pruning round"),
    controls: str = typer.Option("", help="comma list of controls per level: uniform, erk, reinit"),
    lr: float = typer.Option(1.2e-3), batch_size: int = typer.Option(60),
    optimizer: Optimizer = typer.Option("adam", help="optimizer"),
    seed: int = typer.Option(0, help="seed for init, data order and control masks"),
    data_seed: int = typer.Option(0, help="train/test split seed"),
    out: str = typer.Option(None, help="write the per-level table to this CSV file"),
    save_masks: str = typer.Option(None, help="directory for level_<L>.pt mask files"),
    json_out: bool = json_option(),
):
    """Iterative magnitude pruning with rewinding (lottery tickets): test accuracy per level vs weights remaining."""
    import pandas as pd

    from probprune.core.progress import progress_bar
    from probprune.pruning import save_mask as _save
    from probprune.pruning.imp import IMPConfig, lth_rates, per_round_rate, run_imp
    from probprune.net.train import TrainConfig

    dataset, strategy, retrain, optimizer = map(val, (dataset, strategy, retrain, optimizer))
    # options the chosen strategy would ignore are refused before any work
    given_rates = [nm for v, nm in ((rate_hidden, "--rate-hidden"), (rate_output, "--rate-output"),
                                    (rate_conv, "--rate-conv"), (global_rate, "--global-rate")) if v is not None]
    if (fraction is not None or target_sparsity is not None) and given_rates:
        raise ProbPruneError(f"{given_rates[0]} does not apply with --fraction (every group then prunes "
                             "1-(1-p)^(1/levels) per round); give one of them")
    if strategy == "layerwise":
        if global_rate is not None:
            raise ProbPruneError("--global-rate applies to --strategy global only")
        if exclude_output:
            raise ProbPruneError("--exclude-output applies to --strategy global only (layerwise: --rate-output)")
    else:
        bad = [nm for nm in given_rates if nm != "--global-rate"]
        if bad:
            raise ProbPruneError(f"{bad[0]} applies to --strategy layerwise only (global: --global-rate)")
    rate_hidden = 0.2 if rate_hidden is None else rate_hidden
    rate_output = 0.1 if rate_output is None else rate_output
    rate_conv = 0.1 if rate_conv is None else rate_conv
    global_rate = 0.2 if global_rate is None else global_rate
    fraction = _fraction_and_seeds(fraction, target_sparsity, "lth --target-sparsity", seed, data_seed)
    target_sparsity = fraction
    if fraction is not None:
        check_fraction(fraction, "--fraction", upper_open=True)
    check_int(levels, "--levels", 0)
    check_int(epochs, "--epochs", 1)
    check_int(batch_size, "--batch-size", 1)
    check_int(rewind_step, "--rewind-step", 0)
    check_finite(lr, "--lr", lo=0, lo_open=True)
    for v, nm in ((rate_hidden, "--rate-hidden"), (rate_output, "--rate-output"), (rate_conv, "--rate-conv"),
                  (global_rate, "--global-rate")):
        check_fraction(v, nm, upper_open=True)
    ctr = tuple(c.strip() for c in controls.split(",") if c.strip())
    bad = [c for c in ctr if c not in CONTROLS]
    if bad:
        raise ProbPruneError(f"unknown control {bad[0]!r} in --controls; use a comma list of {', '.join(CONTROLS)}")
    check_output_path(out, "--out")
    check_output_path(save_masks, "--save-masks", kind="dir")
    arch, model_path = _resolve_model(model, arch, None, "lth")
    ds, net, _ = _setup(dataset, arch, seed, data_seed, model_file=model_path)
    arch = arch or ("lenet_300_100" if model_path is None else None)
    model = model_path or arch
    if target_sparsity is not None:
        f = per_round_rate(target_sparsity, max(levels, 1))
        rates = {k: f for k in lth_rates(net)}
        gr = f
    else:
        rates = lth_rates(net, hidden=rate_hidden, output=rate_output, conv=rate_conv)
        gr = global_rate
    cfg = IMPConfig(levels=levels, strategy=strategy, rates=rates, global_rate=gr, exclude_output=exclude_output,
                    rewind_step=rewind_step, retrain=retrain, controls=ctr, init_seed=seed, mask_seed=seed,
                    train=TrainConfig(epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, optimizer=optimizer))
    cfg.validate()

    with progress_bar(levels + 1, "IMP levels", unit="level", enabled=not json_out, interval=0) as bar:
        def prog(r):
            bar.set_postfix(remaining=f"{100 * r['remaining']:.2f}%", acc=f"{r['test_acc']:.3f}")
            bar.update(1)

        res = run_imp(net, ds, cfg, progress=prog)
    df = pd.DataFrame(res.rows)
    if out:
        atomic_write_text(out, df.to_csv(index=False))
    if save_masks:
        for L, m in enumerate(res.masks):
            atomic_write(os.path.join(save_masks, f"level_{L}.pt"),
                         lambda tmp, m=m, L=L: _save(m, tmp, meta={"level": L, "model": model, "seed": seed}))
    data = {"dataset": ds.describe(), "model": model, "arch": arch, "fraction": fraction, "strategy": strategy,
            "rates": res.rates,
            "retrain": retrain, "rewind_step": rewind_step, "epochs": epochs, "seed": seed,
            "masks_nested": res.nested(), "rows": res.rows}

    def render(d):
        from rich.table import Table

        c = make_console()
        c.print(f"[bold]{d['dataset']}[/bold]; {d['model']}; IMP {d['strategy']}, retrain {d['retrain']} "
                f"(rewind step {d['rewind_step']}), {d['epochs']} epochs/level, seed {d['seed']}")
        cols = ["level", "weights remaining", "test acc"] + [f"{c} acc" for c in ctr] + ["seconds"]
        t = Table(*cols)
        for r in d["rows"]:
            t.add_row(str(r["level"]), f"{100 * r['remaining']:.2f}%", f"{r['test_acc']:.4f}",
                      *[f"{r[f'{c}_acc']:.4f}" for c in ctr], f"{r.get('seconds_total', r['seconds']):.1f}")
        c.print(t)
        c.print(f"masks nested: {d['masks_nested']}")

    emit(data, json_out, render)


@app.command("apply-budget")
def apply_budget_cmd(
    model: str = typer.Option(..., help="the saved model the budget is about (torch.save(model) or a state dict)"),
    budget: str = typer.Option(..., help="a budget JSON file (`probprune budget ... --json > b.json`)"),
    arch: Optional[str] = typer.Option(None, help="architecture of a state dict"),
    input_shape: Optional[str] = typer.Option(None, help="C,H,W for conv models"),
    seed: int = typer.Option(0, help="seed of the random rules (exact-k random, Bernoulli)"),
    out: Optional[str] = typer.Option(None, help="write the pruned model (state dict + architecture) here"),
    json_out: bool = json_option(),
):
    """Prune a model by exactly the rule a budget certified (exact-k counts, thresholds or Bernoulli masks)."""
    import json as _json

    from probprune.core.errors import check_seed
    from probprune.net.io import load_model_and_arch, save_model
    from probprune.pruning.from_budget import apply_budget

    check_seed(seed, "--seed")
    if out is not None:
        check_output_path(out, "--out")
    try:
        with open(budget, encoding="utf-8") as f:
            b = _json.load(f)
    except OSError as e:
        raise ProbPruneError(f"--budget {budget}: cannot read ({e.strerror or type(e).__name__})") from None
    except ValueError:
        raise ProbPruneError(f"--budget {budget} is not JSON (write it with `probprune budget ... --json`)") from None
    shape = tuple(int(v) for v in input_shape.split(",")) if input_shape else None
    mdl, arch_name = load_model_and_arch(model, arch, shape)
    res = apply_budget(mdl, b, seed=seed)
    if out is not None:
        atomic_write(out, lambda tmp: save_model(mdl, tmp, arch=arch_name, input_shape=shape))
        res["out"] = out

    def render(d):
        for L in d["layers"]:
            typer.echo(f"{L['name']}: pruned {L['pruned']:,} of {L['n_weights']:,} (budget allows {L['max_prunable']:,})")
        typer.echo(f"rule {d['rule']} ({d['method']}): pruned {d['total_pruned']:,} of {d['total_weights']:,} weights"
                   + (f"; saved to {d['out']}" if "out" in d else ""))

    emit(res, json_out, render)
