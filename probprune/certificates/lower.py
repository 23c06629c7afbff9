"""Lowering a network to a chain of exactly composed affine stages (THEORY.md §12.1 [D]).

A *chain* is s_0 = x, z_i = M_i s_{i-1} + b_i, s_i = act_i(z_i) (i = 1..L), F(x) = z_L, where act_i applies ReLU to
the coordinates in ``relu`` and the identity to the others; the last stage has no ReLU. Every run of linear
operations between two activations (Linear, Conv2d, BatchNorm in evaluation mode, average pooling, flatten/view,
residual additions) is composed *exactly* into one dense matrix M_i: the operations are applied, in float64, to the
columns of the current expression, so M_i is the operator itself, not a product of norm bounds (§12.1).

Residual (DAG) networks become chains by carrying every value that is still needed later through the stage as
identity coordinates ("carried" blocks): a stage's output is [ReLU(expression of the activation's input);
identity copies of the live values]. The chain computes the same function as the network (tested).

The input is a :class:`probprune.net.ir.Graph` (:func:`lower_graph`); torch models are read by the package's one
model reader, :func:`probprune.net.trace.from_torch`, and lowered the same way (:func:`lower_torch`).

Anything that is not affine or ReLU (max pooling, other activations, unknown functions) is refused with an
:class:`~probprune.core.errors.UnsupportedLayerError` naming the operation: nothing is approximated.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from probprune.core.errors import ProbPruneError, UnsupportedLayerError

MAX_DENSE = 40_000_000  # entries of one dense stage matrix (320 MB in float64): above this, refuse
USE_CONV_ON_IDENTITY = True  # (TG) conv2d of a fresh state block's identity rows by placing the kernel entries
# (_Conv2dLin.on_identity; the same entries as the convolution); False: always convolve (tests compare the two)
OP_NORM_MAX_ENTRIES = 1 << 20  # per-operation diagnostic norms (Stage.factor_norms) only for operators up to this size


@dataclass(frozen=True)
class Stage:
    """One stage z = M s + b, followed by ReLU on ``relu`` coordinates (identity elsewhere)."""

    M: np.ndarray
    b: np.ndarray
    relu: np.ndarray  # bool, one per output coordinate
    name: str
    ops: tuple[str, ...]  # the network operations composed into M (provenance)
    factor_norms: tuple[float, ...] = ()  # per-operation norms (float64 SVD, nan if too large; diagnostics only)
    dM: np.ndarray | None = None  # (F_hat's stages of a pair) M_F - M_Fhat composed from the weight differences
    db: np.ndarray | None = None  # b_F - b_Fhat, likewise

    @property
    def n_out(self) -> int:
        return self.M.shape[0]

    @property
    def n_in(self) -> int:
        return self.M.shape[1]


@dataclass(frozen=True)
class Chain:
    """A network as a chain of exactly composed affine stages (§12.1). ``F(x) = stages[-1].M s + b``."""

    stages: tuple[Stage, ...]
    input_shape: tuple[int, ...]
    source: str
    scale_exp: int = 0  # F(x) = 2^scale_exp * (the chain's last stage); states are power-of-two rescalings (§12.1)
    # (first, last, L): stages first..last compose to a parameter-free map with Lipschitz constant L and value 0 at 0
    # (a max-pool tree with the values carried past it, §12.7); used by the composed Lemma A (Statement 12.17)
    lip_blocks: tuple = ()

    @property
    def depth(self) -> int:
        return len(self.stages)

    @property
    def n_in(self) -> int:
        return self.stages[0].n_in

    @property
    def n_out(self) -> int:
        return self.stages[-1].n_out

    def forward(self, X) -> np.ndarray:
        """Evaluate on a batch of inputs (rows; any shape whose trailing size matches ``n_in``)."""
        S = np.asarray(X, float).reshape(-1, self.n_in)
        for st in self.stages:
            Z = S @ st.M.T + st.b
            S = np.where(st.relu, np.maximum(Z, 0.0), Z)
        return np.ldexp(S, self.scale_exp) if self.scale_exp else S

    def same_structure(self, other: "Chain") -> bool:
        return self.depth == other.depth and all(
            a.M.shape == b.M.shape and np.array_equal(a.relu, b.relu) for a, b in zip(self.stages, other.stages))


# ----------------------------------------------------------------------------------------------- lowering engine
SCALE_LO, SCALE_HI = 2.0 ** -32, 2.0 ** 32  # expressions whose largest entry leaves this range are rescaled (2^k)
RANGE_EXP = 960  # refuse when a product of largest entries may leave [2^-960, 2^960] (float64 under/overflow)
TINY = 2.0 ** -1022  # smallest normal float64


def _ldexp(t, k: int):
    """t 2^k by exact power-of-two steps (|step| <= 1000, monotone, so no intermediate leaves the range unless the
    result does)."""
    while k:
        s = max(-1000, min(1000, k))
        t = t * (2.0 ** s)
        k -= s
    return t


def _maxabs(*ts) -> float:
    return max([0.0] + [float(t.abs().max()) for t in ts if t is not None and t.numel()])


def _exp2(v: float) -> int:
    """k with 2^(k-1) <= v < 2^k (v > 0)."""
    return math.frexp(v)[1]


class _Expr:
    """An affine expression of the current (scaled) state s~: true value = 2^e (Mt s~ + b) for F; (Mth, bh) the same
    for F_hat and (dMt, db) for F - F_hat, composed directly from the weight differences (no cancellation)."""

    __slots__ = ("Mt", "b", "Mth", "bh", "dMt", "db", "e", "dzero", "ident")

    def __init__(self, Mt, b, Mth=None, bh=None, dMt=None, db=None, e=0, dzero=False, ident=None):
        self.Mt, self.b, self.Mth, self.bh, self.dMt, self.db, self.e = Mt, b, Mth, bh, dMt, db, e
        # (TG) (off, k): Mt (and Mth) are exactly the identity rows off..off+k-1 of the state, b = 0, dMt = db = 0
        # (a fresh state block, set by relu(); any operation makes a new _Expr without it)
        self.ident = ident
        # (TB) dMt and db are known to be exactly zero (a fresh state block, or only parameter-free / unpruned
        # operations since): the engine skips applying F_hat's operation to them (its result is zero)
        self.dzero = bool(dzero)

    @property
    def pair(self) -> bool:
        return self.Mth is not None

    def parts(self):
        return (self.Mt, self.b, self.Mth, self.bh, self.dMt, self.db)

    def scaled(self, k: int) -> "_Expr":
        """The same value with e + k (every stored part times 2^-k, exact unless it leaves the normal range)."""
        if k == 0:
            return self
        return _Expr(*(None if t is None else _ldexp(t, -k) for t in self.parts()), e=self.e + k, dzero=self.dzero)


class _Conv2dLin:
    """x -> conv2d(x, W) (no bias, groups = 1) for the lowering, plus ``on_identity``: the same result for the
    identity rows of a fresh state block built by placing the kernel's entries (TG, THEORY §12.11): conv2d of a basis
    image e_j at output (co, y, x) is a sum whose only nonzero product is W[co, ci, ky, kx] * 1 (the tap that reads
    input j), i.e. exactly that entry (adding zero products is exact), so the operator's entries are the kernel's,
    at the positions given by unfold of an index image (the same windows as the convolution); outputs no tap of which
    reads input j are zero. Equal to the convolution of the identity entry by entry (signed zeros aside)."""

    def __init__(self, Wt, o):
        self.Wt, self.o = Wt, o

    def __call__(self, x):
        import torch.nn.functional as tF

        o = self.o
        return tF.conv2d(x, self.Wt, None, stride=o.stride, padding=o.padding, dilation=o.dilation, groups=1)

    def on_identity(self, new_dim: int, off: int, in_shape: tuple):
        """conv2d of the (new_dim, *in_shape) expression whose rows off..off+k-1 are the identity, other rows 0."""
        import torch
        import torch.nn.functional as tF

        o = self.o
        ci, H, Wd = (int(v) for v in in_shape)
        k = ci * H * Wd
        co, _, kh, kw = self.Wt.shape
        idx = (torch.arange(k, dtype=torch.float64) + 1.0).reshape(1, ci, H, Wd)  # 0 marks padding
        cols = tF.unfold(idx, kernel_size=(kh, kw), dilation=o.dilation, padding=o.padding, stride=o.stride)
        out_shape = tuple(int(v) for v in o.out_shape)
        Ho, Wo = out_shape[1], out_shape[2]
        L = cols.shape[-1]
        if L != Ho * Wo or out_shape[0] != co:
            return None  # not the layout expected: the caller convolves
        cols = cols[0].to(torch.int64) - 1  # (ci*kh*kw, L): input index read by tap t at output location l, or -1
        Wf = self.Wt.reshape(co, ci * kh * kw)
        valid = cols >= 0
        t_idx, l_idx = torch.nonzero(valid, as_tuple=True)
        j = cols[t_idx, l_idx]
        out = torch.zeros(new_dim, co, Ho * Wo, dtype=torch.float64)
        # rows off + j, every output channel, location l: W[:, tap]
        out[off + j, :, l_idx] = Wf[:, t_idx].T
        return out.reshape(new_dim, co, Ho, Wo)


def _lin_parts(op, oph):
    """(lin_F, c_F, lin_Fh, c_Fh, lin_D, c_D) for one graph operation of F and its counterpart in F_hat: the linear
    part, the constant, and the linear part / constant of the difference op - oph computed from the parameter
    differences (W - What, b - bhat, s - shat, ...), never as a difference of two results. ``oph`` None: F only."""
    import torch
    import torch.nn.functional as tF

    from probprune.net import ops as O

    t = lambda a: None if a is None else torch.as_tensor(np.asarray(a, float), dtype=torch.float64)  # noqa: E731

    def affine_lin(o, W):
        Wt = t(W)
        if o.is_dense:
            return lambda x: tF.linear(x, Wt)
        if o.layer == "conv2d" and o.groups == 1:
            return _Conv2dLin(Wt, o)
        fn = tF.conv1d if o.layer == "conv1d" else tF.conv2d
        return lambda x: fn(x, Wt, None, stride=o.stride, padding=o.padding, dilation=o.dilation, groups=o.groups)

    def bshape(o, c):
        return None if c is None else t(c).reshape((1, -1) + (1,) * (len(o.out_shape) - 1)).expand(1, *o.out_shape)

    if isinstance(op, O.Affine):
        lin, c = affine_lin(op, op.effective_weight()), bshape(op, op.effective_bias())
        if oph is None:
            return lin, c, None, None, None, None
        linh, ch = affine_lin(oph, oph.effective_weight()), bshape(oph, oph.effective_bias())
        dW = op.weight - oph.weight
        s, sh = op.bn_scale, oph.bn_scale
        if (s is None) != (sh is None):
            raise ProbPruneError(f"{op.where}: BatchNorm folded in one network and not in the other")
        b = np.zeros(op.weight.shape[0]) if op.bias is None else op.bias
        bh = np.zeros(op.weight.shape[0]) if oph.bias is None else oph.bias
        if s is None:
            dWe, dc = dW, b - bh
        else:
            shp = (-1,) + (1,) * (dW.ndim - 1)
            dWe = dW * s.reshape(shp) + oph.weight * (s - sh).reshape(shp)
            dc = s * (b - bh) + (s - sh) * bh + (op.bn_shift - oph.bn_shift)
        linD = affine_lin(op, dWe) if np.any(dWe) else None
        cD = bshape(op, dc) if np.any(dc) else None
        return lin, c, linh, ch, linD, cD
    if isinstance(op, O.ChannelAffine):
        def cal(sc):
            v = t(sc)
            return lambda x: x * v.reshape((1, -1) + (1,) * (x.dim() - 2))

        if oph is None:
            return cal(op.scale), ("shift", t(op.shift)), None, None, None, None
        ds, dt = op.scale - oph.scale, op.shift - oph.shift
        return (cal(op.scale), ("shift", t(op.shift)), cal(oph.scale), ("shift", t(oph.shift)),
                cal(ds) if np.any(ds) else None, ("shift", t(dt)) if np.any(dt) else None)
    if isinstance(op, O.ConstShift):
        tt = op.t if isinstance(op.t, np.ndarray) else np.asarray(float(op.t))
        c = ("const", t(tt))
        if oph is None:
            return (lambda x: x), c, None, None, None, None
        th = oph.t if isinstance(oph.t, np.ndarray) else np.asarray(float(oph.t))
        d = tt - th
        return (lambda x: x), c, (lambda x: x), ("const", t(th)), None, ("const", t(d)) if np.any(d) else None
    # parameter-free linear maps (pools, reshapes, permutations, gains, identity activations): the same in both
    lin = op.forward
    return lin, None, (None if oph is None else oph.forward), None, None, None


def _const(c, like):
    """The constant of an op broadcast to the output's shape (batch axis 1)."""
    import torch

    if c is None:
        return None
    if isinstance(c, tuple):
        kind, v = c
        if kind == "shift":  # per channel, axis 1 of the batched output
            return v.reshape((1, -1) + (1,) * (like.dim() - 2)).expand(1, *like.shape[1:]).clone()
        return (torch.zeros((1, *like.shape[1:]), dtype=torch.float64) + v)
    return c


