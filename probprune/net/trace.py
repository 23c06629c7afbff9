"""Reading a ``torch.nn.Module`` into the network graph with ``torch.fx`` symbolic tracing (THEORY.md §8).

What is certified is what ``forward`` computes: module calls (``call_module``) and functional calls
(``F.relu``, ``torch.relu``, ``x.relu()``, ``x.view``, ``torch.flatten``, ``+``, ...) become nodes of
:mod:`probprune.net.ops`. Anything else is refused with :class:`~probprune.core.errors.UnsupportedLayerError` naming
the operation and its place: unknown modules (LSTM, MultiheadAttention, ...), unknown functions, parameters used
directly in ``forward``, custom autograd Functions, data-dependent control flow (a ``TraceError``).

After building, :meth:`Graph.forward` is compared with ``model(x)`` (a float64 copy) on seeded random inputs; a
mismatch raises :class:`~probprune.core.errors.ProbPruneError` ("IR does not reproduce the model's forward"), never a
certificate. BatchNorm (eval) is folded into the preceding Linear/Conv when that layer's output feeds only the BN.
"""
from __future__ import annotations

import contextlib
import copy
import math
import operator
from dataclasses import replace
from functools import lru_cache
from typing import Sequence

import numpy as np

from probprune.core.errors import ProbPruneError, UnsupportedLayerError
from probprune.net.activations import activation
from probprune.net import ops as O
from probprune.net.ir import Graph, Node, make_pool_node

_N_EXAMPLE = 2  # batch size of the example values propagated while building
_CHECK_SEEDS = (0, 1, 2)


# --------------------------------------------------------------------------------------------- tracing
@contextlib.contextmanager
def _refuse_autograd_functions():
    """While tracing, a custom ``torch.autograd.Function.apply`` raises (fx would otherwise inline its forward and
    silently certify whatever it happens to compute symbolically)."""
    import torch
    import torch.fx as fx

    Fn = torch.autograd.Function
    orig = Fn.__dict__["apply"]

    def apply(cls, *args, **kwargs):
        if any(isinstance(a, fx.Proxy) for a in args) or any(isinstance(a, fx.Proxy) for a in kwargs.values()):
            raise UnsupportedLayerError(f"unsupported operation: custom autograd Function {cls.__name__!r} "
                                        "(its forward is opaque to the certificate)")
        return orig.__func__(cls, *args, **kwargs)

    Fn.apply = classmethod(apply)
    try:
        yield
    finally:
        Fn.apply = orig


def _fx_trace(model):
    import torch.fx as fx
    import torch.nn as nn

    class Tracer(fx.Tracer):
        def is_leaf_module(self, m, qualname):
            # torch's own modules are leaves (then accepted or refused by type); user modules and Sequential
            # containers are traced through, so their own forward is what is read
            if isinstance(m, nn.Sequential) and type(m).forward is nn.Sequential.forward:
                return False
            return getattr(type(m).forward, "__module__", "").startswith("torch.")

    import inspect

    tracer = Tracer()
    # forward(self, x, flag=default, ...): trace with the defaults (what model(x) runs); a second required input is
    # refused below (more than one placeholder)
    concrete = {}
    try:
        params = list(inspect.signature(model.forward).parameters.values())[1:]
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        params = []
    for prm in params:
        if prm.default is not inspect.Parameter.empty and prm.kind in (prm.POSITIONAL_OR_KEYWORD, prm.KEYWORD_ONLY):
            concrete[prm.name] = prm.default
    try:
        with _refuse_autograd_functions():
            graph = tracer.trace(model, concrete_args=concrete or None)
    except UnsupportedLayerError:
        raise
    except fx.proxy.TraceError as exc:
        raise UnsupportedLayerError(f"unsupported model: data-dependent control flow in forward ({exc}); torch.fx "
                                    "cannot trace it, so the certificate cannot know what forward computes") from None
    except Exception as exc:  # anything the tracer cannot follow
        raise UnsupportedLayerError(f"unsupported model: torch.fx cannot trace forward ({type(exc).__name__}: "
                                    f"{str(exc).splitlines()[0][:200] if str(exc) else ''})") from None
    return graph


# --------------------------------------------------------------------------------------------- helpers
def _arg(node, i: int, name: str, default=None):
    if len(node.args) > i:
        return node.args[i]
    return node.kwargs.get(name, default)


def _np(t) -> np.ndarray:
    return t.detach().cpu().double().numpy().copy()


def _fn_name(target) -> str:
    if isinstance(target, str):
        return target
    mod = getattr(target, "__module__", None) or ""
    return f"{mod}.{getattr(target, '__name__', repr(target))}".lstrip(".")


@lru_cache(maxsize=None)
def _act_functions():
    import torch
    import torch.nn.functional as F

    return {
        F.relu: "relu", torch.relu: "relu", torch.relu_: "relu", F.relu_: "relu",
        torch.tanh: "tanh", F.tanh: "tanh",
        torch.sigmoid: "sigmoid", F.sigmoid: "sigmoid",
        F.leaky_relu: "leaky_relu", F.hardtanh: "hardtanh",
    }


