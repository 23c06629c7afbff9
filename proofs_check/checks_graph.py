"""Networks as graphs (THEORY.md §8): the per-operation facts S1-S7, Lemma A on graphs, the chain special case.

Numeric checks use independent ground truths (exact error of linear graphs = spectral norm of the Jacobian
difference; sampled errors of ReLU graphs; brute-force window counts); the bridges tie the package's
``probprune.net`` code to §3.1's Lemma A (``certificates.lemma_a_general`` and the reference of checks_lemma_a).
"""
from __future__ import annotations

import numpy as np
import sympy as sp

from ._core import import_attr, register, require, sym_zero
from .checks_lemma_a import _random_net, _random_pruning, lemma_a_reference


def _torch():
    import torch

    return torch


def _jacobian(graph) -> np.ndarray:
    torch = _torch()
    d = int(np.prod(graph.input_shape))
    J = torch.autograd.functional.jacobian(
        lambda v: graph.forward(v.reshape(1, *graph.input_shape)).reshape(-1), torch.zeros(d, dtype=torch.float64))
    return J.numpy()


# ------------------------------------------------------------------------------------------------ S2, S6, S7 algebra
@register("graph-affine-algebra", "S2/S6/S7: W h + c - (What hh + c) = W(h-hh) + E hh = What(h-hh) + E h; BN folding "
          "diag(s)(W h + c - mu) + beta = W' h + c'; masks commute with diag(s)", "§8.1", "symbolic+numeric",
          covers=["graph-affine", "graph-bn", "graph-add"])  # S7 includes concatenation (root-sum-of-squares)
def _chk_affine():
    n = 3
    W = sp.Matrix(n, n, lambda i, j: sp.Symbol(f"w{i}{j}"))
    Wh = sp.Matrix(n, n, lambda i, j: sp.Symbol(f"v{i}{j}"))
    h = sp.Matrix(n, 1, lambda i, j: sp.Symbol(f"h{i}"))
    hh = sp.Matrix(n, 1, lambda i, j: sp.Symbol(f"g{i}"))
    c = sp.Matrix(n, 1, lambda i, j: sp.Symbol(f"c{i}"))
    E = W - Wh
    lhs = (W * h + c) - (Wh * hh + c)
    for k in range(n):
        sym_zero(lhs[k] - (W * (h - hh) + E * hh)[k], "backward form")
        sym_zero(lhs[k] - (Wh * (h - hh) + E * h)[k], "forward form")
    s = sp.Matrix(n, 1, lambda i, j: sp.Symbol(f"s{i}"))
    mu = sp.Matrix(n, 1, lambda i, j: sp.Symbol(f"m{i}"))
    beta = sp.Matrix(n, 1, lambda i, j: sp.Symbol(f"b{i}"))
    S = sp.diag(*s)
    bn = S * (W * h + c - mu) + beta
    folded = (S * W) * h + (S * (c - mu) + beta)
    for k in range(n):
        sym_zero(bn[k] - folded[k], "BatchNorm folding")
    M = sp.Matrix(n, n, lambda i, j: sp.Symbol(f"q{i}{j}"))  # a 0/1 mask
    masked = S * W.multiply_elementwise(M) - (S * W).multiply_elementwise(M)
    for k in range(n * n):
        sym_zero(masked[k], "diag(s)(W . M) = (diag(s)W) . M")
    # S7 numerically: triangle inequality with a coefficient, gain homogeneity
    rng = np.random.default_rng(80)
    for _ in range(200):
        x, y, u, v = rng.standard_normal((4, 7))
        a = rng.uniform(-3, 3)
        require(np.linalg.norm((x + a * y) - (u + a * v)) <= np.linalg.norm(x - u) + abs(a) * np.linalg.norm(y - v)
                + 1e-12, "addition rule")
    # concatenation: ||[a; b]||^2 = ||a||^2 + ||b||^2, so differences and norms combine by root-sum-of-squares
    for _ in range(200):
        a, b, ah, bh = (rng.standard_normal(int(rng.integers(1, 9))) for _ in range(4))
        bh = bh[: len(b)] if len(bh) >= len(b) else np.resize(bh, len(b))
        ah = np.resize(ah, len(a))
        lhs = np.linalg.norm(np.concatenate([a, b]) - np.concatenate([ah, bh]))
        require(abs(lhs - np.hypot(np.linalg.norm(a - ah), np.linalg.norm(b - bh))) <= 1e-12 * max(1.0, lhs),
                "concatenation rule")
    return "3x3 symbolic identities; 200 numeric additions; 200 concatenations"


