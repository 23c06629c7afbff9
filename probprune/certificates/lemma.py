"""Per-network certificates (THEORY §3.11 [D]).

Cert-D: for given weights W_i and pruned weights What_i, err <= min(A-fwd, A-bwd) (Lemma A, §3.1) evaluated with
upper bounds on the actual operator norms. It holds deterministically, for any mask (magnitude, exact-k, structured,
an already drawn random mask).

Cert-R: before the random mask is drawn, a (1 - delta) bound over the mask only, conditioned on the given weights.

Biases (an extension derived here from Lemma A's general form, §3.1): pruning masks only weights, so the bias
terms cancel in W h + b - (What h' + b); they only enter the bound on the activations,
b_i = L_i (||W_i|| b_{i-1} + ||bias_i||) + |sigma_i(0)| sqrt(dim_i). The same recursion covers sigma(0) != 0.
For conv layers the bias map's norm is ||bias|| sqrt(H_out W_out).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Mapping, Sequence

import numpy as np

from probprune.theory.apriori import beta
from probprune.core import registry
from probprune.core.errors import ProbPruneError, check_delta, check_finite_array, check_fraction
from probprune.net.templates import NetSpec, ParsedModel, as_matrix
from probprune.theory.norms import layer_operator_norm_upper, power_iteration_norm


@dataclass(frozen=True)
class CertificateResult:
    """A certificate for one concrete network and pruning. ``eps`` upper-bounds sup_{||x||<=1} ||F(x) - F_hat(x)||
    (deterministically for Cert-D; with probability >= 1 - delta over the mask for Cert-R)."""

    eps: float
    kind: str  # "Cert-D" | "Cert-R"
    norm_W: np.ndarray
    norm_What: np.ndarray
    norm_E: np.ndarray
    lips: np.ndarray
    fwd: float
    bwd: float
    layer_names: tuple[str, ...]
    statement: str
    delta: float | None = None
    assumptions: tuple[str, ...] = ()
    power_iteration_W: np.ndarray | None = None  # lower estimates, display only

    def as_dict(self) -> dict:
        d = {
            "eps": self.eps,
            "kind": self.kind,
            "statement": self.statement,
            "A_fwd": self.fwd,
            "A_bwd": self.bwd,
            "delta": self.delta,
            "layers": [
                {"name": n, "norm_W": float(a), "norm_What": float(b), "norm_E": float(c), "L": float(l)}
                for n, a, b, c, l in zip(self.layer_names, self.norm_W, self.norm_What, self.norm_E, self.lips)
            ],
            "assumptions": list(self.assumptions),
        }
        if self.power_iteration_W is not None:
            d["power_iteration_norm_W_lower_estimate"] = [float(x) for x in self.power_iteration_W]
        return d


def lemma_a_general(norm_W, norm_What, norm_E, lips, bias_norm=None, act_off=None) -> tuple[float, float]:
    """Lemma A, general form (THEORY §3.1), with bias terms: returns (A-fwd, A-bwd).

    A-fwd: Delta_i <= L_i (e_i b_{i-1} + what_i Delta_{i-1}), b_i = L_i (w_i b_{i-1} + beta_i) + o_i, b_0 = 1.
    A-bwd: Delta_i <= L_i (w_i Delta_{i-1} + e_i bhat_{i-1}), bhat with what_i. L_l = 1 (linear output).
    Computed by the one Lemma A implementation, :func:`probprune.net.lemma.lemma_a_chain` (THEORY §8.2)."""
    from probprune.net.lemma import lemma_a_chain

    r = lemma_a_chain(norm_W, norm_What, norm_E, lips, bias_norm, act_off)
    return float(r.Df), float(r.Db)


# --------------------------------------------------------------------------------------------- graph weight norms
def weight_layer_specs(op) -> list:
    """The matrix/conv views of one graph weight node (``probprune.net.ops.Affine``) as
    :class:`~probprune.net.templates.LayerSpec` for the norm functions of :mod:`probprune.theory.norms`: one per group (a grouped
    conv is block diagonal after a permutation of channels, so its norm is the max over groups); Conv1d as Conv2d
    with H = 1; 'same'/'valid' padding as explicit padding ceil(total/2) per side (the FFT grid then contains the
    padded input, §3.11)."""
    from probprune.net.templates import LayerSpec, activation

    ident = activation("identity")
    W = op.weight
    if op.is_dense:
        return [LayerSpec(op.fqn, "linear", W.shape[0], W.shape[1], 1.0, ident, 1.0)]
    nd = 1 if op.layer == "conv1d" else 2
    k = tuple(W.shape[2:])
    stride, dilation = tuple(op.stride), tuple(op.dilation)
    if isinstance(op.padding, str):
        pad = tuple(0 if op.padding == "valid" else -(-(d * (kk - 1)) // 2) for kk, d in zip(k, dilation))
    else:
        pad = tuple(op.padding)
    in_shape, out_shape = tuple(op.in_shape), tuple(op.out_shape)
    if nd == 1:
        k, stride, dilation, pad = (1,) + k, (1,) + stride, (1,) + dilation, (0,) + pad
        in_shape, out_shape = (in_shape[0], 1, in_shape[1]), (out_shape[0], 1, out_shape[1])
    g = int(op.groups)
    co, ci = W.shape[0] // g, W.shape[1]
    return [LayerSpec(f"{op.fqn}[group {j}]" if g > 1 else op.fqn, "conv", co, ci * k[0] * k[1], 1.0, ident, 1.0,
                      kernel=k, stride=stride, padding=pad, dilation=dilation, in_shape=(ci, *in_shape[1:]),
                      out_shape=(co, *out_shape[1:])) for j in range(g)]


def graph_weight_norm(op, W_eff: np.ndarray, conv_method: str = "fft") -> float:
    """Certified upper bound on the operator norm of one graph weight node with effective weight ``W_eff`` (the norm
    scales by a power of two itself, §11.1, so tiny or huge weights neither underflow nor overflow)."""
    specs = weight_layer_specs(op)
    if len(specs) == 1:
        return float(layer_operator_norm_upper(specs[0], W_eff.reshape(specs[0].weight_shape), conv_method))
    co = W_eff.shape[0] // len(specs)
    return max(float(layer_operator_norm_upper(L, W_eff[j * co:(j + 1) * co].reshape(L.weight_shape), conv_method))
               for j, L in enumerate(specs))


def _following_lip(graph, name: str) -> float:
    """Display only: product of the Lipschitz factors (:meth:`~probprune.net.ops.Op.chain_lip`) of the single-input
    ops that follow a weight node up to the next weight node, addition or branch."""
    cons = graph.consumers
    L, cur = 1.0, name
    while len(cons[cur]) == 1:
        nxt = graph.node(cons[cur][0])
        f = nxt.op.chain_lip()
        if f is None:
            break
        L *= f
        cur = nxt.name
    return L


def _finite_or_refuse(eps: float, nE, kind: str) -> float:
    if not math.isfinite(eps):
        raise ProbPruneError(f"{kind}: the certificate overflows float64 (operator norms up to "
                             f"{float(np.max(nE)) if len(nE) else 0:.3g}); refusing rather than returning inf/NaN")
    return eps


def _run_lemma(graph, norms: dict, kind: str):
    """lemma_a_graph on float64 numpy scalars with underflow trapped: a product that underflows (weights ~1e-200 in
    several layers) could make the certificate smaller than the truth, so it is refused; overflow gives inf, refused
    by :func:`_finite_or_refuse`."""
    from probprune.net.lemma import lemma_a_graph

    norms = {k: tuple(np.float64(v) for v in t) for k, t in norms.items()}
    try:
        with np.errstate(under="raise", over="ignore", invalid="ignore"):
            return lemma_a_graph(graph, norms)
    except FloatingPointError:
        raise ProbPruneError(f"{kind}: the certificate underflows float64 (weights too small); rescale the model "
                             "(the error scales with the weights)") from None


def weight_node_norms(op, W, What, conv_method: str = "fft", norm_W: float | None = None) -> tuple:
    """The four numbers Cert-D needs at one graph weight node (THEORY §8.2 S2, §11): certified upper bounds on
    ||W'||, ||What'||, ||E'|| = ||W' - What'|| of the effective (BatchNorm-folded) weights of the layer weights ``W``
    and pruned weights ``What`` (the parameter as stored; the mask acts on it), and the bias map's norm ||c'||.
    ||E'|| is exactly 0 when W == What. ``norm_W``: ||W'|| already computed by the caller for this W (reused).
    The one place these norms are computed: :func:`certify_graph` and the Monte Carlo engine call it."""
    W = check_finite_array(W, f"weights of {op.fqn}")
    What = check_finite_array(What, f"pruned weights of {op.fqn}")
    We, Whe = op.effective_weight(W), op.effective_weight(What)
    w = graph_weight_norm(op, We, conv_method) if norm_W is None else float(norm_W)
    wh = graph_weight_norm(op, Whe, conv_method)
    e = graph_weight_norm(op, We - Whe, conv_method) if np.any(W != What) else 0.0
    return w, wh, e, op.bias_map_norm()


def cert_d_from_norms(graph, norms: Mapping[str, tuple]):
    """Lemma A on the graph (THEORY §8.2) from per-node norms {FQN: (||W'||, ||What'||, ||E'||, ||c'||)} (floats, or
    numpy arrays with one value per trial: vectorised), float64 underflow refused; a non-finite result anywhere is
    refused (fail closed). Returns the :class:`~probprune.net.lemma.GraphLemmaResult` (``D`` is Cert-D)."""
    r = _run_lemma(graph, norms, "Cert-D")
    D = np.asarray(r.D, dtype=float)
    if not np.all(np.isfinite(D)):
        nE = np.concatenate([np.ravel(t[2]) for t in norms.values()]) if norms else np.zeros(0)
        _finite_or_refuse(math.inf, nE, "Cert-D")
    return r


def certify_graph(graph, pruned, conv_method: str = "fft", show_power_iteration: bool = False,
                  spec_lips: Sequence[float] | None = None) -> CertificateResult:
    """Cert-D on a network graph (THEORY §8.2 [D], §3.11): a deterministic upper bound on
    sup_{||x||<=1} ||F(x) - F_hat(x)||. ``pruned`` is the pruned graph (same structure, e.g. ``graph.with_masks``)
    or a mask dict keyed by parameter FQN (True/1 = kept). Operator norms: certified upper bounds of the effective
    (BatchNorm-folded) weights, scaled to avoid under/overflow; the recursion of §8.2 (node-wise min of the forward
    and backward forms). ``A_fwd``/``A_bwd`` of the result are the pure forward/backward recursions."""
    from probprune.net import ops as O

    if not hasattr(pruned, "nodes"):
        pruned = graph.with_masks(pruned)
    if pruned.weight_names != graph.weight_names:
        raise ProbPruneError("the pruned graph has different weight layers than the network")
    from probprune.net.ir import graph_differences

    diffs = graph_differences(graph, pruned, "masks")  # Cert-D's setting: only weights change (issue 19 U3)
    if diffs:
        raise ProbPruneError("Cert-D compares networks that differ only in their weights; the pruned graph differs: "
                             f"{diffs[0]}" + (f" (and {len(diffs) - 1} more)" if len(diffs) > 1 else ""))
    ph = {n.op.fqn: n.op for n in pruned.weight_nodes}
    norms, nW, nWh, nE, names, lips, pis = {}, [], [], [], [], [], []
    for n in graph.weight_nodes:
        op, oph = n.op, ph[n.op.fqn]
        w, wh, e, c = weight_node_norms(op, op.weight, oph.weight, conv_method)
        norms[op.fqn] = (w, wh, e, c)
        nW.append(w), nWh.append(wh), nE.append(e), names.append(op.fqn)
        lips.append(_following_lip(graph, n.name))
        if show_power_iteration:
            We = op.effective_weight()
            pis.append(max(power_iteration_norm(L, We if len(weight_layer_specs(op)) == 1 else
                                                We[j * (We.shape[0] // op.groups):(j + 1) * (We.shape[0] // op.groups)])
                           for j, L in enumerate(weight_layer_specs(op))))
    r = cert_d_from_norms(graph, norms)
    eps = float(r.D)
    notes = ["deterministic: holds for this network and mask", "inputs in the unit l2 ball (Frobenius for images)",
             "THEORY §8.2: Lemma A on the traced graph (node-wise min of the forward and backward forms)"]
    kinds = {type(n.op).__name__ for n in graph.nodes}
    if any(np.any(n.op.effective_bias() is not None) for n in graph.weight_nodes):
        notes.append("biases kept unpruned; they enter only the activation-norm bounds (§8.1 S2)")
    if any(isinstance(n.op, O.Act) and not n.op.act.zero_at_zero for n in graph.nodes):
        notes.append("an activation has sigma(0) != 0: |sigma(0)| sqrt(dim) terms in the activation-norm bounds")
    if "Add" in kinds:
        notes.append("residual additions: bounds add (§8.1 S7)")
    folded = [n.op.bn_fqn for n in graph.weight_nodes if n.op.folded]
    if folded:
        notes.append(f"BatchNorm (eval) folded into the preceding layer: {', '.join(folded)}; masks act on the layer's "
                     "own weights")
    if any(not n.op.is_dense for n in graph.weight_nodes):
        notes.append("conv operator norms: " + ("FFT of the periodic extension (Sedghi et al.) and Lemma C, the smaller"
                                                if conv_method == "fft" else "Lemma C kernel-matrix bound")
                     + "; grouped convs: max over groups")
    if not graph.is_chain:
        notes.append("the network is a graph, not a chain: per-layer L_i are display only")
    return CertificateResult(eps, "Cert-D", np.array(nW), np.array(nWh), np.array(nE),
                             np.array(spec_lips if spec_lips is not None else lips), float(r.Df), float(r.Db),
                             tuple(names), "THEORY.md §3.11 Cert-D via Lemma A on graphs (§8.2)",
                             assumptions=tuple(notes), power_iteration_W=np.array(pis) if pis else None)


def certify(
    spec: NetSpec,
    weights: Sequence[np.ndarray],
    pruned_weights: Sequence[np.ndarray],
    biases: Sequence[np.ndarray | None] | None = None,
    conv_method: str = "fft",
    show_power_iteration: bool = False,
) -> CertificateResult:
    """Cert-D (THEORY §3.11 [D]) for a chain given as a spec: a deterministic upper bound on
    sup_{||x||<=1} ||F(x) - F_hat(x)||; evaluated on the chain's graph (:meth:`Graph.from_spec`, §8.3)."""
    from probprune.net import Graph

    if len(weights) != spec.depth or len(pruned_weights) != spec.depth:
        raise ProbPruneError(f"need {spec.depth} weight and pruned-weight tensors")
    for L, W, Wh in zip(spec.layers, weights, pruned_weights):
        check_finite_array(W, f"weights of {L.name}")
        check_finite_array(Wh, f"pruned weights of {L.name}")
        if np.asarray(W).size != L.N or np.asarray(Wh).size != L.N:
            raise ProbPruneError(f"layer {L.name}: expected {L.N} weights, got {np.asarray(W).size} and "
                                 f"{np.asarray(Wh).size}")
    if biases is not None:
        for L, b in zip(spec.layers, biases):
            if b is not None:
                check_finite_array(b, f"bias of {L.name}")
    g = Graph.from_spec(spec, weights, biases)
    gh = g.with_weights({L.name: np.asarray(Wh, float) for L, Wh in zip(spec.layers, pruned_weights)})
    return certify_graph(g, gh, conv_method, show_power_iteration, spec_lips=[L.lip for L in spec.layers])