_ACT_METHODS = {"relu": "relu", "relu_": "relu", "tanh": "tanh", "tanh_": "tanh", "sigmoid": "sigmoid",
                "sigmoid_": "sigmoid"}
_RESHAPE_METHODS = {"view", "reshape", "flatten", "squeeze", "unsqueeze", "view_as", "reshape_as"}
_META_METHODS = {"size", "dim", "numel"}


# --------------------------------------------------------------------------------------------- builder
class _Builder:
    """Turns an fx graph into a :class:`Graph`: one handler per module type / torch callable / tensor method, looked
    up in the tables :func:`_module_table`, :func:`_function_table` and :data:`_METHOD_TABLE` (adding an operation:
    its op class in :mod:`probprune.net.ops`, a handler here, one table entry)."""

    def __init__(self, model, input_shape):
        import torch

        self.model = model
        self.input_shape = tuple(int(v) for v in input_shape)
        self.nodes: list[Node] = []
        self.name_of: dict = {}  # fx node -> graph node name (tensor values)
        self.val: dict = {}  # fx node -> example value (tensor, or python value for meta nodes)
        self.meta: set = set()  # fx nodes holding shapes / ints
        g = torch.Generator().manual_seed(12345)
        self.x0 = torch.randn((_N_EXAMPLE, *self.input_shape), generator=g, dtype=torch.float64)

    # ---------------------------------------------------------------- node creation
    def add(self, fxn, op: O.Op, inputs: Sequence[str]):
        vals = [self.val_of(u) for u in inputs]
        try:
            out = op.forward(*vals)
        except RuntimeError as exc:
            raise ProbPruneError(f"forward fails at node {fxn.name!r} ({op.where}) for input_shape "
                                 f"{self.input_shape}: {str(exc).splitlines()[0][:160]}") from None
        n = Node(fxn.name, op, tuple(inputs), tuple(out.shape[1:]))
        self.nodes.append(n)
        self.name_of[fxn] = n.name
        self.val[n.name] = out
        return n

    def add_node(self, fxn, node: Node):
        self.nodes.append(node)
        self.name_of[fxn] = node.name
        self.val[node.name] = node.op.forward(*(self.val[u] for u in node.inputs))

    def alias(self, fxn, src):
        self.name_of[fxn] = self.name_of[src]

    def val_of(self, name: str):
        return self.val[name]

    def is_tensor(self, a) -> bool:
        import torch.fx as fx

        return isinstance(a, fx.Node) and a not in self.meta

    def tensor_in(self, fxn, a, where: str) -> str:
        import torch.fx as fx

        if not isinstance(a, fx.Node) or a in self.meta:
            raise UnsupportedLayerError(f"unsupported operation {where} at node {fxn.name!r}: expected a tensor input")
        if a not in self.name_of:
            raise UnsupportedLayerError(f"unsupported operation {where} at node {fxn.name!r}: input {a.name!r} is not "
                                        "a network value")
        return self.name_of[a]

    def shape_of(self, name: str) -> tuple:
        return tuple(self.val[name].shape[1:])

    def dim_of(self, name: str) -> int:
        return int(np.prod(self.shape_of(name)))

    def concrete(self, a):
        import torch.fx as fx

        if isinstance(a, fx.Node):
            if a in self.meta:
                return self.val[a]
            return self.val[self.name_of[a]]
        if isinstance(a, (tuple, list)):
            return type(a)(self.concrete(v) for v in a)
        return a

    def call_args(self, n):
        """The concrete extra positional and keyword arguments of a call (everything after the tensor)."""
        return self.concrete(n.args[1:]), {k: self.concrete(v) for k, v in n.kwargs.items()}

    @staticmethod
    def refuse(n, where: str, why: str = ""):
        raise UnsupportedLayerError(f"unsupported operation {where} at node {n.name!r}" + (f": {why}" if why else ""))

    # ---------------------------------------------------------------- main loop
    def build(self, fx_graph) -> Graph:
        out_name = None
        for n in fx_graph.nodes:
            if n.op == "placeholder":
                if n.args:  # a defaulted argument fixed to its default by concrete_args: a constant
                    self.meta.add(n)
                    self.val[n] = n.args[0]
                    continue
                if self.nodes:
                    raise UnsupportedLayerError(f"unsupported model: more than one input ({n.name!r})")
                self.nodes.append(Node(n.name, O.Input(where="input"), (), self.input_shape))
                self.name_of[n] = n.name
                self.val[n.name] = self.x0
            elif n.op == "get_attr":
                raise UnsupportedLayerError(f"unsupported operation: parameter or buffer {n.target!r} used directly in "
                                            "forward (only Linear/Conv/BatchNorm modules may hold parameters)")
            elif n.op == "call_module":
                self.module(n)
            elif n.op in ("call_function", "call_method"):
                self.function(n)
            elif n.op == "output":
                a = n.args[0]
                out_name = self.tensor_in(n, a, "output (a single tensor)")
            else:  # pragma: no cover
                raise UnsupportedLayerError(f"unsupported fx node kind {n.op!r} ({n.name!r})")
        if out_name is None:
            raise UnsupportedLayerError("the traced model has no output")
        g = Graph(tuple(self.nodes), self.input_shape, out_name)
        return _prune_unused(_fold_batchnorm(g))

    # ---------------------------------------------------------------- modules
    def module(self, n):
        m = self.model.get_submodule(n.target)
        where = f"{n.target!r} ({type(m).__name__})"
        if len(n.args) != 1 or n.kwargs:
            raise UnsupportedLayerError(f"unsupported call of module {where}: one tensor argument expected")
        u = self.tensor_in(n, n.args[0], where)
        handler = _module_handler(m)
        if handler is None:
            raise UnsupportedLayerError(f"unsupported layer {where}: supported are {_SUPPORTED_LEAVES_TEXT}")
        handler(self, n, m, u, self.shape_of(u), where)

    def m_linear(self, n, m, u, shp, where):
        if len(shp) != 1:
            raise UnsupportedLayerError(f"unsupported layer {where}: Linear applied to a tensor of shape {shp} "
                                        "per sample (flatten first)")
        op = O.Affine(where=n.target, fqn=f"{n.target}.weight" if n.target else "weight", layer="linear",
                      weight=_np(m.weight), bias=None if m.bias is None else _np(m.bias), in_shape=shp,
                      out_shape=(m.out_features,))
        self.add(n, op, [u])

    def m_conv(self, n, m, u, shp, where):
        import torch.nn as nn

        nd = 1 if isinstance(m, nn.Conv1d) else 2
        if m.padding_mode != "zeros":
            raise UnsupportedLayerError(f"unsupported layer {where}: padding_mode={m.padding_mode!r} (only zero "
                                        "padding is supported)")
        if len(shp) != nd + 1:
            raise UnsupportedLayerError(f"unsupported layer {where}: input of shape {shp} per sample")
        op = O.Affine(where=n.target, fqn=f"{n.target}.weight", layer=f"conv{nd}d", weight=_np(m.weight),
                      bias=None if m.bias is None else _np(m.bias), stride=tuple(m.stride),
                      padding=m.padding if isinstance(m.padding, str) else tuple(m.padding),
                      dilation=tuple(m.dilation), groups=int(m.groups), in_shape=shp)
        node = self.add(n, op, [u])
        self.nodes[-1] = replace(node, op=replace(op, out_shape=node.out_shape))

    def m_batchnorm(self, n, m, u, shp, where):
        if m.training:
            raise UnsupportedLayerError(f"unsupported layer {where}: BatchNorm in training mode (call model.eval())")
        if m.running_mean is None or m.running_var is None:
            raise UnsupportedLayerError(f"unsupported layer {where}: BatchNorm without running statistics")
        var, mu = _np(m.running_var), _np(m.running_mean)
        gamma = _np(m.weight) if m.weight is not None else np.ones_like(mu)
        beta = _np(m.bias) if m.bias is not None else np.zeros_like(mu)
        s = gamma / np.sqrt(var + m.eps)
        spatial = int(np.prod(shp[1:])) if len(shp) > 1 else 1
        self.add(n, O.ChannelAffine(where=f"{n.target} ({type(m).__name__})", scale=s, shift=beta - mu * s,
                                    spatial=spatial), [u])

    def m_act(self, n, m, u, shp, where):
        name = _MODULE_ACTS[type(m).__name__]
        if name == "hardtanh" and (float(m.min_val), float(m.max_val)) != (-1.0, 1.0):
            raise UnsupportedLayerError(f"unsupported layer {where}: Hardtanh with bounds other than [-1, 1]")
        act = activation(name, m.negative_slope) if name == "leaky_relu" else activation(name)
        self.add(n, O.Act(where=n.target, act=act, dim=int(np.prod(shp))), [u])

    def m_identity(self, n, m, u, shp, where):
        import torch.nn as nn

        if m.training and not isinstance(m, nn.Identity):
            raise UnsupportedLayerError(f"unsupported layer {where}: Dropout in training mode (call model.eval())")
        self.alias(n, n.args[0])

    def m_pool(self, n, m, u, shp, where):
        import torch.nn as nn
        import torch.nn.functional as F

        where = f"{n.target} ({type(m).__name__})"
        if isinstance(m, (nn.MaxPool1d, nn.MaxPool2d)):
            if m.return_indices:
                raise UnsupportedLayerError(f"unsupported layer {where}: return_indices=True")
            kind, fn = "max", (F.max_pool1d if isinstance(m, nn.MaxPool1d) else F.max_pool2d)
            kw = {"kernel_size": m.kernel_size, "stride": m.stride, "padding": m.padding, "dilation": m.dilation,
                  "ceil_mode": bool(m.ceil_mode)}
        elif isinstance(m, (nn.AvgPool1d, nn.AvgPool2d)):
            kind, fn = "avg", (F.avg_pool1d if isinstance(m, nn.AvgPool1d) else F.avg_pool2d)
            kw = {"kernel_size": m.kernel_size, "stride": m.stride, "padding": m.padding, "ceil_mode": bool(m.ceil_mode),
                  "count_include_pad": bool(m.count_include_pad)}
            if isinstance(m, nn.AvgPool2d):
                kw["divisor_override"] = m.divisor_override
        else:  # AdaptiveAvgPool1d/2d
            kind, fn = "avg", (F.adaptive_avg_pool1d if isinstance(m, nn.AdaptiveAvgPool1d) else F.adaptive_avg_pool2d)
            kw = {"output_size": m.output_size}
        self.add_node(n, make_pool_node(n.name, kind, fn, kw, u, shp, where))

    def m_reshape(self, n, m, u, shp, where):
        self.reshape(n, u, lambda x: m(x), where)

    # ---------------------------------------------------------------- reshapes
    def reshape(self, n, u: str, fn, where: str):
        x = self.val[u]
        y = fn(x)
        B = x.shape[0]
        if y.dim() < 1 or y.shape[0] != B or y.numel() != x.numel() or not bool(
                (y.reshape(B, -1) == x.reshape(B, -1)).all()):
            raise UnsupportedLayerError(f"unsupported operation {where} at node {n.name!r}: a reshape that does not keep "
                                        "the batch axis")
        self.add(n, O.Reshape(where=where, shape=tuple(y.shape[1:])), [u])

    # ---------------------------------------------------------------- functions and methods
    def function(self, n):
        t = n.target
        where = f"{'method ' if n.op == 'call_method' else ''}{_fn_name(t)}"
        if n.op == "call_function" and getattr(t, "__name__", "") in ("_assert_is_none", "_assert") and not n.users:
            return  # fx's guards on arguments specialised to their defaults
        if self.is_meta(n):
            return self.meta_value(n, where)
        table = _METHOD_TABLE if n.op == "call_method" else _function_table()
        handler = table.get(t)
        if handler is None:
            self.refuse(n, where)
        handler(self, n, t, where)

    def is_meta(self, n) -> bool:
        """Shapes and integers (x.size(0), x.shape[1], ...): evaluated on the example, usable by reshapes only."""
        import torch.fx as fx

        t, args = n.target, list(n.args) + list(n.kwargs.values())
        tensor_args = [a for a in args if self.is_tensor(a)]
        return (n.op == "call_method" and t in _META_METHODS) or (n.op == "call_function" and t is getattr) or (
            not tensor_args and any(isinstance(a, fx.Node) for a in args))

    def meta_value(self, n, where: str):
        import torch

        t = n.target
        if n.op == "call_function" and t not in (getattr, operator.getitem, operator.mul, operator.add,
                                                 operator.sub, operator.floordiv, math.prod, operator.eq):
            raise UnsupportedLayerError(f"unsupported operation {where} at node {n.name!r} on shapes")
        args = self.concrete(n.args)
        kwargs = {k: self.concrete(v) for k, v in n.kwargs.items()}
        v = getattr(args[0], t)(*args[1:], **kwargs) if n.op == "call_method" else t(*args, **kwargs)
        if isinstance(v, torch.Tensor):
            raise UnsupportedLayerError(f"unsupported operation {where} at node {n.name!r}: a tensor attribute used "
                                        "outside the supported operations")
        self.meta.add(n)
        self.val[n] = v

    def f_act(self, n, t, where):
        name = _ACT_METHODS[t] if n.op == "call_method" else _act_functions()[t]
        u = self.tensor_in(n, n.args[0], where)
        if name == "leaky_relu":
            act = activation("leaky_relu", float(_arg(n, 1, "negative_slope", 0.01)))
        else:
            act = activation(name)
        if name == "hardtanh" and (float(_arg(n, 1, "min_val", -1.0)), float(_arg(n, 2, "max_val", 1.0))) != (-1.0, 1.0):
            self.refuse(n, where, "hardtanh bounds other than [-1, 1]")
        self.add(n, O.Act(where=where, act=act, dim=self.dim_of(u)), [u])

    def f_dropout(self, n, t, where):
        if bool(_arg(n, 2, "training", True)):
            self.refuse(n, where, "functional dropout with training=True (random in forward)")
        self.alias(n, n.args[0])

    def f_alias(self, n, t, where):
        self.alias(n, n.args[0])

    def f_add(self, n, t, where):
        """u + a v of two tensors (:class:`~probprune.net.ops.Add`) or a tensor plus a Python number (ConstShift)."""
        if len(n.args) != 2:
            self.refuse(n, where)
        a, b = n.args
        sign = -1.0 if (t if isinstance(t, str) else getattr(t, "__name__", "")) in ("sub", "sub_", "isub") else 1.0
        alpha = n.kwargs.get("alpha", 1)
        if set(n.kwargs) - {"alpha"} or not isinstance(alpha, (int, float)):
            self.refuse(n, where, "keyword arguments")
        if self.is_tensor(a) and self.is_tensor(b):
            ua, ub = self.tensor_in(n, a, where), self.tensor_in(n, b, where)
            if self.shape_of(ua) != self.shape_of(ub):
                self.refuse(n, where, f"adds tensors of shapes {self.shape_of(ua)} and {self.shape_of(ub)} "
                                      "(broadcasting)")
            self.add(n, O.Add(where=where, sign=sign * float(alpha)), [ua, ub])
        elif self.is_tensor(a) and isinstance(b, (int, float)):
            self.shift(n, self.tensor_in(n, a, where), sign * float(alpha) * float(b), where)
        elif self.is_tensor(b) and isinstance(a, (int, float)) and sign == 1.0 and alpha == 1:
            self.shift(n, self.tensor_in(n, b, where), float(a), where)
        else:
            self.refuse(n, where, "only tensor +/- tensor of the same shape, or +/- a Python number")

    def shift(self, n, u: str, c: float, where: str):
        self.add(n, O.ConstShift(where=where, t=c, t_norm=abs(c) * math.sqrt(np.prod(self.shape_of(u)))), [u])

    def f_mul(self, n, t, where):
        if len(n.args) != 2 or n.kwargs:
            self.refuse(n, where)
        a, b = n.args
        if isinstance(b, (int, float)) and not isinstance(b, bool):
            u, c = self.tensor_in(n, a, where), float(b)
        elif isinstance(a, (int, float)) and not isinstance(a, bool):
            u, c = self.tensor_in(n, b, where), float(a)
        else:
            self.refuse(n, where, "multiplication of two tensors (only a constant gain is supported)")
        self.add(n, O.Gain(where=where, P=abs(c), c=c), [u])

    def f_div(self, n, t, where):
        if len(n.args) != 2 or n.kwargs or not isinstance(n.args[1], (int, float)) or n.args[1] == 0:
            self.refuse(n, where)
        c = 1.0 / float(n.args[1])
        self.add(n, O.Gain(where=where, P=abs(c), c=c), [self.tensor_in(n, n.args[0], where)])

    def f_neg(self, n, t, where):
        self.add(n, O.Gain(where=where, P=1.0, c=-1.0), [self.tensor_in(n, n.args[0], where)])

    def f_pool(self, n, t, where):
        import torch.nn.functional as F

        kind, names = _function_pools()[t]
        u = self.tensor_in(n, n.args[0], where)
        kw = {nm: self.concrete(v) for nm, v in zip(names, n.args[1:])}
        kw.update({k: self.concrete(v) for k, v in n.kwargs.items()})
        if kw.pop("return_indices", False):
            self.refuse(n, where, "return_indices=True")
        if kind == "max":
            kw.setdefault("padding", 0)
            kw.setdefault("dilation", 1)
            kw.setdefault("ceil_mode", False)
            fn = F.max_pool1d if t is F.max_pool1d else F.max_pool2d
        else:
            fn = t
        self.add_node(n, make_pool_node(n.name, kind, fn, kw, u, self.shape_of(u), where))

    def f_cat(self, n, t, where):
        """Concatenation along a non-batch axis."""
        parts = _arg(n, 0, "tensors")
        dim = int(self.concrete(_arg(n, 1, "dim", 0)))
        ins = [self.tensor_in(n, a, where) for a in parts]
        nd = len(self.shape_of(ins[0])) + 1
        if dim % nd == 0:
            self.refuse(n, where, "concatenation along the batch axis")
        self.add(n, O.Concat(where=where, dim=dim % nd), ins)

    def f_reduce(self, n, t, where):
        """Means and sums over non-batch axes: linear maps with non-negative entries (Schur test)."""
        import torch

        u = self.tensor_in(n, n.args[0], where)
        nd = len(self.shape_of(u)) + 1
        dims = self.concrete(_arg(n, 1, "dim", None))
        keep = bool(self.concrete(n.kwargs.get("keepdim", n.args[2] if len(n.args) > 2 else False)))
        if dims is None or set(n.kwargs) - {"dim", "keepdim"}:
            self.refuse(n, where, "a reduction over the batch axis (give dim=...)")
        dims = tuple(int(d) % nd for d in (dims if isinstance(dims, (tuple, list)) else (dims,)))
        if 0 in dims:
            self.refuse(n, where, "a reduction over the batch axis")
        red = torch.mean if t in ("mean", torch.mean) else torch.sum
        fn = lambda x, _r=red, _d=dims, _k=keep: _r(x, dim=_d, keepdim=_k)  # noqa: E731
        self.add_node(n, make_pool_node(n.name, "avg", fn, {}, u, self.shape_of(u), where))

    def call_fn(self, n, t):
        """The call as a function of its tensor argument (the other arguments concrete)."""
        args, kwargs = self.call_args(n)
        if n.op == "call_method":
            return lambda x: getattr(x, t)(*args, **kwargs)
        return lambda x: t(x, *args, **kwargs)

    def f_permute(self, n, t, where):
        """Permutations of non-batch axes: isometries (checked on the example: each sample's entries are permuted)."""
        import torch

        u = self.tensor_in(n, n.args[0], where)
        fn = self.call_fn(n, t)
        x = self.val[u]
        B = x.shape[0]
        ids = torch.arange(x.numel(), dtype=torch.float64).reshape(x.shape)
        y = fn(ids)
        if y.shape[0] != B or not all(bool((y[b].flatten().sort().values == ids[b].flatten()).all())
                                      for b in range(B)):
            self.refuse(n, where, "moves the batch axis")
        self.add(n, O.Permute(where=where, fn=fn), [u])

    def f_reshape(self, n, t, where):
        self.reshape(n, self.tensor_in(n, n.args[0], where), self.call_fn(n, t), where)


