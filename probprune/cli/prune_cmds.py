"""CLI: ``probprune prune`` (one pruning method on a trained model) and ``probprune lth`` (IMP lottery tickets)."""
from __future__ import annotations

import sys

import typer

from . import app
from .common import emit
from ..errors import ProbPruneError


def _setup(dataset: str, model: str, seed: int, data_seed: int, bias: bool = True, model_file: str | None = None):
    import torch.nn as nn

    from ..data import load_dataset
    from ..models import build_model, is_conv_model

    if model_file:
        from ..modelio import load_model

        net = load_model(model_file, arch=None if model == "lenet_300_100" else model)
        conv = any(isinstance(m, nn.Conv2d) for m in net.modules())
        ds = load_dataset(dataset, seed=data_seed, images=conv)
        first = next(m for m in net.modules() if isinstance(m, (nn.Linear, nn.Conv2d)))
        need = first.in_features if isinstance(first, nn.Linear) else first.in_channels
        have = ds.input_shape[0]
        if need != have:
            raise ProbPruneError(f"model in {model_file} expects {need} inputs/channels, dataset {dataset} gives "
                                 f"{ds.input_shape}")
        return ds, net
    ds = load_dataset(dataset, seed=data_seed, images=is_conv_model(model))
    net = build_model(model, ds.input_shape, ds.n_classes, bias=bias, seed=seed)
    return ds, net


@app.command("prune")
def prune_cmd(
    method: str = typer.Option(..., help="magnitude | random | snip | grad | structured"),
    sparsity: float = typer.Option(..., help="fraction of the maskable weights to prune, in [0, 1)"),
    model: str = typer.Option("lenet_300_100", help="lenet_300_100 | lenet5 | conv2 | mlp:W1,W2,..."),
    dataset: str = typer.Option("mnist5k", help="mnist5k | digits | mnist1d"),
    scope: str = typer.Option("layer", help="layer | global (magnitude, grad, structured)"),
    scheme: str = typer.Option("uniform", help="random densities: uniform | er | erk | snip_ratio"),
    sampling: str = typer.Option("exact", help="exact | bernoulli (random) | threshold (magnitude)"),
    threshold: float = typer.Option(None, help="tau for --sampling threshold: prune |w| < tau"),
    rounding: str = typer.Option("floor", help="pruned-count rounding: floor | round | ceil"),
    norm: str = typer.Option("l1", help="structured: l1 | l2"),
    erk_power_scale: float = typer.Option(1.0, help="ERK exponent gamma"),
    exclude_first: bool = typer.Option(False, help="keep the first weight layer dense"),
    exclude_last: bool = typer.Option(False, help="keep the output layer dense"),
    epochs: int = typer.Option(2, help="dense training epochs before pruning (0: prune at initialisation)"),
    finetune_epochs: int = typer.Option(0, help="epochs of masked fine-tuning after pruning"),
    lr: float = typer.Option(1.2e-3), batch_size: int = typer.Option(60),
    seed: int = typer.Option(0, help="seed for init, data order and mask"),
    data_seed: int = typer.Option(0, help="train/test split seed"),
    batch_for_scores: int = typer.Option(256, help="batch size for snip / grad / snip_ratio scores"),
    save_mask: str = typer.Option(None, help="write the mask to this .pt file"),
    model_file: str = typer.Option(None, help="prune this saved model (torch.save(model) or a state dict with "
                                               "--model as its architecture) instead of a fresh one"),
    save_model: str = typer.Option(None, help="write the pruned (fine-tuned) state dict to this file"),
    show_neurons: bool = typer.Option(False, help="print neuron-wise sparsity summaries"),
    json_out: bool = typer.Option(False, "--json", help="machine-readable output"),
):
    """Train a model on an offline dataset, prune it with one method, and report accuracy and sparsity."""
    import torch

    from ..pruning import prune, save_mask as _save
    from ..train import evaluate, train

    if epochs < 0 or finetune_epochs < 0:
        raise ProbPruneError("epochs must be >= 0")
    ds, net = _setup(dataset, model, seed, data_seed, model_file=model_file)
    dense_acc = None
    if epochs:
        train(net, ds, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, eval_each_epoch=False)
    dense_acc = evaluate(net, ds.X_test, ds.y_test)
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(ds.y_train), generator=g)[:batch_for_scores]
    res = prune(net, method, None if sampling == "threshold" else sparsity, scope=scope, scheme=scheme,
                sampling=sampling, threshold=threshold, rounding=rounding, norm=norm, seed=seed,
                X=ds.X_train[idx], y=ds.y_train[idx], exclude_first=exclude_first, exclude_last=exclude_last,
                erk_power_scale=erk_power_scale, input_shape=ds.input_shape)
    pruned_acc = evaluate(net, ds.X_test, ds.y_test)
    ft_acc = None
    if finetune_epochs:
        train(net, ds, epochs=finetune_epochs, lr=lr, batch_size=batch_size, seed=seed + 1, masks=res.mask,
              eval_each_epoch=False)
        ft_acc = evaluate(net, ds.X_test, ds.y_test)
    rep = res.report.to_dict()
    if not show_neurons:
        for v in rep["neuron_sparsity"].values():
            v.pop("values", None)
    if save_model:
        from ..modelio import save_model as _save_model

        _save_model(net, save_model, arch=None if model_file else model, input_shape=list(ds.input_shape))
    if save_mask:
        _save(res.mask, save_mask, meta={"method": method, "sparsity": sparsity, "model": model, "dataset": dataset,
                                         "seed": seed, "scheme": scheme, "sampling": sampling})
    data = {"dataset": ds.describe(), "model": model, "method": method, "requested_sparsity": sparsity,
            "dense_test_acc": dense_acc, "pruned_test_acc": pruned_acc, "finetuned_test_acc": ft_acc,
            "train_epochs": epochs, "finetune_epochs": finetune_epochs, "seed": seed, "report": rep,
            "mask_file": save_mask, "model_file": model_file, "saved_model": save_model}

    def render(d):
        from rich.console import Console
        from rich.table import Table

        c = Console()
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

    emit(data, json_out, render)


