"""Monte Carlo trials: draw target networks, prune them, measure the error, compare with the bound (THEORY §6).

A *group* is (network architecture, activation, weight law); a *unit* (one resumable chunk) is a block of
``batch_size`` consecutive trial indices of one group under one base seed. Inside a unit all networks are stacked
and every measurement is batched (:mod:`probprune.mc.measure`); the unit loops only over methods x fractions x
deltas. Every random draw comes from ``np.random.SeedSequence(seed, spawn_key=(group key, trial, stream))``:

* stream 0: the target weights (depends on architecture and law only, so every method / fraction / activation sees
  the same networks: common random numbers);
* stream 1: one uniform score u per weight for the random masks (prune where u < p: masks nested in p; exact-k
  prunes the k smallest u);
* stream 2: the PGD Gaussian starts;
* stream 3: the mask seed passed to ``probprune.pruning.prune`` for ``lib_*`` methods.

So a trial's row depends only on (config, seed, trial index), never on batching or on which worker ran it.

Pruning (THEORY §1.5, §1.6): ``magnitude`` threshold form |w| < q a_i (Gaussian law: |w| < c s_i, 2 Phi(c) - 1 = q);
``random`` R-Bern; ``random_rescaled`` R-Bern with kept weights / (1 - p); ``magnitude_exact`` the floor(q N_i)
smallest |w| per layer (ties by flat index; no a-priori bound, THEORY §7.6); ``random_exact`` exactly floor(p N_i)
uniformly random entries (bound: ``bounds.exact_k_bound``, uniform law); ``lib_*`` any data-free method of
:func:`probprune.pruning.prune` (magnitude layer/global, random uniform/ER/ERK, structured L1; Cert-D only).

Fixed networks (``models``): read once as the traced :class:`probprune.net.Graph` (:func:`read_model`); masks are
drawn over the graph's weight FQNs (``graph.weight_nodes`` order) for every file. A graph that has a chain view
(weight layer -> activation -> pooling) is measured on that chain (PGD with the SVD start, Cert-R on the chain); any
other graph (residual additions, BatchNorm, grouped / 1-d convs, ...) through the graph's batched forward (each op's
``forward_batched``), with Cert-R on the graph as the bound of random methods. The ``cert`` column is always
``probprune certify``'s Cert-D for the trial's network and mask (:func:`probprune.mc.measure.cert_d_graph`; the
bias-free FCN fast path computes the same recursion from batched norms).

Per-trial verdict against the bound b (relative tolerance 1e-9, §6): ``satisfied`` (UB <= b), ``violated``
(LB > b), ``undecided``; ``no_bound`` where no a-priori bound applies. LB <= UB (1 + 1e-9) is asserted; a failure is
a bug and raises :class:`MeasurementBug`.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from probprune.core.errors import HypothesisError, ProbPruneError
from probprune.net.templates import ConvLayer, NetSpec, cnn_spec, fcn_spec
from probprune.mc.config import LIB_METHODS, MCConfig, draws_mask_scores

TOL = 1e-9


class MeasurementBug(AssertionError):
    """LB > UB (1 + 1e-9): the lower and upper bounds on the error contradict each other (a bug, §6)."""


def _fcn_template(net: "Network", activation: str, K: float) -> NetSpec:
    return fcn_spec(net.widths, activation, K)


def _cnn_template(net: "Network", activation: str, K: float) -> NetSpec:
    d = json.loads(net.cnn_json)
    convs = []
    for c in d.get("convs", []):
        if not isinstance(c, dict):
            raise ProbPruneError("each conv of a cnns entry is a mapping (c_out, kernel, stride, padding, pool)")
        extra = set(c) - {"c_out", "kernel", "stride", "padding", "pool"}
        if extra:
            raise ProbPruneError(f"unknown key {sorted(extra)[0]!r} in a conv layer description")
        pool = tuple(c["pool"]) if c.get("pool") else None
        convs.append(ConvLayer(int(c["c_out"]), c.get("kernel", 3), c.get("stride", 1), c.get("padding", 0), pool))
    return cnn_spec(d["input_shape"], convs, [int(v) for v in d["fc"]], activation, K)


@dataclass(frozen=True)
class NetworkKind:
    """Where a sweep's networks come from: ``template(network, activation, K)`` builds the law template the trials
    are drawn from (THEORY §1.3: FCN width list, CNN description), or None for a network read from a file (fixed
    weights; one group per file, law :data:`FIXED_LAW`, activations of the file)."""

    name: str
    template: Any = None

    @property
    def fixed(self) -> bool:
        return self.template is None


#: the group "law" of a fixed network: its weights are read, not drawn (random methods get Cert-R, §3.11)
FIXED_LAW = "fixed"
#: the ``kind`` column of a row -> where the network comes from
NETWORK_KINDS = {k.name: k for k in (NetworkKind("fcn", _fcn_template), NetworkKind("cnn", _cnn_template),
                                     NetworkKind("model"))}


@dataclass(frozen=True)
class Network:
    """One architecture of the sweep (FCN width list, CNN description, or a model file); ``kind`` names its
    :class:`NetworkKind`."""

    label: str
    kind: str  # a key of NETWORK_KINDS: "fcn" | "cnn" | "model"
    widths: tuple[int, ...] | None = None
    cnn_json: str | None = None
    width: int | None = None  # hidden width for grid networks
    depth: int = 0
    model_path: str | None = None  # fixed networks: a torch.save'd nn.Module
    model_input_shape: tuple[int, ...] | None = None
    graph_model: bool = False  # a fixed network without a chain view (residual, BatchNorm, ...): measured on its graph

    @property
    def source(self) -> NetworkKind:
        return NETWORK_KINDS[self.kind]

    def spec(self, activation: str, K: float) -> NetSpec:
        """The law template of a grid / ``archs`` / ``cnns`` network (THEORY §1.3): the networks are drawn from it. A
        model file is no draw from a law: its weights are read as a graph (:func:`read_model`)."""
        if self.source.fixed:
            raise ProbPruneError(f"{self.label} is a network read from a file, not a law template: read it with "
                                 "probprune.mc.trials.read_model")
        return self.source.template(self, activation, K)


def networks(cfg: MCConfig, input_dim: int | None = None) -> list[Network]:
    """The networks of the sweep, in a fixed order: grid (widths x depths), then ``archs``, then ``cnns``."""
    out = []
    d0 = cfg.input_dim or input_dim
    for w in cfg.widths:
        for l in cfg.depths:
            ws = (d0 or w,) + (w,) * (l - 1) + (cfg.output_dim or w,)
            out.append(Network("fcn:" + "-".join(map(str, ws)), "fcn", ws, None, w, l))
    for a in cfg.archs:
        out.append(Network("fcn:" + "-".join(map(str, a)), "fcn", tuple(a), None, None, len(a) - 1))
    for c in cfg.cnns:
        js = json.dumps(c, sort_keys=True, separators=(",", ":"))
        out.append(Network(_cnn_label(c), "cnn", None, js, None, len(c.get("convs", [])) + len(c["fc"])))
    for m in getattr(cfg, "models", ()):
        ishape = tuple(m["input_shape"]) if m.get("input_shape") else None
        _, graph, chain = read_model(m["path"], ishape)
        is_graph, depth = chain is None, len(graph.weight_nodes)
        digest = _file_md5(m["path"])
        label = f"model:{Path(m['path']).name}:{digest[:8]}"
        out.append(Network(label, "model", None, None, None, depth, m["path"], ishape, is_graph))
    return out


def _file_md5(path: str) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


@lru_cache(maxsize=8)
def read_model(path: str, input_shape: tuple[int, ...] | None = None):
    """A fixed network from a file through the package's one model reader :func:`probprune.net.io.read_network`
    (a whole ``torch.save``d module, or a state dict saved with its architecture by ``probprune train``; torch.fx
    tracing, refusals naming the operation, forward verification; the input shape stored by ``probprune train`` is
    used when none is given): (module in eval mode, :class:`probprune.net.Graph`, chain view). The chain view
    (:func:`probprune.net.templates.parsed_from_graph`: weights, biases, spec of the same graph) exists for a chain of
    weight layer -> activation -> pooling; None for any other graph (residual additions, folded BatchNorm, grouped /
    1-d convs, gains, ...), which is measured on the graph itself. The file is trusted code (pickle)."""
    from probprune.core.errors import UnsupportedLayerError
    from probprune.net.io import read_network
    from probprune.net.templates import parsed_from_graph

    module, graph = read_network(path, input_shape=input_shape)
    try:
        chain = parsed_from_graph(graph)
    except UnsupportedLayerError:
        chain = None
    return module, graph, chain


def load_model(path: str, input_shape: tuple[int, ...] | None = None):
    """The chain view (:class:`probprune.net.templates.ParsedModel`) of a model file read by :func:`read_model`;
    a graph without one raises :class:`~probprune.core.errors.UnsupportedLayerError` naming the node."""
    _, graph, chain = read_model(path, input_shape)
    if chain is None:
        from probprune.net.templates import parsed_from_graph

        parsed_from_graph(graph)  # raises, naming the node
    return chain


def weight_layers(net) -> tuple[tuple[str, tuple[int, ...], float], ...]:
    """(FQN, weight shape, a_i) of every weight layer of a law template :class:`NetSpec` (a_i its half-width) or of a
    network :class:`probprune.net.Graph` (``graph.weight_nodes`` order; a_i = max |w|, the scale the threshold rules
    use for a fixed network). Cached per object (a graph's max |w| is read once)."""
    hit = _WEIGHT_LAYERS.get(id(net))
    if hit is not None and hit[0] is net:
        return hit[1]
    if isinstance(net, NetSpec):
        layers = tuple((L.name, tuple(L.weight_shape), L.half_width) for L in net.layers)
    else:
        layers = tuple((n.op.fqn, tuple(n.op.weight.shape), float(np.abs(n.op.weight).max(initial=0.0)))
                       for n in net.weight_nodes)
    if len(_WEIGHT_LAYERS) > 64:
        _WEIGHT_LAYERS.clear()
    _WEIGHT_LAYERS[id(net)] = (net, layers)
    return layers


_WEIGHT_LAYERS: dict = {}


def _cnn_label(c: dict) -> str:
    """Compact unique label, e.g. ``cnn:1x8x8-c4k3s1p1-max2s2-fc10``."""
    parts = ["cnn:" + "x".join(str(int(v)) for v in c["input_shape"])]
    for cv in c.get("convs", []):
        k, st, pd_ = (cv.get("kernel", 3), cv.get("stride", 1), cv.get("padding", 0))
        fmt = lambda v: "x".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)  # noqa: E731
        parts.append(f"c{cv['c_out']}k{fmt(k)}s{fmt(st)}p{fmt(pd_)}")
        if cv.get("pool"):
            kind, pk, ps = cv["pool"]
            parts.append(f"{kind}{fmt(pk)}s{fmt(ps)}")
    parts.append("fc" + "-".join(str(int(v)) for v in c["fc"]))
    return "-".join(parts)