# --------------------------------------------------------------------------------------------- dispatch tables
_MODULE_ACTS = {"ReLU": "relu", "Tanh": "tanh", "Sigmoid": "sigmoid", "LeakyReLU": "leaky_relu", "Hardtanh": "hardtanh"}


@lru_cache(maxsize=None)
def _module_table() -> dict:
    """{torch module type: handler}: the leaf modules the tracer reads (each handler checks its own conditions)."""
    import torch.nn as nn

    B = _Builder
    table = {nn.Linear: B.m_linear, nn.Conv1d: B.m_conv, nn.Conv2d: B.m_conv,
             nn.BatchNorm1d: B.m_batchnorm, nn.BatchNorm2d: B.m_batchnorm,
             nn.Identity: B.m_identity, nn.Dropout: B.m_identity, nn.Dropout1d: B.m_identity,
             nn.Dropout2d: B.m_identity, nn.Flatten: B.m_reshape, nn.Unflatten: B.m_reshape}
    table.update({getattr(nn, name): B.m_act for name in _MODULE_ACTS})
    table.update({m: B.m_pool for m in (nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d,
                                        nn.AdaptiveAvgPool2d)})
    return table


def _module_handler(m):
    """The handler for module ``m``: by exact type; subclasses only of Linear and BatchNorm (their forward is the
    base's in torch's own subclasses); None when unsupported."""
    import torch.nn as nn

    table = _module_table()
    h = table.get(type(m))
    if h is None:
        base = next((b for b in (nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d) if isinstance(m, b)), None)
        h = table.get(base)
    return h