class _Engine:
    """Builds a :class:`Chain` (and, for a pair, the chain of F_hat and the exact stage differences) from a
    topologically ordered stream of nodes (input, affine, add, relu, output).

    Each value is an :class:`_Expr` over the current state; a ReLU closes a stage: [ReLU(expression of its input);
    identity copies of every value still needed later]. Stored parts are rescaled by powers of two (exact) whenever
    the largest entry of F's or F_hat's part leaves [2^-32, 2^32]; the state of every stage is then a positive
    diagonal rescaling of the true one, which ReLU commutes with (THEORY §12.1, scaling)."""

    def __init__(self, name: str, users: dict, pair: bool, op_norms: bool = True):
        self.name = name
        self.pair = pair
        self.op_norms = op_norms  # False: factor_norms are nan (diagnostics only; skips one SVD per operation)
        self.users_left = dict(users)
        self.expr: dict[str, _Expr] = {}
        self.stages: list[Stage] = []
        self.hstages: list[Stage] = []
        self.pending_ops: dict[str, tuple[str, ...]] = {}
        self.norms: dict[str, tuple[float, ...]] = {}
        self.state_dim = 0
        self.lip_blocks: list[tuple[int, int, float]] = []

    def input(self, node: str, in_shape: tuple):
        import torch

        if self.expr:
            raise UnsupportedLayerError(f"{self.name}: models with more than one input are not supported")
        n0 = int(np.prod(in_shape))
        self.state_dim = n0
        Mt = torch.eye(n0, dtype=torch.float64).reshape(n0, *in_shape)
        b = torch.zeros(1, *in_shape, dtype=torch.float64)
        self.expr[node] = (_Expr(Mt, b, Mt, b, torch.zeros_like(Mt), torch.zeros_like(b), dzero=True) if self.pair
                           else _Expr(Mt, b))
        self.pending_ops[node] = ()

    def _get(self, arg: str) -> _Expr:
        if arg not in self.expr:
            raise UnsupportedLayerError(f"{self.name}: value {arg!r} is not available (unsupported data flow)")
        return self.expr[arg]

    def consume(self, arg: str):
        self.users_left[arg] -= 1

    def _check(self, ex: _Expr, where: str):
        for tname, tt in zip(("M", "b", "Mhat", "bhat", "dM", "db"), ex.parts()):
            if tt is None or (ex.dzero and tname in ("dM", "db")):  # known zero (TB)
                continue
            if not tt.numel():
                continue
            a = tt.abs()
            # one pass fewer than torch.isfinite(tt).all(): the max of |tt| is inf or NaN iff an entry is (torch's
            # max reduction propagates NaN)
            if not math.isfinite(float(a.max())):
                raise ProbPruneError(f"{self.name}: the composition overflows float64 at {where}; refusing")
            if bool(((a > 0) & (a < TINY)).any()):
                raise ProbPruneError(f"{self.name}: the composition underflows float64 at {where} (subnormal values "
                                     f"in {tname}); refusing rather than losing part of the network or of the error")

    def _normalise(self, ex: _Expr) -> _Expr:
        m = _maxabs(ex.Mt, ex.b, ex.Mth, ex.bh)
        if m == 0.0 or SCALE_LO <= m <= SCALE_HI:
            return ex
        return ex.scaled(_exp2(m) - 1)

    def affine(self, node: str, arg: str, op, oph, label: str, hint: float | None = None):
        """node = op(arg) for an affine op (F) and its counterpart oph (F_hat; None for one network)."""
        import torch

        ex = self._get(arg)
        self.consume(arg)
        linF, cF, linH, cH, linD, cD = _lin_parts(op, oph)
        with torch.no_grad():
            # tiny weights: scale the stored expression UP first (exact) so that (largest weight) x (largest stored
            # entry) stays near 1 and the products cannot underflow; large weights need no pre-scaling (the result
            # is normalised afterwards; an overflow gives inf, refused by _check)
            w = _maxabs(*(torch.as_tensor(np.asarray(a, float)) for a in _op_arrays(op, oph)))
            if 0 < w < SCALE_LO:
                ex = ex.scaled(_exp2(w) - 1)
                self._check(ex, label + " (pre-scaled input)")
            def two_e(c):  # 2^-e c, exact unless it leaves the normal range (then _check refuses)
                return None if c is None else _ldexp(c, -ex.e)
            ident = ex.ident if USE_CONV_ON_IDENTITY else None

            def apply(lin, X):  # lin(X) for X = the expression's identity rows (Mt or Mth of a fresh block)
                if ident is not None and isinstance(lin, _Conv2dLin):
                    r = lin.on_identity(X.shape[0], ident[0], tuple(X.shape[1:]))
                    if r is not None:
                        return r
                return lin(X)

            Mt = apply(linF, ex.Mt)
            fb = linF(ex.b)
            C = _const(cF, fb)
            b = fb if C is None else fb + two_e(C)
            if self.pair:
                Mth, fbh = apply(linH, ex.Mth), linH(ex.bh)
                Ch = _const(cH, fbh)
                bh = fbh if Ch is None else fbh + two_e(Ch)
                if ex.dzero:  # F_hat's operation applied to zero is zero: not computed (TB)
                    dMt = apply(linD, ex.Mt) if linD is not None else torch.zeros_like(Mth)
                    db = linD(ex.b) if linD is not None else torch.zeros_like(fbh)
                else:
                    dMt, db = linH(ex.dMt), linH(ex.db)
                    if linD is not None:
                        dMt = dMt + linD(ex.Mt)
                        db = db + linD(ex.b)
                CD = _const(cD, db)
                if CD is not None:
                    db = db + two_e(CD)
                new = _Expr(Mt, b, Mth, bh, dMt, db, ex.e, dzero=ex.dzero and linD is None and CD is None)
            else:
                new = _Expr(Mt, b, e=ex.e)
            new = self._normalise(new)
            self._check(new, label)
            if hint is None and not self.op_norms:
                hint = float("nan")
            if hint is None:
                n_in = int(np.prod(ex.b.shape[1:]))
                n_out = int(np.prod(new.b.shape[1:]))
                # the operation's own norm (diagnostics: what a per-operation product uses), by a dense SVD only up
                # to OP_NORM_MAX_ENTRIES entries (seconds per 16x16 convolution otherwise; nan above, TB)
                if n_in <= 4096 and n_in * n_out <= OP_NORM_MAX_ENTRIES:
                    Op = linF(torch.eye(n_in, dtype=torch.float64).reshape(n_in, *ex.b.shape[1:])).reshape(n_in, -1)
                    hint = float(np.linalg.norm(Op.numpy(), 2)) if bool(torch.isfinite(Op).all()) else float("nan")
                else:
                    hint = float("nan")
        if new.Mt.numel() > MAX_DENSE:
            raise UnsupportedLayerError(f"{self.name}: operator after {label!r} has {new.Mt.numel():,} dense entries "
                                        f"(> {MAX_DENSE:,}); too large for the exact composition")
        self.expr[node] = new
        self.pending_ops[node] = self.pending_ops.get(arg, ()) + (label,)
        self.norms[node] = self.norms.get(arg, ()) + (hint,)

    def add(self, node: str, a: str, b: str, sign: float = 1.0):
        e1, e2 = self._get(a), self._get(b)
        self.consume(a)
        self.consume(b)
        if e1.b.shape != e2.b.shape:
            raise UnsupportedLayerError(f"{self.name}: broadcasting add at {node!r} is not supported")
        e = max(e1.e, e2.e)
        e1, e2 = e1.scaled(e - e1.e), e2.scaled(e - e2.e)
        parts = [None if x is None else x + sign * y for x, y in zip(e1.parts(), e2.parts())]
        new = self._normalise(_Expr(*parts, e=e, dzero=e1.dzero and e2.dzero))
        self._check(new, f"add {node!r}")
        self.expr[node] = new
        self.pending_ops[node] = self.pending_ops.get(a, ()) + self.pending_ops.get(b, ()) + ("add",)
        self.norms[node] = ()

    def _close(self, blocks, name, ops, fnorms, relu_flags):
        Ms, bs, Mhs, bhs, dMs, dbs = [], [], [], [], [], []
        for ex in blocks:
            n = self.state_dim
            Ms.append(ex.Mt.reshape(n, -1).T.numpy())
            bs.append(ex.b.reshape(-1).numpy())
            if self.pair:
                Mhs.append(ex.Mth.reshape(n, -1).T.numpy())
                bhs.append(ex.bh.reshape(-1).numpy())
                dMs.append(ex.dMt.reshape(n, -1).T.numpy())
                dbs.append(ex.db.reshape(-1).numpy())
        relu = np.concatenate(relu_flags)
        self.stages.append(Stage(M=np.vstack(Ms), b=np.concatenate(bs), relu=relu, name=name, ops=ops,
                                 factor_norms=fnorms))
        if self.pair:
            self.hstages.append(Stage(M=np.vstack(Mhs), b=np.concatenate(bhs), relu=relu, name=name, ops=ops,
                                      factor_norms=(), dM=np.vstack(dMs), db=np.concatenate(dbs)))

    def concat(self, node: str, args, dim: int):
        """torch.cat along a non-batch axis (``dim`` counts the batch axis): the expressions side by side."""
        import torch

        exs = [self._get(a) for a in args]
        for a in args:
            self.consume(a)
        e = max(x.e for x in exs)
        exs = [x.scaled(e - x.e) for x in exs]
        parts = []
        for j in range(6):
            ts = [x.parts()[j] for x in exs]
            parts.append(None if ts[0] is None else torch.cat(ts, dim=dim))
        new = self._normalise(_Expr(*parts, e=e, dzero=all(x.dzero for x in exs)))
        self._check(new, f"concat {node!r}")
        self.expr[node] = new
        self.pending_ops[node] = sum((self.pending_ops.get(a, ()) for a in args), ()) + ("concat",)
        self.norms[node] = ()

    def max_pool(self, node: str, arg: str, op, label: str, then_relu: bool = False):
        """THEORY §12.7: max over each window as a balanced tree of max(a, b) = b + ReLU(a - b): every level is one
        ReLU stage (the differences a - b) with the b's carried; exact, so every §12 certificate applies.
        ``then_relu``: ``arg`` is the pre-activation of a ReLU whose only consumer is this pooling (Statement 12.64:
        max_i ReLU(z_i) = ReLU(max_i z_i)): the tree runs on the pre-activations and one ReLU stage on the pooled
        values follows the block."""
        # stage breaks before and after the tree: stages [first, last] then map (pool input, carried values) to
        # (pool output, carried values), a map with Lipschitz constant max(sqrt(c_max), 1) and value 0 at 0 (§12.7)
        pre = f"{node}#in"
        self.users_left[pre] = 1
        self.relu(pre, arg, is_relu=False)
        arg = pre
        first = len(self.stages)
        ex = self._get(arg)
        in_shape = tuple(ex.b.shape[1:])
        win, out_shape = max_pool_windows(op, in_shape)
        idx = __import__("torch").as_tensor(win)
        gather = _Fn(lambda x: x.reshape(x.shape[0], -1)[:, idx], label)
        tag = f"{node}#mp"
        self.users_left[tag + "0"] = 1
        self.affine(tag + "0", arg, gather, gather, label + " windows", 1.0)
        level, cur = 0, tag + "0"
        while self.expr[cur].b.shape[-1] > 1:
            K = self.expr[cur].b.shape[-1]
            if K % 2:  # odd: repeat the last candidate (max(a, a) = a)
                pad = _Fn(lambda x: __import__("torch").cat([x, x[..., -1:]], dim=-1), label)
                nxt = f"{tag}{level}p"
                self.users_left[nxt] = 1
                self.affine(nxt, cur, pad, pad, label + " pad", 1.0)
                cur = nxt
            self.users_left[cur] += 1  # used twice: differences and the carried b's
            dname, bname, rname, cname = (f"{tag}{level}{c}" for c in "dbrc")
            diff = _Fn(lambda x: x[..., 0::2] - x[..., 1::2], label)
            base = _Fn(lambda x: x[..., 1::2], label)
            self.users_left.update({dname: 1, bname: 1, rname: 1, cname: 1})
            self.affine(dname, cur, diff, diff, label + f" a-b (level {level})", math.sqrt(2.0))
            self.affine(bname, cur, base, base, label + " b", 1.0)
            self.relu(rname, dname)
            self.add(cname, rname, bname)
            cur, level = cname, level + 1
        shape = _Fn(lambda x: x.reshape(x.shape[0], *out_shape), label)
        post = f"{node}#out"
        self.users_left[post] = 1
        self.affine(post, cur, shape, shape, label + " reshape", 1.0)
        pooled = f"{node}#pooled" if then_relu else node
        if then_relu:
            self.users_left[pooled] = 1
        self.relu(pooled, post, is_relu=False)  # the pool's output, now a block of the state
        cnt = np.zeros(int(np.prod(in_shape)), int)
        for row in win:
            cnt[np.unique(row)] += 1  # windows containing each input element (repeats counted once)
        L = max(math.sqrt(float(cnt.max())), 1.0) * (1 + 1e-12)
        self.lip_blocks.append((first, len(self.stages) - 1, L))
        if then_relu:  # after the block (whose slope products Statement 12.41 reads): ReLU of the pooled values
            self.relu(node, pooled)

    def alias(self, node: str, arg: str):
        """node = arg (a ReLU moved past the max pooling that is its only consumer, Statement 12.64)."""
        self.expr[node] = self._get(arg)
        self.consume(arg)
        self.pending_ops[node] = self.pending_ops.get(arg, ())
        self.norms[node] = self.norms.get(arg, ())

    def relu(self, node: str, arg: str, is_relu: bool = True):
        """Close a stage: [ReLU (or identity, ``is_relu`` False) of arg's expression; carried live values]."""
        import torch

        self._get(arg)
        self.consume(arg)
        live = [k for k in self.expr if k != arg and self.users_left.get(k, 0) > 0]
        blocks = [(node, arg, is_relu)] + [(k, k, False) for k in live]
        if self.users_left.get(arg, 0) > 0:  # the activation's input is itself still needed later
            blocks.append((arg, arg, False))
        exprs = [self.expr[src] for _, src, _ in blocks]
        flags = [np.full(int(np.prod(ex.b.shape[1:])), is_relu) for ex, (_, _, is_relu) in zip(exprs, blocks)]
        self._close(exprs, f"stage{len(self.stages)}:{node}", self.pending_ops.get(arg, ()) + (("relu",) if is_relu
                                                                                             else ("(stage break)",)),
                    self.norms.get(arg, ()), flags)
        new_dim = self.stages[-1].M.shape[0]
        new_expr = {}
        off = 0
        for (out_name, _, _), ex in zip(blocks, exprs):
            shp = tuple(ex.b.shape[1:])
            k = int(np.prod(shp))
            Mt = torch.zeros(new_dim, k, dtype=torch.float64)
            Mt[off:off + k] = torch.eye(k, dtype=torch.float64)
            Mt = Mt.reshape(new_dim, *shp)
            b = torch.zeros(1, *shp, dtype=torch.float64)
            # the new state coordinates of this block are 2^-e times the true values: the expression keeps e
            new_expr[out_name] = (_Expr(Mt, b, Mt, b, torch.zeros_like(Mt), torch.zeros_like(b), ex.e, dzero=True,
                                        ident=(off, k))
                                  if self.pair else _Expr(Mt, b, e=ex.e, ident=(off, k)))
            off += k
        self.expr = new_expr
        self.pending_ops = {}
        self.norms = {}
        self.state_dim = new_dim

    def output(self, node: str, in_shape: tuple, source: str):
        ex = self._get(node)
        self._close([ex], f"stage{len(self.stages)}:output", self.pending_ops.get(node, ()),
                    self.norms.get(node, ()), [np.zeros(int(np.prod(ex.b.shape[1:])), bool)])
        for st in self.stages + self.hstages:
            if not (np.all(np.isfinite(st.M)) and np.all(np.isfinite(st.b))):
                raise ProbPruneError(f"{self.name}: non-finite weights in {st.name}")
        lb = tuple(self.lip_blocks)
        C = Chain(stages=tuple(self.stages), input_shape=tuple(in_shape), source=source, scale_exp=int(ex.e),
                  lip_blocks=lb)
        if not self.pair:
            return C
        return C, Chain(stages=tuple(self.hstages), input_shape=tuple(in_shape), source=source,
                        scale_exp=int(ex.e), lip_blocks=lb)