def certify_parsed(parsed, masks: Mapping[str, np.ndarray], **kw) -> CertificateResult:
    """Cert-D for a model read by :func:`probprune.net.from_torch` (a Graph) or
    :func:`probprune.net.templates.from_torch` (a ParsedModel, which carries its graph) and a mask dict keyed by
    parameter FQN (True/1 = kept). Parameters without a mask are unpruned."""
    graph = parsed_graph(parsed)
    unknown = set(masks) - set(graph.weight_names)
    if unknown:
        raise ProbPruneError(f"mask for unknown parameter(s): {sorted(unknown)}; model has {list(graph.weight_names)}")
    return certify_graph(graph, graph.with_masks(masks), **kw)


def parsed_graph(parsed):
    """The graph of a network read by :func:`probprune.net.from_torch` (a Graph: itself) or
    :func:`probprune.net.templates.from_torch` (a ParsedModel: the graph it carries when its weights are that graph's
    own arrays, else the chain's graph built from the ParsedModel's weights, e.g. after ``replace(parsed, weights=)``)."""
    from probprune.net import Graph

    if hasattr(parsed, "nodes"):
        return parsed
    g = getattr(parsed, "graph", None)
    if g is not None and len(g.weight_nodes) == len(parsed.weights) and all(
            n.op.weight is w for n, w in zip(g.weight_nodes, parsed.weights)):
        return g
    return Graph.from_spec(parsed.spec, parsed.weights, parsed.biases, parsed.names or None)


