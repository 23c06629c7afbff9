"""Issue 20 (helper SC): S9.11, the exact second moment of the Frobenius error for linear networks, dense or conv
(THEORY §9.11). Checks: the trace factor c against the explicit operators of the unit kernels; the telescoping
identity used for prod alpha - 2 prod beta + prod gamma; the exact-k magnitude pruned second moment (closed form,
Beta integral, sampling); E||D||_F^2 against a large Monte Carlo for each rule on a small conv net."""
from __future__ import annotations

import numpy as np
import sympy as sp

from ._core import register, require, sym_zero


def sample_pruned_layers(rng, dims, law: str, method: str, T: int, q: float):
    """Per layer k, (a_k, W_k, What_k): T draws of a dense net with widths ``dims`` (half-widths
    a_k = 1/sqrt(max(d_k, d_k+1)), uniform or Gaussian) pruned by threshold magnitude / Bernoulli / rescaled
    Bernoulli at q, drawn directly with numpy (independent of the library's samplers)."""
    from scipy import stats

    out = []
    for k in range(len(dims) - 1):
        a = 1.0 / np.sqrt(max(dims[k], dims[k + 1]))
        w = (rng.uniform(-a, a, (T, dims[k + 1], dims[k])) if law == "uniform"
             else rng.normal(0, a, (T, dims[k + 1], dims[k])))
        thr = q * a if law == "uniform" else stats.norm.ppf((1 + q) / 2) * a
        m = np.abs(w) < thr if method == "magnitude" else rng.random(w.shape) < q
        out.append((a, w, np.where(m, 0.0, w) / ((1 - q) if method == "random_rescaled" else 1.0)))
    return out


def sample_product_difference(rng, dims, law: str, method: str, T: int, q: float):
    """(a, D): the layers of :func:`sample_pruned_layers` and D = prod W - prod What."""
    P = Ph = None
    layers = sample_pruned_layers(rng, dims, law, method, T, q)
    for _, w, wh in layers:
        P = w if P is None else w @ P
        Ph = wh if Ph is None else wh @ Ph
    return [x[0] for x in layers], P - Ph


def _unit_kernel_ops(L):
    """The operators T_theta (d_out_flat x d_in_flat) of every unit kernel of layer L (torch, float64)."""
    import torch
    import torch.nn.functional as Fn

    if L.kind == "linear":
        out = []
        for r in range(L.d_out):
            for c in range(L.d_in):
                T = np.zeros((L.d_out, L.d_in))
                T[r, c] = 1.0
                out.append(T)
        return out
    C, H, W = L.in_shape
    d_in = C * H * W
    X = torch.eye(d_in, dtype=torch.float64).reshape(d_in, C, H, W)
    out = []
    for idx in np.ndindex(*L.weight_shape):
        k = torch.zeros(L.weight_shape, dtype=torch.float64)
        k[idx] = 1.0
        Y = Fn.conv2d(X, k, stride=L.stride, padding=L.padding, dilation=L.dilation)
        out.append(Y.reshape(d_in, -1).numpy().T)
    return out


@register("sm-trace-factor", "S9.11: c = tr Phi_l...Phi_1(I) computed from (HW)^2 blocks equals the sum over kernel "
          "tuples of ||T_l...T_1||_F^2 built from the explicit unit-kernel operators (strides 1-2, padding, dilation)",
          "§9.11", "numeric", covers=("second-moment",))