@dataclass(frozen=True)
class Group:
    index: int
    network: Network
    activation: str
    law: str


def groups(cfg: MCConfig) -> list[Group]:
    """All (network, activation, law) combinations, indexed in a fixed order."""
    d0 = dataset_dim(cfg.dataset) if cfg.dataset else None
    out = []
    for net in networks(cfg, d0):
        if net.source.fixed:  # fixed weights and activations: one group
            out.append(Group(len(out), net, "model", FIXED_LAW))
            continue
        for act in cfg.activations:
            for law in cfg.laws:
                out.append(Group(len(out), net, act, law))
    return out


def dataset_dim(name: str) -> int:
    return {"mnist5k": 784, "digits": 64, "mnist1d": 40}[name]


def _key(*parts: Any) -> tuple[int, int]:
    h = hashlib.md5("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(h[:4], "little"), int.from_bytes(h[4:8], "little")


def trial_rng(seed: int, group: Group, trial: int, stream: int) -> np.random.Generator:
    """The generator of one trial's stream (0 weights, 1 mask scores, 2 PGD starts)."""
    k = _key(group.network.label, group.law)
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(*k, int(trial), int(stream))))


# ------------------------------------------------------------------------------------------------ bounds
def bound_for(spec: NetSpec | None, method: str, fraction: float, delta: float, law: str, fixed=None, graph=None):
    """The a-priori bound object (``probprune.theory.apriori``) for this setting, or ``(None, reason)`` when none applies.
    For a fixed network (``fixed = (weights, biases)`` of a chain, or its ``graph``; group law :data:`FIXED_LAW`) the
    bound is Cert-R (THEORY §3.11): with
    probability >= 1 - delta over the random mask, for these weights; magnitude pruning of a fixed net has none.
    Which statement covers which method is read from :data:`probprune.core.registry.METHODS` (``apriori``,
    ``cert_r_sampling``); every method with an a-priori statement goes through :func:`probprune.theory.apriori.apriori_bound`
    (exact-k random and exact-k magnitude, either law: THEORY §9.5, §9.6); ``lib_*`` methods are not registry methods and have no bound. A fixed network graph
    (``graph``, no chain spec) gets Cert-R on the graph (:func:`probprune.certificates.lemma.certify_random_graph`)."""
    from probprune.theory import apriori as bounds
    from probprune.core.registry import METHODS as REGISTERED

    entry = REGISTERED.get(method)
    if fixed is not None or graph is not None:  # a fixed network (law FIXED_LAW): Cert-R over the mask
        from probprune.certificates.lemma import certify_random

        if entry is None or entry.cert_r_sampling is None:
            return None, f"{method} pruning of a fixed network is deterministic: Cert-D bracket only"
        if graph is not None:
            from probprune.certificates.lemma import certify_random_graph

            return certify_random_graph(graph, fraction, delta, sampling=entry.cert_r_sampling), ""
        weights, biases = fixed
        return certify_random(spec, weights, fraction, delta, sampling=entry.cert_r_sampling, biases=biases), ""
    try:
        if entry is not None and entry.apriori is not None:
            # apriori_bound routes random_exact / magnitude_exact to exact_k_bound / exact_k_magnitude_bound with
            # the law (THEORY §9.5, §9.6; the Gaussian law and exact-k magnitude are covered there)
            return bounds.apriori_bound(spec, fraction, delta, method, law), ""
        if method in LIB_METHODS:
            return None, f"no a-priori bound for probprune.pruning method {method[4:]} (Cert-D only)"
        return None, f"no a-priori bound registered for {method} (probprune.core.registry)"
    except HypothesisError as e:
        return None, str(e).splitlines()[0]


