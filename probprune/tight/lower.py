"""Lowering a network to a chain of exactly composed affine stages (THEORY.md §12.1 [D]).

A *chain* is s_0 = x, z_i = M_i s_{i-1} + b_i, s_i = act_i(z_i) (i = 1..L), F(x) = z_L, where act_i applies ReLU to
the coordinates in ``relu`` and the identity to the others; the last stage has no ReLU. Every run of linear
operations between two activations (Linear, Conv2d, BatchNorm in evaluation mode, average pooling, flatten/view,
residual additions) is composed *exactly* into one dense matrix M_i: the operations are applied, in float64, to the
columns of the current expression, so M_i is the operator itself, not a product of norm bounds (§12.1).

Residual (DAG) networks become chains by carrying every value that is still needed later through the stage as
identity coordinates ("carried" blocks): a stage's output is [ReLU(expression of the activation's input);
identity copies of the live values]. The chain computes the same function as the network (tested).

Anything that is not affine or ReLU (max pooling, other activations, unknown functions) is refused with an
:class:`~probprune.errors.UnsupportedLayerError` naming the operation: nothing is approximated.
"""
from __future__ import annotations

import copy
import operator
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from ..errors import ProbPruneError, UnsupportedLayerError

MAX_DENSE = 40_000_000  # entries of one dense stage matrix (320 MB in float64): above this, refuse


@dataclass(frozen=True)
class Stage:
    """One stage z = M s + b, followed by ReLU on ``relu`` coordinates (identity elsewhere)."""

    M: np.ndarray
    b: np.ndarray
    relu: np.ndarray  # bool, one per output coordinate
    name: str
    ops: tuple[str, ...]  # the network operations composed into M (provenance)
    factor_norms: tuple[float, ...] = ()  # per-operation norms (float64 SVD, nan if too large; diagnostics only)

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
        return S

    def same_structure(self, other: "Chain") -> bool:
        return self.depth == other.depth and all(
            a.M.shape == b.M.shape and np.array_equal(a.relu, b.relu) for a, b in zip(self.stages, other.stages))


# ----------------------------------------------------------------------------------------------- torch lowering
_AFFINE_MODULES = ("Linear", "Conv1d", "Conv2d", "BatchNorm1d", "BatchNorm2d", "AvgPool1d", "AvgPool2d",
                   "AdaptiveAvgPool2d", "Flatten", "Identity", "Dropout", "Unflatten")


def _module_norm_hint(mod) -> float | None:
    """The per-operation norm (Linear: spectral norm of the weight; others: None = computed from the operator)."""
    import torch.nn as nn

    if isinstance(mod, nn.Linear):
        return float(np.linalg.norm(mod.weight.detach().double().numpy(), 2))
    if isinstance(mod, (nn.Flatten, nn.Identity, nn.Dropout, nn.Unflatten)):
        return 1.0
    return None


