"""Batched error measurement for Monte Carlo trials (THEORY.md §6; §1.4 error metric; §3.11 Cert-D).

All functions take *stacked* weights: one float64 torch tensor per layer of shape ``(n, *weight_shape)`` holding
``n`` independent trials, and evaluate the forward passes of all trials in one batched computation (``torch.bmm``
for linear layers, grouped ``conv2d`` for conv layers), never a Python loop over trials; certified conv norms (and
the norms of graph certificates) are computed per trial by the package's one norm functions.

* :func:`exact_linear_error` — err = ||W_l...W_1 - What_l...What_1|| for identity-activation FCNs (§6, exact).
* :func:`pgd_lower_bound` — multi-start projected gradient ascent of ||F(x) - Fhat(x)||^2 on the unit sphere
  (positively homogeneous nets) or over the ball with projection x / max(1, ||x||) (other activations) (§6). Starts:
  >= 64 Gaussian directions, +-e_j, and the top right singular vector of the linear part (activations replaced by
  the identity; FCNs only). A lower bound on err by construction: every value is F evaluated at a feasible x.
* :func:`operator_norms_upper` and :func:`cert_d` — the Cert-D upper bound (§3.11) on a chain from certified norms
  (§11: batched dense bound; conv: min of the FFT bound and Lemma C, as ``probprune certify``). Never power iteration.
* :func:`cert_d_graph` — ``probprune certify``'s Cert-D (§8.2) for n trials of a network graph: the cert column.
* :func:`graph_batched_forward`, :func:`graph_pgd_lower_bound`, :func:`graph_average_error` — the same
  measurements for fixed network graphs (residual additions, BatchNorm, ...; THEORY §8).
* :func:`average_error` — mean and max of ||F(x) - Fhat(x)|| over real inputs scaled into the unit ball.

Provenance: protocol [D] (THEORY §6); Lemma A / Cert-D [D] (§3.1, §3.11).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from probprune.measure import attack
from probprune.core.errors import ProbPruneError
from probprune.net.templates import NetSpec

SVD_SAFETY = 1.0 + 1e-9  # multiply float64 SVD norms by this to get an upper bound (§3.11)


def is_linear_fcn(spec: NetSpec) -> bool:
    """:attr:`NetSpec.is_linear_fcn` (kept as a function for callers that pass specs around)."""
    return spec.is_linear_fcn


def batched_forward(spec: NetSpec, weights: Sequence[torch.Tensor], x: torch.Tensor,
                    biases: Sequence[torch.Tensor | None] | None = None) -> torch.Tensor:
    """F(x) for n stacked networks at once.

    ``weights[i]`` has shape (n, *weight_shape); ``x`` has shape (n, S, *input_shape) (S inputs per network) or
    (S, *input_shape) (the same inputs for every network). Returns (n, S, d_out). ``biases``
    (optional, one (d_out,) / (c_out,) tensor or None per layer) are shared by all n networks (fixed networks)."""
    n = weights[0].shape[0]
    x = _per_network_inputs(x, n, tuple(spec.input_shape))
    S = x.shape[1]
    h, conv_layout = x, False  # conv_layout: h is (S, n*C, H, W)
    for i, L in enumerate(spec.layers):
        b = None if biases is None else biases[i]
        h, conv_layout = _LAYER_STEPS[L.kind].forward(L, weights[i], b, h, n, S, conv_layout)
        if i < spec.depth - 1:
            h = L.act.torch(h)  # the one activation table (networks.Activation)
            if L.pool is not None:
                h = _POOLS[L.pool.kind](h, L.pool.kernel, L.pool.stride)
    if conv_layout:
        h = h.reshape(S, n, -1).transpose(0, 1)
    return h


def _conv_forward(L, W, b, h, n: int, S: int, conv_layout: bool):
    """One conv layer of n stacked chains: a grouped conv on the (S, n*C, H, W) layout."""
    if not conv_layout:
        h = h.reshape(n, S, *L.in_shape).transpose(0, 1).reshape(S, n * L.in_shape[0], *L.in_shape[1:])
    Wg = W.reshape(n * W.shape[1], *W.shape[2:])
    h = F.conv2d(h, Wg, stride=L.stride, padding=L.padding, dilation=L.dilation, groups=n)
    if b is not None:
        h = h + b.repeat(n).reshape(1, -1, 1, 1)
    return h, True


def _dense_forward(L, W, b, h, n: int, S: int, conv_layout: bool):
    """One dense layer of n stacked chains: a bmm on the (n, S, d) layout."""
    if conv_layout:
        h = h.reshape(S, n, -1).transpose(0, 1)
    elif h.dim() > 3:
        h = h.reshape(n, S, -1)
    h = torch.bmm(h, W.transpose(1, 2))
    if b is not None:
        h = h + b
    return h, False


def _conv_norms(L, W: torch.Tensor, conv_method: str) -> torch.Tensor:
    """Certified operator norms of one conv layer of n trials (per trial: FFT bound / Lemma C, §11.2, §3.5)."""
    from probprune.theory.norms import layer_operator_norm_upper

    n = W.shape[0]
    Wn = W.detach().cpu().numpy().reshape(n, *L.weight_shape)
    return torch.tensor([layer_operator_norm_upper(L, Wn[k], conv_method) for k in range(n)], dtype=torch.float64,
                        device=W.device)


def _dense_norms(L, W: torch.Tensor, conv_method: str) -> torch.Tensor:
    """Certified spectral norms of one dense layer of n trials, batched (§11.1)."""
    from probprune.theory.norms import matrix_norm_upper

    return matrix_norm_upper(W.reshape(W.shape[0], L.d_out, L.d_in)).to(W.device)


@dataclass(frozen=True)
class _LayerStep:
    """What the batched chain measurement does with a layer of a law template (:class:`NetSpec` layer kind)."""

    forward: Callable
    norms: Callable


#: NetSpec layer kind -> its batched forward and certified norms
_LAYER_STEPS = {"linear": _LayerStep(_dense_forward, _dense_norms), "conv": _LayerStep(_conv_forward, _conv_norms)}
#: NetSpec pool kind -> the torch functional
_POOLS = {"max": F.max_pool2d, "avg": F.avg_pool2d}


def _matrices(spec: NetSpec, weights: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    return [W.reshape(W.shape[0], L.d_out, L.d_in) for W, L in zip(weights, spec.layers)]


def product(mats: Sequence[torch.Tensor]) -> torch.Tensor:
    """W_l ... W_1 for stacked matrices (n, d_i, d_{i-1}), multiplied in the cheaper association order."""
    P = mats[0]
    for M in mats[1:]:
        P = torch.bmm(M, P)
    return P


def exact_linear_error(spec: NetSpec, W: Sequence[torch.Tensor], What: Sequence[torch.Tensor]) -> torch.Tensor:
    """Exact sup_{||x||<=1} ||F(x) - Fhat(x)|| = ||prod W - prod What|| (spectral norm, float64 SVD) for linear
    FCNs (§6). Returns shape (n,)."""
    if not spec.is_linear_fcn:
        raise ProbPruneError("the exact error is only available for FCNs with identity activations")
    D = product(_matrices(spec, W)) - product(_matrices(spec, What))
    return torch.linalg.matrix_norm(D, ord=2)


def operator_norms_upper(spec: NetSpec, weights: Sequence[torch.Tensor], conv_method: str = "fft") -> torch.Tensor:
    """Upper bounds on the operator norm of every layer, shape (n, depth), with the guarantee ``probprune certify``
    uses: dense layers the certified spectral norm (``probprune.theory.norms.matrix_norm_upper``, batched, THEORY §11.1);
    conv layers ``probprune.theory.norms.layer_operator_norm_upper`` per trial (``conv_method="fft"``: the smaller of the
    periodic-extension FFT bound §11.2 and Lemma C sqrt(r_i) ||mat W_i|| §3.5; ``"kernel"``: Lemma C alone). Never
    power iteration (§3.11)."""
    # the package's one certified norms (probprune.theory.norms, §11), per layer kind (_LAYER_STEPS)
    return torch.stack([_LAYER_STEPS[L.kind].norms(L, W, conv_method) for W, L in zip(weights, spec.layers)], dim=-1)


def lemma_a_batched(norm_W: np.ndarray, norm_What: np.ndarray, norm_E: np.ndarray, lips: Sequence[float],
                    bias_norm=None, act_off=None) -> np.ndarray:
    """The Lemma A certificate for arrays with last axis = layer (leading axes = trials): the one implementation,
    :func:`probprune.net.lemma.lemma_a_chain` (THEORY §8.2; node-wise min of the forward and backward forms,
    <= Lip min(A-fwd, A-bwd) of §3.1), so this column equals ``probprune certify`` for the same norms."""
    from probprune.net.lemma import lemma_a_chain

    return np.asarray(lemma_a_chain(norm_W, norm_What, norm_E, lips, bias_norm, act_off).D, dtype=float)


def cert_d(spec: NetSpec, norm_W: np.ndarray, norm_What: np.ndarray, norm_E: np.ndarray) -> np.ndarray:
    """Cert-D (§3.11, §8.2): the per-network upper bound (Lemma A on the chain's graph, <= Lambda min(A-fwd, A-bwd))
    from upper bounds on the layer norms. Requires (H-act) (sigma(0) = 0)."""
    if not spec.zero_at_zero:
        raise ProbPruneError("Cert-D in this form needs sigma(0) = 0 (H-act); use a zero-at-zero activation")
    return lemma_a_batched(norm_W, norm_What, norm_E, [L.lip for L in spec.layers])


# ------------------------------------------------------------------------------------------------ PGD lower bound
def top_right_singular_vectors(spec: NetSpec, W: Sequence[torch.Tensor], What: Sequence[torch.Tensor]) -> torch.Tensor:
    """Top right singular vector of the difference of the linear parts (activations -> identity), (n, d_0); FCN only."""
    D = product(_matrices(spec, W)) - product(_matrices(spec, What))
    _, _, Vh = torch.linalg.svd(D, full_matrices=False)
    return Vh[:, 0, :]


def pgd_starts(spec: NetSpec, W, What, n_random: int, generators: Sequence[torch.Generator] | None,
               basis: bool = True, svd_start: bool = True) -> torch.Tensor:
    """Starting points (n, S, *input_shape): n_random Gaussian directions per trial (one seeded generator per trial,
    so a trial's starts do not depend on how trials are batched), +-e_j for every input coordinate, and +-the top
    right singular vector of the linear part (FCNs)."""
    n = W[0].shape[0]
    if n_random > 0 and generators is None:
        raise ProbPruneError("random PGD starts need one torch.Generator per trial")
    v = top_right_singular_vectors(spec, W, What) if (svd_start and spec.is_fcn) else None
    x = torch.stack([attack.starts(spec.input_shape, n_random, generators[k] if n_random > 0 else None, basis,
                                   None if v is None else torch.stack([v[k], -v[k]]))
                     for k in range(n)])
    x = attack.unit(x)
    return x.reshape(n, x.shape[1], *spec.input_shape)


def pgd_lower_bound(
    spec: NetSpec,
    W: Sequence[torch.Tensor],
    What: Sequence[torch.Tensor],
    n_random: int = 64,
    iters: int = 60,
    step: float = 0.5,
    generators: Sequence[torch.Generator] | None = None,
    basis: bool = True,
    svd_start: bool = True,
    max_batch_elems: int = 40_000_000,
    biases: Sequence[torch.Tensor | None] | None = None,
) -> torch.Tensor:
    """Lower bound on err = sup_{||x||<=1} ||F(x) - Fhat(x)|| for n stacked trials, shape (n,) (§6).

    Positively homogeneous nets: ascent on the unit sphere with two chains per start: a local chain of projected
    normalized-gradient steps x <- normalize(x + eta_t grad f/||grad f||) (eta_t decaying geometrically from ``step``
    to 1e-4 ``step``), and a fixed-point chain whose first half are steps x <- normalize(grad f(x)) (on a linear region
    grad f = 2 (A - Ahat)^T (A - Ahat) x, so this is the region's power step, §6) and whose second half are local
    steps. Other activations: the same normalized-gradient steps with the ball
    projection x / max(1, ||x||) (no fixed-point phase). The result is the largest ||F(x) - Fhat(x)|| seen at any
    evaluated feasible x, divided by max(1, ||x||) on homogeneous nets so that float rounding of ||x|| cannot inflate it.
    Trials are processed in sub-batches so that n_sub * S * max_width <= ``max_batch_elems``. With non-zero
    ``biases`` (fixed networks) the net is not positively homogeneous and the ball projection is used."""
    n = W[0].shape[0]
    has_bias = biases is not None and any(b is not None for b in biases)
    homog = spec.positively_homogeneous and not has_bias
    x0 = pgd_starts(spec, W, What, n_random, generators, basis=basis, svd_start=svd_start)
    S = x0.shape[1]
    widest = max(max(int(np.prod(L.out_shape)) if L.out_shape else L.d_out for L in spec.layers),
                 int(np.prod(spec.input_shape)))
    sub = max(1, int(max_batch_elems // max(1, S * widest)))
    out = []
    for a in range(0, n, sub):
        b = min(n, a + sub)
        out.append(_pgd_block(spec, [w[a:b] for w in W], [w[a:b] for w in What], x0[a:b], iters, step, homog,
                              biases if has_bias else None))
    return torch.cat(out)


def _pgd_block(spec, W, What, x, iters, step, homog, biases=None):
    """One sub-batch of trials through the package's one PGD (:func:`probprune.measure.attack.pgd_ascent`)."""

    def sq_diff(z):
        diff = batched_forward(spec, W, z, biases=biases) - batched_forward(spec, What, z, biases=biases)
        return (diff * diff).sum(-1)  # (n, S)

    return attack.pgd_ascent(sq_diff, x, iters, step, homog)[0]


# ------------------------------------------------------------------------------------------------ average case
def scale_into_ball(X: torch.Tensor) -> torch.Tensor:
    """Scale a data matrix (N, *shape) by one common factor so that every input has ||x|| <= 1 (the largest norm
    becomes 1). One common factor keeps the data's geometry (relative norms and directions)."""
    X = torch.as_tensor(X, dtype=torch.float64)
    m = X.flatten(1).norm(dim=1).max()
    if not torch.isfinite(m) or m <= 0:
        raise ProbPruneError("the dataset has no non-zero finite input to scale into the ball")
    return X / m


def average_error(spec: NetSpec, W, What, X: torch.Tensor, max_batch_elems: int = 40_000_000,
                  biases=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and max over the inputs X (already in the ball, shape (N, *input_shape)) of ||F(x) - Fhat(x)||, per
    trial: two tensors of shape (n,)."""
    n = W[0].shape[0]
    N = X.shape[0]
    widest = max(max(int(np.prod(L.out_shape)) if L.out_shape else L.d_out for L in spec.layers),
                 int(np.prod(spec.input_shape)))
    sub = max(1, int(max_batch_elems // max(1, N * widest)))
    means, maxs = [], []
    with torch.no_grad():
        for a in range(0, n, sub):
            b = min(n, a + sub)
            d = (batched_forward(spec, [w[a:b] for w in W], X, biases=biases)
                 - batched_forward(spec, [w[a:b] for w in What], X, biases=biases))
            e = d.norm(dim=-1)
            means.append(e.mean(dim=1))
            maxs.append(e.max(dim=1).values)
    return torch.cat(means), torch.cat(maxs)


# ------------------------------------------------------------------------------------------------ graphs (§8)
def cert_d_graph(graph, W: Sequence[torch.Tensor], What: Sequence[torch.Tensor], conv_method: str = "fft",
                 norm_W: np.ndarray | None = None):
    """Cert-D (THEORY §3.11 via Lemma A on graphs, §8.2) for n stacked trials of one network graph: exactly what
    ``probprune certify`` computes (:func:`probprune.certificates.lemma.certify_graph`) for each trial's weights and mask.
    ``W[i]``/``What[i]``: (n, *weight shape) for the i-th weight node of ``graph.weight_nodes`` (the parameter as
    stored; BatchNorm folding is applied by the node). Per trial and node the norms come from
    :func:`probprune.certificates.lemma.weight_node_norms` (the function certify_graph calls); the recursion runs once,
    vectorised over trials, through :func:`probprune.certificates.lemma.cert_d_from_norms` (the same rules, element-wise).
    ``norm_W`` (n, l): ||W'|| already computed (reused). Returns (cert (n,), nW, nWh, nE), each norm array (n, l)."""
    from probprune.certificates.lemma import cert_d_from_norms, weight_node_norms

    nodes = graph.weight_nodes
    if len(W) != len(nodes) or len(What) != len(nodes):
        raise ProbPruneError(f"the graph has {len(nodes)} weight layers, got {len(W)} and {len(What)} tensors")
    n = W[0].shape[0]
    nW, nWh, nE = (np.zeros((n, len(nodes))) for _ in range(3))
    norms = {}
    for i, node in enumerate(nodes):
        op = node.op
        Wi = W[i].detach().cpu().numpy().reshape(n, *op.weight.shape)
        Whi = What[i].detach().cpu().numpy().reshape(n, *op.weight.shape)
        c = 0.0
        for k in range(n):
            w, wh, e, c = weight_node_norms(op, Wi[k], Whi[k], conv_method,
                                            None if norm_W is None else norm_W[k, i])
            nW[k, i], nWh[k, i], nE[k, i] = w, wh, e
        norms[op.fqn] = (nW[:, i], nWh[:, i], nE[:, i], np.full(n, c))
    r = cert_d_from_norms(graph, norms)
    return np.asarray(r.D, dtype=float).reshape(n), nW, nWh, nE


def _per_network_inputs(x: torch.Tensor, n: int, ishape: tuple) -> torch.Tensor:
    """Inputs (n, S, *input_shape): ``x`` as given, or (S, *input_shape) shared by the n networks (a view)."""
    return x.unsqueeze(0).expand(n, *x.shape) if x.dim() == len(ishape) + 1 else x


def graph_batched_forward(graph, weights: Sequence[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """F(x) of a network graph (THEORY §8) for n stacked weight sets at once: ``weights[i]`` (n, *weight shape) for
    the i-th weight node; ``x`` (n, S, *input_shape) or (S, *input_shape) (same inputs for all). Parameter-free
    nodes run their own ``forward`` on the (n*S, ...) batch; weight nodes as one bmm / grouped conv. Returns
    (n, S, d_out) (outputs flattened per input)."""
    n = weights[0].shape[0]
    ishape = tuple(graph.input_shape)
    x = _per_network_inputs(x, n, ishape)
    S = x.shape[1]
    widx = {node.name: i for i, node in enumerate(graph.weight_nodes)}
    vals: dict = {}
    for node in graph.nodes:
        ins = [vals[u] for u in node.inputs] if node.inputs else [x.reshape(n * S, *ishape)]  # the input node
        vals[node.name] = node.op.forward_batched(n, *ins, weight=weights[widx[node.name]] if node.name in widx
                                                  else None)
    return vals[graph.output].reshape(n, S, -1)


def _graph_widest(graph) -> int:
    return max(int(np.prod(node.out_shape)) if node.out_shape else 1 for node in graph.nodes)


def graph_pgd_lower_bound(graph, W: Sequence[torch.Tensor], What: Sequence[torch.Tensor], n_random: int = 64,
                          iters: int = 60, step: float = 0.5, generators: Sequence[torch.Generator] | None = None,
                          basis: bool = True, max_batch_elems: int = 40_000_000) -> torch.Tensor:
    """Lower bound on err = sup_{||x||<=1} ||F(x) - Fhat(x)|| for n stacked trials of a network graph, shape (n,):
    the package's one PGD (:func:`probprune.measure.attack.pgd_ascent`) on :func:`graph_batched_forward`, with the ball
    projection x / max(1, ||x||) (valid for any graph: biases, BatchNorm shifts, residual additions). Starts:
    ``n_random`` Gaussian directions per trial (one seeded generator per trial) and +-e_j (``basis``)."""
    n = W[0].shape[0]
    shape = tuple(graph.input_shape)
    if n_random > 0 and generators is None:
        raise ProbPruneError("random PGD starts need one torch.Generator per trial")
    x0 = torch.stack([attack.starts(shape, n_random, generators[k] if n_random > 0 else None, basis)
                      for k in range(n)])
    x0 = attack.unit(x0).reshape(n, x0.shape[1], *shape)
    S = x0.shape[1]
    sub = max(1, int(max_batch_elems // max(1, S * _graph_widest(graph))))
    out = []
    for a in range(0, n, sub):
        b = min(n, a + sub)
        Wa, Wha = [w[a:b] for w in W], [w[a:b] for w in What]

        def sq_diff(z, Wa=Wa, Wha=Wha):
            d = graph_batched_forward(graph, Wa, z) - graph_batched_forward(graph, Wha, z)
            return (d * d).sum(-1)

        out.append(attack.pgd_ascent(sq_diff, x0[a:b], iters, step, False)[0])
    return torch.cat(out)


def graph_average_error(graph, W, What, X: torch.Tensor, max_batch_elems: int = 40_000_000):
    """Mean and max over the inputs X (in the ball, (N, *input_shape)) of ||F(x) - Fhat(x)|| per trial, for a
    network graph: two tensors of shape (n,)."""
    n, N = W[0].shape[0], X.shape[0]
    sub = max(1, int(max_batch_elems // max(1, N * _graph_widest(graph))))
    means, maxs = [], []
    with torch.no_grad():
        for a in range(0, n, sub):
            b = min(n, a + sub)
            e = (graph_batched_forward(graph, [w[a:b] for w in W], X)
                 - graph_batched_forward(graph, [w[a:b] for w in What], X)).norm(dim=-1)
            means.append(e.mean(dim=1))
            maxs.append(e.max(dim=1).values)
    return torch.cat(means), torch.cat(maxs)