class _Fn:
    """A parameter-free linear map used inside the lowering (max-pool trees, concatenation)."""

    kind = "internal"

    def __init__(self, fn, where: str):
        self.forward, self.where = fn, where


def max_pool_windows(op, in_shape: tuple) -> np.ndarray:
    """(n_out, K) flat indices into the pool's input of the real (non-padding) elements of every window, rows padded
    with repeats of their first element (max(a, a) = a); checked against the op's own forward (fail closed)."""
    import torch
    import torch.nn.functional as tF

    from probprune.net import ops as O

    kw = dict(op.kwargs)
    if kw.get("return_indices"):
        raise UnsupportedLayerError(f"max pooling {op.where}: return_indices is not supported")
    spatial = tuple(int(v) for v in in_shape[1:])
    nd = len(spatial)
    k, s, p, d = O.pool_params(kw, nd)
    C = int(in_shape[0])
    n_in = int(np.prod(in_shape))
    with torch.no_grad():
        out_shape = tuple(op.forward(torch.zeros((1, *in_shape), dtype=torch.float64)).shape[1:])
    if nd == 1:
        spatial, k, s, p, d, out_sp = (1,) + spatial, (1,) + k, (1,) + s, (0,) + p, (1,) + d, (1,) + out_shape[1:]
    else:
        out_sp = out_shape[1:]
    img = torch.arange(n_in, dtype=torch.float64).reshape(1, C, *spatial)
    ext = [max((o - 1) * st + dd * (kk - 1) + 1 - pp, n) for o, st, dd, kk, pp, n in zip(out_sp, s, d, k, p, spatial)]
    img = tF.pad(img, (p[1], ext[1] - spatial[1], p[0], ext[0] - spatial[0]), value=-1.0)
    cols = tF.unfold(img, kernel_size=k, dilation=d, stride=s)  # (1, C*kh*kw, L)
    L = int(np.prod(out_sp))
    cols = cols.reshape(C, k[0] * k[1], -1)[:, :, :L]
    if cols.shape[2] != L:
        raise UnsupportedLayerError(f"max pooling {op.where}: cannot reproduce its windows")
    win = cols.permute(0, 2, 1).reshape(C * L, k[0] * k[1]).numpy().astype(np.int64)  # output order (c, h, w)
    first = np.where(win >= 0, win, np.iinfo(np.int64).max).min(axis=1)
    if np.any(first == np.iinfo(np.int64).max):
        raise UnsupportedLayerError(f"max pooling {op.where}: a window without real input elements")
    win = np.where(win >= 0, win, first[:, None])
    # independent check on random inputs: the gathered maxima equal torch's pooling
    g = torch.Generator().manual_seed(0)
    x = torch.randn((3, *in_shape), dtype=torch.float64, generator=g)
    ref = op.forward(x).reshape(3, -1)
    got = x.reshape(3, -1)[:, torch.as_tensor(win)].amax(-1)
    if not torch.equal(ref, got):
        raise UnsupportedLayerError(f"max pooling {op.where}: the window decomposition does not reproduce it")
    return win, out_shape