@lru_cache(maxsize=None)
def _function_pools() -> dict:
    import torch
    import torch.nn.functional as F

    mx = ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
    av = ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad")
    return {F.max_pool1d: ("max", mx), F.max_pool2d: ("max", mx), F.avg_pool1d: ("avg", av),
            F.avg_pool2d: ("avg", av + ("divisor_override",)), torch.avg_pool1d: ("avg", av),
            F.adaptive_avg_pool1d: ("avg", ("output_size",)), F.adaptive_avg_pool2d: ("avg", ("output_size",))}


@lru_cache(maxsize=None)
def _function_table() -> dict:
    """{torch callable: handler} for ``call_function`` nodes."""
    import torch
    import torch.nn.functional as F

    B = _Builder
    table = {f: B.f_act for f in _act_functions()}
    table.update({f: B.f_pool for f in _function_pools()})
    table.update({F.dropout: B.f_dropout, F.dropout1d: B.f_dropout, F.dropout2d: B.f_dropout,
                  operator.truediv: B.f_div, torch.div: B.f_div, operator.neg: B.f_neg, torch.neg: B.f_neg,
                  torch.cat: B.f_cat, torch.concat: B.f_cat, torch.mean: B.f_reduce, torch.sum: B.f_reduce})
    table.update({f: B.f_add for f in (operator.add, operator.iadd, torch.add, operator.sub, operator.isub,
                                                torch.sub)})
    table.update({f: B.f_mul for f in (operator.mul, operator.imul, torch.mul)})
    table.update({f: B.f_permute for f in (torch.permute, torch.transpose, torch.movedim, torch.swapaxes)})
    table.update({f: B.f_reshape for f in (torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze)})
    return table