def bound_setting(cfg: MCConfig, g: Group):
    """The arguments ``(spec, fixed, graph)`` of :func:`bound_for` for a group: a law template (spec, None, None); a
    model file with a chain view (its chain spec, (weights, biases), None); any other model graph (None, None,
    graph)."""
    net = g.network
    if not net.source.fixed:
        return net.spec(g.activation, cfg.K), None, None
    _, graph, chain = read_model(net.model_path, net.model_input_shape)
    if chain is None:
        return None, None, graph
    return chain.spec, (chain.weights, chain.biases), None


def check_bounds(cfg: MCConfig) -> list[str]:
    """Compute every bound of the sweep once (raises on bad settings before any trial runs); returns notes on the
    settings without an a-priori bound."""
    notes = []
    for g in groups(cfg):
        spec, fixed, graph = bound_setting(cfg, g)
        ishape = graph.input_shape if spec is None else spec.input_shape
        if cfg.dataset and int(np.prod(ishape)) != dataset_dim(cfg.dataset):
            raise ProbPruneError(
                f"network {g.network.label} takes {int(np.prod(ishape))} inputs but dataset "
                f"{cfg.dataset} has {dataset_dim(cfg.dataset)} features")
        for m in cfg.methods:
            for q in cfg.fractions:
                for d in cfg.deltas:
                    res, why = bound_for(spec, m, q, d, g.law, fixed, graph)
                    if res is None:
                        notes.append(f"{g.network.label} {g.activation} {g.law} {m}: {why}")
    return sorted(set(notes))