class _Engine:
    """Builds a :class:`Chain` from a topologically ordered stream of nodes (input, affine, add, relu, output).

    Each value is an affine expression (Mt (n_state, *shape), b (1, *shape)) over the current state (float64 torch);
    a ReLU closes a stage: [ReLU(expression of its input); identity copies of every value still needed later]."""

    def __init__(self, name: str, users: dict):
        self.name = name
        self.users_left = dict(users)
        self.expr: dict[str, tuple] = {}
        self.stages: list[Stage] = []
        self.pending_ops: dict[str, tuple[str, ...]] = {}
        self.norms: dict[str, tuple[float, ...]] = {}
        self.state_dim = 0

    def input(self, node: str, in_shape: tuple):
        import torch

        if self.expr:
            raise UnsupportedLayerError(f"{self.name}: models with more than one input are not supported")
        n0 = int(np.prod(in_shape))
        self.state_dim = n0
        self.expr[node] = (torch.eye(n0, dtype=torch.float64).reshape(n0, *in_shape),
                           torch.zeros(1, *in_shape, dtype=torch.float64))
        self.pending_ops[node] = ()

    def _get(self, arg: str):
        if arg not in self.expr:
            raise UnsupportedLayerError(f"{self.name}: value {arg!r} is not available (unsupported data flow)")
        return self.expr[arg]

    def consume(self, arg: str):
        self.users_left[arg] -= 1

    def affine(self, node: str, arg: str, fn, label: str, hint: float | None = None):
        """node = fn(arg) for an affine fn acting on a batch (columns of the expression)."""
        import torch

        Mt, b = self._get(arg)
        self.consume(arg)
        with torch.no_grad():
            fb = fn(b)
            f0 = fn(torch.zeros_like(b))
            fM = fn(Mt) - f0
            if hint is None:
                n_in = int(np.prod(b.shape[1:]))
                if n_in <= 4096:  # the operation's own norm (diagnostics: what a per-operation product uses)
                    Op = (fn(torch.eye(n_in, dtype=torch.float64).reshape(n_in, *b.shape[1:])) - f0).reshape(n_in, -1)
                    hint = float(np.linalg.norm(Op.numpy(), 2))
                else:
                    hint = float("nan")
        if fM.numel() > MAX_DENSE:
            raise UnsupportedLayerError(f"{self.name}: operator after {label!r} has {fM.numel():,} dense entries "
                                        f"(> {MAX_DENSE:,}); too large for the exact composition")
        self.expr[node] = (fM, fb)
        self.pending_ops[node] = self.pending_ops.get(arg, ()) + (label,)
        self.norms[node] = self.norms.get(arg, ()) + (hint,)

    def add(self, node: str, a: str, b: str, sign: float = 1.0):
        e1, e2 = self._get(a), self._get(b)
        self.consume(a)
        self.consume(b)
        if e1[1].shape != e2[1].shape:
            raise UnsupportedLayerError(f"{self.name}: broadcasting add at {node!r} is not supported")
        self.expr[node] = (e1[0] + sign * e2[0], e1[1] + sign * e2[1])
        self.pending_ops[node] = self.pending_ops.get(a, ()) + self.pending_ops.get(b, ()) + ("add",)
        self.norms[node] = ()

    def relu(self, node: str, arg: str):
        import torch

        self._get(arg)
        self.consume(arg)
        live = [k for k in self.expr if k != arg and self.users_left.get(k, 0) > 0]
        blocks = [(node, arg, True)] + [(k, k, False) for k in live]
        if self.users_left.get(arg, 0) > 0:  # the activation's input is itself still needed later
            blocks.append((arg, arg, False))
        Ms, bs, masks, shapes = [], [], [], []
        for out_name, src, is_relu in blocks:
            Mt, b = self.expr[src]
            shp = tuple(b.shape[1:])
            Ms.append(Mt.reshape(self.state_dim, -1).T.numpy())
            bs.append(b.reshape(-1).numpy())
            masks.append(np.full(int(np.prod(shp)), is_relu))
            shapes.append((out_name, shp))
        M = np.vstack(Ms)
        self.stages.append(Stage(M=M, b=np.concatenate(bs), relu=np.concatenate(masks),
                                 name=f"stage{len(self.stages)}:{node}", ops=self.pending_ops.get(arg, ()) + ("relu",),
                                 factor_norms=self.norms.get(arg, ())))
        new_dim = M.shape[0]
        new_expr = {}
        off = 0
        for out_name, shp in shapes:
            k = int(np.prod(shp))
            Mt = torch.zeros(new_dim, k, dtype=torch.float64)
            Mt[off:off + k] = torch.eye(k, dtype=torch.float64)
            new_expr[out_name] = (Mt.reshape(new_dim, *shp), torch.zeros(1, *shp, dtype=torch.float64))
            off += k
        self.expr = new_expr
        self.pending_ops = {}
        self.norms = {}
        self.state_dim = new_dim

    def output(self, node: str, in_shape: tuple, source: str) -> Chain:
        Mt, b = self._get(node)
        M = Mt.reshape(self.state_dim, -1).T.numpy()
        self.stages.append(Stage(M=M, b=b.reshape(-1).numpy(), relu=np.zeros(M.shape[0], bool),
                                 name=f"stage{len(self.stages)}:output", ops=self.pending_ops.get(node, ()),
                                 factor_norms=self.norms.get(node, ())))
        for st in self.stages:
            if not (np.all(np.isfinite(st.M)) and np.all(np.isfinite(st.b))):
                raise ProbPruneError(f"{self.name}: non-finite weights in {st.name}")
        return Chain(stages=tuple(self.stages), input_shape=tuple(in_shape), source=source)