# ------------------------------------------------------------------------------------------------ S3
@register("graph-act", "S3: ||s(h)-s(hh)|| <= L||h-hh|| and ||s(h)|| <= L||h|| + |s(0)| sqrt(dim) for the table",
          "§8.1", "numeric", covers=["graph-act"])
def _chk_act():
    activation = import_attr("probprune.net.templates", "activation")
    rng = np.random.default_rng(81)
    n = 0
    for name in ("identity", "relu", "leaky_relu", "tanh", "hardtanh", "sigmoid"):
        a = activation(name, 0.2) if name == "leaky_relu" else activation(name)
        for _ in range(300):
            d = int(rng.integers(1, 30))
            h, hh = rng.standard_normal((2, d)) * rng.uniform(0.01, 10)
            require(np.linalg.norm(a.numpy(h) - a.numpy(hh)) <= a.lipschitz * np.linalg.norm(h - hh) * (1 + 1e-12)
                    + 1e-15, f"{name}: Lipschitz")
            require(np.linalg.norm(a.numpy(h)) <= a.lipschitz * np.linalg.norm(h) + abs(a.value_at_zero) * np.sqrt(d)
                    + 1e-12, f"{name}: norm bound")
            n += 1
    return f"{n} vector pairs over 6 activations"


# ------------------------------------------------------------------------------------------------ S4
@register("graph-schur", "S4: ||A|| <= sqrt(||A1||_inf ||A^T 1||_inf) for A >= 0 (random matrices and every avg-pool "
          "configuration: code's P >= SVD norm of the pool's Jacobian)", "§8.1", "numeric", covers=["graph-schur"])
