"""Target networks: specs, the paper's weight law, and conversion to/from ``torch.nn``.

THEORY.md §1.1 (FCN), §1.2 (activations, hypothesis H-act), §1.3 (weight law), §1.7 (conv layers, pooling).

A network is a chain of weight layers (``Linear`` or ``Conv2d``), each followed by an activation and optional
pooling; the last layer is linear (L_l = 1). Per layer i the spec records the matrix view
M_i in R^{d_i x d_{i-1}} (for a conv kernel, mat(W) in R^{c_out x c_in k_h k_w}) and from it
n_i = d_i + d_{i-1}, m_i = max(d_i, d_{i-1}), N_i = d_i d_{i-1}, the half-width a_i of the uniform law and
the conv amplification r_i (Lemma C).

Biases: the a-priori theorems are bias-free (§1.1), so specs have no biases. ``from_torch`` reads biases and
returns them separately: all-zero biases are dropped; non-zero biases are kept and used by the per-network
certificate (Lemma A's general form, which only needs a bound on ||h_i||), while the a-priori bounds refuse them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np

from probprune.core.errors import ProbPruneError, UnsupportedLayerError, check_positive, check_widths
from probprune.core.registry import layer_kind


# the activation table lives in probprune.net.activations (the graph's ops use it; this module builds on the graph)
from probprune.net.activations import (ACTIVATION_ALIASES, ACTIVATIONS, Activation,  # noqa: E402,F401
                                       activation)


# --------------------------------------------------------------------------------------------- layers
@dataclass(frozen=True)
class Pool:
    """Max or average pooling after an activation (§1.7): Lipschitz factor folded into L_i."""

    kind: str  # "max" | "avg"
    kernel: tuple[int, int]
    stride: tuple[int, int]

    @property
    def lipschitz(self) -> float:
        w = self.kernel[0] * self.kernel[1]
        r_p = math.ceil(self.kernel[0] / self.stride[0]) * math.ceil(self.kernel[1] / self.stride[1])
        if self.kind == "max":
            return math.sqrt(r_p)  # = 1 when non-overlapping
        return math.sqrt(r_p / w)  # = 1/sqrt(w) when non-overlapping

    def out_hw(self, h: int, w: int) -> tuple[int, int]:
        return ((h - self.kernel[0]) // self.stride[0] + 1, (w - self.kernel[1]) // self.stride[1] + 1)


@dataclass(frozen=True)
class LayerSpec:
    """One weight layer in its matrix view. ``kind`` is "linear" or "conv".

    d_out x d_in is the matrix M_i (for conv: c_out x c_in*k_h*k_w). ``half_width`` is a_i of U[-a_i, a_i]
    (for the Gaussian law it is read as the standard deviation s_i). ``lip`` is L_i of the activation and
    pooling that follow the layer (1 for the output layer).
    """

    name: str
    kind: str
    d_out: int
    d_in: int
    half_width: float
    act: Activation
    lip: float
    kernel: tuple[int, int] | None = None
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    in_shape: tuple[int, ...] | None = None  # (C, H, W) for conv inputs
    out_shape: tuple[int, ...] | None = None  # (C, H, W) after conv (before pooling)
    pool: Pool | None = None

    @property
    def is_dense(self) -> bool:
        """A dense layer (the registry's layer kind, ``probprune.core.registry.LAYER_KINDS``), not a convolution."""
        return layer_kind(self.kind).dense

    @property
    def n(self) -> int:
        return self.d_out + self.d_in

    @property
    def m(self) -> int:
        return max(self.d_out, self.d_in)

    @property
    def N(self) -> int:
        return self.d_out * self.d_in

    @property
    def r(self) -> int:
        """Lemma C's patch multiplicity: ceil(k_h/s_h) ceil(k_w/s_w); k_h k_w for dilation > 1; 1 for linear."""
        if self.kind != "conv":
            return 1
        kh, kw = self.kernel
        if self.dilation != (1, 1):
            return kh * kw
        return math.ceil(kh / self.stride[0]) * math.ceil(kw / self.stride[1])

    @property
    def weight_shape(self) -> tuple[int, ...]:
        if self.kind == "conv":
            c_in = self.d_in // (self.kernel[0] * self.kernel[1])
            return (self.d_out, c_in, *self.kernel)
        return (self.d_out, self.d_in)

    @property
    def flops(self) -> int:
        """Multiply-accumulates of the dense layer (one input)."""
        if self.kind == "conv":
            return self.N * self.out_shape[1] * self.out_shape[2]
        return self.N


@dataclass(frozen=True)
class NetSpec:
    """A bias-free target network: a chain of weight layers with activations (§1.1, §1.7). ``origin`` says whether it
    is a template of the weight law ("law") or was read from a given network ("model"); see THEORY §3.0."""

    layers: tuple[LayerSpec, ...]
    input_shape: tuple[int, ...]
    K: float | None = None  # the paper's constant, when a_i = K / sqrt(m_i)
    #: where the spec comes from (THEORY §3.0, issue 22 item 3): "law" = a template of the weight law (fcn_spec,
    #: cnn_spec), whose a-priori and calibrated statements are about a draw from that law; "model" = read from a given
    #: network (from_torch: a_i = max|w|), which is not a draw from the law, so those statements refuse it unless the
    #: caller passes assume_law=True (the certificate is the tool for a given network)
    origin: str = "law"

    @property
    def depth(self) -> int:
        return len(self.layers)

    @property
    def from_model(self) -> bool:
        """True when the spec was read from a given network (``origin == "model"``), not built from the law."""
        return self.origin == "model"

    @property
    def Lip(self) -> float:
        """Lambda = prod_i L_i (L_l = 1 for the linear output layer)."""
        return float(np.prod([L.lip for L in self.layers]))

    @property
    def widths(self) -> tuple[int, ...]:
        return (self.layers[0].d_in,) + tuple(L.d_out for L in self.layers)

    @property
    def n_weights(self) -> int:
        return sum(L.N for L in self.layers)

    @property
    def is_fcn(self) -> bool:
        return all(L.is_dense for L in self.layers)

    @property
    def is_linear_fcn(self) -> bool:
        """Dense layers with identity activations: the network is the matrix product (exact error = spectral norm of
        the product difference, THEORY §6; the product statement §9.8 applies). The one test of this property."""
        return self.is_fcn and all(L.act.is_identity for L in self.layers[:-1])

    @property
    def zero_at_zero(self) -> bool:
        return all(L.act.zero_at_zero for L in self.layers[:-1])

    @property
    def positively_homogeneous(self) -> bool:
        return all(L.act.positively_homogeneous for L in self.layers[:-1])

    def with_half_widths(self, a: Sequence[float]) -> "NetSpec":
        if len(a) != self.depth:
            raise ProbPruneError(f"need {self.depth} half-widths, got {len(a)}")
        return replace(self, layers=tuple(replace(L, half_width=float(x)) for L, x in zip(self.layers, a)), K=None)

    def paper_hypotheses(self) -> list[str]:
        """Violations of the paper's stated FCN hypotheses (§1.1, §2.2); empty when all hold."""
        out = []
        w = self.widths
        if not self.is_fcn:
            out.append("Theorem 1 is for fully-connected networks only")
        else:
            for i in range(1, len(w) - 1):
                if not (w[i] > w[0] and w[i] > w[-1]):
                    out.append(f"hidden width d_{i}={w[i]} must exceed d_0={w[0]} and d_l={w[-1]}")
        if not self.zero_at_zero:
            out.append("an activation has sigma(0) != 0 (H-act)")
        return out

    def describe(self) -> str:
        return "-".join(str(x) for x in self.widths) if self.is_fcn else f"CNN{self.input_shape}->{self.widths[-1]}"


def paper_half_width(K: float, m: int) -> float:
    """The paper's law U[-K/sqrt(m_i), K/sqrt(m_i)] with m_i = max(d_i, d_{i-1}) [PAPER-R, §1.3]."""
    return K / math.sqrt(m)


def fcn_spec(
    widths: Sequence[int],
    activation_name: str = "relu",
    K: float = 1.0,
    half_widths: Sequence[float] | None = None,
    slope: float = 0.01,
) -> NetSpec:
    """FCN spec d_0-d_1-...-d_l (§1.1) with the paper's law a_i = K/sqrt(m_i) unless ``half_widths`` is given."""
    w = check_widths(widths)
    K = check_positive(K, "K")
    act = activation(activation_name, slope)
    ident = activation("identity")
    layers = []
    for i in range(1, len(w)):
        last = i == len(w) - 1
        m = max(w[i], w[i - 1])
        a = paper_half_width(K, m) if half_widths is None else check_positive(half_widths[i - 1], "half_width")
        layers.append(
            LayerSpec(
                name=f"{2 * (i - 1)}.weight",
                kind="linear",
                d_out=w[i],
                d_in=w[i - 1],
                half_width=a,
                act=ident if last else act,
                lip=1.0 if last else act.lipschitz,
            )
        )
    if half_widths is not None and len(half_widths) != len(layers):
        raise ProbPruneError(f"need {len(layers)} half-widths, got {len(half_widths)}")
    return NetSpec(tuple(layers), input_shape=(w[0],), K=None if half_widths is not None else K)


@dataclass(frozen=True)
class ConvLayer:
    """User-facing description of one conv layer for :func:`cnn_spec`."""

    c_out: int
    kernel: int | tuple[int, int] = 3
    stride: int | tuple[int, int] = 1
    padding: int | tuple[int, int] = 0
    pool: tuple[str, int, int] | None = None  # ("max"|"avg", kernel, stride)


def _pair(x) -> tuple[int, int]:
    return (int(x), int(x)) if np.isscalar(x) else (int(x[0]), int(x[1]))


def cnn_spec(
    input_shape: Sequence[int],
    convs: Sequence[ConvLayer],
    fc_widths: Sequence[int],
    activation_name: str = "relu",
    K: float = 1.0,
) -> NetSpec:
    """CNN spec: conv layers (§1.7) then a flatten and FC layers; the kernel law is U[+-K/sqrt(m)]."""
    if len(input_shape) != 3:
        raise ProbPruneError(f"input_shape must be (C, H, W), got {tuple(input_shape)}")
    K = check_positive(K, "K")
    act = activation(activation_name)
    ident = activation("identity")
    c, h, w = (int(v) for v in input_shape)
    layers = []
    idx = 0
    total = len(convs) + len(fc_widths)
    for j, cl in enumerate(convs):
        kh, kw = _pair(cl.kernel)
        sh, sw = _pair(cl.stride)
        ph, pw = _pair(cl.padding)
        ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
        if ho < 1 or wo < 1:
            raise ProbPruneError(f"conv layer {j}: kernel {kh}x{kw} does not fit input {h}x{w}")
        pool = None
        if cl.pool is not None:
            pool = Pool(cl.pool[0], _pair(cl.pool[1]), _pair(cl.pool[2]))
        last = j == total - 1
        d_in = c * kh * kw
        layers.append(
            LayerSpec(
                name=f"{idx}.weight",
                kind="conv",
                d_out=cl.c_out,
                d_in=d_in,
                half_width=paper_half_width(K, max(cl.c_out, d_in)),
                act=ident if last else act,
                lip=(1.0 if last else act.lipschitz) * (pool.lipschitz if pool else 1.0),
                kernel=(kh, kw),
                stride=(sh, sw),
                padding=(ph, pw),
                in_shape=(c, h, w),
                out_shape=(cl.c_out, ho, wo),
                pool=pool,
            )
        )
        idx += 2 + (pool is not None)
        c, h, w = cl.c_out, ho, wo
        if pool is not None:
            h, w = pool.out_hw(h, w)
    idx += 1  # Flatten
    d = c * h * w
    for j, dout in enumerate(fc_widths):
        last = len(convs) + j == total - 1
        layers.append(
            LayerSpec(
                name=f"{idx}.weight",
                kind="linear",
                d_out=int(dout),
                d_in=d,
                half_width=paper_half_width(K, max(int(dout), d)),
                act=ident if last else act,
                lip=1.0 if last else act.lipschitz,
            )
        )
        idx += 2
        d = int(dout)
    return NetSpec(tuple(layers), input_shape=tuple(int(v) for v in input_shape), K=K)


# --------------------------------------------------------------------------------------------- sampling
def sample_weights(
    spec: NetSpec, seed: int | np.random.Generator, law: str = "uniform", n: int | None = None
) -> list[np.ndarray]:
    """Draw weights from the paper's law (§1.3): i.i.d. U[-a_i, a_i] per layer, or the Gaussian analogue
    N(0, s_i^2) with s_i = a_i (§3.12). With ``n`` a leading batch axis of n independent networks is added.
    Returns float64 arrays in each layer's ``weight_shape``."""
    from probprune.core.registry import LAWS  # each law's sampler

    if law not in LAWS:
        raise ProbPruneError(f"unknown weight law {law!r}; use {' or '.join(repr(k) for k in LAWS)}")
    rng = np.random.default_rng(seed) if not isinstance(seed, np.random.Generator) else seed
    return [LAWS[law].sample(rng, L.half_width, L.weight_shape if n is None else (n, *L.weight_shape))
            for L in spec.layers]


def as_matrix(w: np.ndarray) -> np.ndarray:
    """mat(W): the row-major reshape of a conv kernel to c_out x (c_in k_h k_w) (§1.7); matrices unchanged."""
    w = np.asarray(w)
    return w.reshape(w.shape[0], -1) if w.ndim != 2 else w


# --------------------------------------------------------------------------------------------- torch bridge
def to_torch(spec: NetSpec, weights: Sequence[np.ndarray] | None = None, dtype=None):
    """An ``nn.Sequential`` (bias-free Linear/Conv2d, activations, pooling, Flatten) realising the spec.
    Parameter names match ``LayerSpec.name`` (e.g. ``"0.weight"``)."""
    import torch
    import torch.nn as nn

    dtype = dtype or torch.float64
    mods: list[nn.Module] = []
    flattened = spec.layers[0].is_dense
    for i, L in enumerate(spec.layers):
        if L.is_dense and not flattened:
            mods.append(nn.Flatten())
            flattened = True
        if L.kind == "conv":
            c_in = L.weight_shape[1]
            mod = nn.Conv2d(c_in, L.d_out, L.kernel, stride=L.stride, padding=L.padding, dilation=L.dilation, bias=False)
        else:
            mod = nn.Linear(L.d_in, L.d_out, bias=False)
        mod = mod.to(dtype)
        if weights is not None:
            with torch.no_grad():
                mod.weight.copy_(torch.as_tensor(np.asarray(weights[i]).reshape(L.weight_shape), dtype=dtype))
        mods.append(mod)
        if i < spec.depth - 1:
            mods.append(L.act.torch_module())
            if L.pool is not None:
                P = nn.MaxPool2d if L.pool.kind == "max" else nn.AvgPool2d
                mods.append(P(L.pool.kernel, L.pool.stride))
    return nn.Sequential(*mods)


@dataclass(frozen=True)
class ParsedModel:
    """What :func:`from_torch` reads off a user's model: the chain view (spec, weights, biases by layer) of its traced
    graph, and the graph itself (``graph``, a :class:`probprune.net.Graph`; THEORY §8)."""

    spec: NetSpec
    weights: list[np.ndarray]
    biases: list[np.ndarray | None]
    names: list[str] = field(default_factory=list)  # FQN of each weight parameter, as in state_dict
    graph: object = field(default=None, repr=False, compare=False)

    @property
    def has_bias(self) -> bool:
        return any(b is not None for b in self.biases)


def from_torch(model, input_shape: Sequence[int] | None = None) -> ParsedModel:
    """Read a ``torch.nn`` model through the one model reader, :func:`probprune.net.from_torch` (``torch.fx``
    tracing of ``forward``, refusal of unsupported operations naming them, verification that the graph reproduces
    ``model(x)``), and return its chain view for the chain-based consumers (a-priori specs, budgets, Monte Carlo,
    subset-sum). The chain view exists when the graph is weight layer -> [activation] -> [pooling] -> ... with
    flattening anywhere and a linear last layer; anything else (residual additions, gains, BatchNorm, pooling before
    the activation, two pools in a row, grouped or 1-d convolutions, pooling with padding/dilation/ceil_mode/
    divisor_override) raises :class:`UnsupportedLayerError` naming the node: certify such models with
    :func:`probprune.certificates.lemma.certify_parsed` / ``probprune certify``, which work on the graph itself.
    ``input_shape`` (C, H, W) is required for conv nets."""
    from probprune.net import from_torch as graph_from_torch

    return parsed_from_graph(graph_from_torch(model, input_shape))


def parsed_from_graph(graph) -> ParsedModel:
    """The chain view of a graph (see :func:`from_torch`); raises UnsupportedLayerError naming the first node that
    does not fit a chain of weight layer -> activation -> pooling."""
    import torch.nn.functional as F

    from probprune.net import ops as O

    def refuse(node, why):
        raise UnsupportedLayerError(
            f"node {node.name!r} ({node.op.where or node.kind}): {why}; this consumer needs a plain chain (weight layer "
            "-> activation -> pooling); `probprune certify` / certificates.certify_parsed handle the graph")

    if not graph.is_chain:
        bad = next(n for n in graph.nodes if len(n.inputs) > 1 or len(graph.consumers[n.name]) > 1)
        refuse(bad, "the network is not a chain (residual or branching connection)")
    layers: list[LayerSpec] = []
    weights, biases, names = [], [], []
    state = "start"  # start | layer | act | pool
    for n in graph.nodes[1:]:
        op = n.op
        if isinstance(op, O.Reshape):
            continue
        if isinstance(op, O.Affine):
            if op.folded:
                refuse(n, f"BatchNorm {op.bn_fqn!r} folded into the layer")
            if op.layer == "conv1d" or op.groups != 1:
                refuse(n, f"{op.layer} with groups={op.groups}")
            if isinstance(op.padding, str):
                refuse(n, f"padding={op.padding!r}")
            W = op.weight
            b = op.bias if op.bias is not None and np.any(op.bias) else None
            amax = float(np.abs(W).max(initial=0.0))
            if op.is_dense:
                L = LayerSpec(op.fqn, "linear", W.shape[0], W.shape[1], amax, activation("identity"), 1.0)
            else:
                kh, kw = W.shape[2:]
                L = LayerSpec(op.fqn, "conv", W.shape[0], W.shape[1] * kh * kw, amax, activation("identity"), 1.0,
                              kernel=(kh, kw), stride=tuple(op.stride), padding=tuple(op.padding),
                              dilation=tuple(op.dilation), in_shape=tuple(op.in_shape), out_shape=tuple(op.out_shape))
            layers.append(L)
            weights.append(W)
            biases.append(b)
            names.append(op.fqn)
            state = "layer"
        elif isinstance(op, O.Act):
            if state != "layer":
                refuse(n, "an activation that does not directly follow a weight layer")
            layers[-1] = replace(layers[-1], act=op.act, lip=op.act.lipschitz)
            state = "act"
        elif isinstance(op, (O.MaxPool, O.LinearPool)):
            kw = dict(op.kwargs)
            if state not in ("layer", "act") or op.fn not in (F.max_pool2d, F.avg_pool2d):
                refuse(n, "pooling that is not a 2-d pool directly after a layer's activation")
            k = _pair(kw["kernel_size"])
            st = _pair(kw.get("stride") or kw["kernel_size"])
            if _pair(kw.get("padding", 0)) != (0, 0) or _pair(kw.get("dilation", 1)) != (1, 1) or kw.get(
                    "ceil_mode") or kw.get("divisor_override") is not None:
                refuse(n, "pooling with padding, dilation, ceil_mode or divisor_override")
            pool = Pool("max" if isinstance(op, O.MaxPool) else "avg", k, st)
            layers[-1] = replace(layers[-1], pool=pool, lip=layers[-1].act.lipschitz * pool.lipschitz)
            state = "pool"
        else:
            refuse(n, f"operation {op.kind!r}")
    if not layers:
        raise UnsupportedLayerError("the model has no Linear or Conv2d layer")
    if not layers[-1].act.is_identity:
        raise UnsupportedLayerError("the output layer must be linear (an activation follows the last weight layer)")
    return ParsedModel(NetSpec(tuple(layers), input_shape=tuple(graph.input_shape), origin="model"), weights, biases,
                       names, graph)