@app.command("lth")
def lth_cmd(
    dataset: str = typer.Option("mnist5k", help="mnist5k | digits | mnist1d"),
    model: str = typer.Option("lenet_300_100", help="lenet_300_100 | lenet5 | conv2 | mlp:W1,W2,..."),
    levels: int = typer.Option(5, help="number of pruning levels after the dense level 0"),
    epochs: int = typer.Option(5, help="training epochs per level"),
    strategy: str = typer.Option("layerwise", help="layerwise (per-layer-group rates) | global"),
    rate_hidden: float = typer.Option(0.2, help="per-level fraction of remaining hidden Linear weights pruned"),
    rate_output: float = typer.Option(0.1, help="per-level fraction of remaining output weights pruned"),
    rate_conv: float = typer.Option(0.1, help="per-level fraction of remaining conv weights pruned"),
    global_rate: float = typer.Option(0.2, help="global strategy: fraction of remaining weights per level"),
    target_sparsity: float = typer.Option(None, help="reach this total sparsity in --levels rounds: every group "
                                                     "prunes f = 1-(1-p)^(1/levels) per round"),
    exclude_output: bool = typer.Option(False, help="global strategy: never prune the output layer"),
    rewind_step: int = typer.Option(0, help="rewind to this training step (0 = initialisation)"),
    retrain: str = typer.Option("rewind", help="rewind | lr_rewind | finetune"),
    controls: str = typer.Option("", help="comma list of controls per level: uniform, erk, reinit"),
    lr: float = typer.Option(1.2e-3), batch_size: int = typer.Option(60),
    optimizer: str = typer.Option("adam", help="adam | sgd"),
    seed: int = typer.Option(0, help="seed for init, data order and control masks"),
    data_seed: int = typer.Option(0, help="train/test split seed"),
    out: str = typer.Option(None, help="write the per-level table to this CSV file"),
    save_masks: str = typer.Option(None, help="directory for level_<L>.pt mask files"),
    json_out: bool = typer.Option(False, "--json", help="machine-readable output"),
):
    """Iterative magnitude pruning with rewinding (lottery tickets): test accuracy per level vs weights remaining."""
    import os

    import pandas as pd
    from tqdm import tqdm

    from ..pruning import save_mask as _save
    from ..pruning.imp import IMPConfig, lth_rates, per_round_rate, run_imp
    from ..train import TrainConfig

    ds, net = _setup(dataset, model, seed, data_seed)
    ctr = tuple(c.strip() for c in controls.split(",") if c.strip())
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
    bar = tqdm(total=levels + 1, desc="IMP levels", file=sys.stderr, disable=None, leave=False)

    def prog(r):
        bar.set_postfix(remaining=f"{100 * r['remaining']:.2f}%", acc=f"{r['test_acc']:.3f}")
        bar.update(1)

    res = run_imp(net, ds, cfg, progress=prog)
    bar.close()
    df = pd.DataFrame(res.rows)
    if out:
        d = os.path.dirname(out)
        if d:
            os.makedirs(d, exist_ok=True)
        df.to_csv(out, index=False)
    if save_masks:
        for L, m in enumerate(res.masks):
            _save(m, os.path.join(save_masks, f"level_{L}.pt"), meta={"level": L, "model": model, "seed": seed})
    data = {"dataset": ds.describe(), "model": model, "strategy": strategy, "rates": res.rates,
            "retrain": retrain, "rewind_step": rewind_step, "epochs": epochs, "seed": seed,
            "masks_nested": res.nested(), "rows": res.rows}

    def render(d):
        from rich.console import Console
        from rich.table import Table

        c = Console()
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