def torch_isfinite(t):
    import torch

    return torch.isfinite(t).all()


def _op_arrays(op, oph):
    """The parameter arrays of an operation (for the pre-scaling of products)."""
    from probprune.net import ops as O

    out = []
    for o in (op, oph):
        if o is None:
            continue
        if isinstance(o, O.Affine):
            out.append(o.effective_weight())
        elif isinstance(o, O.ChannelAffine):
            out.append(o.scale)
    return out


def lower_torch(model, input_shape: Sequence[int], name: str = "model") -> Chain:
    """Lower a torch model to a :class:`Chain` (§12.1) through the package's one model reader:
    :func:`probprune.net.trace.from_torch` (torch.fx tracing, BatchNorm folded, forward verified, unsupported
    operations refused by name), then :func:`lower_graph`."""
    from probprune.net.trace import from_torch

    m = copy.deepcopy(model).double().eval()
    return lower_graph(from_torch(m, tuple(int(v) for v in input_shape)).with_ties_from(m), name)


def relu_pool_pairs(graph) -> frozenset:
    """Names of the ReLU nodes whose only consumer is a max pooling (Statement 12.64 may move them past it)."""
    from probprune.net.activations import activation

    relu, cons = activation("relu"), graph.consumers
    by_name = {n.name: n for n in graph.nodes}
    return frozenset(n.name for n in graph.nodes if n.op.lowering == "act" and n.op.act == relu
                     and len(cons[n.name]) == 1 and by_name[cons[n.name][0]].op.lowering == "max_pool"
                     and n.name != graph.output)