def _cert_r_line_terms(W: np.ndarray):
    M = as_matrix(W)
    rho = math.sqrt(max(float((M * M).sum(axis=1).max()), float((M * M).sum(axis=0).max())))
    mu = float(np.abs(M).max())
    return rho, mu


def _cert_r_layer(L, W: np.ndarray, w: float, pi: float, de: float, sampling: str) -> tuple[float, float]:
    """Cert-R bounds (||What||, ||E||) of one layer (§3.11) with probability >= 1 - de over its mask, given the
    certified ||W|| <= w; conv layers through Lemma C's sqrt(r) lift of the mat-level Bernstein bound. ``sampling``:
    the method's Cert-R sampling (:func:`probprune.core.registry.cert_r_method`)."""
    meth = registry.cert_r_method(sampling)
    rho, mu = _cert_r_line_terms(W)
    lam = math.log(L.n / de)
    sr = math.sqrt(L.r)
    if meth.rescaled:  # R-Bern-rescaled
        t = sr * float(beta(pi * rho**2 / (1 - pi), mu * max(pi, 1 - pi) / (1 - pi), lam))
        e, wh = t, w + t
    elif meth.sampling_model.counted:  # R-exact
        t = sr * float(beta(pi * rho**2, mu + w / L.N, lam))
        e, wh = pi * w + t, (1 - pi) * w + t
    else:  # R-Bern
        t = sr * float(beta(pi * (1 - pi) * rho**2, max(pi, 1 - pi) * mu, lam))
        e, wh = pi * w + t, (1 - pi) * w + t
    if pi == 1.0 and not meth.rescaled:
        e, wh = w, 0.0  # everything pruned: deterministic
    return wh, e