def _chk_trace():
    from probprune.net.templates import ConvLayer, cnn_spec, fcn_spec
    from probprune.theory.sharp import frobenius_trace_factor

    specs = [cnn_spec((2, 5, 5), [ConvLayer(2, 3, 1, 1), ConvLayer(2, 2, 2, 0)], [3], "identity"),
             cnn_spec((1, 6, 5), [ConvLayer(2, (3, 2), (2, 1), (1, 0))], [2], "identity"),
             fcn_spec([3, 4, 2], "identity")]
    # dilation 2 (the template has none: build the layer by hand)
    from dataclasses import replace

    base = cnn_spec((1, 7, 7), [ConvLayer(2, 3, 1, 2)], [2], "identity")
    L0 = replace(base.layers[0], dilation=(2, 2), out_shape=(2, 7, 7))
    specs.append(replace(base, layers=(L0, replace(base.layers[1], d_in=98))))
    for spec in specs:
        S = np.eye(int(np.prod(spec.input_shape)))
        for L in spec.layers:
            ops = _unit_kernel_ops(L)
            S = sum(T @ S @ T.T for T in ops)
        c_bf = float(np.trace(S))
        c = frobenius_trace_factor(spec)
        require(abs(c - c_bf) <= 1e-9 * c_bf, f"c {c} vs brute force {c_bf} for {spec.describe()}")
    return f"{len(specs)} nets (conv strides 1-2, padding, dilation 2, dense): c equals the explicit operator sum"


@register("sm-telescoping", "S9.11: prod x - prod y = sum_k (x_k - y_k) prod_(j<k) y_j prod_(j>k) x_j (l <= 5), "
          "so prod alpha - 2 prod beta + prod gamma = (prod alpha - prod beta) + (prod gamma - prod beta)",
          "§9.11", "symbolic", covers=("second-moment",))
def _chk_tele():
    for l in range(1, 6):
        x = sp.symbols(f"x0:{l}")
        y = sp.symbols(f"y0:{l}")
        rhs = sum((x[k] - y[k]) * sp.prod(y[:k]) * sp.prod(x[k + 1:]) for k in range(l))
        sym_zero(sp.expand(sp.prod(x) - sp.prod(y) - rhs), f"telescoping l={l}")
    return "l = 1..5"


@register("sm-exact-k-moment", "S9.11 table S: exact-k magnitude E e^2 = a^2 k(k+1)(k+2)/(3N(N+1)(N+2)) (uniform) "
          "agrees with the Beta integral and with sampling; the Gaussian integral agrees with sampling",
          "§9.11", "numeric", covers=("second-moment",))
def _chk_exact_k():
    from scipy import integrate, stats

    from probprune.theory.sharp import exact_k_magnitude_pruned_second_moment as m

    rng = np.random.default_rng(5)
    for N, k in ((50, 5), (200, 60), (30, 29)):
        cf = m(N, k, 1.0, "uniform")
        integ, _ = integrate.quad(lambda u: u * u * stats.beta.sf(u, k, N - k), 0, 1, limit=200)
        require(abs(cf - integ) <= 1e-8 * cf, f"uniform closed form {cf} vs integral {integ}")
        for law, draw in (("uniform", lambda s: rng.uniform(-1, 1, s)), ("gaussian", lambda s: rng.normal(0, 1, s))):
            w = draw((20000, N))
            srt = np.sort(w * w, axis=1)[:, :k].sum(axis=1) / N
            est, se = srt.mean(), srt.std() / np.sqrt(len(srt))
            val = m(N, k, 1.0, law)
            require(abs(est - val) <= 5 * se + 1e-12, f"{law} N={N} k={k}: formula {val} vs sampling {est} +- {se}")
    return "3 (N, k) pairs, both laws, within 5 standard errors of 20,000 draws"


@register("sm-frobenius-mc", "S9.11: E||D||_F^2 = c (prod alpha - 2 prod beta + prod gamma) against 4,000 draws per "
          "rule on a conv net (threshold and exact-k magnitude, Bernoulli and exact-k random, rescaled; both laws)",
          "§9.11", "numeric", covers=("second-moment",))
