"""Issue 20 (helper TD): S9.13, exact Schatten moments E tr((DD^T)^p) of the product difference of a linear dense
network (THEORY §9.13). Checks: the general 2p-chain pattern recursion at p = 2 reproduces S9.12's state contracted on
pattern C; one dense layer against closed forms (sympy: the Wick-type sum over index patterns); Monte Carlo of
tr((DD^T)^p), p = 2, 3, for depth 2-3 chains under both laws and the three rules; the Markov threshold at delta."""
from __future__ import annotations

import numpy as np
import sympy as sp

from ._core import register, require, sym_zero


@register("td-trace-recursion", "S9.13: the 2p-chain pattern recursion at p = 2 equals S9.12's four-chain state "
          "contracted on pattern C (tr((DD^T)^2)); the number of set partitions is Bell(2p) (15, 203); one dense "
          "layer of i.i.d. symmetric entries: E tr((XX^T)^2) = N m4 + N(d1 + d2 - 2) m2^2 (sympy, independent count "
          "of the index patterns)", "§9.13", "symbolic+numeric", covers=("trace-moment",))
def _chk_recursion():
    from probprune.theory import sharp, trace_moments as tm

    require(len(tm.set_partitions(4)) == 15 and len(tm.set_partitions(6)) == 203, "Bell numbers")
    n = 0
    for dims in ([3, 4, 2], [2, 5, 3, 4], [6, 6]):
        for method in ("magnitude", "random", "random_rescaled"):
            for law in ("uniform", "gaussian"):
                a = [0.7] * (len(dims) - 1)
                lm = [tm.entry_even_moments(method, law, a[k], 0.3, 2) for k in range(len(dims) - 1)]
                kap = None if method != "random_rescaled" else (1 / 0.7) ** (len(dims) - 1) - 1
                want = float(sharp.trace_fourth_moment(dims, lm, kap))
                got = float(tm.trace_moment(dims, lm, 2, kap))
                require(abs(got - want) <= 1e-10 * abs(want), f"{dims} {method} {law}: {got} vs {want}")
                n += 1
    # one layer X (d1 x d2), i.i.d. entries, E x^2 = m2, E x^4 = m4: E sum_(i,j,k,l) X_ij X_kj X_kl X_il; the
    # nonzero index patterns: i = k, j = l (one position four times: N m4), i = k, j != l (d1 d2 (d2 - 1) m2^2),
    # i != k, j = l (d2 d1 (d1 - 1) m2^2); i != k, j != l has four distinct positions, each once: 0
    d1, d2, m2, m4 = sp.symbols("d1 d2 m2 m4", positive=True)
    closed = d1 * d2 * m4 + d1 * d2 * (d2 - 1) * m2**2 + d1 * d2 * (d1 - 1) * m2**2
    sym_zero(closed - (d1 * d2 * m4 + d1 * d2 * (d1 + d2 - 2) * m2**2), "closed form algebra")
    for (r, c) in ((1, 1), (2, 3), (5, 4)):
        lm = tm.entry_even_moments("random", "uniform", 1.0, 1.0, 2)  # what = 0: X = E, e moments = w moments
        got = tm.trace_moment([c, r], [lm], 2)
        want = float(closed.subs({d1: r, d2: c, m2: lm[1], m4: lm[3]}))
        require(abs(got - want) <= 1e-12 * want, f"one layer {r}x{c}: {got} vs {want}")
    return f"{n} chains p = 2 equal S9.12's contraction C; Bell numbers; 3 one-layer closed forms"


@register("td-trace-mc", "S9.13: E tr((DD^T)^p), p = 2, 3, from the recursion agrees with a 200,000-draw Monte Carlo "
          "(5 standard errors) for depth 2-3 chains, threshold magnitude, Bernoulli random and rescaled random, "
          "uniform and Gaussian laws; the returned threshold is min_p (V_p/delta)^(1/(2p))", "§9.13", "numeric",
          covers=("trace-moment",))
def _chk_mc():
    from probprune.theory.trace_moments import trace_moment_bound

    from proofs_check.checks_sharp_sm import sample_product_difference

    rng = np.random.default_rng(2027)
    n = 0
    for dims in ([3, 4, 2], [2, 3, 3, 2]):
        for law in ("uniform", "gaussian"):
            for method in ("magnitude", "random", "random_rescaled"):
                T, q = 200_000, 0.4
                a, D = sample_product_difference(rng, dims, law, method, T, q)
                G = D @ D.transpose(0, 2, 1)
                emp = {2: np.einsum("tab,tba->t", G, G), 3: np.einsum("tab,tbc,tca->t", G, G, G)}
                x, vals = trace_moment_bound(dims, a, np.full(len(dims) - 1, q), 0.05, method, law)
                for p in (2, 3):
                    est, se = emp[p].mean(), emp[p].std() / np.sqrt(T)
                    require(abs(est - float(vals[p])) <= 5 * se,
                            f"{dims} {law} {method} p={p}: {float(vals[p]):.5g} vs MC {est:.5g} +- {se:.2g}")
                    n += 1
                want = min((float(vals[p]) / 0.05) ** (1 / (2 * p)) for p in (2, 3))
                require(abs(float(x) - want) <= 1e-9 * want, "threshold is the min over p")
    return f"{n} (chain, p) pairs within 5 standard errors of 200,000 draws"


