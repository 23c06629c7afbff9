"""The operations of the network graph (THEORY.md §8 [D]): one frozen class per operation.

Every operation carries what it needs to run (``forward`` on a batched float64 tensor) and the facts the graph
form of Lemma A needs (``rule``: the per-node step of the recursion of §8.2). The facts are computed when the node
is built, from the node's input shape, never assumed:

* weight layers (:class:`Affine`: Linear, Conv1d, Conv2d with stride / padding (ints, 'same', 'valid') / dilation /
  groups, zero padding only; optionally with an eval-mode BatchNorm folded in, W' = diag(s) W, b' = s (b - mu) + beta):
  the operator norms are supplied by the certificate (they depend on the weights); the bias map's norm is computed;
* activations (:class:`Act`, the table of :mod:`probprune.net.templates`): Lipschitz L and |sigma(0)| (§8.1, S3);
* linear parameter-free maps with non-negative entries (:class:`LinearPool`: AvgPool1d/2d with any parameters,
  AdaptiveAvgPool1d/2d): ||A|| <= sqrt(||A 1||_inf ||A^T 1||_inf) (Schur test, §8.1 S4), evaluated with torch;
* max pooling (:class:`MaxPool`, any kernel / stride / padding / dilation / ceil_mode): Lipschitz sqrt(c_max), c_max the
  largest number of windows containing one input element, counted exactly by unfold/fold (§8.1 S5);
* :class:`Reshape` (Flatten, view, reshape, torch.flatten, x.flatten) and :class:`Permute` (permute, transpose):
  isometries; means and sums over non-batch axes are :class:`LinearPool` (Schur test);
* :class:`Concat` (torch.cat along a non-batch axis): root of the sum of squares;
* :class:`Add` (residual ``+``, ``torch.add``, ``-``): the triangle inequality; :class:`Gain` (multiplication by a Python
  constant): |c|; :class:`ConstShift` (adding a constant): shifts ||h|| only;
* :class:`ChannelAffine` (a BatchNorm that cannot be folded): y = s x + t per channel, norm max |s|.

Anything else is refused by :mod:`probprune.net.trace` with :class:`~probprune.core.errors.UnsupportedLayerError`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import numpy as np

from probprune.core.errors import ProbPruneError
from probprune.core.registry import layer_kind
from probprune.net.activations import Activation

#: relative allowance added to numerically evaluated norm facts (float64 sums of a few non-negative terms)
FACT_SAFETY = 1e-9


# ------------------------------------------------------------------------------------------------- bound state
@dataclass(frozen=True)
class Bound:
    """Upper bounds at one node over the input ball (§8.2): ``b`` >= sup ||h_v||, ``bh`` >= sup ||hhat_v||,
    ``D`` >= sup ||h_v - hhat_v|| (node-wise min of the two weight-node forms), ``Df``/``Db`` the same recursion
    using only the forward / only the backward form at weight nodes (for the chain special case these are
    Lemma A's A-fwd and A-bwd, §3.1). Entries are floats or numpy arrays (vectorised over trials)."""

    b: Any
    bh: Any
    D: Any
    Df: Any
    Db: Any


def affine_rule(u: Bound, weight_norms) -> Bound:
    """S2 (weight node): W h + c - (What hh + c) = W (h - hh) + E hh = What (h - hh) + E h, so
    D <= min(||W|| D_u + ||E|| bh_u, ||What|| D_u + ||E|| b_u); b <= ||W|| b_u + ||c||, bh <= ||What|| bh_u + ||c||.
    ``weight_norms`` = (||W||, ||What||, ||E||, ||c||map) upper bounds."""
    nW, nWh, nE, nc = weight_norms
    fwd = nWh * u.D + nE * u.b
    bwd = nW * u.D + nE * u.bh
    return Bound(nW * u.b + nc, nWh * u.bh + nc, np.minimum(fwd, bwd), nWh * u.Df + nE * u.b, nW * u.Db + nE * u.bh)


def lipschitz_rule(u: Bound, L, off=0.0) -> Bound:
    """S3-S6 (a map f with ||f(h) - f(hh)|| <= L ||h - hh|| and ||f(h)|| <= L ||h|| + off): every D scales by L,
    the activation bounds by L plus the offset ``off`` (|sigma(0)| sqrt(dim) for activations, ||t|| for shifts)."""
    return Bound(L * u.b + off, L * u.bh + off, L * u.D, L * u.Df, L * u.Db)


# ------------------------------------------------------------------------------------------------- op classes
@dataclass(frozen=True)
class Op:
    """Base class. ``kind`` is the registry key; ``where`` names the place (module FQN or function) for messages."""

    kind: ClassVar[str] = "op"
    #: how the §12 lowering (certificates/lower.py) treats the op: "input", "add", "act", "max_pool", "concat",
    #: "affine" (composed exactly into the stage), or None (refused, named)
    lowering: ClassVar[str | None] = None
    where: str = ""

    def forward(self, *xs):
        raise NotImplementedError

    def forward_batched(self, n: int, *xs, weight=None):
        """Forward for n stacked networks at once: inputs (n*S, ...) with trial-major rows; ``weight`` (n, *weight
        shape) for weight nodes. Parameter-free ops are the same for every trial: their ``forward``."""
        return self.forward(*xs)

    def rule(self, ins: list[Bound], weight_norms=None) -> Bound:
        raise NotImplementedError

    def chain_lip(self) -> float | None:
        """Lipschitz description for display: the factor this single-input op contributes to the per-layer L_i of a
        chain (product up to the next weight node); None where the chain view stops (weights, joins)."""
        return None


@dataclass(frozen=True)
class Input(Op):
    kind: ClassVar[str] = "input"
    lowering: ClassVar[str | None] = "input"

    def forward(self, x):
        return x

    def rule(self, ins, weight_norms=None):
        return Bound(1.0, 1.0, 0.0, 0.0, 0.0)  # ||x|| <= 1, no perturbation at the input (S1)


@dataclass(frozen=True)
class Affine(Op):
    """h -> W' h + b' (Linear / Conv1d / Conv2d). ``weight`` is the parameter as stored in the model (the mask acts on
    it); ``bn_scale``/``bn_shift`` fold an eval-mode BatchNorm: W' = diag(s) W, b' = s (b - mu) + beta (§8.1 S6)."""

    kind: ClassVar[str] = "affine"
    lowering: ClassVar[str | None] = "affine"
    fqn: str = ""
    layer: str = "linear"  # linear | conv1d | conv2d
    weight: np.ndarray = field(default=None, repr=False, compare=False)
    bias: np.ndarray | None = field(default=None, repr=False, compare=False)
    stride: tuple = ()
    padding: Any = ()
    dilation: tuple = ()
    groups: int = 1
    bn_scale: np.ndarray | None = field(default=None, repr=False, compare=False)
    bn_shift: np.ndarray | None = field(default=None, repr=False, compare=False)
    bn_fqn: str | None = None
    storage: str = ""  # canonical FQN of the parameter's storage when tied (``fc2.weight is fc1.weight``); "" = fqn
    in_shape: tuple = ()
    out_shape: tuple = ()

    @property
    def folded(self) -> bool:
        return self.bn_scale is not None

    @property
    def is_dense(self) -> bool:
        """nn.Linear (the registry's layer kind ``LAYER_KINDS[layer].dense``), not a convolution."""
        return layer_kind(self.layer).dense

    def effective_weight(self, W: np.ndarray | None = None) -> np.ndarray:
        """W' = diag(s) W (s over output channels/features), or W when no BatchNorm is folded."""
        W = self.weight if W is None else W
        if self.bn_scale is None:
            return W
        return W * self.bn_scale.reshape((-1,) + (1,) * (W.ndim - 1))

    def effective_bias(self) -> np.ndarray | None:
        if self.bn_scale is None:
            return self.bias
        b = np.zeros(self.weight.shape[0]) if self.bias is None else self.bias
        return self.bn_scale * b + self.bn_shift

    def bias_map_norm(self) -> float:
        """||b' broadcast over the output map|| = ||b'|| sqrt(number of output positions) (0 without a bias)."""
        c = self.effective_bias()
        if c is None:
            return 0.0
        spatial = int(np.prod(self.out_shape[1:])) if len(self.out_shape) > 1 else 1
        return float(np.linalg.norm(c)) * math.sqrt(spatial)

    def forward(self, x, weight=None):
        import torch
        import torch.nn.functional as F

        W = torch.as_tensor(self.effective_weight(weight), dtype=x.dtype)
        c = self.effective_bias()
        c = None if c is None else torch.as_tensor(c, dtype=x.dtype)
        if self.is_dense:
            return F.linear(x, W, c)
        fn = F.conv1d if self.layer == "conv1d" else F.conv2d
        return fn(x, W, c, stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups)

    def rule(self, ins, weight_norms=None):
        (u,) = ins
        return affine_rule(u, weight_norms)

    def forward_batched(self, n: int, h, weight=None):
        """One weight node for n stacked trials: ``h`` (n*S, *in_shape) with trial-major rows, ``weight`` (n, *weight
        shape) as stored (BatchNorm folded exactly as :meth:`effective_weight` / :meth:`effective_bias`): one bmm
        (dense) or one grouped conv over the trials."""
        import torch
        import torch.nn.functional as F

        W = weight.to(h.dtype)
        if self.bn_scale is not None:
            W = W * torch.as_tensor(self.bn_scale, dtype=h.dtype).reshape(1, -1, *([1] * (W.dim() - 2)))
        c = self.effective_bias()
        c = None if c is None else torch.as_tensor(c, dtype=h.dtype)
        S = h.shape[0] // n
        if self.is_dense:
            lead = h.shape[1:-1]
            y = torch.bmm(h.reshape(n, -1, h.shape[-1]), W.transpose(1, 2))
            if c is not None:
                y = y + c
            return y.reshape(n * S, *lead, W.shape[1])
        fn = F.conv1d if self.layer == "conv1d" else F.conv2d
        C, sp = h.shape[1], h.shape[2:]
        x = h.reshape(n, S, C, *sp).transpose(0, 1).reshape(S, n * C, *sp)
        y = fn(x, W.reshape(n * W.shape[1], *W.shape[2:]), None if c is None else c.repeat(n), stride=self.stride,
               padding=self.padding, dilation=self.dilation, groups=n * int(self.groups))
        co = W.shape[1]
        return y.reshape(S, n, co, *y.shape[2:]).transpose(0, 1).reshape(n * S, co, *y.shape[2:])


@dataclass(frozen=True)
class Act(Op):
    """A coordinate-wise activation of the table (S3): ||s(h) - s(hh)|| <= L ||h - hh||,
    ||s(h)|| <= L ||h|| + |s(0)| sqrt(dim)."""

    kind: ClassVar[str] = "act"
    lowering: ClassVar[str | None] = "act"
    act: Activation = None
    dim: int = 0

    def forward(self, x):
        return self.act.torch(x)

    def rule(self, ins, weight_norms=None):
        (u,) = ins
        return lipschitz_rule(u, self.act.lipschitz, abs(self.act.value_at_zero) * math.sqrt(self.dim))

    def chain_lip(self):
        return self.act.lipschitz


@dataclass(frozen=True)
class Lipschitz(Op):
    """A parameter-free map f with f(0) = 0 and ||f(x) - f(y)|| <= P ||x - y|| (pools, reshapes, gains)."""

    kind: ClassVar[str] = "lipschitz"
    lowering: ClassVar[str | None] = None
    P: float = 1.0

    def rule(self, ins, weight_norms=None):
        (u,) = ins
        return lipschitz_rule(u, self.P)

    def chain_lip(self):
        return self.P


@dataclass(frozen=True)
class _FunctionalPool(Lipschitz):
    """A pooling map run as ``fn(x, **kwargs)`` (a torch functional with its parameters)."""

    fn: Callable = field(default=None, compare=False)
    kwargs: tuple = ()

    def forward(self, x):
        return self.fn(x, **dict(self.kwargs))


@dataclass(frozen=True)
class LinearPool(_FunctionalPool):
    """Average-type pooling (AvgPool1d/2d, any parameters; AdaptiveAvgPool1d/2d): linear, entries >= 0;
    P = sqrt(||A 1||_inf ||A^T 1||_inf) (1 + 1e-9) (Schur test, S4)."""

    kind: ClassVar[str] = "avgpool"
    lowering: ClassVar[str | None] = "affine"


@dataclass(frozen=True)
class MaxPool(_FunctionalPool):
    """Max pooling (any parameters): P = sqrt(c_max) (S5)."""

    kind: ClassVar[str] = "maxpool"
    lowering: ClassVar[str | None] = "max_pool"
    c_max: int = 1


@dataclass(frozen=True)
class Reshape(Lipschitz):
    """Flatten / view / reshape keeping the batch axis: an isometry (P = 1)."""

    kind: ClassVar[str] = "reshape"
    lowering: ClassVar[str | None] = "affine"
    shape: tuple = ()

    def forward(self, x):
        return x.reshape(x.shape[0], *self.shape)


@dataclass(frozen=True)
class Permute(Lipschitz):
    """permute / transpose / movedim keeping the batch axis: a permutation of coordinates, an isometry (P = 1)."""

    kind: ClassVar[str] = "permute"
    lowering: ClassVar[str | None] = "affine"
    fn: Callable = field(default=None, compare=False)

    def forward(self, x):
        return self.fn(x)


@dataclass(frozen=True)
class Concat(Op):
    """torch.cat of node values along a non-batch axis: ||[a; b]||^2 = ||a||^2 + ||b||^2, so every bound is the
    root of the sum of squares of the inputs' bounds (S7)."""

    kind: ClassVar[str] = "concat"
    lowering: ClassVar[str | None] = "concat"
    dim: int = 1

    def forward(self, *xs):
        import torch

        return torch.cat(xs, dim=self.dim)

    def rule(self, ins, weight_norms=None):
        def rss(attr):
            return np.sqrt(sum(np.square(getattr(u, attr)) for u in ins))

        return Bound(rss("b"), rss("bh"), rss("D"), rss("Df"), rss("Db"))


@dataclass(frozen=True)
class Gain(Lipschitz):
    """x -> c x for a Python constant c: P = |c|."""

    kind: ClassVar[str] = "gain"
    lowering: ClassVar[str | None] = "affine"
    c: float = 1.0

    def forward(self, x):
        return x * self.c


@dataclass(frozen=True)
class ConstShift(Op):
    """x -> x + t for a constant t: D unchanged, ||h|| grows by at most ||t|| (broadcast to the node's shape)."""

    kind: ClassVar[str] = "shift"
    lowering: ClassVar[str | None] = "affine"
    t: Any = field(default=0.0, compare=False)
    t_norm: float = 0.0

    def forward(self, x):
        import torch

        return x + (torch.as_tensor(self.t, dtype=x.dtype) if isinstance(self.t, np.ndarray) else self.t)

    def rule(self, ins, weight_norms=None):
        (u,) = ins
        return Bound(u.b + self.t_norm, u.bh + self.t_norm, u.D, u.Df, u.Db)

    def chain_lip(self):
        return 1.0


@dataclass(frozen=True)
class Add(Op):
    """u + a v (residual connections ``+``, ``-``, ``torch.add(alpha=a)``): every bound is the sum with |a| on the
    second term (triangle inequality, S7)."""

    kind: ClassVar[str] = "add"
    lowering: ClassVar[str | None] = "add"
    sign: float = 1.0

    def forward(self, x, y):
        return x + self.sign * y

    def rule(self, ins, weight_norms=None):
        u, v = ins
        a = abs(self.sign)
        return Bound(u.b + a * v.b, u.bh + a * v.bh, u.D + a * v.D, u.Df + a * v.Df, u.Db + a * v.Db)


@dataclass(frozen=True)
class ChannelAffine(Op):
    """An eval-mode BatchNorm that could not be folded: y = s x + t per channel. ||y - y'|| <= max|s| ||x - x'||,
    ||y|| <= max|s| ||x|| + ||t broadcast|| (S6)."""

    kind: ClassVar[str] = "channel_affine"
    lowering: ClassVar[str | None] = "affine"
    scale: np.ndarray = field(default=None, repr=False, compare=False)
    shift: np.ndarray = field(default=None, repr=False, compare=False)
    spatial: int = 1

    def forward(self, x):
        import torch

        shp = (1, -1) + (1,) * (x.dim() - 2)
        return x * torch.as_tensor(self.scale, dtype=x.dtype).reshape(shp) + torch.as_tensor(
            self.shift, dtype=x.dtype).reshape(shp)

    def rule(self, ins, weight_norms=None):
        (u,) = ins
        return lipschitz_rule(u, self.chain_lip(), float(np.linalg.norm(self.shift)) * math.sqrt(self.spatial))

    def chain_lip(self):
        return float(np.max(np.abs(self.scale))) if self.scale.size else 0.0


# ------------------------------------------------------------------------------------------------- norm facts
def schur_norm_linear_pool(fn, kwargs: dict, in_shape: tuple) -> float:
    """S4: for a linear map A with non-negative entries, ||A||_2 <= sqrt(||A 1||_inf ||A^T 1||_inf). A 1 = fn(ones),
    A^T 1 = d/dx sum(fn(x)). Checks linearity and non-negativity numerically on the way (fail closed)."""
    import torch

    x = torch.ones((1, *in_shape), dtype=torch.float64, requires_grad=True)
    y = fn(x, **kwargs)
    (g,) = torch.autograd.grad(y.sum(), x)
    row = float(y.detach().abs().max()) if y.numel() else 0.0
    col = float(g.abs().max()) if g.numel() else 0.0
    if torch.any(y.detach() < 0) or torch.any(g < 0):
        raise ProbPruneError("average pooling with negative entries: the Schur test does not apply")
    # linearity: A(x) for a random x equals the autograd Jacobian-vector product at 0
    z = torch.randn((1, *in_shape), dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    z2 = torch.randn((1, *in_shape), dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    lhs = fn(z + 2.0 * z2, **kwargs)
    rhs = fn(z, **kwargs) + 2.0 * fn(z2, **kwargs)
    if not torch.allclose(lhs, rhs, rtol=1e-9, atol=1e-12):
        raise ProbPruneError("a pooling map assumed linear is not linear")
    return math.sqrt(row * col) * (1.0 + FACT_SAFETY)


def pool_params(kwargs, nd: int) -> tuple[tuple[int, ...], ...]:
    """(kernel, stride, padding, dilation) of a torch pooling call as ``nd``-tuples (ints broadcast; stride None or 0
    = the kernel), the one reading of pooling arguments for the tracer and the §12 lowering."""
    def tup(v, default):
        v = default if v is None else v
        return tuple(int(a) for a in v) if isinstance(v, (tuple, list)) else (int(v),) * nd

    k = tup(kwargs.get("kernel_size"), None)
    return k, tup(kwargs.get("stride") or None, k), tup(kwargs.get("padding", 0), 0), tup(kwargs.get("dilation", 1), 1)


def max_pool_window_count(in_shape: tuple, kernel, stride, padding, dilation, ceil_mode: bool, out_spatial: tuple) -> int:
    """S5: c_max = the largest number of pooling windows that contain one real (non-padding) input element.
    Counted exactly: the windows are those of ``unfold`` on the padded input, extended on the high side so that
    the number of windows equals torch's output size (ceil_mode); fold(ones) counts the windows per position."""
    import torch
    import torch.nn.functional as F

    spatial = tuple(int(v) for v in in_shape[1:])
    if len(spatial) == 1:  # 1-d as 2-d with H = 1
        spatial = (1,) + spatial
        kernel, stride, padding, dilation = ((1,) + tuple(kernel), (1,) + tuple(stride), (0,) + tuple(padding),
                                             (1,) + tuple(dilation))
        out_spatial = (1,) + tuple(out_spatial)
    # padded extent: exactly torch's number of windows (window j starts at j s - p; torch's out >= these counts)
    Hp, Wp = (max((o - 1) * s + d * (k - 1) + 1, n + p)
              for n, k, s, p, d, o in zip(spatial, kernel, stride, padding, dilation, out_spatial))
    for ext, k, s, d, o in zip((Hp, Wp), kernel, stride, dilation, out_spatial):
        if (ext - d * (k - 1) - 1) // s + 1 != o:
            raise ProbPruneError("cannot reproduce the max-pool windows for counting")
    ones = torch.ones((1, kernel[0] * kernel[1], out_spatial[0] * out_spatial[1]), dtype=torch.float64)
    cnt = F.fold(ones, (Hp, Wp), kernel_size=tuple(kernel), dilation=tuple(dilation), stride=tuple(stride))
    real = cnt[0, 0, padding[0]:padding[0] + spatial[0], padding[1]:padding[1] + spatial[1]]
    return int(round(float(real.max()))) if real.numel() else 0