# ------------------------------------------------------------------------------------------------ pruning
def prune_batched(net, W, U, method: str, fraction: float, law: str, lib_seeds=None, module=None):
    """Pruned weights for stacked target weights ``W`` (torch, (n, ...)) and mask scores ``U`` (uniform, same shapes).
    ``net``: the law template :class:`NetSpec` the weights were drawn from, or a fixed network's
    :class:`probprune.net.Graph` (weights in ``graph.weight_nodes`` order; :func:`weight_layers`).
    ``lib_*`` methods call :func:`probprune.pruning.prune` on each trial's ``nn.Sequential`` built from the template
    (on ``module``, the fixed network's own module, for a graph, so masks are keyed by its parameter FQNs) (a
    per-trial loop; the measurement stays batched) with the mask seed ``lib_seeds[k]``.
    Returns (What list, realised pruned fraction (n,) over all weights)."""
    import torch

    from probprune.core.registry import LAWS, METHODS as REGISTERED

    if method in LIB_METHODS:
        return _prune_lib(net, W, method, fraction, lib_seeds, module)
    if method not in REGISTERED:
        raise ProbPruneError(f"unknown method {method!r}")
    entry = REGISTERED[method]
    # the threshold form's law: a fixed network ("fixed") keeps the Gaussian-quantile threshold it always had here
    # (tau = Phi^-1((1 + q)/2) a_i), kept as it was; a uniform-style q a_i may be what was meant (an open question)
    tlaw = law if law in LAWS else "gaussian"

    What, pruned = [], None
    for (_, _, a), w, u in zip(weight_layers(net), W, U):
        n = w.shape[0]
        P = entry.prune_batched(w, u, fraction, a, tlaw)
        wh = torch.where(P, torch.zeros_like(w), w)
        if entry.rescaled:
            wh = wh / (1.0 - fraction)
        What.append(wh)
        c = P.reshape(n, -1).sum(dim=1).double()
        pruned = c if pruned is None else pruned + c
    return What, (pruned / _n_weights(W)).numpy()