#: {tensor method name: handler} for ``call_method`` nodes
_METHOD_TABLE = {**{m: _Builder.f_act for m in _ACT_METHODS},
                 "contiguous": _Builder.f_alias,
                 **{m: _Builder.f_add for m in ("add", "add_", "sub", "sub_")},
                 **{m: _Builder.f_mul for m in ("mul", "mul_")}, "div": _Builder.f_div, "neg": _Builder.f_neg,
                 "mean": _Builder.f_reduce, "sum": _Builder.f_reduce,
                 **{m: _Builder.f_permute for m in ("permute", "transpose", "movedim", "swapaxes")},
                 **{m: _Builder.f_reshape for m in _RESHAPE_METHODS}}


# --------------------------------------------------------------------------------------------- passes
def _fold_batchnorm(g: Graph) -> Graph:
    """Fold every BatchNorm (ChannelAffine from a BN module) whose input is a weight node consumed only by it:
    W' = diag(s) W, b' = s b + t (S6). Other BatchNorms stay diagonal affine maps."""
    cons = g.consumers
    by_name = {n.name: n for n in g.nodes}
    rename: dict[str, str] = {}
    folded: dict[str, Node] = {}
    drop = set()
    for n in g.nodes:
        if isinstance(n.op, O.ChannelAffine) and len(n.inputs) == 1:
            u = by_name[n.inputs[0]]
            if isinstance(u.op, O.Affine) and not u.op.folded and cons[u.name] == [n.name] and u.name not in folded:
                folded[u.name] = replace(u, op=replace(u.op, bn_scale=n.op.scale, bn_shift=n.op.shift,
                                                       bn_fqn=n.op.where))
                rename[n.name] = u.name
                drop.add(n.name)
    if not folded:
        return g
    nodes = []
    for n in g.nodes:
        if n.name in drop:
            continue
        n = folded.get(n.name, n)
        n = replace(n, inputs=tuple(rename.get(u, u) for u in n.inputs))
        nodes.append(n)
    return Graph(tuple(nodes), g.input_shape, rename.get(g.output, g.output))


