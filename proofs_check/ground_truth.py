"""Independent ground truths shared by the checks and the tests (no probprune code on the computing path)."""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np


def exact_linear_error(g, gh) -> float:
    """sup_{||x||<=1} ||F(x) - F_hat(x)|| for bias-free linear graphs: ||prod W - prod W_hat||_2 with the products in
    exact rationals (no underflow or cancellation at any weight scale), the difference scaled to 1 before the SVD."""
    def prod(graph):
        P = None
        for nd in graph.weight_nodes:
            W = [[Fraction(float(v)) for v in row] for row in nd.op.weight.tolist()]
            P = W if P is None else [[sum(W[i][k] * P[k][j] for k in range(len(P))) for j in range(len(P[0]))]
                                     for i in range(len(W))]
        return P

    D = [[a - b for a, b in zip(r1, r2)] for r1, r2 in zip(prod(g), prod(gh))]
    mx = max(abs(v) for r in D for v in r)
    if mx == 0:
        return 0.0
    A = np.array([[float(v / mx) for v in r] for r in D])
    e = math.frexp(mx.numerator)[1] - math.frexp(mx.denominator)[1]  # mx ~ 2^e: scale without overflow
    return float(np.linalg.norm(A, 2)) * float(mx / Fraction(2) ** e) * 2.0 ** e


def exact_k_masks(graph, counts) -> dict:
    """Exact-k magnitude keep-masks written out independently of the library: prune the ``counts[i]`` smallest |w| of
    each weight node (stable argsort, ties by flat index), keyed by the node's parameter name."""
    out = {}
    for n, k in zip(graph.weight_nodes, counts):
        W = np.asarray(n.op.weight, float)
        keep = np.ones(W.size, bool)
        keep[np.argsort(np.abs(W.ravel()), kind="stable")[:int(k)]] = False
        out[n.op.fqn] = keep.reshape(W.shape)
    return out