def _chk_mc():
    from scipy import stats

    from probprune.net.templates import ConvLayer, cnn_spec, sample_weights
    from probprune.theory.sharp import second_moment_bound

    spec = cnn_spec((1, 5, 5), [ConvLayer(2, 3, 1, 1), ConvLayer(2, 3, 2, 1)], [3], "identity")
    ops = [np.stack(_unit_kernel_ops(L)) for L in spec.layers]  # (n_theta, d_out, d_in) per layer
    T = 4000
    q = 0.3
    n = 0
    for law in ("uniform", "gaussian"):
        for method in ("magnitude", "random", "random_rescaled", "magnitude_exact", "random_exact"):
            rng = np.random.default_rng([7, n])
            n += 1
            W = sample_weights(spec, rng, law, n=T)
            A = B = None
            ks = []
            for w, L, O in zip(W, spec.layers, ops):
                flat = w.reshape(T, -1)
                k = int(np.floor(q * L.N))
                ks.append(k)
                if method == "magnitude":
                    thr = q * L.half_width if law == "uniform" else float(stats.norm.ppf((1 + q) / 2)) * L.half_width
                    P = np.abs(flat) < thr
                elif method in ("random", "random_rescaled"):
                    P = rng.random(flat.shape) < q
                else:
                    key = np.abs(flat) if method == "magnitude_exact" else rng.random(flat.shape)
                    P = np.zeros_like(flat, bool)
                    np.put_along_axis(P, np.argsort(key, axis=1)[:, :k], True, axis=1)
                wh = np.where(P, 0.0, flat) / ((1 - q) if method == "random_rescaled" else 1.0)
                Of = O.reshape(O.shape[0], -1)  # a BLAS product instead of an einsum loop (same sums)
                Xk = (flat @ Of).reshape(-1, *O.shape[1:])
                Xh = (wh @ Of).reshape(-1, *O.shape[1:])
                A = Xk if A is None else Xk @ A
                B = Xh if B is None else Xh @ B
            f2 = ((A - B) ** 2).sum(axis=(1, 2))
            _, ed2 = second_moment_bound(spec, method, law, 0.05, q=np.full(spec.depth, q), ks=ks)
            est, se = f2.mean(), f2.std() / np.sqrt(T)
            require(abs(est - float(ed2)) <= 5 * se, f"{law} {method}: formula {float(ed2):.4g} vs MC {est:.4g} +- {se:.2g}")
    return f"10 rule/law pairs within 5 standard errors of {T} draws"


@register("sm-fourth-moment", "S9.12: the pattern recursion for E||D||_F^4 equals the closed form N E e^4 + N(N-1) "
          "(E e^2)^2 for one dense layer, and a 300,000-draw Monte Carlo for depth 2-3 chains (threshold magnitude, "
          "Bernoulli random and rescaled random (kappa form), both laws)", "§9.12", "numeric", covers=("fourth-moment",))
def _chk_fourth():
    from scipy import stats

    from probprune.theory.sharp import entry_fourth_moments, fourth_moment_bound, frobenius_fourth_moment

    for d_in, d_out in ((1, 1), (3, 2), (5, 7)):
        for method in ("magnitude", "random"):
            lm = entry_fourth_moments(method, "uniform", 0.7, 0.35)
            N = d_in * d_out
            want = N * lm[3] + N * (N - 1) * lm[1] ** 2
            got = float(frobenius_fourth_moment([d_in, d_out], [lm]))
            require(abs(got - want) <= 1e-12 * want, f"one layer {d_in}x{d_out} {method}: {got} vs {want}")
    rng = np.random.default_rng(13)
    n = 0
    for dims in ([3, 4, 2], [4, 3, 3, 2]):
        for law in ("uniform", "gaussian"):
            for method in ("magnitude", "random", "random_rescaled"):
                T, q = 300_000, 0.4
                a, D = sample_product_difference(rng, dims, law, method, T, q)
                f4 = (D ** 2).sum(axis=(1, 2)) ** 2
                _, m4 = fourth_moment_bound(dims, a, np.full(len(dims) - 1, q), 0.05, method, law)
                est, se = f4.mean(), f4.std() / np.sqrt(T)
                require(abs(est - float(m4)) <= 5 * se, f"{dims} {law} {method}: {float(m4):.5g} vs MC {est:.5g} +- {se:.2g}")
                n += 1
    return f"3 one-layer closed forms x 2 rules; {n} chains within 5 standard errors of 300,000 draws"


@register("sm-fourth-moment-exact-k", "S9.12(K): the exact-k single/pair position moments (order-statistic sums for "
          "magnitude, label probabilities for random) add up to the full-matrix moments, and E||D||_F^4 agrees with a "
          "300,000-draw Monte Carlo of exact-k pruning (depth 1-3)", "§9.12", "numeric", covers=("fourth-moment",))