def _run_engine(graph, pruned, name: str, op_norms: bool = True, commute_relu_pool: bool = False):
    """Feed the nodes of ``graph`` (and, for a pair, the matching nodes of ``pruned``) to the engine, dispatching on
    each op class's declared ``lowering``. ``commute_relu_pool``: every ReLU whose only consumer is a max pooling is
    applied after the pooling instead (Statement 12.64; the same functions F and F_hat)."""
    from probprune.net.activations import activation
    from probprune.net.ir import graph_differences

    relu = activation("relu")  # the one activation the engine encodes exactly (the table's entry, not its name)
    if pruned is not None:
        diffs = graph_differences(graph, pruned, "pair")
        if diffs:
            raise ProbPruneError(f"F and F_hat differ in structure or beyond weights, biases and BatchNorm: {diffs[0]}"
                                 + (f" (and {len(diffs) - 1} more)" if len(diffs) > 1 else ""))
    eng = _Engine(name, {n.name: len(c) for n, c in ((n, graph.consumers[n.name]) for n in graph.nodes)},
                  pruned is not None, op_norms)
    eng.users_left[graph.output] = eng.users_left.get(graph.output, 0) + 1  # the output is used by the result
    hnodes = pruned.nodes if pruned is not None else [None] * len(graph.nodes)
    moved = relu_pool_pairs(graph) if commute_relu_pool else frozenset()
    for node, hnode in zip(graph.nodes, hnodes):
        op = node.op
        oph = None if hnode is None else hnode.op
        label = f"{op.where or node.name} ({op.kind})"
        how = op.lowering  # declared by the op class (net/ops.py): a new linear op needs no change here
        if how == "input":
            eng.input(node.name, tuple(int(v) for v in graph.input_shape))
        elif how == "add":
            eng.add(node.name, node.inputs[0], node.inputs[1], float(op.sign))
        elif how == "act":
            if node.name in moved:
                eng.alias(node.name, node.inputs[0])
            elif op.act == relu:
                eng.relu(node.name, node.inputs[0])
            elif op.act.is_identity:
                eng.affine(node.name, node.inputs[0], op, oph, label, 1.0)
            else:
                raise UnsupportedLayerError(f"{name}: activation {op.act.name!r} at {label} is not ReLU; the tight "
                                            "certificates refuse it")
        elif how == "max_pool":
            eng.max_pool(node.name, node.inputs[0], op, label, then_relu=node.inputs[0] in moved)
        elif how == "concat":
            eng.concat(node.name, node.inputs, int(op.dim))
        elif how == "affine":
            if len(node.inputs) != 1:
                raise UnsupportedLayerError(f"{name}: {label} must take exactly one input")
            eng.affine(node.name, node.inputs[0], op, oph, label)
        else:
            raise UnsupportedLayerError(f"{name}: graph operation {label} is not supported by the tight certificates")
    return eng.output(graph.output, tuple(int(v) for v in graph.input_shape), "lowering of a probprune.net Graph")