def certify_random_graph(graph, p, delta: float, sampling: str = "bernoulli", conv_method: str = "fft",
                         norm_W: Mapping[str, float] | None = None) -> CertificateResult:
    """Cert-R (THEORY §3.11 [D]) on a network graph (§8.2): the per-layer Cert-R bounds on ||What|| and ||E|| (union
    bound, delta split equally over the randomly pruned layers) in the forward form of the graph recursion (the
    graph's A-fwd). ``p``: one fraction, or a dict FQN -> fraction (missing: 0). Grouped convs: per-group bounds
    (delta of the layer split equally over its groups), the max over groups (block-diagonal operator).
    ``norm_W``: FQN -> certified ||W'|| already computed by the caller (reused, not recomputed)."""
    delta = check_delta(delta)
    meth = registry.cert_r_method(sampling)  # ProbPruneError naming the samplings for an unknown one
    nodes = graph.weight_nodes
    if isinstance(p, Mapping):
        unknown = set(p) - set(graph.weight_names)
        if unknown:
            raise ProbPruneError(f"fraction for unknown parameter(s): {sorted(unknown)}")
        ps = np.array([float(p.get(n.op.fqn, 0.0)) for n in nodes])
    else:
        ps = np.full(len(nodes), float(p))
    check_fraction(ps, "p", upper_open=meth.rescaled)
    de = delta / max(int(np.sum(ps > 0)), 1)
    norms, nW, nWh, nE = {}, [], [], []
    for n, pi in zip(nodes, ps):
        op = n.op
        We = op.effective_weight()
        w = float(norm_W[op.fqn]) if norm_W is not None else graph_weight_norm(op, We, conv_method)
        specs = weight_layer_specs(op)
        if pi == 0:
            wh, e = w, 0.0
        else:  # a grouped conv is block diagonal: per-group bounds with delta_i split over the groups, then the max
            co = We.shape[0] // len(specs)
            per = []
            for j, L in enumerate(specs):
                Wj = We[j * co:(j + 1) * co].reshape(L.weight_shape)
                wj = float(layer_operator_norm_upper(L, Wj, conv_method)) if len(specs) > 1 else w
                per.append(_cert_r_layer(L, Wj, wj, float(pi), de / len(specs), sampling))
            wh, e = max(p_[0] for p_ in per), max(p_[1] for p_ in per)
        norms[op.fqn] = (w, wh, e, op.bias_map_norm())
        nW.append(w), nWh.append(wh), nE.append(e)
    r = _run_lemma(graph, norms, "Cert-R")
    eps = _finite_or_refuse(float(r.Df), nE, "Cert-R")
    notes = [f"probability >= 1 - {delta} over the {sampling} mask only, conditional on these weights",
             "graph A-fwd (§8.2) with exact ||W|| and the Cert-R bounds on ||What||, ||E|| (§3.11)"]
    return CertificateResult(eps, "Cert-R", np.array(nW), np.array(nWh), np.array(nE),
                             np.array([_following_lip(graph, n.name) for n in nodes]), eps, float("nan"),
                             tuple(graph.weight_names), "THEORY.md §3.11 Cert-R on the graph (§8.2)", delta=delta,
                             assumptions=tuple(notes))


