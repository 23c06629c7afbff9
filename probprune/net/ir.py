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
        known = set(self.weight_names) | {n.op.storage for n in self.weight_nodes if n.op.storage}
        unknown = set(mapping) - known
        if unknown:
            raise ProbPruneError(f"weights for unknown parameter(s): {sorted(unknown)}; graph has {list(self.weight_names)}")
        mapping = self._resolve_tied(mapping, "weights")
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

    def storage_of(self, fqn: str) -> str:
        """The canonical storage name of a weight parameter (itself unless tied, see :meth:`with_ties_from`)."""
        for n in self.weight_nodes:
            if n.op.fqn == fqn or (n.op.storage or n.op.fqn) == fqn:
                return n.op.storage or n.op.fqn
        raise ProbPruneError(f"unknown parameter {fqn!r}; model has {list(self.weight_names)}")

    def _resolve_tied(self, mapping: Mapping[str, np.ndarray], what: str) -> dict:
        """Spread a per-parameter mapping over tied parameters (same storage): every weight node whose storage is
        named (by any of its names) gets the value; two different values for one storage are refused."""
        by_storage: dict[str, tuple[str, np.ndarray]] = {}
        for k, v in mapping.items():
            c = self.storage_of(k)
            if c in by_storage and not np.array_equal(np.asarray(by_storage[c][1]), np.asarray(v)):
                raise ProbPruneError(f"{what} for {by_storage[c][0]!r} and {k!r} differ, but the two names share one "
                                     f"tensor ({c!r})")
            by_storage[c] = (k, v)
        out = {}
        for n in self.weight_nodes:
            c = n.op.storage or n.op.fqn
            if c in by_storage:
                out[n.op.fqn] = by_storage[c][1]
        return out

    def with_ties_from(self, model) -> "Graph":
        """Record which weight parameters of ``model`` share one storage (``fc2.weight is fc1.weight``): each tied
        weight node gets ``storage`` = the first name torch lists for that tensor, so masks and weights keyed by
        any of the names act on every use (issue 19 U4)."""
        first: dict = {}
        canon: dict[str, str] = {}
        for name, p in model.named_parameters(remove_duplicate=False):
            key = (p.data_ptr(), tuple(p.shape), tuple(p.stride()))
            first.setdefault(key, name)
            canon[name] = first[key]
        nodes = []
        for n in self.nodes:
            if isinstance(n.op, O.Affine) and canon.get(n.op.fqn, n.op.fqn) != n.op.fqn:
                n = replace(n, op=replace(n.op, storage=canon[n.op.fqn]))
            nodes.append(n)
        return replace(self, nodes=tuple(nodes))

    def with_masks(self, masks: Mapping[str, np.ndarray]) -> "Graph":
        """The pruned copy: W * mask for every masked parameter (True/1 = kept); others unchanged. Tied parameters
        (one storage, several names) are masked together, by storage."""
        W = self.weights
        out = {}
        for k, m in self._resolve_tied(masks, "masks").items():
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

        from probprune.net.activations import activation

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
            if L.is_dense:
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
            if not act.is_identity:
                nodes.append(Node(f"act_{i}", O.Act(where=act.name, act=act, dim=int(np.prod(shape))), (prev,), shape))
                prev = f"act_{i}"
            if L.pool is not None:
                fn = F.max_pool2d if L.pool.kind == "max" else F.avg_pool2d
                kw = {"kernel_size": tuple(L.pool.kernel), "stride": tuple(L.pool.stride)}
                nodes.append(make_pool_node(f"pool_{i}", L.pool.kind, fn, kw, prev, shape, f"{L.pool.kind}pool"))
                prev, shape = f"pool_{i}", nodes[-1].out_shape
        return cls(tuple(nodes), tuple(spec.input_shape), prev)


#: the op fields a pruned copy may change, by purpose: "masks" = Cert-D's setting (weights only, THEORY §8.2);
#: "pair" = the tight certificates, which compose parameter differences exactly (§12.1)
MAY_DIFFER = {"masks": {"affine": ("weight",)},
              "pair": {"affine": ("weight", "bias", "bn_scale", "bn_shift"),
                       "channel_affine": ("scale", "shift"), "shift": ("t", "t_norm")}}


def _same_value(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        return a.shape == b.shape and bool(np.array_equal(a, b))
    if callable(a) and callable(b):  # functions (pools, permutations): compared through their parameters and shapes
        return getattr(a, "__name__", None) == getattr(b, "__name__", None)
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - uncomparable values are treated as different (fail closed)
        return False


def graph_differences(graph: "Graph", other: "Graph", purpose: str = "masks") -> list[str]:
    """Every difference between two graphs other than the fields ``MAY_DIFFER[purpose]`` allows: node names,
    order, inputs, shapes, op types and every op field (parameters, buffers such as BatchNorm statistics folded into
    the layer, activations, pooling parameters, constants). Empty list = the same network up to the allowed
    parameters (issue 19 U3: a pruned bias, BatchNorm gamma or a different activation is named, not ignored)."""
    import dataclasses

    allowed = MAY_DIFFER[purpose]
    out = []
    if tuple(graph.input_shape) != tuple(other.input_shape):
        out.append(f"input shape {graph.input_shape} vs {other.input_shape}")
    if len(graph.nodes) != len(other.nodes):
        return out + [f"{len(graph.nodes)} nodes vs {len(other.nodes)}"]
    if graph.output != other.output:
        out.append(f"output node {graph.output!r} vs {other.output!r}")
    for a, b in zip(graph.nodes, other.nodes):
        if a.name != b.name or a.inputs != b.inputs or tuple(a.out_shape) != tuple(b.out_shape):
            out.append(f"node {a.name!r} ({a.inputs} -> {a.out_shape}) vs {b.name!r} ({b.inputs} -> {b.out_shape})")
            continue
        if type(a.op) is not type(b.op):
            out.append(f"node {a.name!r}: {type(a.op).__name__} vs {type(b.op).__name__}")
            continue
        ok = allowed.get(a.op.kind, ())
        for f in dataclasses.fields(a.op):
            if f.name in ok:
                va, vb = getattr(a.op, f.name), getattr(b.op, f.name)
                if (va is None) != (vb is None) or (isinstance(va, np.ndarray) and np.shape(va) != np.shape(vb)):
                    out.append(f"node {a.name!r}: {f.name} present/shaped differently")
                continue
            va, vb = getattr(a.op, f.name), getattr(b.op, f.name)
            if f.name == "act":
                same = getattr(va, "name", va) == getattr(vb, "name", vb)
            else:
                same = _same_value(va, vb)
            if not same:
                what = a.op.where or a.name
                out.append(f"node {a.name!r} ({what}, {a.op.kind}): field {f.name!r} differs")
    return out


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
    k, s, p, d = O.pool_params(kwargs, len(in_shape) - 1)
    c = O.max_pool_window_count(in_shape, k, s, p, d, bool(kwargs.get("ceil_mode", False)), out[1:])
    return Node(name, O.MaxPool(where=where, P=float(np.sqrt(c)) * (1.0 + O.FACT_SAFETY), fn=fn,
                                kwargs=tuple(kwargs.items()), c_max=c), (inp,), out)