def _prune_unused(g: Graph) -> Graph:
    """Drop nodes the output does not depend on (their weights cannot change the output)."""
    need = {g.output}
    for n in reversed(g.nodes):
        if n.name in need:
            need.update(n.inputs)
    if len(need) == len(g.nodes):
        return g
    return Graph(tuple(n for n in g.nodes if n.name in need), g.input_shape, g.output)


# --------------------------------------------------------------------------------------------- entry point
def check_tensors(model) -> None:
    """Parameters **and buffers** checked before tracing, naming the first bad one (THEORY §8: the graph is read
    from the module's tensors, so a corrupt tensor is refused rather than traced): every floating parameter and
    buffer finite; every BatchNorm ``running_var`` >= 0 (a negative variance is no variance; sqrt(var + eps) would
    be NaN or a wrong scale)."""
    import torch
    import torch.nn as nn

    for name, p in model.named_parameters():
        if p.is_floating_point() and not bool(p.detach().isfinite().all()):
            raise ProbPruneError(f"parameter {name!r} contains {_bad_count(p)} NaN/inf value(s)")
    for name, b in model.named_buffers():
        if isinstance(b, torch.Tensor) and b.is_floating_point() and not bool(b.detach().isfinite().all()):
            raise ProbPruneError(f"buffer {name!r} contains {_bad_count(b)} NaN/inf value(s)")
    for name, m in model.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_var is not None:
            rv = m.running_var.detach()
            if bool((rv < 0).any()):
                raise ProbPruneError(f"buffer {(name + '.' if name else '') + 'running_var'!r} of BatchNorm "
                                     f"{name or '<root>'!r} has {int((rv < 0).sum())} negative value(s) (min "
                                     f"{float(rv.min()):.3g}): a variance cannot be negative")