def lower_torch(model, input_shape: Sequence[int], name: str = "model") -> Chain:
    """Lower a torch model (any ``torch.fx``-traceable composition of Linear/Conv/BatchNorm(eval)/AvgPool/Flatten/
    view/reshape, ReLU and residual ``+``) to a :class:`Chain` (§12.1). Refuses anything else by name."""
    import torch
    import torch.fx as fx
    import torch.nn as nn
    import torch.nn.functional as Fn

    m = copy.deepcopy(model).double().eval()
    try:
        gm = fx.symbolic_trace(m)
    except Exception as e:  # noqa: BLE001 - report the tracer's reason
        raise UnsupportedLayerError(f"{name}: torch.fx could not trace the model ({e})") from None
    mods = dict(gm.named_modules())
    in_shape = tuple(int(v) for v in input_shape)
    eng = _Engine(name, {n.name: len(n.users) for n in gm.graph.nodes})
    out_name = None
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            eng.input(node.name, in_shape)
            continue
        if node.op == "output":
            a = node.args[0]
            if not isinstance(a, fx.Node):
                raise UnsupportedLayerError(f"{name}: the model must return one tensor")
            out_name = a.name
            break
        args = [a for a in node.args if isinstance(a, fx.Node)]
        if node.op == "call_method" and node.target in ("view", "reshape", "size", "flatten"):
            args = args[:1]
        is_relu, fn, hint = False, None, None
        label = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", str(node.target))
        if node.op == "call_module":
            mod = mods[node.target]
            cls = type(mod).__name__
            label = f"{node.target} ({cls})"
            if isinstance(mod, nn.ReLU):
                is_relu = True
            elif cls in _AFFINE_MODULES:
                if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)) and not mod.track_running_stats:
                    raise UnsupportedLayerError(f"{name}: {label} has no running statistics (not affine at eval)")
                fn = mod
                hint = _module_norm_hint(mod)
            else:
                raise UnsupportedLayerError(f"{name}: operation {label} is not affine or ReLU; the tight "
                                            "certificates refuse it (max pooling and other activations are not "
                                            "supported)")
        elif node.op == "call_function":
            t = node.target
            if t in (Fn.relu, torch.relu):
                is_relu = True
            elif t in (operator.add, torch.add) and len(args) == 2 and len(node.args) == 2 and not node.kwargs:
                eng.add(node.name, args[0].name, args[1].name)
                continue
            elif t is torch.flatten:
                sd = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
                if sd != 1 or len(node.args) > 2 or set(node.kwargs) - {"start_dim"}:
                    raise UnsupportedLayerError(f"{name}: torch.flatten must flatten from dim 1 at {node.name!r}")
                fn, hint = (lambda x: torch.flatten(x, 1)), 1.0
            else:
                raise UnsupportedLayerError(f"{name}: function {label} at {node.name!r} is not supported")
        elif node.op == "call_method":
            if node.target == "relu":
                is_relu = True
            elif node.target == "flatten" and list(node.args[1:]) == [1]:
                fn, hint = (lambda x: torch.flatten(x, 1)), 1.0
            elif node.target in ("view", "reshape") and len(node.args) >= 2:
                dims = node.args[1:]
                if any(isinstance(d, fx.Node) for d in dims) and not (
                        isinstance(dims[0], fx.Node) and dims[0].op == "call_method" and dims[0].target == "size"):
                    raise UnsupportedLayerError(f"{name}: dynamic {node.target} at {node.name!r} is not supported")
                rest = tuple(int(d) for d in dims[1:])
                fn, hint = (lambda x, r=rest: x.reshape(x.shape[0], *r)), 1.0
            elif node.target == "size":
                eng.consume(args[0].name)
                continue  # only used by view(x.size(0), ...)
            else:
                raise UnsupportedLayerError(f"{name}: method .{node.target}() at {node.name!r} is not supported")
        else:
            raise UnsupportedLayerError(f"{name}: node {node.name!r} ({node.op}) is not supported")
        if len(args) != 1:
            raise UnsupportedLayerError(f"{name}: {label} must take exactly one tensor input")
        if is_relu:
            eng.relu(node.name, args[0].name)
        else:
            eng.affine(node.name, args[0].name, fn, label, hint)
    if out_name is None:
        raise UnsupportedLayerError(f"{name}: could not find the model output")
    return eng.output(out_name, in_shape, f"torch.fx lowering of {type(model).__name__}")