def _n_weights(W) -> int:
    """Weights per network of stacked weights (n, *shape) per layer."""
    return int(sum(int(np.prod(w.shape[1:])) for w in W))


def _prune_lib(net, W, method: str, fraction: float, seeds, module=None):
    import torch

    from probprune.net.templates import to_torch
    from probprune.pruning import prune

    kw = dict(LIB_METHODS[method])
    name = kw.pop("method")
    n = W[0].shape[0]
    layers = weight_layers(net)
    masks = [[] for _ in layers]
    if module is None and not isinstance(net, NetSpec):
        raise ProbPruneError(f"probprune.pruning method {method[4:]} on a fixed network graph needs its module")
    for k in range(n):  # a fixed network: its module holds the weights of every trial
        model = module if module is not None else to_torch(net, [w[k].numpy() for w in W])
        res = prune(model, name, fraction, seed=int(seeds[k]) if seeds is not None else 0, apply=False, **kw)
        for i, (fqn, shape, _) in enumerate(layers):
            if fqn not in res.mask:
                raise ProbPruneError(f"probprune.pruning method {method[4:]} gave no mask for weight {fqn!r}")
            masks[i].append(torch.as_tensor(np.asarray(res.mask[fqn]), dtype=torch.bool).reshape(shape))
    What, pruned = [], 0
    for w, m in zip(W, masks):
        keep = torch.stack(m)
        What.append(torch.where(keep, w, torch.zeros_like(w)))
        pruned = pruned + (~keep).reshape(n, -1).sum(dim=1).double()
    return What, (pruned / _n_weights(W)).numpy()


# ------------------------------------------------------------------------------------------------ data
@lru_cache(maxsize=4)
def _dataset_inputs(name: str, n: int, images: bool, shape: tuple[int, ...]):
    from probprune.net.data import load_dataset
    from probprune.mc.measure import scale_into_ball

    ds = load_dataset(name, seed=0, images=images)
    X = ds.X_test[:n].double().reshape(-1, *shape)
    return scale_into_ball(X)


# ------------------------------------------------------------------------------------------------ one unit
def unit_trials(cfg: MCConfig, block: int) -> range:
    t0 = block * cfg.batch_size
    return range(t0, min(cfg.n_trials, t0 + cfg.batch_size))


def n_blocks(cfg: MCConfig) -> int:
    return math.ceil(cfg.n_trials / cfg.batch_size)