def _bad_count(t) -> int:
    return int(t.numel() - int(t.detach().isfinite().sum()))


def _first_nonfinite_layer(model, x) -> str | None:
    """The first leaf module (in call order) whose float64 output is not finite while its input is: where the
    forward overflows (or turns to NaN). None when every leaf output is finite."""
    import torch

    found: list[str] = []
    hooks = []

    def hook(name):
        def f(mod, inp, out):
            if found or not isinstance(out, torch.Tensor):
                return
            ins = [a for a in inp if isinstance(a, torch.Tensor)]
            if all(bool(a.isfinite().all()) for a in ins) and not bool(out.isfinite().all()):
                found.append(f"{name!r} ({type(mod).__name__})")
        return f

    for name, mod in model.named_modules():
        if not list(mod.children()):
            hooks.append(mod.register_forward_hook(hook(name or "<root>")))
    try:
        with torch.no_grad():
            model(x)
    except Exception:  # pragma: no cover - the forward ran once already
        pass
    finally:
        for h in hooks:
            h.remove()
    return found[0] if found else None


def _nonfinite_message(model, x, ref, got) -> str:
    """Why the non-finite outputs differ: name the first layer whose output is not finite (an overflow of float64)."""
    where = _first_nonfinite_layer(model, x)
    n_ref = int(ref.numel() - int(ref.isfinite().sum()))
    if where is not None:
        return (f"the model's forward overflows float64 at layer {where} on seeded random inputs ({n_ref} of "
                f"{ref.numel()} outputs not finite; non-finite outputs differ from the IR's), so it cannot be "
                "checked or certified: scale the weights down")
    return "IR does not reproduce the model's forward: non-finite outputs differ"


def check_finite_forward(model, input_shape: Sequence[int], seeds: Sequence[int] = _CHECK_SEEDS) -> None:
    """Refuse a model whose float64 forward is not finite on seeded random inputs in the unit ball (the domain of
    every bound, THEORY §1.4), naming the first layer whose output is not finite: its error over the ball cannot be
    bounded in float64 (the certificates would overflow and refuse later with a less useful message)."""
    import torch

    m64 = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for s in seeds:
            g = torch.Generator().manual_seed(1000 + int(s))
            x = torch.randn((4, *tuple(int(v) for v in input_shape)), generator=g, dtype=torch.float64)
            x = x / x.flatten(1).norm(dim=1).max()
            y = m64(x)
            if isinstance(y, torch.Tensor) and not bool(y.isfinite().all()):
                where = _first_nonfinite_layer(m64, x) or "<output>"
                bad = int(y.numel() - int(y.isfinite().sum()))
                raise ProbPruneError(f"the model's forward overflows float64 at layer {where}: {bad} of {y.numel()} "
                                     "outputs are not finite on seeded random inputs in the unit ball, so no bound "
                                     "can be computed; scale the weights down")


