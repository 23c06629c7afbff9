"""``probprune budget | bound | certify | width``: the bounds engine from the command line (issue 2)."""
from __future__ import annotations

from typing import Optional

import typer
from rich.table import Table

from probprune.cli.app import app
from probprune.cli.common import (Activation, BoundMethod, BudgetMethod, BudgetMode, CertMethod, ConvNorm, Dataset, LazyConsole,
                     Law, atomic_write, check_finite, check_int, check_output_path, deprecated, emit, json_option,
                     parse_float_list, parse_int_list, val)
from probprune.core.errors import ProbPruneError, check_delta, check_eps, check_fraction, check_memory, check_seed

console = LazyConsole()

DEFAULT_WIDTHS = "784,300,100,10"


def _parse_shape(s: Optional[str]):
    if not s:
        return None
    shape = tuple(parse_int_list(s, "--input-shape"))
    if not shape or any(v < 1 for v in shape):
        raise ProbPruneError(f"--input-shape must be positive integers C,H,W, got {s!r}")
    return shape


def _budget_table(d: dict, title: str) -> None:
    t = Table(title=title)
    for c in ("layer", "weights", "max prunable", "fraction"):
        t.add_column(c, justify="right" if c != "layer" else "left")
    for L in d["layers"]:
        t.add_row(L["name"], f"{L['n_weights']:,}", f"{L['max_prunable']:,}", f"{L['fraction']:.4%}")
    t.add_row("total", f"{d['total_weights']:,}", f"{d['total_prunable']:,}",
              f"{d['total_prunable'] / d['total_weights']:.4%}", style="bold")
    console.print(t)
    console.print(f"  bound at this allocation: {d['eps_achieved']:.6g} <= eps = {d['eps']:g}"
                  + (f" (prob >= 1 - {d['delta']:g})" if d.get("delta") is not None else " (deterministic)"))
    ref = str((d.get("certificate_detail") or {}).get("uniform_reference") or "")
    label = ("uniform reference (one evaluation, not searched)" if ref.startswith("one tight evaluation")
             else "best uniform allocation")
    console.print(f"  {label}: fraction {d['uniform']['fraction']:.4%}, "
                  f"{d['uniform']['total_prunable']:,} weights  |  mode: {d['mode']}  |  {d['statement']}")
    for h in d.get("paper_hypotheses_violated", []):
        console.print(f"  note: paper hypothesis not met ({h}); the derived bound does not need it", markup=False)


LAW_OPTIONS = ("--widths", "--activation", "--law", "--K")