def lower_graph(graph, name: str = "model") -> Chain:
    """Lower a :class:`probprune.graph.ir.Graph` (issue 10's traced IR; BatchNorm already folded) to a
    :class:`Chain` (§12.1): affine/average-pool/reshape/gain/shift nodes are composed exactly, ``add`` nodes too,
    ReLU activations close stages; max pooling and other activations are refused by name."""
    from ..graph import ops as O

    eng = _Engine(name, {n.name: len(c) for n, c in ((n, graph.consumers[n.name]) for n in graph.nodes)})
    eng.users_left[graph.output] = eng.users_left.get(graph.output, 0) + 1  # the output is used by the result
    for node in graph.nodes:
        op = node.op
        label = f"{op.where or node.name} ({op.kind})"
        if isinstance(op, O.Input):
            eng.input(node.name, tuple(int(v) for v in graph.input_shape))
        elif isinstance(op, O.Add):
            eng.add(node.name, node.inputs[0], node.inputs[1], float(op.sign))
        elif isinstance(op, O.Act):
            if op.act.name == "relu":
                eng.relu(node.name, node.inputs[0])
            elif op.act.name == "identity":
                eng.affine(node.name, node.inputs[0], lambda x: x, label, 1.0)
            else:
                raise UnsupportedLayerError(f"{name}: activation {op.act.name!r} at {label} is not ReLU; the tight "
                                            "certificates refuse it")
        elif isinstance(op, O.MaxPool):
            raise UnsupportedLayerError(f"{name}: operation {label} (MaxPool) is not affine or ReLU; the tight "
                                        "certificates refuse it")
        elif isinstance(op, (O.Affine, O.LinearPool, O.Reshape, O.Gain, O.ConstShift)) or op.kind == "channel_affine":
            if len(node.inputs) != 1:
                raise UnsupportedLayerError(f"{name}: {label} must take exactly one input")
            eng.affine(node.name, node.inputs[0], op.forward, label)
        else:
            raise UnsupportedLayerError(f"{name}: graph operation {label} is not supported by the tight certificates")
    return eng.output(graph.output, tuple(int(v) for v in graph.input_shape), "lowering of a probprune.graph Graph")


def pruned_copy(model, masks: Mapping[str, np.ndarray]):
    """A deep copy of ``model`` with parameter ``p`` multiplied by ``masks[p]`` (True/1 = kept)."""
    import torch

    m = copy.deepcopy(model)
    params = dict(m.named_parameters())
    unknown = set(masks) - set(params)
    if unknown:
        raise ProbPruneError(f"mask for unknown parameter(s): {sorted(unknown)}")
    with torch.no_grad():
        for k, mk in masks.items():
            mk = torch.as_tensor(np.asarray(mk), dtype=params[k].dtype)
            if mk.shape != params[k].shape:
                raise ProbPruneError(f"mask for {k!r} has shape {tuple(mk.shape)}, parameter {tuple(params[k].shape)}")
            params[k].mul_(mk)
    return m


def lower_graph_pair(graph, pruned_graph) -> tuple[Chain, Chain]:
    """Lower a graph and its pruned copy (``graph.with_masks`` / ``with_weights``) to chains of the same structure."""
    C = lower_graph(graph, "F")
    Ch = lower_graph(pruned_graph, "F_hat")
    if not C.same_structure(Ch):
        raise ProbPruneError("F and F_hat lower to chains of different structure")
    return C, Ch


def lower_pair(model, pruned_model, input_shape: Sequence[int]) -> tuple[Chain, Chain]:
    """Lower F and F_hat; both must give chains of the same structure (same stages, same ReLU coordinates)."""
    C = lower_torch(model, input_shape, "F")
    Ch = lower_torch(pruned_model, input_shape, "F_hat")
    if not C.same_structure(Ch):
        raise ProbPruneError("F and F_hat lower to chains of different structure; they must be the same "
                             "architecture")
    return C, Ch
