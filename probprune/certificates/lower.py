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
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from probprune.core.errors import ProbPruneError, UnsupportedLayerError

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


# ----------------------------------------------------------------------------------------------- lowering engine
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
    """Lower a torch model to a :class:`Chain` (§12.1) through the package's one model reader:
    :func:`probprune.net.trace.from_torch` (torch.fx tracing, BatchNorm folded, forward verified, unsupported
    operations refused by name), then :func:`lower_graph`."""
    from probprune.net.trace import from_torch

    m = copy.deepcopy(model).double().eval()
    return lower_graph(from_torch(m, tuple(int(v) for v in input_shape)), name)


def lower_graph(graph, name: str = "model") -> Chain:
    """Lower a :class:`probprune.net.ir.Graph` (issue 10's traced IR; BatchNorm already folded) to a
    :class:`Chain` (§12.1): affine/average-pool/reshape/gain/shift nodes are composed exactly, ``add`` nodes too,
    ReLU activations close stages; max pooling and other activations are refused by name."""
    from probprune.net import ops as O

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
    return eng.output(graph.output, tuple(int(v) for v in graph.input_shape), "lowering of a probprune.net Graph")


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