@app.command()
def budget(
    eps: Optional[float] = typer.Option(None, help="absolute error budget: sup_{||x||<=1} ||F(x) - F_pruned(x)|| <= eps "
                                        "(default: the relative --eps-rel 0.1)"),
    delta: float = typer.Option(0.05, help="failure probability, in (0, 1)"),
    method: BudgetMethod = typer.Option("magnitude", help="pruning method (with --model: magnitude or random)"),
    mode: BudgetMode = typer.Option("optimal", help="layer allocation (with --model: optimal or uniform)"),
    widths: Optional[str] = typer.Option(None, help=f"layer widths d_0,...,d_l of the target spec [default: "
                                         f"{DEFAULT_WIDTHS}] (not with --model)"),
    K: Optional[float] = typer.Option(None, "--K", help="paper law: weights U[-K/sqrt(m_i), K/sqrt(m_i)] [default: 1] "
                                      "(not with --model)"),
    activation: Optional[Activation] = typer.Option(None, help="activation of the target spec [default: relu] (not "
                                                    "with --model)"),
    law: Optional[Law] = typer.Option(None, help="uniform (paper) | gaussian (N(0, (K/sqrt(m_i))^2)) [default: "
                                      "uniform] (not with --model)"),
    model: Optional[str] = typer.Option(None, help="a saved torch model or state dict: certified budget for it"),
    arch: Optional[str] = typer.Option(None, help="architecture for a state dict (lenet_300_100, mlp:300,100, ...)"),
    input_shape: Optional[str] = typer.Option(None, help="C,H,W for conv models"),
    trained_demo: bool = typer.Option(True, help="also certify a LeNet-300-100 trained on real MNIST (seconds)"),
    seed: int = typer.Option(0, help="seed for the demo network's training and the calibrated/empirical draws"),
    eps_rel: Optional[float] = typer.Option(None, "--eps-rel", help="relative budget: eps = R x a certified upper "
                                            "bound of sup_{||x||<=1} ||F(x)|| (THEORY §10.3); default 0.1"),
    calibrated: bool = typer.Option(False, "--calibrated", help="also the calibrated uniform budget (§10.2: with "
                                    "confidence 1 - gamma over a simulation of the known law; not with --model)"),
    empirical: bool = typer.Option(False, "--empirical", help="also the largest uniform fraction whose measured "
                                   "error stays within eps in >= 1 - delta of draws (not a guarantee)"),
    trials: Optional[int] = typer.Option(None, help="draws for --calibrated (default 300) / --empirical (200 linear, "
                                         "20 PGD)"),
    gamma: float = typer.Option(0.05, help="confidence parameter of --calibrated (and of the --eps-rel scale)"),
    max_acc_drop: Optional[float] = typer.Option(None, "--max-acc-drop", help="trained network: max prunable weights "
                                                 "such that certified accuracy drops by <= A points (demo: 1)"),
    dataset: Optional[str] = typer.Option(None, help="test data for certified accuracy (default from the input size)"),
    certificate: str = typer.Option("auto", help="with --model: the certificate to invert (auto = the tightest the "
                                    "auto rule picks; lemma-a = Cert-D)"),
    time_limit: Optional[float] = typer.Option(None, "--time-limit", help="seconds for the certificate searches "
                                               "(where the installed certificate supports a limit)"),
    refine: Optional[str] = typer.Option(None, "--refine", help="with --model: grow the auto budget with one §12 "
                                         "method (sdp: minutes; mixed, pairs, propagate, composed); `certify --bound "
                                         "<it>` then prints the inverted certificate"),
    refine_evaluations: Optional[int] = typer.Option(None, "--refine-evals", help="certificate evaluations of "
                                                     "--refine [default: 4]"),
    refine_time_limit: Optional[float] = typer.Option(None, "--refine-seconds", help="seconds for --refine "
                                                      "[default: 600]"),
    as_json: bool = json_option(),
):
    """Max prunable weights per layer for an error budget (eps, delta), with a guarantee (THEORY §3.9, §10)."""
    import probprune.api as api
    from probprune.cli import budget_task as BT  # noqa: F401

    method, mode, activation, law = val(method), val(mode), val(activation), val(law)
    if refine is None and (refine_evaluations is not None or refine_time_limit is not None):
        raise ProbPruneError("--refine-evals / --refine-seconds set --refine; add --refine METHOD or drop them")
    if model is not None:
        given = [n for n, v in zip(LAW_OPTIONS, (widths, activation, law, K)) if v is not None]
        if calibrated:
            given.append("--calibrated")
        if given:
            raise ProbPruneError(f"{', '.join(given)} describe a network drawn from the weight law; --model is a given "
                                 f"network, not a draw from it: {api.CERT_TOOL} answers the question")
        if trials is not None and not empirical:
            raise ProbPruneError("--trials sets the draws of --empirical with --model; add --empirical or drop it")
        rep = api.budget(model, eps=eps, eps_rel=eps_rel, delta=delta, method=method, mode=mode,
                         certificate=certificate, empirical=empirical, max_acc_drop=max_acc_drop, data=dataset,
                         seed=seed, trials=trials, gamma=gamma, arch=arch, input_shape=_parse_shape(input_shape),
                         time_limit=time_limit, refine=refine,
                         **{k: v for k, v in (("refine_evaluations", refine_evaluations),
                                              ("refine_time_limit", refine_time_limit)) if v is not None})
        inv = rep.inverted_certificate

        def render_model(d):
            _budget_table(d, f"Certified budget for {model} ({d['method']}, {inv})")
            BT.render_trained_extras(console, d)

        emit(rep.as_dict(), as_json, render_model)
        return
    for name, v in (("--arch", arch), ("--input-shape", input_shape), ("--dataset", dataset)):
        if v is not None:
            raise ProbPruneError(f"{name} applies to --model (a given network); the law template has none")
    if certificate != "auto":
        raise ProbPruneError("--certificate applies to --model; the law template's budget inverts the a-priori "
                             "statement")
    if refine is not None:
        raise ProbPruneError("--refine grows a certified budget of a given network: it applies to --model")
    if trials is not None and not (calibrated or empirical):
        raise ProbPruneError("--trials sets the draws of --calibrated / --empirical; add one of them or drop it")
    w = parse_int_list(widths if widths is not None else DEFAULT_WIDTHS, "--widths")
    demo = trained_demo and w == parse_int_list(DEFAULT_WIDTHS, "--widths")
    rep = api.budget(w, eps=eps, eps_rel=eps_rel, delta=delta, method=method, mode=mode, calibrated=calibrated,
                     empirical=empirical, max_acc_drop=max_acc_drop, seed=seed, trials=trials, gamma=gamma,
                     law=law, activation=activation, K=K, trained_demo=demo, time_limit=time_limit)
    d0 = rep.as_dict()

    def render(d):
        _budget_table(d, f"Budget: {d['method']} pruning of a {'-'.join(map(str, d['widths']))} {d['activation']} "
                         f"network drawn from the paper's law (K={d['K']}, {d['law']}), eps={d['eps']:.4g}, "
                         f"delta={d['delta']:g}")
        BT.render_eps_rel(console, d.get("eps_rel"), "the calibrated")
        BT.render_spec_extras(console, d)
        tr = d.get("trained")
        if tr is not None:
            _budget_table(tr, f"Certified budget for a trained network: {tr['network']}, "
                              f"test accuracy {tr['test_accuracy']:.2%}")
            BT.render_trained_extras(console, tr)

    emit(d0, as_json, render)