def certify_random(
    spec: NetSpec,
    weights: Sequence[np.ndarray],
    p,
    delta: float,
    sampling: str = "bernoulli",
    biases: Sequence[np.ndarray | None] | None = None,
    conv_method: str = "fft",
    norm_W: Sequence[float] | None = None,
) -> CertificateResult:
    """Cert-R (THEORY §3.11 [D]) for a chain given as a spec: with probability >= 1 - delta over a random mask drawn
    AFTER the weights are fixed, err <= eps. sampling: "bernoulli" (R-Bern), "rescaled" (R-Bern-rescaled), "exact"
    (R-exact, k_i = p_i N_i). ``p``: one fraction or one per layer. Evaluated by the one Cert-R implementation,
    :func:`certify_random_graph` on the chain's graph (:meth:`Graph.from_spec`, §8.3; pooling with its certified
    Lipschitz constant). ``norm_W``: operator-norm upper bounds of the layers already computed by the caller (reused)."""
    from probprune.net import Graph

    delta = check_delta(delta)
    p = check_fraction(p, "p", upper_open=registry.cert_r_method(sampling).rescaled)
    p = np.full(spec.depth, float(p)) if p.ndim == 0 else p
    if p.shape != (spec.depth,):
        raise ProbPruneError(f"p must be a scalar or {spec.depth} per-layer values")
    if len(weights) != spec.depth:
        raise ProbPruneError(f"need {spec.depth} weight tensors")
    for L, W in zip(spec.layers, weights):
        check_finite_array(W, f"weights of {L.name}")
    g = Graph.from_spec(spec, weights, biases)
    names = [L.name for L in spec.layers]
    nw = None if norm_W is None else dict(zip(names, (float(v) for v in norm_W)))
    r = certify_random_graph(g, dict(zip(names, (float(v) for v in p))), delta, sampling, conv_method, norm_W=nw)
    return replace(r, lips=np.array([L.lip for L in spec.layers]))
