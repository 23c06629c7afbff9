"""Lemma A on graphs (THEORY.md §8.2 [D], statement graph-lemmaA): the one implementation of the Lemma A
composition in the package.

Per node v, upper bounds over the input ball ||x|| <= 1: b_v >= sup ||h_v||, bh_v >= sup ||hhat_v||,
D_v >= sup ||h_v - hhat_v||, propagated in topological order by each operation's ``rule`` (S1-S7 of §8.1):
input b = bh = 1, D = 0; weight node D <= min(||W|| D_u + ||E|| bh_u, ||What|| D_u + ||E|| b_u),
b <= ||W|| b_u + ||c||; activation D <= L D_u, b <= L b_u + |sigma(0)| sqrt(dim); Lipschitz maps multiply;
additions add. The output's D, times a float64 rounding allowance, is the certificate. On a chain the pure forward / backward recursions (Df, Db) are
Lemma A's A-fwd / A-bwd (§3.1 general form; Proposition graph-chain).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from probprune.core.errors import ProbPruneError
from probprune.net import ops as O
from probprune.net.ir import Graph


def rounding_allowance(n_ops: int) -> float:
    """Factor covering float64 rounding in the recursion: every D is a sum of products of at most ``n_ops``
    non-negative factors, each operation adding a relative error <= 2^-53, so the computed value is at least the exact
    one divided by (1 + 2^-53)^(2 n_ops) <= 1 + 4 n_ops 2^-52 (n_ops 2^-52 << 1); at least 2^-40 so that chain and
    graph evaluations of the same network carry the same factor."""
    return 1.0 + max(2.0 ** -40, 4.0 * n_ops * 2.0 ** -52)


@dataclass(frozen=True)
class GraphLemmaResult:
    """``D`` (the bound on the output), ``Df``/``Db`` (forward-only / backward-only), the output's ``b``/``bh``,
    and the per-node bounds (``nodes``: name -> :class:`~probprune.net.ops.Bound`)."""

    D: object
    Df: object
    Db: object
    b: object
    bh: object
    nodes: dict
    statement: str = "THEORY.md §8.2 Lemma A on graphs [D]"


def _recursion(nodes, output: str, weight_norms: Mapping[str, tuple], n_ops: int) -> GraphLemmaResult:
    """The recursion itself: ``nodes`` (name, op, input names) in topological order, each op's ``rule``."""
    states: dict[str, O.Bound] = {}
    for name, op, inputs in nodes:
        ins = [states[u] for u in inputs]
        if isinstance(op, O.Affine):
            if op.fqn not in weight_norms:
                raise ProbPruneError(f"no operator norms for weight layer {op.fqn!r}")
            states[name] = op.rule(ins, weight_norms[op.fqn])
        else:
            states[name] = op.rule(ins)
    out = states[output]
    r = rounding_allowance(n_ops)
    return GraphLemmaResult(out.D * r, out.Df * r, out.Db * r, out.b * r, out.bh * r, states)


def lemma_a_graph(graph: Graph, weight_norms: Mapping[str, tuple]) -> GraphLemmaResult:
    """Run the recursion. ``weight_norms`` maps each weight node's FQN to (||W'||, ||What'||, ||E'||, ||c'||map)
    upper bounds (floats or broadcastable numpy arrays: one value per trial); W' is the effective (BatchNorm-folded)
    weight."""
    return _recursion(((n.name, n.op, n.inputs) for n in graph.nodes), graph.output, weight_norms,
                      2 * len(graph.nodes))


@dataclass(frozen=True)
class _ChainMap(O.Op):
    """The map after chain layer i: Lipschitz ``L`` and activation-norm offset ``off`` (numbers or arrays)."""

    kind = "chain_map"
    L: object = 1.0
    off: object = 0.0

    def rule(self, ins, weight_norms=None):
        (u,) = ins
        return O.lipschitz_rule(u, self.L, self.off)


def lemma_a_chain(norm_W, norm_What, norm_E, lips, bias_norm=None, act_off=None) -> GraphLemmaResult:
    """The chain special case from per-layer numbers (the arrays' last axis is the layer): layer i is a weight node
    (norms, bias-map norm ``bias_norm[i]``) followed by a map with Lipschitz constant ``lips[i]`` and additive
    activation-norm offset ``act_off[i]`` (|sigma(0)| sqrt(dim)). The same recursion as :func:`lemma_a_graph` (one
    loop, the ops' rules), vectorised over leading axes."""
    w, wh, e = (np.asarray(a, dtype=float) for a in (norm_W, norm_What, norm_E))
    l = w.shape[-1]
    L = np.asarray(lips, dtype=float)
    bn = np.zeros(l) if bias_norm is None else np.asarray(bias_norm, dtype=float)
    ao = np.zeros(l) if act_off is None else np.asarray(act_off, dtype=float)
    nodes, norms, prev = [("x", O.Input(), ())], {}, "x"
    for i in range(l):
        norms[str(i)] = (w[..., i], wh[..., i], e[..., i], bn[..., i])
        nodes += [(f"w{i}", O.Affine(fqn=str(i)), (prev,)), (f"a{i}", _ChainMap(L=L[..., i], off=ao[..., i]), (f"w{i}",))]
        prev = f"a{i}"
    return _recursion(nodes, prev, norms, 4 * l + 1)