@app.command()
def bound(
    fraction: str = typer.Option(..., help="pruned fraction q (one value, or one per layer: 0.1,0.05,0)"),
    delta: float = typer.Option(0.05, help="failure probability, in (0, 1)"),
    method: BoundMethod = typer.Option("magnitude", help="pruning method"),
    widths: str = typer.Option(DEFAULT_WIDTHS, help="layer widths d_0,...,d_l"),
    K: float = typer.Option(1.0, "--K", help="paper law constant K"),
    activation: Activation = typer.Option("relu", help="activation of the spec"),
    law: Law = typer.Option("uniform", help="uniform | gaussian"),
    statement: str = typer.Option("best", help="best (tightest valid: min of §3.4/§3.12 and §9 per term, §9.8 for "
                                  "linear nets) | bernstein (§3.4/§3.12 only) | sharp (§9 only)"),
    calibrated: bool = typer.Option(False, "--calibrated", help="also the calibrated statement (THEORY §10.1): "
                                    "simulate the known law, exact binomial order statistic"),
    trials: Optional[int] = typer.Option(None, help="draws for --calibrated [default: 300]"),
    gamma: float = typer.Option(0.05, help="--calibrated: confidence 1 - gamma over the simulation"),
    seed: int = typer.Option(0, help="--calibrated: seed of the draws"),
    as_json: bool = json_option(),
):
    """The guaranteed error eps for pruning a fraction of every layer (THEORY §3.4, §3.12, §9)."""
    import probprune.api as api

    method, activation, law = val(method), val(activation), val(law)
    check_finite(K, "--K", lo=0, lo_open=True)
    w = parse_int_list(widths, "--widths")
    from probprune.core.errors import check_widths

    check_widths(w)
    q = parse_float_list(fraction, "--fraction")
    q = q[0] if len(q) == 1 else q
    if trials is not None and not calibrated:
        raise ProbPruneError("--trials sets the draws of --calibrated; add --calibrated or drop it")
    rep = api.bound(w, fraction=q, delta=delta, method=method, law=law, statement=statement, calibrated=calibrated,
                    trials=300 if trials is None else trials, gamma=gamma, seed=seed, activation=activation, K=K)

    def render(d):
        t = Table(title=f"{d['statement']}  (provenance {d['provenance']})")
        for c in ("layer", "fraction", "B_i (||W_i|| <=)", "eta_i (||E_i|| <=)", "delta_W", "delta_E", "B from",
                  "eta from"):
            t.add_column(c, justify="right")
        for L in d["layers"]:
            t.add_row(L["name"], f"{float(L['fraction']):.4g}", f"{float(L['B']):.5g}", f"{float(L['eta']):.5g}",
                      f"{float(L['delta_W']):.3g}", f"{float(L['delta_E']):.3g}", str(L.get("B_statement", "")),
                      str(L.get("eta_statement", "")))
        console.print(t)
        if d.get("eps_statement"):
            console.print(f"  eps from: {d['eps_statement']}", markup=False)
        console.print(f"[bold]eps = {d['eps']:.6g}[/bold]: with probability >= {1 - d['delta']:g}, "
                      f"sup_(||x||<=1) ||F(x) - F_pruned(x)|| <= eps   (Lip = {d['Lip']:g})")
        for a in d["assumptions"]:
            console.print(f"  assumes: {a}", markup=False)
        for h in d["paper_hypotheses_violated"]:
            console.print(f"  note: paper hypothesis not met ({h}); the derived bound does not need it", markup=False)
        if "calibrated" in d:
            c = d["calibrated"]
            console.print(f"[bold]calibrated eps = {c['eps']:.6g}[/bold]: with confidence >= {1 - c['gamma']:g} over "
                          f"{c['trials']} simulated networks, P(err > eps) <= {c['delta']:g} (THEORY §10.1; rank "
                          f"{c['rank']} of {c['trials']}; per draw: {c['per_draw_kind']}; analytic / calibrated = "
                          f"{d['eps'] / c['eps'] if c['eps'] > 0 else float('inf'):.3g})")

    emit(rep.as_dict(), as_json, render)