def _chk_fourth_k():
    from probprune.theory.sharp import exact_k_fourth_moment_bound, exact_k_fourth_moments

    for method in ("magnitude_exact", "random_exact"):
        for N, k in ((2, 1), (50, 10), (300, 299)):
            m = exact_k_fourth_moments(method, N, k, 1.0)
            require(abs(m[0] + m[1] - 1 / 3) < 1e-12 and abs(m[2] + m[3] - 1 / 5) < 1e-12, f"{method} single")
            require(abs(m[4] + 2 * m[5] + m[6] - 1 / 9) < 1e-12, f"{method} pairs sum to (E w^2)^2")
    rng = np.random.default_rng(17)
    n = 0
    for method in ("magnitude_exact", "random_exact"):
        for dims, kf in (([2, 3], 0.5), ([3, 4, 2], 0.3), ([4, 3, 3, 2], 0.4)):
            T = 300_000
            a = [1.0 / np.sqrt(max(dims[i], dims[i + 1])) for i in range(len(dims) - 1)]
            P = Ph = None
            ks = []
            for i in range(len(dims) - 1):
                N = dims[i] * dims[i + 1]
                kk = int(np.floor(kf * N))
                ks.append(kk)
                w = rng.uniform(-a[i], a[i], (T, N))
                key = np.abs(w) if method == "magnitude_exact" else rng.random(w.shape)
                M = np.zeros(w.shape, bool)
                np.put_along_axis(M, np.argsort(key, axis=1)[:, :kk], True, axis=1)
                wh = np.where(M, 0.0, w).reshape(T, dims[i + 1], dims[i])
                w = w.reshape(T, dims[i + 1], dims[i])
                P = w if P is None else w @ P
                Ph = wh if Ph is None else wh @ Ph
            f4 = ((P - Ph) ** 2).sum(axis=(1, 2)) ** 2
            _, m4 = exact_k_fourth_moment_bound(dims, a, ks, 0.05, method)
            est, se = f4.mean(), f4.std() / np.sqrt(T)
            require(abs(est - m4) <= 5 * se, f"{method} {dims}: {m4:.5g} vs MC {est:.5g} +- {se:.2g}")
            n += 1
    return f"6 moment identities; {n} exact-k chains within 5 standard errors of 300,000 draws"


@register("sm-cantelli", "S9.12(C): the Cantelli threshold x^2 = mu + sqrt(s2 (1 - delta)/delta) makes s2/(s2 + t^2) "
          "equal delta (sympy), the returned threshold is the minimum of the three forms, and on a Gamma law with the "
          "same two moments the tail at x is <= delta", "§9.12", "symbolic+numeric", covers=("fourth-moment",))
def _chk_cantelli():
    from scipy import stats

    from probprune.theory.sharp import frobenius_tail_threshold

    s2, d = sp.symbols("s2 delta", positive=True)
    t = sp.sqrt(s2 * (1 - d) / d)
    sym_zero(sp.simplify(s2 / (s2 + t**2) - d), "Cantelli at the threshold")
    n = 0
    for mu, ratio in ((1.0, 1.0 + 1e-9), (2.0, 1.1), (0.3, 1.9), (1e-6, 5.0)):
        m4 = ratio * mu * mu
        for delta in (0.01, 0.05, 0.5, 0.9):
            x = float(frobenius_tail_threshold(mu, m4, delta))
            forms = (np.sqrt(mu / delta), (m4 / delta) ** 0.25, np.sqrt(mu + np.sqrt((m4 - mu * mu) * (1 - delta) / delta)))
            require(abs(x - min(forms)) <= 1e-12 * x, "minimum of the three forms")
            var = m4 - mu * mu
            if var > 1e-12 * mu * mu:  # a Gamma law with mean mu and variance var: its tail at x^2 is <= delta
                k, th = mu * mu / var, var / mu
                require(stats.gamma.sf(x * x, k, scale=th) <= delta * (1 + 1e-9), f"Gamma tail mu={mu} ratio={ratio}")
            n += 1
    return f"sympy identity; {n} (mu, E Y^2, delta) cases: min of the forms, Gamma tails <= delta"