COLUMNS = [
    "seed", "group", "network", "kind", "depth", "width", "n_weights", "activation", "law", "K", "method", "fraction",
    "delta", "trial", "realized_fraction", "bound", "err_lb", "err_ub", "lb_method", "cert", "avg_err", "avg_err_max",
    "rel_E", "max_W_over_B", "max_E_over_eta", "verdict", "looseness_lb", "looseness_ub",
]


def evaluate_unit(cfg: MCConfig, seed: int, group_index: int, block: int) -> pd.DataFrame:
    """Run one chunk: ``batch_size`` networks of one group, all methods x fractions x deltas; one row per
    (trial, method, fraction, delta), columns :data:`COLUMNS`.

    The ``cert`` column is ``probprune certify``'s Cert-D for the trial's network and mask (THEORY §3.11, §8.2):
    :func:`probprune.mc.measure.cert_d_graph` on the network's graph (the traced graph of a model file, the chain's
    graph of a grid network) with the norms of :func:`probprune.certificates.lemma.weight_node_norms`; bias-free FCNs with
    sigma(0) = 0 take the batched fast path (batched certified dense norms, §11.1, and the same Lemma A recursion on
    the chain, :func:`probprune.mc.measure.lemma_a_batched`)."""
    import torch

    torch.set_num_threads(cfg.torch_threads)
    u = _Unit.draw(cfg, seed, groups(cfg)[group_index], unit_trials(cfg, block))
    frames = []
    bound_cache: dict = {}
    for method in cfg.methods:
        for q in cfg.fractions:
            m = u.measure(cfg, method, q)
            for delta in cfg.deltas:
                key = (method, q, delta)
                if key not in bound_cache:
                    bound_cache[key] = bound_for(method=method, fraction=q, delta=delta, law=u.g.law,
                                                 **dict(zip(("spec", "fixed", "graph"), u.setting)))[0]
                frames.append(u.rows(method, q, delta, m, bound_cache[key]))
    df = pd.concat(frames, ignore_index=True)[COLUMNS]
    return df.sort_values(["trial", "method", "fraction", "delta"], kind="stable", ignore_index=True)