@app.command()
def certify(
    model: str = typer.Option(..., help="a saved torch model (or state dict with --arch)"),
    method: CertMethod = typer.Option("magnitude", help="magnitude (layer-wise exact-k) | random (Bernoulli)"),
    fraction: float = typer.Option(..., help="pruned fraction in every weight layer"),
    delta: float = typer.Option(0.05, help="for random: probability over the mask"),
    arch: Optional[str] = typer.Option(None),
    input_shape: Optional[str] = typer.Option(None, help="C,H,W for conv models"),
    dataset: Optional[Dataset] = typer.Option(None, help="real inputs for the measured error (default from input size)"),
    seed: int = typer.Option(0, help="mask seed (random)"),
    conv_norm: ConvNorm = typer.Option("fft", help="fft (exact periodic norm, Sedghi et al.) | kernel (Lemma C)"),
    bound: str = typer.Option("auto", help="auto (tightest valid: min of all) | lemma-a (Cert-D, §3.11) | composed | "
                              "pairs | mixed | joint | propagate | sdp (THEORY §12; joint on max-pool nets and "
                              "sdp: tens of seconds to minutes)"),
    radius: Optional[float] = typer.Option(None, help="per-input certified prediction stability on the --dataset "
                                           "test inputs within this radius (0 = point check; THEORY §12.5)"),
    radius_norm: str = typer.Option("l2", help="l2 | linf (for --radius)"),
    n_inputs: int = typer.Option(200, help="test inputs for --radius"),
    time_limit: Optional[float] = typer.Option(None, "--time-limit", help="seconds for the whole certify call "
                                               "(default 10 s for --bound auto, counted from its entry)"),
    as_json: bool = json_option(),
):
    """Certificate for one trained network and pruning (THEORY §3.11, §12), with the measured error on real inputs."""
    import probprune.api as api

    method, dataset, conv_norm = val(method), val(dataset), val(conv_norm)
    rep = api.certify(model, fraction=fraction, method=method, bound=bound, radius=radius, radius_norm=radius_norm,
                      n_inputs=n_inputs, dataset=dataset, delta=delta, seed=seed, conv_norm=conv_norm,
                      time_limit=time_limit, arch=arch, input_shape=_parse_shape(input_shape))

    def render(d):
        c = d["certificate"]
        t = Table(title=f"{c['kind']} for {model}: {d['method']} pruning of {d['fraction']:.2%} per layer")
        for col in ("layer", "||W|| <=", "||W_pruned|| <=", "||E|| <=", "L_i", "power-iter ||W|| (lower, display)"):
            t.add_column(col, justify="right")
        pis = c.get("power_iteration_norm_W_lower_estimate", [None] * len(c["layers"]))
        for L, p in zip(c["layers"], pis):
            t.add_row(L["name"], f"{L['norm_W']:.5g}", f"{L['norm_What']:.5g}", f"{L['norm_E']:.5g}", f"{L['L']:g}",
                      "" if p is None else f"{p:.5g}")
        console.print(t)
        console.print(f"[bold]certificate: sup_(||x||<=1) ||F(x) - F_pruned(x)|| <= {c['eps']:.6g}[/bold] "
                      f"({c.get('bound', 'lemma-a')}; Cert-D A-fwd {c['A_fwd']:.5g}, A-bwd {c['A_bwd']:.5g}; "
                      "deterministic)")
        if "tight" in d:
            tt = d["tight"]
            if "refused" in tt:
                console.print(f"tight certificates (§12) not applied: {tt['refused']}")
            elif "components" in tt:
                comps = ", ".join(f"{k} {v:.5g}" for k, v in tt["components"].items())
                console.print(f"[bold]tight (§12, {tt['method']}): <= {tt['eps']:.6g}[/bold]  ({comps})")
            if "stability" in tt:
                st = tt["stability"]
                console.print(f"certified prediction stability ({st['norm']} radius {st['radius']:g}, {st['n']} "
                              f"{st['dataset']} test inputs): {st['fraction']:.1%} provably unchanged "
                              f"(F alone certified constant: {st['F_robust']:.1%})")
        if "cert_R_before_mask" in d:
            r = d["cert_R_before_mask"]
            console.print(f"Cert-R before drawing the mask: <= {r['eps']:.6g} with probability >= {1 - r['delta']:g} over the mask")
        if "measured" in d:
            m = d["measured"]
            console.print(f"measured on {m['n_inputs']} {m['dataset']} test inputs scaled into the ball: "
                          f"max {m['max_error']:.5g}, mean {m['mean_error']:.5g}  (certificate / max = "
                          f"{c['eps'] / max(m['max_error'], 1e-300):.3g})")

    emit(rep.as_dict(), as_json, render)