def check_reproduces(graph: Graph, model, seeds: Sequence[int] = _CHECK_SEEDS, rtol: float = 1e-7) -> float:
    """Compare ``graph.forward`` with a float64 copy of ``model`` on seeded random inputs (batch of 4 per seed, plus
    the same inputs scaled into the unit ball). Returns the largest relative deviation; raises ProbPruneError when it
    exceeds ``rtol``."""
    import torch

    m64 = copy.deepcopy(model).double().eval()
    worst = 0.0
    with torch.no_grad():
        for s in seeds:
            g = torch.Generator().manual_seed(1000 + int(s))
            x = torch.randn((4, *graph.input_shape), generator=g, dtype=torch.float64)
            for xx in (x, x / x.flatten(1).norm(dim=1).max()):
                ref = m64(xx)
                if not isinstance(ref, torch.Tensor):
                    raise UnsupportedLayerError(f"the model returns a {type(ref).__name__}, not one tensor")
                got = graph.forward(xx)
                if ref.shape != got.shape:
                    raise ProbPruneError(f"IR does not reproduce the model's forward: output shape {tuple(got.shape)} "
                                         f"vs the model's {tuple(ref.shape)}")
                fin = torch.isfinite(ref) & torch.isfinite(got)
                # non-finite entries must match exactly, NaN counting equal to NaN (BLAS may turn an overflow into NaN)
                same_nonfinite = torch.where(torch.isnan(ref), torch.isnan(got), ref == got)
                if not bool((torch.isfinite(ref) == torch.isfinite(got)).all()) or not bool(same_nonfinite[~fin].all()):
                    raise ProbPruneError(_nonfinite_message(m64, xx, ref, got))
                scale = float(ref[fin].abs().max()) if fin.any() else 0.0
                dev = float((ref[fin] - got[fin]).abs().max()) if fin.any() else 0.0
                rel = dev / scale if scale > 0 else dev
                worst = max(worst, rel)
                if rel > rtol:
                    raise ProbPruneError(f"IR does not reproduce the model's forward (relative deviation {rel:.3g} on "
                                         f"seeded random inputs): refusing to certify")
    return worst


def from_torch(model, input_shape: Sequence[int] | None = None) -> Graph:
    """Trace ``model`` (put in eval mode) into a :class:`Graph` and verify that the graph reproduces ``model(x)``.
    ``input_shape`` (per sample, e.g. (C, H, W)) is required unless the first layer applied to the input is a Linear
    (then it is (in_features,))."""
    import torch.nn as nn

    if not isinstance(model, nn.Module):
        raise ProbPruneError(f"expected a torch.nn.Module, got {type(model).__name__}")
    model.eval()
    check_tensors(model)
    fxg = _fx_trace(model)
    if input_shape is None:
        input_shape = _guess_input_shape(model, fxg)
    b = _Builder(model, input_shape)
    graph = b.build(fxg)
    if not graph.weight_nodes:
        raise UnsupportedLayerError("the model has no Linear or Conv layer")
    check_reproduces(graph, model)
    return graph.with_ties_from(model)  # tied weights (fc2.weight is fc1.weight) share one storage: masks act on it


def _guess_input_shape(model, fxg) -> tuple[int, ...]:
    import torch.nn as nn

    ph = [n for n in fxg.nodes if n.op == "placeholder"]
    if ph:
        for u in ph[0].users:
            if u.op == "call_module":
                m = model.get_submodule(u.target)
                if isinstance(m, nn.Linear):
                    return (m.in_features,)
                if not _supported_leaf(m):  # refused whatever the input shape: name it (FQN and type) now
                    raise UnsupportedLayerError(f"unsupported layer {u.target!r} ({type(m).__name__}): supported are "
                                                f"{_SUPPORTED_LEAVES_TEXT}")
    raise ProbPruneError("pass input_shape (e.g. C,H,W): the first operation on the input is not a Linear layer")


#: the leaf modules :meth:`_Builder.module` reads (each with its own conditions, checked there)
_SUPPORTED_LEAVES_TEXT = ("Linear, Conv1d, Conv2d, BatchNorm1d/2d (eval), ReLU, LeakyReLU, Tanh, Hardtanh(-1, 1), "
                          "Sigmoid, Identity, Dropout, MaxPool1d/2d, AvgPool1d/2d, AdaptiveAvgPool1d/2d, Flatten")


def _supported_leaf(m) -> bool:
    """Whether the module table has a handler for ``m`` (its conditions are checked by the handler)."""
    return _module_handler(m) is not None
