"""The network graph (intermediate representation, THEORY.md §8): nodes in topological order, each an operation of
:mod:`probprune.net.ops` with its inputs and per-sample output shape. A sequential chain is the special case
(:meth:`Graph.from_spec`). Weight nodes carry the parameter FQN (``"features.0.weight"``) on which masks act.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Mapping, Sequence

import numpy as np

from probprune.core.errors import ProbPruneError
from probprune.net import ops as O


@dataclass(frozen=True)
class Node:
    """One node: ``name`` (unique, from the traced graph), ``op`` (an :class:`~probprune.net.ops.Op`),
    ``inputs`` (names of the input nodes, in argument order), ``out_shape`` (per sample, no batch axis)."""

    name: str
    op: O.Op
    inputs: tuple[str, ...]
    out_shape: tuple[int, ...]

    @property
    def kind(self) -> str:
        return self.op.kind


@dataclass(frozen=True)
class Graph:
    """A network as a DAG of :class:`Node` (topological order), one input node, one output node."""

    nodes: tuple[Node, ...]
    input_shape: tuple[int, ...]
    output: str
    _index: dict = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "_index", {n.name: i for i, n in enumerate(self.nodes)})
        seen = set()
        for n in self.nodes:
            for u in n.inputs:
                if u not in seen:
                    raise ProbPruneError(f"graph node {n.name!r} uses {u!r} before it is defined")
            seen.add(n.name)
        if self.output not in seen:
            raise ProbPruneError(f"graph output {self.output!r} is not a node")

    # ------------------------------------------------------------------ views
    def node(self, name: str) -> Node:
        return self.nodes[self._index[name]]

    @property
    def weight_nodes(self) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if isinstance(n.op, O.Affine))

    @property
    def weight_names(self) -> tuple[str, ...]:
        """Parameter FQNs of the weight layers, in topological order (the keys of masks)."""
        return tuple(n.op.fqn for n in self.weight_nodes)

    @property
    def weights(self) -> dict[str, np.ndarray]:
        return {n.op.fqn: n.op.weight for n in self.weight_nodes}

    @property
    def consumers(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {n.name: [] for n in self.nodes}
        for n in self.nodes:
            for u in n.inputs:
                out[u].append(n.name)
        return out

    @property
    def is_chain(self) -> bool:
        """Every node has at most one input and one consumer (a sequential network)."""
        cons = self.consumers
        return all(len(n.inputs) <= 1 for n in self.nodes) and all(len(c) <= 1 for c in cons.values())

    # ------------------------------------------------------------------ copies
    def with_weights(self, mapping: Mapping[str, np.ndarray]) -> "Graph":
        """A copy with the weights of the named parameters replaced (same shapes), e.g. the pruned network.
        BatchNorm folding is re-applied to the new weights (masks act on the layer's own weights)."""
        unknown = set(mapping) - set(self.weight_names)
        if unknown:
            raise ProbPruneError(f"weights for unknown parameter(s): {sorted(unknown)}; graph has {list(self.weight_names)}")
        nodes = []
        for n in self.nodes:
            if isinstance(n.op, O.Affine) and n.op.fqn in mapping:
                W = np.asarray(mapping[n.op.fqn], dtype=float)
                if W.shape != n.op.weight.shape:
                    if W.size != n.op.weight.size:
                        raise ProbPruneError(f"weights for {n.op.fqn!r} have shape {W.shape}, parameter has shape "
                                             f"{n.op.weight.shape}")
                    W = W.reshape(n.op.weight.shape)
                n = replace(n, op=replace(n.op, weight=W))
            nodes.append(n)
        return replace(self, nodes=tuple(nodes))

    def with_masks(self, masks: Mapping[str, np.ndarray]) -> "Graph":
        """The pruned copy: W * mask for every masked parameter (True/1 = kept); others unchanged."""
        W = self.weights
        out = {}
        for k, m in masks.items():
            if k not in W:
                raise ProbPruneError(f"mask for unknown parameter {k!r}; model has {list(self.weight_names)}")
            m = np.asarray(m)
            if m.shape != W[k].shape:
                raise ProbPruneError(f"mask for {k!r} has shape {m.shape}, parameter has shape {W[k].shape}")
            out[k] = W[k] * m.astype(float)
        return self.with_weights(out)

    # ------------------------------------------------------------------ evaluation
    def forward(self, x):
        """F(x) for a batch x of shape (B, *input_shape) (torch tensor, float64 recommended)."""
        import torch

        x = torch.as_tensor(x)
        if tuple(x.shape[1:]) != tuple(self.input_shape):
            raise ProbPruneError(f"input of shape {tuple(x.shape[1:])} per sample; the graph expects {self.input_shape}")
        vals: dict[str, object] = {}
        for n in self.nodes:
            if isinstance(n.op, O.Input):
                vals[n.name] = x
            else:
                vals[n.name] = n.op.forward(*(vals[u] for u in n.inputs))
        return vals[self.output]

    # ------------------------------------------------------------------ chains
    @classmethod
    def from_spec(cls, spec, weights: Sequence[np.ndarray], biases: Sequence[np.ndarray | None] | None = None,
                  names: Sequence[str] | None = None) -> "Graph":
        """The chain of a :class:`~probprune.net.templates.NetSpec` (weight layer -> activation -> optional pooling, the
        last layer linear) as a graph; ``weights`` in each layer's ``weight_shape`` (or any same-size array)."""
        import torch.nn.functional as F

        from probprune.net.templates import activation

        if len(weights) != spec.depth:
            raise ProbPruneError(f"need {spec.depth} weight tensors, got {len(weights)}")
        nodes = [Node("x", O.Input(where="input"), (), tuple(spec.input_shape))]
        prev, shape = "x", tuple(spec.input_shape)
        for i, L in enumerate(spec.layers):
            W = np.asarray(weights[i], float)
            if W.size != L.N:
                raise ProbPruneError(f"layer {L.name}: expected {L.N} weights, got {W.size}")
            W = W.reshape(L.weight_shape)
            b = None if biases is None or biases[i] is None else np.asarray(biases[i], float)
            fqn = names[i] if names is not None else L.name
            if L.kind == "linear":
                if len(shape) != 1:
                    nodes.append(Node(f"flatten_{i}", O.Reshape(where="flatten", shape=(int(np.prod(shape)),)),
                                      (prev,), (int(np.prod(shape)),)))
                    prev, shape = f"flatten_{i}", (int(np.prod(shape)),)
                out = (L.d_out,)
                op = O.Affine(where=fqn, fqn=fqn, layer="linear", weight=W, bias=b, in_shape=shape, out_shape=out)
            else:
                out = tuple(L.out_shape)
                op = O.Affine(where=fqn, fqn=fqn, layer="conv2d", weight=W, bias=b, stride=tuple(L.stride),
                              padding=tuple(L.padding), dilation=tuple(L.dilation), groups=1, in_shape=shape,
                              out_shape=out)
            name = fqn.replace(".", "_")
            nodes.append(Node(name, op, (prev,), out))
            prev, shape = name, out
            last = i == spec.depth - 1
            act = L.act if not last else activation("identity")
            if act.name != "identity":
                nodes.append(Node(f"act_{i}", O.Act(where=act.name, act=act, dim=int(np.prod(shape))), (prev,), shape))
                prev = f"act_{i}"
            if L.pool is not None:
                fn = F.max_pool2d if L.pool.kind == "max" else F.avg_pool2d
                kw = {"kernel_size": tuple(L.pool.kernel), "stride": tuple(L.pool.stride)}
                nodes.append(make_pool_node(f"pool_{i}", L.pool.kind, fn, kw, prev, shape, f"{L.pool.kind}pool"))
                prev, shape = f"pool_{i}", nodes[-1].out_shape
        return cls(tuple(nodes), tuple(spec.input_shape), prev)


def make_pool_node(name: str, kind: str, fn, kwargs: dict, inp: str, in_shape: tuple, where: str) -> Node:
    """A pooling node with its Lipschitz factor computed for ``in_shape`` (S4 for "avg", S5 for "max")."""
    import torch

    try:
        with torch.no_grad():
            out = tuple(fn(torch.zeros((1, *in_shape), dtype=torch.float64), **kwargs).shape[1:])
    except RuntimeError as exc:
        raise ProbPruneError(f"pooling {where} fails on input_shape {tuple(in_shape)}: "
                             f"{str(exc).splitlines()[0][:160]}") from None
    if kind == "avg":
        P = O.schur_norm_linear_pool(fn, kwargs, in_shape)
        return Node(name, O.LinearPool(where=where, P=P, fn=fn, kwargs=tuple(kwargs.items())), (inp,), out)
    nd = len(in_shape) - 1

    def tup(v, default):
        v = default if v is None else v
        return tuple(int(a) for a in v) if isinstance(v, (tuple, list)) else (int(v),) * nd

    k = tup(kwargs.get("kernel_size"), None)
    s = tup(kwargs.get("stride") or None, k)
    p = tup(kwargs.get("padding", 0), 0)
    d = tup(kwargs.get("dilation", 1), 1)
    c = O.max_pool_window_count(in_shape, k, s, p, d, bool(kwargs.get("ceil_mode", False)), out[1:])
    return Node(name, O.MaxPool(where=where, P=float(np.sqrt(c)) * (1.0 + O.FACT_SAFETY), fn=fn,
                                kwargs=tuple(kwargs.items()), c_max=c), (inp,), out)