@app.command()
def width(
    eps: float = typer.Option(..., help="error budget"),
    delta: float = typer.Option(0.05),
    fraction: float = typer.Option(..., help="pruned fraction at d_ref (schedule q(d) = fraction (d/d_ref)^-gamma)"),
    gamma: float = typer.Option(0.0, help="schedule exponent (0: a fixed fraction)"),
    d_ref: int = typer.Option(100),
    d0: int = typer.Option(784, help="input width"),
    dl: int = typer.Option(10, help="output width"),
    depth: int = typer.Option(3, help="number of weight layers l"),
    method: BudgetMethod = typer.Option("magnitude", help="pruning method"),
    K: float = typer.Option(1.0, "--K"),
    alpha: Optional[float] = typer.Option(None, help="paper shape: alpha in (0,1)"),
    C: Optional[str] = typer.Option(None, help="paper shape: C1,C2,C3,C4,C5 (unknown in the paper: yours)"),
    as_json: bool = json_option(),
):
    """Smallest hidden width guaranteeing (eps, delta): our explicit bound, and Theorem 1's shape with your constants."""
    from probprune.theory.apriori import paper_width_condition
    from probprune.budgets.apriori import min_width

    method = val(method)
    check_eps(eps)
    check_delta(delta)
    check_fraction(fraction)
    check_finite(gamma, "--gamma")
    check_finite(K, "--K", lo=0, lo_open=True)
    check_finite(alpha, "--alpha", lo=0, hi=1, lo_open=True, hi_open=True)
    for v, nm in ((d_ref, "--d-ref"), (d0, "--d0"), (dl, "--dl"), (depth, "--depth")):
        check_int(v, nm, 1)
    r = min_width(eps, delta, fraction, d0, dl, depth, method, K, gamma=gamma, d_ref=d_ref)
    out = {"eps": eps, "delta": delta, "method": method, "schedule": r.schedule, "min_width_explicit": r.width,
           "note": r.note, "provenance_explicit": "[D] THEORY.md §3.4 bound, scanned over width"}
    if alpha is not None or C is not None:
        if alpha is None or C is None:
            raise ProbPruneError("the paper shape needs both --alpha and --C C1,C2,C3,C4,C5")
        cs = parse_float_list(C, "--C")
        if len(cs) != 5:
            raise ProbPruneError("--C needs five constants C1,C2,C3,C4,C5")
        pw = paper_width_condition(eps, delta, alpha, *cs)
        out["paper_shape"] = {"d_min": pw.d_min, "terms": pw.terms, "provenance": pw.provenance}

    def render(d):
        console.print(f"explicit bound ({method}, {d['schedule']}): smallest width = {d['min_width_explicit']}  ({d['note']})")
        if "paper_shape" in d:
            p = d["paper_shape"]
            console.print(f"Theorem 1 shape with your constants: d >= {p['d_min']:.6g}  {p['terms']}  {p['provenance']}")

    emit(out, as_json, render)