def _chk_schur():
    torch = _torch()
    import torch.nn.functional as F

    make_pool_node = import_attr("probprune.net.ir", "make_pool_node")
    rng = np.random.default_rng(82)
    for _ in range(300):
        A = rng.random((int(rng.integers(1, 12)), int(rng.integers(1, 12)))) * (rng.random((1, 1)) * 5)
        A *= rng.random(A.shape) < 0.6
        bound = np.sqrt(A.sum(1).max() * A.sum(0).max())
        require(np.linalg.norm(A, 2) <= bound * (1 + 1e-12) + 1e-15, "Schur test on a random non-negative matrix")
    n = 0
    for k in (1, 2, 3):
        for s in (1, 2, 3):
            for p in range(0, k // 2 + 1):
                for ceil in (False, True):
                    for cip in (False, True):
                        for div in (None, 1, 2):
                            kw = dict(kernel_size=k, stride=s, padding=p, ceil_mode=ceil, count_include_pad=cip,
                                      divisor_override=div)
                            node = make_pool_node("p", "avg", F.avg_pool2d, kw, "x", (1, 5, 6), "avg")
                            J = torch.autograd.functional.jacobian(
                                lambda v: F.avg_pool2d(v.reshape(1, 1, 5, 6), **kw).reshape(-1),
                                torch.zeros(30, dtype=torch.float64)).numpy()
                            require(np.linalg.norm(J, 2) <= node.op.P, f"avg pool {kw}: P below the exact norm")
                            n += 1
    return f"300 random matrices; {n} AvgPool2d configurations"


# ------------------------------------------------------------------------------------------------ S5
@register("graph-maxpool", "S5: c_max counted by unfold/fold equals the brute-force window count and "
          "||mp(x)-mp(y)|| <= sqrt(c_max)||x-y|| (kernel, stride, padding, dilation, ceil_mode)", "§8.1", "numeric",
          covers=["graph-maxpool"])
def _chk_maxpool():
    torch = _torch()
    import torch.nn.functional as F

    make_pool_node = import_attr("probprune.net.ir", "make_pool_node")
    g = torch.Generator().manual_seed(83)
    n = 0
    shape = (1, 6, 5)
    for k in (1, 2, 3):
        for s in (1, 2, 3):
            for p in range(0, k // 2 + 1):
                for d in (1, 2):
                    for ceil in (False, True):
                        kw = dict(kernel_size=k, stride=s, padding=p, dilation=d, ceil_mode=ceil)
                        try:
                            node = make_pool_node("p", "max", F.max_pool2d, kw, "x", shape, "max")
                        except Exception:  # torch rejects the configuration (output size < 1)
                            continue
                        brute = 0
                        for i in range(30):
                            x = -torch.ones(30, dtype=torch.float64)
                            x[i] = 1.0
                            brute = max(brute, int((F.max_pool2d(x.reshape(1, *shape), **kw) == 1.0).sum()))
                        require(node.op.c_max == brute, f"max pool {kw}: c_max {node.op.c_max} != brute force {brute}")
                        x = torch.randn((50, *shape), generator=g, dtype=torch.float64)
                        y = torch.randn((50, *shape), generator=g, dtype=torch.float64)
                        lhs = (F.max_pool2d(x, **kw) - F.max_pool2d(y, **kw)).flatten(1).norm(dim=1)
                        require(bool((lhs <= node.op.P * (x - y).flatten(1).norm(dim=1) * (1 + 1e-12)).all()),
                                f"max pool {kw}: Lipschitz bound violated")
                        n += 1
    return f"{n} MaxPool2d configurations (counts exact; 50 pairs each)"


# ------------------------------------------------------------------------------------------------ §8.2
def _random_residual(rng, relu: bool, bias: bool):
    torch = _torch()
    nn = torch.nn
    Fn = torch.nn.functional
    d, depth = int(rng.integers(2, 7)), int(rng.integers(1, 4))
    gain = float(rng.uniform(-2, 2))
    torch.manual_seed(int(rng.integers(2**31)))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.inp = nn.Linear(4, d, bias=bias)
            self.blocks = nn.ModuleList([nn.Linear(d, d, bias=bias) for _ in range(depth)])
            self.out = nn.Linear(d, 3, bias=bias)

        def forward(self, x):
            h = self.inp(x)
            for b in self.blocks:
                z = b(h)
                h = h + gain * (Fn.relu(z) if relu else z)
            return self.out(h)

    return Net()


@register("graph-lemmaA", "Lemma A on graphs: D_o >= exact error of linear residual graphs (Jacobian) and >= sampled "
          "errors of ReLU residual graphs with biases; D <= min(D_f, D_b)", "§8.2", "numeric",
          covers=["graph-lemmaA", "graph-nodewise-min", "graph-reproduce"])
def _chk_graph_lemma():
    torch = _torch()
    from_torch = import_attr("probprune.net", "from_torch")
    certify_graph = import_attr("probprune.certificates.lemma", "certify_graph")
    rng = np.random.default_rng(84)
    n_lin = n_relu = 0
    for trial in range(24):
        relu = trial % 2 == 1
        m = _random_residual(rng, relu, bias=relu)
        g = from_torch(m, (4,))  # verifies the graph reproduces the model's forward (graph-reproduce)
        masks = {k: rng.random(w.shape) >= rng.uniform(0.1, 0.8) for k, w in g.weights.items()}
        gh = g.with_masks(masks)
        c = certify_graph(g, gh)
        require(c.eps <= min(c.fwd, c.bwd) * (1 + 1e-15), "node-wise min above min(D_f, D_b)")
        if not relu:
            err = float(np.linalg.norm(_jacobian(g) - _jacobian(gh), 2))
            n_lin += 1
        else:
            X = torch.randn((2000, 4), dtype=torch.float64, generator=torch.Generator().manual_seed(trial))
            X = X / X.norm(dim=1, keepdim=True)
            with torch.no_grad():
                err = float((g.forward(X) - gh.forward(X)).norm(dim=1).max())
            n_relu += 1
        require(err <= c.eps * (1 + 1e-9), f"certificate {c.eps} below the error {err}")
    return f"{n_lin} linear residual graphs (exact), {n_relu} ReLU residual graphs with biases (sampled)"


# ------------------------------------------------------------------------------------------------ §8.3 bridge
@register("bridge-graph-chain", "code: on chains the graph recursion's D_f / D_b equal certificates.lemma_a_general and "
          "§3.1's A-fwd / A-bwd reference; certify == graph D <= min", "§8.3", "numeric",
          covers=["graph-chain"], kind="bridge")
def _b_graph_chain():
    Graph = import_attr("probprune.net", "Graph")
    lemma_a_graph = import_attr("probprune.net", "lemma_a_graph")
    lemma_a_general = import_attr("probprune.certificates.lemma", "lemma_a_general")
    certify = import_attr("probprune.certificates.lemma", "certify")
    certify_random = import_attr("probprune.certificates.lemma", "certify_random")
    certify_random_graph = import_attr("probprune.certificates.lemma", "certify_random_graph")
    fcn_spec = import_attr("probprune.net.templates", "fcn_spec")
    rng = np.random.default_rng(85)
    for trial in range(20):
        l = int(rng.integers(1, 5))
        W = _random_net(rng, l, scale=1.5)
        Wh = _random_pruning(rng, W, ("magnitude", "random", "perturb")[trial % 3])
        widths = [W[0].shape[1]] + [M.shape[0] for M in W]
        spec = fcn_spec(widths, "relu")
        g = Graph.from_spec(spec, W)
        norms = {L.name: (np.linalg.norm(M, 2), np.linalg.norm(Mh, 2), np.linalg.norm(M - Mh, 2), 0.0)
                 for L, M, Mh in zip(spec.layers, W, Wh)}
        r = lemma_a_graph(g, norms)
        fwd_ref, bwd_ref = lemma_a_reference(W, Wh, [1.0] * l)
        nW, nWh, nE = (np.array([norms[L.name][k] for L in spec.layers]) for k in range(3))
        fwd, bwd = lemma_a_general(nW, nWh, nE, [1.0] * l)
        for a, b, what in ((r.Df, fwd_ref, "D_f vs A-fwd reference"), (r.Db, bwd_ref, "D_b vs A-bwd reference"),
                           (fwd, fwd_ref, "lemma_a_general fwd"), (bwd, bwd_ref, "lemma_a_general bwd")):
            require(abs(a - b) <= 1e-10 * max(1.0, abs(b)), f"{what}: {a} != {b}")
        require(r.D <= min(fwd_ref, bwd_ref) * (1 + 1e-12), "graph D above min(A-fwd, A-bwd)")
        c = certify(spec, W, Wh)
        require(c.eps >= r.D * (1 - 1e-12) and c.eps <= min(fwd_ref, bwd_ref) * (1 + 1e-6),
                "certify is not the graph recursion with certified norms")
        # Cert-R: the graph path (certify_random_graph) equals the chain path (certify_random) on chains
        p = float(rng.uniform(0.05, 0.8))
        cg = certify_random_graph(g, p, 0.05)
        cs = certify_random(spec, W, p, 0.05)
        require(abs(cg.eps - cs.eps) <= 1e-9 * cs.eps, f"Cert-R graph {cg.eps} != chain {cs.eps}")
    return "20 ReLU chains: D_f, D_b == §3.1 A-fwd, A-bwd; D <= min; Cert-R graph == chain"