def lower_graph(graph, name: str = "model", op_norms: bool = True) -> Chain:
    """Lower a :class:`probprune.net.ir.Graph` (issue 10's traced IR; BatchNorm already folded) to a
    :class:`Chain` (§12.1): affine/average-pool/reshape/gain/shift nodes are composed exactly, ``add`` nodes too,
    ReLU activations close stages; max pooling and other activations are refused by name. Power-of-two rescaling
    keeps the composition in float64's normal range (``Chain.scale_exp``); under/overflow is refused. ``op_norms``
    False: the per-operation norms (``Stage.factor_norms``, diagnostics only) are nan and not computed (the
    certified budget's F_hat lowerings); the stages are the same arrays."""
    return _run_engine(graph, None, name, op_norms)


ERROR_RANGE_EXP = 200  # tight certificates refuse a pruning error below 2^-200 of the network's scale (§12.1)


def stage_diff(F: Chain, Fhat: Chain, i: int) -> tuple[np.ndarray, np.ndarray]:
    """(E_i, b_i - bhat_i) of stage i: composed from the weight differences when the pair was lowered together
    (:func:`lower_graph_pair`), else the difference of the two stages."""
    sh = Fhat.stages[i]
    if sh.dM is not None:
        return sh.dM, sh.db
    s = F.stages[i]
    return s.M - sh.M, s.b - sh.b