@register("td-schatten-markov", "S9.13 step (1): ||D||^(2p) <= tr((DD^T)^p) on random and rank-one matrices, and "
          "P(||D|| >= x) <= E tr((DD^T)^p)/x^(2p) at x = (V/delta)^(1/(2p)) equals delta (sympy)", "§9.13",
          "symbolic+numeric", covers=("trace-moment",))
def _chk_schatten():
    rng = np.random.default_rng(5)
    for _ in range(200):
        r, c = rng.integers(1, 9, 2)
        D = rng.normal(size=(r, c)) * (rng.random((r, c)) < 0.6)
        s = np.linalg.svd(D, compute_uv=False)
        for p in (1, 2, 3):
            require(s.max() ** (2 * p) <= np.sum(s ** (2 * p)) * (1 + 1e-12) + 1e-300, "Schatten domination")
    u = rng.normal(size=(5, 1))
    D = u @ u.T
    require(abs(np.linalg.norm(D, 2) ** 4 - np.trace(D @ D.T @ D @ D.T)) < 1e-9 * np.linalg.norm(D, 2) ** 4, "rank one")
    V, dl, p = sp.symbols("V delta p", positive=True)
    x = (V / dl) ** (1 / (2 * p))
    sym_zero(V / x ** (2 * p) - dl, "Markov at x")
    return "200 random matrices, p = 1..3; rank-one equality; Markov threshold (sympy)"


@register("td-conv-fourth", "S9.14: E||D||_F^4 of a conv net (two conv layers with stride and padding, dense last "
          "layer, identity) from the pairing expansion agrees with a 150,000-draw Monte Carlo whose operators are built "
          "by torch conv2d on the standard basis (5 standard errors; threshold magnitude and Bernoulli random, both "
          "laws); the label weights reproduce E[x^4] = mu4 for equal labels and 0 for mixed labels (all 16 tuples)",
          "§9.14", "numeric", covers=("conv-fourth-moment",))
def _chk_conv_fourth():
    from scipy import stats

    from probprune.net.templates import ConvLayer, cnn_spec
    from probprune.theory import conv_moments as cf
    from probprune.theory.trace_moments import entry_even_moments

    from proofs_check.checks_sharp_sm import _unit_kernel_ops

    mom = (0.3, 0.2, 0.11, 0.07)
    for t in range(16):
        labels = [(t >> j) & 1 for j in range(4)]
        w = {pi: cf._layer_weights(pi, mom)[t] for pi in cf.PAIRINGS}
        want = (mom[2 + labels[0]] if len(set(labels)) == 1 else 0.0)
        require(abs(w["12|34"] + w["13|24"] + w["14|23"] + w["diag"] - want) < 1e-15, f"all-equal weight {labels}")
    spec = cnn_spec((1, 4, 4), [ConvLayer(2, 3, 1, 1), ConvLayer(2, 3, 2, 1)], [3], "identity")
    ops = [np.stack(_unit_kernel_ops(L)) for L in spec.layers]  # torch-built, independent of conv_moments
    rng = np.random.default_rng(99)
    n = 0
    for law in ("uniform", "gaussian"):
        for method in ("magnitude", "random"):
            T, q = 150_000, 0.4
            draws = []  # (weights, pruned weights) per layer, drawn in the same order as ever
            for L, O in zip(spec.layers, ops):
                a = L.half_width
                w = rng.uniform(-a, a, (T, O.shape[0])) if law == "uniform" else rng.normal(0, a, (T, O.shape[0]))
                thr = q * a if law == "uniform" else stats.norm.ppf((1 + q) / 2) * a
                m = np.abs(w) < thr if method == "magnitude" else rng.random(w.shape) < q
                draws.append((w, np.where(m, 0.0, w)))
            y = np.empty(T)
            for c0 in range(0, T, 10_000):  # chunks of draws: the stacked operators stay small (memory, speed)
                P = Ph = None
                for (w, wh), O in zip(draws, ops):
                    Of = O.reshape(O.shape[0], -1)  # one BLAS product instead of an einsum loop (same sums)
                    A = (w[c0:c0 + 10_000] @ Of).reshape(-1, *O.shape[1:])
                    Ah = (wh[c0:c0 + 10_000] @ Of).reshape(-1, *O.shape[1:])
                    P = A if P is None else A @ P
                    Ph = Ah if Ph is None else Ah @ Ph
                y[c0:c0 + 10_000] = ((P - Ph) ** 2).sum(axis=(1, 2))
            lm = [tuple(float(x) for x in entry_even_moments(method, law, L.half_width, q, 2)) for L in spec.layers]
            m4 = cf.frobenius_fourth_moment_conv(spec, lm)
            est, se = (y**2).mean(), (y**2).std() / np.sqrt(T)
            require(abs(est - m4) <= 5 * se, f"{law} {method}: {m4:.5g} vs MC {est:.5g} +- {se:.2g}")
            n += 1
    return f"16 label tuples; {n} conv chains within 5 standard errors of 150,000 draws"