def _check_train_memory(arch: str, dataset: str) -> None:
    """Refuse ``train --arch mlp:W1,...`` whose parameters (with gradients and Adam's two moments: 4 float32
    copies) do not fit, before loading data or building the model."""
    base, _, arg = str(arch).partition(":")
    if base != "mlp":
        return
    try:
        hidden = [int(v) for v in arg.split(",") if v.strip()]
    except ValueError:
        return  # build_model names the bad width
    d_in = {"mnist5k": 784, "digits": 64, "mnist1d": 40}.get(dataset, 784)
    w = [d_in, *hidden, 10]
    n = sum(a * b + b for a, b in zip(w[:-1], w[1:]))
    check_memory(16.0 * n + 4.0 * 256 * sum(w), f"training {arch} ({n:,} parameters)")


@app.command("train")
def train_cmd(
    out: str = typer.Option(..., help="model file to write (state dict + architecture name)"),
    arch: str = typer.Option("lenet_300_100", help="built-in architecture: lenet_300_100 | lenet5 | conv2 | "
                                                   "mlp:W1,W2,..."),
    model: Optional[str] = typer.Option(None, hidden=True, help="deprecated spelling of --arch"),
    dataset: Dataset = typer.Option("mnist5k", help="offline dataset"),
    epochs: int = typer.Option(2, help="training epochs (>= 1)"),
    bias: bool = typer.Option(True, help="layers with biases (the certificate handles them)"),
    seed: int = typer.Option(0),
    as_json: bool = json_option(),
):
    """Train a model on an offline dataset and save it, ready for `probprune certify --model` / `budget --model`."""
    from probprune.net.data import load_dataset
    from probprune.net.io import save_model
    from probprune.net.zoo import build_model, is_conv_model
    from probprune.core.progress import progress_bar
    from probprune.net.train import evaluate, train

    if model is not None:
        deprecated("train --model NAME", "--arch NAME")
        arch = model
    model, dataset = arch, val(dataset)
    check_int(epochs, "--epochs", 1)
    check_seed(seed, "--seed")
    check_output_path(out, "--out")  # creates and removes a temporary file next to the target (works for root)
    _check_train_memory(model, dataset)
    ds = load_dataset(dataset, seed=seed, images=is_conv_model(model))
    mdl = build_model(model, ds.input_shape, ds.n_classes, bias=bias, seed=seed)
    with progress_bar(epochs, f"train {model}", unit="epoch", enabled=not as_json) as bar:
        train(mdl, ds, epochs=epochs, seed=seed, eval_each_epoch=False, callback=lambda row: bar.update(1))
    acc = float(evaluate(mdl, ds.X_test, ds.y_test))
    atomic_write(out, lambda tmp: save_model(mdl, tmp, arch=model, input_shape=tuple(ds.input_shape)))
    emit({"out": out, "model": out, "arch": model, "dataset": dataset, "epochs": epochs, "test_accuracy": acc, "seed": seed},
         as_json, lambda d: console.print(f"saved {model} trained on {dataset} ({epochs} epochs, seed {seed}) to {out}: "
                                          f"test accuracy {acc:.2%}"))