def check_error_range(F: Chain, Fhat: Chain) -> None:
    """Refuse (fail closed) when the pruning error is so small against the network's scale that squares in the
    tight certificates could underflow (e.g. weights ~1e43 with one pruned entry ~1e-127: the error is ~1e-170 of the
    network's scale): ``ProbPruneError`` naming the ratio; Cert-D (§8.2, its own underflow trap) still applies."""
    scale = max(max(float(np.max(np.abs(s.M), initial=0.0)), float(np.max(np.abs(s.b), initial=0.0)))
                for s in F.stages + Fhat.stages)
    err = max(max(float(np.max(np.abs(E), initial=0.0)), float(np.max(np.abs(db), initial=0.0)))
              for E, db in (stage_diff(F, Fhat, i) for i in range(F.depth)))
    if err > 0 and scale > 0 and err < scale * 2.0 ** -ERROR_RANGE_EXP:
        raise ProbPruneError(f"the pruning changes the composed network by {err / scale:.3g} of its scale (< 2^-"
                             f"{ERROR_RANGE_EXP}); the tight certificates would underflow float64 and refuse it")


def pruned_copy(model, masks: Mapping[str, np.ndarray]):
    """A deep copy of ``model`` with parameter ``p`` multiplied by ``masks[p]`` (True/1 = kept)."""
    import torch

    m = copy.deepcopy(model)
    params = dict(m.named_parameters(remove_duplicate=False))  # tied names too: one storage, masked once
    unknown = set(masks) - set(params)
    if unknown:
        raise ProbPruneError(f"mask for unknown parameter(s): {sorted(unknown)}")
    seen: dict = {}
    for k, mk in masks.items():
        key = params[k].data_ptr()
        if key in seen and not np.array_equal(np.asarray(seen[key][1]), np.asarray(mk)):
            raise ProbPruneError(f"masks for {seen[key][0]!r} and {k!r} differ, but the two names share one tensor")
        seen[key] = (k, mk)
    with torch.no_grad():
        for k, mk in {v[0]: v[1] for v in seen.values()}.items():
            mk = torch.as_tensor(np.asarray(mk), dtype=params[k].dtype)
            if mk.shape != params[k].shape:
                raise ProbPruneError(f"mask for {k!r} has shape {tuple(mk.shape)}, parameter {tuple(params[k].shape)}")
            params[k].mul_(mk)
    return m


def lower_graph_pair(graph, pruned_graph, commute_relu_pool: bool = False) -> tuple[Chain, Chain]:
    """Lower a graph and its pruned copy (``graph.with_masks`` / ``with_weights``) to chains of the same structure.
    ``commute_relu_pool``: ReLUs whose only consumer is a max pooling are applied after it (Statement 12.64)."""
    C, Ch = _run_engine(graph, pruned_graph, "F, F_hat", commute_relu_pool=commute_relu_pool)
    if not C.same_structure(Ch):
        raise ProbPruneError("F and F_hat lower to chains of different structure")
    check_error_range(C, Ch)
    return C, Ch


def lower_pair(model, pruned_model, input_shape: Sequence[int]) -> tuple[Chain, Chain]:
    """Lower F and F_hat; both must give chains of the same structure (same stages, same ReLU coordinates)."""
    from probprune.net.trace import from_torch

    shp = tuple(int(v) for v in input_shape)
    m, mh = copy.deepcopy(model).double().eval(), copy.deepcopy(pruned_model).double().eval()
    g = from_torch(m, shp).with_ties_from(m)
    gh = from_torch(mh, shp).with_ties_from(mh)
    return lower_graph_pair(g, gh)