@dataclass
class _Unit:
    """One chunk's networks and draws (per trial, so rows do not depend on batching): stacked weights ``W``, mask
    scores ``U``, library-method seeds, PGD generators, data inputs, and how the chunk is certified and measured.
    ``net``: what the masks are drawn over (the law template, or the model file's graph); ``spec``: the chain the
    error is measured on (the template, or a model file's chain view; None: measured on ``graph``, a model graph
    without a chain view); ``setting``: the arguments of :func:`bound_for` (:func:`bound_setting`)."""

    cfg: MCConfig
    seed: int
    g: Group
    trials: range
    spec: NetSpec | None
    graph: object  # a fixed network graph measured as a graph (no chain view), else None
    net: object
    setting: tuple
    W: list
    U: list
    lib_seeds: list
    biases_t: list | None = None
    cgraph: object = None  # the graph whose Cert-D is the cert column
    fixed_module: object = None  # a fixed network's own module (library pruning methods mask it by FQN)
    gens: list | None = None
    X: object = None
    linear: bool = False
    fast: bool = False
    use_graph_cert: bool = False
    normW: np.ndarray | None = None
    lips: np.ndarray | None = None

    @property
    def n(self) -> int:
        return len(self.trials)

    @property
    def fixed(self) -> bool:
        """A fixed network (weights read from a file): Cert-R is the bound of its random methods."""
        return self.g.network.source.fixed

    @classmethod
    def draw(cls, cfg: MCConfig, seed: int, g: Group, trials: range) -> "_Unit":
        import torch

        from probprune.mc import measure as M

        net = g.network
        n = len(trials)
        setting = bound_setting(cfg, g)
        spec, _, graph = setting
        kw: dict = {}
        if net.source.fixed:  # fixed weights (a trained net, a residual graph, ...): only the masks are random
            module, mgraph, chain = read_model(net.model_path, net.model_input_shape)
            prune_net = mgraph
            kw = dict(fixed_module=module, cgraph=mgraph)
            W = [torch.from_numpy(np.ascontiguousarray(w, dtype=np.float64)).unsqueeze(0).repeat(n, *([1] * w.ndim))
                 for w in (nd.op.weight for nd in mgraph.weight_nodes)]
            if chain is not None and chain.has_bias:
                kw["biases_t"] = [None if b is None else torch.from_numpy(np.asarray(b, dtype=np.float64))
                                  for b in chain.biases]
        else:
            prune_net = spec
            per_trial = [_draw_weights(spec, g.law, trial_rng(seed, g, t, 0)) for t in trials]
            W = [torch.from_numpy(np.stack([pt[i] for pt in per_trial])) for i in range(spec.depth)]
            del per_trial
        if draws_mask_scores(cfg.methods):
            per_u = [_uniform_scores(trial_rng(seed, g, t, 1), W) for t in trials]
            U = [torch.from_numpy(np.stack([pu[i] for pu in per_u])) for i in range(len(W))]
            del per_u
        else:
            U = [None] * len(W)
        lib_seeds = [int(trial_rng(seed, g, t, 3).integers(2**31)) for t in trials]
        u = cls(cfg, seed, g, trials, spec, graph, prune_net, setting, W, U, lib_seeds, **kw)
        u.linear = spec is not None and spec.is_linear_fcn and u.biases_t is None
        # bias-free FCN chains with sigma(0) = 0: batched dense norms + the chain recursion (equal to certify's graph)
        u.fast = spec is not None and spec.is_fcn and u.biases_t is None and spec.zero_at_zero
        if not u.linear:
            u.gens = [torch.Generator().manual_seed(int(trial_rng(seed, g, t, 2).integers(2**62))) for t in trials]
        input_shape = tuple(prune_net.input_shape)
        if cfg.dataset:
            u.X = _dataset_inputs(cfg.dataset, cfg.dataset_n, len(input_shape) > 1, input_shape)
        u.use_graph_cert = not u.fast and (cfg.certificate or graph is not None)
        if u.use_graph_cert and u.cgraph is None:  # a grid network: its chain's graph (structure; norms per trial)
            from probprune.net import Graph

            u.cgraph = Graph.from_spec(spec, [w[0].numpy() for w in W])
        u.normW = None if u.use_graph_cert else M.operator_norms_upper(spec, W).numpy()
        u.lips = None if spec is None else np.array([L.lip for L in spec.layers])
        return u

    def certificate(self, What, E):
        """(cert, ||E||) per trial: Cert-D by the fast chain path or on the graph (inf when no certificate is asked;
        ||E|| then with the same certified norm as ||W||, diagnostic columns only)."""
        from probprune.mc import measure as M

        n, spec = self.n, self.spec
        if self.fast:
            normWh = M.operator_norms_upper(spec, What).numpy()
            normE = M.operator_norms_upper(spec, E).numpy()
            return M.lemma_a_batched(self.normW, normWh, normE, self.lips), normE
        if self.use_graph_cert:
            cert, self.normW, normWh, normE = M.cert_d_graph(self.cgraph, self.W, What, norm_W=self.normW)
            return (cert if self.cfg.certificate else np.full(n, np.inf)), normE
        return np.full(n, np.inf), M.operator_norms_upper(spec, E).numpy()

    def measure(self, cfg: MCConfig, method: str, q: float) -> dict:
        """Prune every trial by ``method`` at fraction ``q``; certificate, error lower / upper bounds (exact for linear
        FCNs, PGD otherwise), the average error on data, ||E||/||W||. Raises MeasurementBug when LB > UB."""
        from probprune.mc import measure as M

        spec, graph, W, trials, n = self.spec, self.graph, self.W, self.trials, self.n
        What, realized = prune_batched(self.net, W, self.U, method, q, self.g.law, self.lib_seeds, self.fixed_module)
        cert, normE = self.certificate(What, [a - b for a, b in zip(W, What)])
        if self.linear:
            lb = M.exact_linear_error(spec, W, What).numpy()
            ub, lb_method = lb * (1.0 + TOL), "exact"
            if np.any(lb > cert * (1.0 + TOL)):
                k = int(np.argmax(lb / cert))
                raise MeasurementBug(f"exact error {lb[k]!r} exceeds Cert-D {cert[k]!r} (trial {trials[k]})")
        else:
            pgd = dict(n_random=cfg.pgd_starts, iters=cfg.pgd_iters, step=cfg.pgd_step, generators=self.gens,
                       basis=cfg.pgd_basis)
            if graph is not None:
                lb = M.graph_pgd_lower_bound(graph, W, What, **pgd).numpy()
            else:
                lb = M.pgd_lower_bound(spec, W, What, biases=self.biases_t, **pgd).numpy()
            ub, lb_method = cert, "pgd"
        bad = lb > ub * (1.0 + TOL)
        if np.any(bad):
            k = int(np.argmax(bad))
            raise MeasurementBug(f"LB {lb[k]!r} > UB {ub[k]!r} for trial {trials[k]} ({method}, q={q})")
        if self.X is None:
            avg = avg_max = np.full(n, np.nan)
        elif graph is not None:
            avg, avg_max = (a.numpy() for a in M.graph_average_error(graph, W, What, self.X))
        else:
            avg, avg_max = (a.numpy() for a in M.average_error(spec, W, What, self.X, biases=self.biases_t))
        normW = self.normW
        with np.errstate(divide="ignore", invalid="ignore"):
            rel_E = np.mean(np.where(normW > 0, normE / normW, 0.0), axis=-1)
        return dict(realized=realized, cert=cert, lb=lb, ub=ub, lb_method=lb_method, avg=avg, avg_max=avg_max,
                    rel_E=rel_E, normW=normW, normE=normE)

    def rows(self, method: str, q: float, delta: float, m: dict, res) -> pd.DataFrame:
        """The chunk's rows for one (method, fraction, delta): the a-priori bound ``res`` (None: no bound) against
        the measured errors ``m`` (verdicts, looseness, per-layer ratios to the bound's B_i / eta_i)."""
        n, lb, ub = self.n, m["lb"], m["ub"]
        if res is None:
            b = math.nan
            wb = eb = np.full(n, np.nan)
            verdict = np.array(["no_bound"] * n, dtype=object)
        else:
            b = float(res.eps)
            if self.fixed:  # Cert-R: per-layer bounds on ||E_i|| (and on ||What_i||)
                B, eta = np.full(len(self.W), np.nan), np.asarray(res.norm_E, float)
            else:
                B, eta = np.asarray(res.B, float), np.asarray(res.eta, float)
            wb = np.max(m["normW"] / B, axis=-1)
            with np.errstate(divide="ignore", invalid="ignore"):
                r = np.where(eta > 0, m["normE"] / np.where(eta > 0, eta, 1.0), 0.0)
            eb = np.max(r, axis=-1)
            thr = b * (1.0 + TOL)
            verdict = np.where(ub <= thr, "satisfied", np.where(lb > thr, "violated", "undecided"))
        with np.errstate(divide="ignore", invalid="ignore"):
            loose_lb = b / lb
            loose_ub = b / ub
        net, g, cfg = self.g.network, self.g, self.cfg
        base = {
            "seed": int(self.seed), "group": g.index, "network": net.label, "kind": net.kind,
            "depth": len(self.W), "width": net.width if net.width is not None else -1,
            "n_weights": _n_weights(self.W), "activation": g.activation, "law": g.law, "K": cfg.K,
        }
        return pd.DataFrame({
            **{k: [v] * n for k, v in base.items()},
            "method": method, "fraction": float(q), "delta": float(delta), "trial": list(self.trials),
            "realized_fraction": m["realized"], "bound": b, "err_lb": lb, "err_ub": ub, "lb_method": m["lb_method"],
            "cert": m["cert"], "avg_err": m["avg"], "avg_err_max": m["avg_max"], "rel_E": m["rel_E"],
            "max_W_over_B": wb, "max_E_over_eta": eb, "verdict": verdict, "looseness_lb": loose_lb,
            "looseness_ub": loose_ub,
        })


def _uniform_scores(rng: np.random.Generator, W) -> list[np.ndarray]:
    """One trial's mask scores: U[0, 1) per weight, layer after layer from the trial's one generator (``W``: the
    stacked weights (n, *shape) per layer)."""
    return [rng.random(tuple(w.shape[1:])) for w in W]


def _draw_weights(spec: NetSpec, law: str, rng: np.random.Generator) -> list[np.ndarray]:
    from probprune.net.templates import sample_weights

    return sample_weights(spec, rng, law)
