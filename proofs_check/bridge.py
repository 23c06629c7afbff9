"""Code-to-proof bridge: every formula implemented in ``probprune`` equals the sympy expression of THEORY.md.

Each check lambdifies the symbolic formula (``formulas.py``) and compares it with the implementation on seeded random
points (relative tolerance 1e-10 unless stated), so a typo in the code fails the proof check. Functions are looked up
by module attribute at call time, so a monkeypatched implementation is what gets checked (see the mutation test in
tests/test_proofs.py). A missing required function is a FAIL; optional modules (mc.stats, subsetsum) give SKIP.
"""
from __future__ import annotations

import math

import numpy as np
import sympy as sp
from scipy import special, stats

from . import formulas as F
from ._core import close, import_attr, register, require
from .checks_certs import _cert_r_terms
from .checks_conv import _windows, conv_operator

RTOL = 1e-10
_beta_np = sp.lambdify((F.s2, F.R, F.lam), F.beta(F.s2, F.R, F.lam), "numpy")


def _lamb(args, expr):
    return sp.lambdify(args, expr, modules=[{"erf": special.erf}, "numpy"])


def _random_fcn(rng, depth=None):
    fcn_spec = import_attr("probprune.net.templates", "fcn_spec")
    depth = depth or int(rng.integers(1, 6))
    widths = [int(x) for x in rng.integers(2, 300, depth + 1)]
    return fcn_spec(widths, "relu", K=float(rng.uniform(0.3, 3.0)))


def _layer_params(spec):
    m = np.array([L.m for L in spec.layers], float)
    n = np.array([L.n for L in spec.layers], float)
    N = np.array([L.N for L in spec.layers], float)
    a = np.array([L.half_width for L in spec.layers], float)
    r = np.array([L.r for L in spec.layers], float)
    return m, n, N, a, r


# ------------------------------------------------------------------------------------------------ bounds
@register("bridge-beta", "probprune.theory.apriori.beta == sympy beta on 5000 random points (6 decades)", "§3", "numeric",
          covers=["beta-def", "bernstein-inverse"], kind="bridge")
def _b_beta():
    beta = import_attr("probprune.theory.apriori", "beta")
    rng = np.random.default_rng(101)
    s2 = 10 ** rng.uniform(-6, 3, 5000)
    R = 10 ** rng.uniform(-6, 1, 5000)
    lam = 10 ** rng.uniform(-1, 2, 5000)
    got = np.asarray(beta(s2, R, lam))
    want = _beta_np(s2, R, lam)
    dev = close(got, want, rtol=RTOL, what="bounds.beta")
    # boundary cases: s2 = 0 and R = 0
    close(beta(0.0, 2.0, 3.0), 4.0, rtol=RTOL, what="beta(0, R, lam) = 2 R lam/3")
    close(beta(2.0, 0.0, 3.0), math.sqrt(12.0), rtol=RTOL, what="beta(s2, 0, lam) = sqrt(2 s2 lam)")
    tail = import_attr("probprune.theory.apriori", "bernstein_tail")
    v, Rr, d = 2.0, 0.3, 50.0
    lamp = math.log(d / 0.01)
    close(tail(float(beta(v, Rr, lamp)), v, Rr, d), 0.01, rtol=1e-9, what="bernstein_tail(beta) = delta'")
    return f"max rel. deviation {dev:.1e}"


@register("bridge-eta-B", "bounds.norm_bound / error_bound (RM, RR, RR'; FCN and conv x sqrt(r)) == sympy formulas",
          "§3.4", "numeric", covers=["thm-RM-RR", "thm-RC"], kind="bridge")
def _b_eta():
    norm_bound = import_attr("probprune.theory.apriori", "norm_bound")
    error_bound = import_attr("probprune.theory.apriori", "error_bound")
    cnn_spec = import_attr("probprune.net.templates", "cnn_spec")
    ConvLayer = import_attr("probprune.net.templates", "ConvLayer")
    mm, aa, qq, ll = sp.symbols("m a q lam", positive=True)
    fB = _lamb((mm, aa, ll), F.B_uniform(mm, aa, ll))
    f_eta = {
        "magnitude": _lamb((mm, aa, qq, ll), F.eta_RM(mm, aa, qq, ll)),
        "random": _lamb((mm, aa, qq, ll), F.eta_RR(mm, aa, qq, ll)),
        "random_rescaled": _lamb((mm, aa, qq, ll), F.eta_RRp(mm, aa, qq, ll)),
    }
    rng = np.random.default_rng(102)
    specs = [_random_fcn(rng) for _ in range(12)]
    specs.append(cnn_spec((3, 12, 12), [ConvLayer(8, 3, 1, 1), ConvLayer(6, 4, 2, 0)], [20, 10], "relu", K=1.5))
    specs.append(cnn_spec((1, 9, 9), [ConvLayer(5, 5, 3, 2)], [7], "relu", K=0.7))
    n = 0
    for spec in specs:
        m, nn, N, a, r = _layer_params(spec)
        dW = rng.uniform(1e-4, 0.1, spec.depth)
        dE = rng.uniform(1e-4, 0.1, spec.depth)
        close(norm_bound(spec, dW), np.sqrt(r) * fB(m, a, np.log(nn / dW)), rtol=RTOL, what="norm_bound (uniform)")
        for method, f in f_eta.items():
            q = rng.uniform(0.0, 0.99, spec.depth)
            q[rng.random(spec.depth) < 0.2] = 0.0
            got = error_bound(spec, q, dE, method)
            with np.errstate(divide="ignore", invalid="ignore"):
                want = np.where(q > 0, np.sqrt(r) * f(m, a, np.where(q > 0, q, 0.5), np.log(nn / dE)), 0.0)
            close(got, want, rtol=RTOL, what=f"error_bound ({method})")
            n += 1
    return f"{len(specs)} specs (2 CNN), {n} method x spec comparisons"


@register("bridge-gaussian", "bounds.gaussian_g == 2Phi(c)-1-2c phi(c); Gaussian B and eta (magnitude, random by "
          "truncation) == §3.12", "§3.12", "numeric", covers=["gauss-magnitude", "gauss-truncation"], kind="bridge")
def _b_gauss():
    g = import_attr("probprune.theory.apriori", "gaussian_g")
    norm_bound = import_attr("probprune.theory.apriori", "norm_bound")
    error_bound = import_attr("probprune.theory.apriori", "error_bound")
    fg = _lamb((F.c,), F.gaussian_g(F.c))
    rng = np.random.default_rng(103)
    c = np.concatenate([10 ** rng.uniform(-3, 1, 2000), [0.5, 1.0, 3.0]])
    # absolute tolerance: g(c) ~ c^3 cancels catastrophically in both forms for tiny c
    close(g(c), fg(c), rtol=1e-9, atol=1e-15, what="gaussian_g")
    close(g(np.array([30.0])), [1.0], rtol=1e-12, what="gaussian_g(large c) -> 1")
    n = 0
    for _ in range(8):
        spec = _random_fcn(rng)
        m, nn, N, s, r = _layer_params(spec)
        d_in = np.array([L.d_in for L in spec.layers], float)
        d_out = np.array([L.d_out for L in spec.layers], float)
        dW, dE, dT = (rng.uniform(1e-4, 0.1, spec.depth) for _ in range(3))
        close(norm_bound(spec, dW, law="gaussian"),
              s * (np.sqrt(d_out) + np.sqrt(d_in) + np.sqrt(2 * np.log(2 / dW))), rtol=RTOL,
              what="Gaussian norm bound")
        q = rng.uniform(0.01, 0.95, spec.depth)
        lam = np.log(nn / dE)
        cc = stats.norm.ppf((1 + q) / 2)
        close(error_bound(spec, q, dE, "magnitude", law="gaussian"),
              _beta_np(m * s ** 2 * fg(cc), cc * s, lam), rtol=1e-9, what="Gaussian magnitude eta")
        u = np.sqrt(2 * np.log(N / dT))
        close(error_bound(spec, q, dE, "random", law="gaussian", delta_T=dT),
              _beta_np(m * q * s ** 2, s * u, lam), rtol=RTOL, what="Gaussian random eta (truncation)")
        # rescaled (extension of §3.12 by the §3.3 rescaled moments): variance p s^2/(1-p), range s u max(1, p/(1-p))
        close(error_bound(spec, q, dE, "random_rescaled", law="gaussian", delta_T=dT),
              _beta_np(m * q * s ** 2 / (1 - q), s * u * np.maximum(1, q / (1 - q)), lam), rtol=RTOL,
              what="Gaussian rescaled eta")
        n += 1
    return f"g on 2003 points; Gaussian B/eta on {n} specs"


@register("bridge-product-form", "bounds.product_form == Lip prod B (prod(1+eta/B) - 1), depth 1..6", "§3.1",
          "numeric", covers=["A-star"], kind="bridge")
def _b_product():
    product_form = import_attr("probprune.theory.apriori", "product_form")
    rng = np.random.default_rng(104)
    for l in range(1, 7):
        Bs = sp.symbols(f"B1:{l + 1}", positive=True)
        es = sp.symbols(f"e1:{l + 1}", nonnegative=True)
        Lp = sp.Symbol("Lip", positive=True)
        f = sp.lambdify((Bs, es, Lp), F.product_form(Bs, es, Lp), "numpy")
        B = rng.uniform(0.1, 5.0, (200, l))
        e = rng.uniform(0.0, 3.0, (200, l)) * (rng.random((200, l)) > 0.2)
        Lip = rng.uniform(0.2, 4.0)
        close(product_form(B, e, Lip), f(B.T, e.T, Lip), rtol=1e-12, what=f"product_form depth {l}")
    return "200 points per depth"


@register("bridge-lemma-a", "bounds.lemma_a == min(A-fwd, A-bwd) and certificates.lemma_a_general == (A-fwd, A-bwd) "
          "and the general form (sigma(0) != 0)", "§3.1", "numeric",
          covers=["lemmaA-fwd", "lemmaA-bwd", "lemmaA-general"], kind="bridge")
def _b_lemma_a():
    from .checks_lemma_a import _unrolled

    lemma_a = import_attr("probprune.theory.apriori", "lemma_a")
    general = import_attr("probprune.certificates.lemma", "lemma_a_general")
    rng = np.random.default_rng(105)
    for l in range(1, 7):
        syms = [sp.symbols(f"{nm}1:{l + 1}", positive=True) for nm in ("L", "w", "wh", "e")]
        _, fwd = _unrolled(l, "fwd")
        _, bwd = _unrolled(l, "bwd")
        ffwd = sp.lambdify(syms, fwd, "numpy")
        fbwd = sp.lambdify(syms, bwd, "numpy")
        for _ in range(40):
            L = rng.uniform(0.3, 2.0, l)
            L[-1] = 1.0
            w, wh, e = (rng.uniform(0.05, 3.0, l) for _ in range(3))
            want_f, want_b = ffwd(L, w, wh, e), fbwd(L, w, wh, e)
            close(lemma_a(w, wh, e, L), min(want_f, want_b), rtol=1e-12, what=f"lemma_a depth {l}")
            got_f, got_b = general(w, wh, e, L)
            close([got_f, got_b], [want_f, want_b], rtol=1e-12, what=f"lemma_a_general depth {l}")
            # general form: b_0 = 1, b_i = L_i w_i b_{i-1} + o_i (o_i = |sigma_i(0)| sqrt(d_i)), error
            # sum_i L_i e_i b_{i-1} prod_{j>i} L_j what_j
            o = rng.uniform(0, 2, l)
            o[-1] = 0.0
            b = [1.0]
            for i in range(l - 1):
                b.append(L[i] * w[i] * b[-1] + o[i])
            want_g = sum(L[i] * e[i] * b[i] * np.prod(L[i + 1:] * wh[i + 1:]) for i in range(l))
            close(general(w, wh, e, L, None, o)[0], want_g, rtol=1e-12, what=f"general form depth {l}")
    return "40 random norm profiles per depth 1..6"


@register("bridge-apriori", "bounds.apriori_bound: eps == (A*) of the sympy B, eta with the equal delta split; "
          "delta_W + delta_E sums to delta", "§3.4", "numeric", covers=["thm-RM-RR", "union-bound", "A-star"],
          kind="bridge")
def _b_apriori():
    apriori_bound = import_attr("probprune.theory.apriori", "apriori_bound")
    mm, aa, qq, ll = sp.symbols("m a q lam", positive=True)
    fB = _lamb((mm, aa, ll), F.B_uniform(mm, aa, ll))
    f_eta = {"magnitude": _lamb((mm, aa, qq, ll), F.eta_RM(mm, aa, qq, ll)),
             "random": _lamb((mm, aa, qq, ll), F.eta_RR(mm, aa, qq, ll)),
             "random_rescaled": _lamb((mm, aa, qq, ll), F.eta_RRp(mm, aa, qq, ll))}
    rng = np.random.default_rng(106)
    n = 0
    for _ in range(10):
        spec = _random_fcn(rng)
        m, nn, N, a, r = _layer_params(spec)
        for method, f in f_eta.items():
            q = rng.uniform(0.01, 0.9, spec.depth)
            q[rng.random(spec.depth) < 0.25] = 0.0
            delta = float(rng.uniform(0.001, 0.3))
            res = apriori_bound(spec, q, delta, method, statement="bernstein")  # §3.4's formulas (§9 is checks_sharp)
            lp = int((q > 0).sum())
            de = delta / (spec.depth + lp)
            B = fB(m, a, np.log(nn / de))
            eta = np.where(q > 0, f(m, a, np.where(q > 0, q, 0.5), np.log(nn / de)), 0.0)
            want = spec.Lip * np.prod(B) * (np.prod(1 + eta / B) - 1)
            close(res.B, B, rtol=RTOL, what=f"apriori B ({method})")
            close(res.eta, eta, rtol=RTOL, what=f"apriori eta ({method})")
            close(res.eps, want, rtol=1e-9, what=f"apriori eps ({method})")
            total = float(np.sum(res.delta_W) + np.sum(res.delta_E))
            require(total <= delta * (1 + 1e-12), f"delta allocation sums to {total} > {delta}")
            close(total, delta, rtol=1e-12, what="equal split sums to delta")
            n += 1
    return f"{n} (spec, method) pairs; eps, B, eta, delta split"


@register("bridge-random-mask", "bounds.random_mask_bound: eta = beta(D a^2/3, a, ln(n/delta_E)) (RR-mask)", "§3.4",
          "numeric", covers=["RR-mask"], kind="bridge")
def _b_random_mask():
    rmb = import_attr("probprune.theory.apriori", "random_mask_bound")
    rng = np.random.default_rng(107)
    for _ in range(10):
        spec = _random_fcn(rng)
        m, nn, N, a, r = _layer_params(spec)
        D = np.array([int(rng.integers(0, L.m + 1)) for L in spec.layers])
        delta = 0.05
        res = rmb(spec, D, delta)
        de = delta / (spec.depth + int((D > 0).sum()))
        with np.errstate(divide="ignore"):
            want = np.where(D > 0, _beta_np(D * a ** 2 / 3, a, np.log(nn / de)), 0.0)
        close(res.eta, want, rtol=RTOL, what="RR-mask eta")
    return "10 specs with random line counts"


@register("bridge-pool-r", "networks.Pool.lipschitz == §1.7 formulas (coverage counted); LayerSpec.r >= explicit patch "
          "multiplicity (Lemma C)", "§1.7", "numeric", covers=["pool-max", "pool-avg", "pool-overlap", "lemmaC"],
          kind="bridge")
def _b_pool_r():
    Pool = import_attr("probprune.net.templates", "Pool")
    cnn_spec = import_attr("probprune.net.templates", "cnn_spec")
    ConvLayer = import_attr("probprune.net.templates", "ConvLayer")
    for k in (1, 2, 3, 4):
        for s_ in (1, 2, 3, 4):
            wins = _windows(60, k, s_)
            cover = np.zeros(60, int)
            for w in wins:
                cover[w] += 1
            rp = int(cover[k:-k].max())  # interior coverage per axis
            for kind, want in (("max", math.sqrt(rp * rp)), ("avg", math.sqrt(rp * rp / (k * k)))):
                got = Pool(kind, (k, k), (s_, s_)).lipschitz
                close(got, want, rtol=1e-12, what=f"Pool({kind}, k={k}, s={s_}).lipschitz")
    rng = np.random.default_rng(108)
    for k in (3, 4, 5):
        for s_ in (1, 2, 3):
            for pad in (0, k // 2):
                spec = cnn_spec((2, 11, 11), [ConvLayer(3, k, s_, pad)], [4], "relu")
                L = spec.layers[0]
                W = rng.uniform(-1, 1, L.weight_shape)
                _, count, _ = conv_operator(W, 11, 11, L.stride, L.padding)
                require(count.max() <= L.r, f"LayerSpec.r = {L.r} < patch multiplicity {count.max()}")
                require(L.r == math.ceil(k / s_) ** 2, f"LayerSpec.r = {L.r} != ceil(k/s)^2")
    return "pool kernels/strides 1..4; conv k 3..5, s 1..3, with/without padding"


@register("bridge-certify", "certificates.certify == node-wise Lemma A (§8.2, <= Lip min(A-fwd, A-bwd)) of exact norms and >= the "
          "exact linear error", "§3.11", "numeric", covers=["cert-D"], kind="bridge")
def _b_certify():
    certify = import_attr("probprune.certificates.lemma", "certify")
    fcn_spec = import_attr("probprune.net.templates", "fcn_spec")
    from .checks_lemma_a import lemma_a_reference

    rng = np.random.default_rng(109)
    for trial in range(15):
        widths = [int(x) for x in rng.integers(2, 30, int(rng.integers(2, 5)))]
        spec = fcn_spec(widths, "identity" if trial % 3 == 0 else "relu")
        W = [rng.uniform(-L.half_width, L.half_width, (L.d_out, L.d_in)) for L in spec.layers]
        Wh = [M * (rng.random(M.shape) > 0.3) for M in W]
        res = certify(spec, W, Wh)
        fwd, bwd = lemma_a_reference(W, Wh, [L.lip for L in spec.layers])
        # since §8.2 certify takes the min of the two S2 forms at every layer (node-wise), which is <= min(fwd, bwd);
        # reference: that recursion with exact norms (Delta_i = L_i min(w_i D + e_i bh, wh_i D + e_i b))
        b = bh = 1.0
        D = 0.0
        for L, M, Mh in zip(spec.layers, W, Wh):
            w, wh, e = (np.linalg.norm(A, 2) for A in (M, Mh, M - Mh))
            D = L.lip * min(w * D + e * bh, wh * D + e * b)
            b, bh = L.lip * w * b, L.lip * wh * bh
        require(D <= res.eps * (1 + 1e-12), f"certify {res.eps} below the exact-norm node-wise Lemma A {D}")
        close(res.eps, D, rtol=1e-6, what="certify vs exact-norm node-wise Lemma A (§8.2)")
        require(res.eps <= min(fwd, bwd) * (1 + 1e-6), "certify above min(A-fwd, A-bwd)")
        if trial % 3 == 0:
            A = np.linalg.multi_dot(W[::-1]) if len(W) > 1 else W[0]
            Ah = np.linalg.multi_dot(Wh[::-1]) if len(W) > 1 else Wh[0]
            require(np.linalg.norm(A - Ah, 2) <= res.eps * (1 + 1e-12), "certificate below the exact linear error")
    return "15 FCNs (5 linear with exact error)"


@register("bridge-cert-R", "certificates.certify_random (bernoulli / rescaled / exact) == §3.11 t_i and A-fwd", "§3.11",
          "numeric", covers=["cert-R-bern", "cert-R-rescaled", "cert-R-exact"], kind="bridge")
def _b_cert_r():
    certify_random = import_attr("probprune.certificates.lemma", "certify_random")
    fcn_spec = import_attr("probprune.net.templates", "fcn_spec")
    rng = np.random.default_rng(110)
    n = 0
    for trial in range(6):
        widths = [int(x) for x in rng.integers(3, 25, int(rng.integers(2, 5)))]
        spec = fcn_spec(widths, "relu")
        W = [rng.uniform(-L.half_width, L.half_width, (L.d_out, L.d_in)) for L in spec.layers]
        for sampling, variant in (("bernoulli", "bern"), ("rescaled", "rescaled"), ("exact", "exact")):
            p = rng.uniform(0.05, 0.9, spec.depth)
            p[0] = 0.0 if trial % 2 else p[0]
            delta = 0.05
            res = certify_random(spec, W, p, delta, sampling=sampling)
            de = delta / max(int((p > 0).sum()), 1)
            nW, nWh, nE = [], [], []
            for M, pi in zip(W, p):
                w = np.linalg.norm(M, 2)
                if pi == 0:
                    nW.append(w), nWh.append(w), nE.append(0.0)
                    continue
                t, _ = _cert_r_terms(M, pi, de, variant)
                nW.append(w)
                if variant == "rescaled":
                    nE.append(t), nWh.append(w + t)
                else:
                    nE.append(pi * w + t), nWh.append((1 - pi) * w + t)
            l = spec.depth
            L = [x.lip for x in spec.layers]
            fwd = np.prod(L) * sum(nE[i] * np.prod(nW[:i]) * np.prod(nWh[i + 1:]) for i in range(l))
            close(res.eps, fwd, rtol=1e-6, what=f"certify_random ({sampling})")
            n += 1
    return f"{n} (network, sampling) pairs"


# ------------------------------------------------------------------------------------------------ budget
@register("bridge-budget-closed-form", "budget.equal_share_closed_form: RR formula and magnitude cubic root == sympy; "
          "eta(q*) = t", "§3.9", "numeric", covers=["inverse-equal-share"], kind="bridge")
def _b_closed_form():
    cf = import_attr("probprune.budgets.apriori", "equal_share_closed_form")
    tt, aa, mm, ll = sp.symbols("t a m lam", positive=True)
    f_rr = _lamb((tt, aa, mm, ll), F.rr_equal_share(tt, aa, mm, ll))
    rng = np.random.default_rng(111)
    n = 500
    m = rng.integers(2, 3000, n).astype(float)
    a = 10 ** rng.uniform(-2.5, 0, n)
    lam = rng.uniform(1.0, 25.0, n)
    t = 10 ** rng.uniform(-3, 1, n) * a * np.sqrt(m)
    p = cf(t, a, m, lam, "random")
    want = np.clip(np.where(t <= 2 * a * lam / 3, 0.0, f_rr(t, a, m, lam)), 0.0, 1.0)
    close(p, want, rtol=1e-9, atol=1e-14, what="RR closed form")
    inside = (want > 0) & (want < 1)
    close(_beta_np(m[inside] * p[inside] * a[inside] ** 2 / 3, a[inside], lam[inside]), t[inside], rtol=1e-8,
          what="eta_RR(p*) = t")
    q = cf(t, a, m, lam, "magnitude")
    qs = sp.Symbol("qs", positive=True)
    cubic = _lamb((qs, tt, aa, mm, ll), F.magnitude_cubic(qs, tt, aa, mm, ll))
    inside = q < 1
    resid = np.abs(cubic(q[inside], t[inside], a[inside], m[inside], lam[inside])) / t[inside] ** 2
    require(np.all(resid < 1e-8), f"magnitude closed form is not a root of the cubic (max residual {resid.max():.1e})")
    close(_beta_np(m[inside] * q[inside] ** 3 * a[inside] ** 2 / 3, q[inside] * a[inside], lam[inside]),
          t[inside], rtol=1e-7, what="eta_RM(q*) = t")
    # clipped cases: the cubic is negative at q = 1, so the root is > 1
    out = ~inside
    require(np.all(cubic(1.0, t[out], a[out], m[out], lam[out]) <= 1e-12 * t[out] ** 2), "clipping at q = 1")
    return f"{n} random (t, a, m, lam); {int(inside.sum())} interior magnitude roots"


@register("bridge-budget-equal-share", "budget.max_prunable(mode='equal_share'): eta_i = rho B_i with rho = "
          "(1+eps/(Lip prod B))^(1/l_p) - 1, matches the closed form, bound <= eps", "§3.9", "numeric",
          covers=["inverse-equal-share"], kind="bridge")
def _b_equal_share():
    max_prunable = import_attr("probprune.budgets.apriori", "max_prunable")
    cf = import_attr("probprune.budgets.apriori", "equal_share_closed_form")
    fcn_spec = import_attr("probprune.net.templates", "fcn_spec")
    n = 0
    for widths, eps, method in (([64, 128, 128, 10], 2.0, "magnitude"), ([30, 200, 10], 5.0, "random"),
                                ([100, 300, 300, 300, 10], 3.0, "magnitude"), ([50, 400, 20], 8.0, "random")):
        spec = fcn_spec(widths, "relu")
        delta = 0.05
        res = max_prunable(spec, eps, delta, method=method, mode="equal_share", statement="bernstein")  # §3.4 closed forms
        B = np.array([L.B for L in res.layers])
        eta = np.array([L.eta for L in res.layers])
        q = res.fractions
        lp = spec.depth  # every layer is a candidate by default
        rho = (1 + eps / (spec.Lip * np.prod(B))) ** (1 / lp) - 1
        de = delta / (spec.depth + lp)
        m, nn, N, a, r = _layer_params(spec)
        lam = np.log(nn / de)
        want = cf(rho * B, a, m, lam, method)
        close(q, want, rtol=1e-9, atol=1e-11, what=f"equal share vs closed form ({method})")
        interior = (q > 0) & (q < 1)
        close(eta[interior], rho * B[interior], rtol=1e-8, what="eta_i = rho B_i")
        require(res.eps_achieved <= eps * (1 + 1e-9), f"equal share exceeds eps: {res.eps_achieved}")
        n += 1
    return f"{n} networks"


# ------------------------------------------------------------------------------------------------ mc.stats
@register("bridge-clopper-pearson", "mc.stats: cp_upper(0,T,a) = 1 - a^(1/T); T_min = ceil(ln a/ln(1-delta)) (59 for "
          "0.05/0.05); binomial-tail identities", "§6", "numeric", kind="bridge", optional=True)
def _b_cp():
    cp_upper = import_attr("probprune.mc.stats", "cp_upper")
    cp_lower = import_attr("probprune.mc.stats", "cp_lower")
    tmin = import_attr("probprune.mc.stats", "min_trials_for_consistency")
    T, al = sp.symbols("T alpha", positive=True)
    f_up0 = sp.lambdify((T, al), F.cp_upper_zero(T, al), "numpy")
    # T >= ln(alpha)/ln(1 - delta) <=> 1 - alpha^(1/T) <= delta
    for a_ in (0.01, 0.05, 0.1):
        for d_ in (0.001, 0.01, 0.05, 0.2):
            Tm = tmin(d_, a_)
            require(Tm == math.ceil(math.log(a_) / math.log(1 - d_) - 1e-12), f"T_min({d_}, {a_}) = {Tm}")
            require(cp_upper(0, Tm, a_) <= d_ < cp_upper(0, Tm - 1, a_) if Tm > 1 else True, "T_min minimality")
    require(tmin(0.05, 0.05) == 59, "T_min(0.05, 0.05) != 59")
    rng = np.random.default_rng(112)
    for _ in range(300):
        Tn = int(rng.integers(1, 2000))
        a_ = float(rng.uniform(0.001, 0.3))
        close(cp_upper(0, Tn, a_), f_up0(Tn, a_), rtol=1e-9, what="cp_upper(0, T)")
        k = int(rng.integers(0, Tn + 1))
        up, lo = cp_upper(k, Tn, a_), cp_lower(k, Tn, a_)
        # exact (Clopper-Pearson) definition: P(Bin(T, up) <= k) = alpha, P(Bin(T, lo) >= k) = alpha
        if k < Tn:
            close(stats.binom.cdf(k, Tn, up), a_, rtol=1e-6, what="upper: binomial cdf")
        if k > 0:
            close(stats.binom.sf(k - 1, Tn, lo), a_, rtol=1e-6, what="lower: binomial sf")
    return "cp_upper(0,T) vs the symbolic form; T_min on a grid; 300 binomial-tail identities"


# ------------------------------------------------------------------------------------------------ subsetsum
@register("bridge-subsetsum-widths", "subsetsum.widths: counting bound d^2 log2(1/(4eps)), (d/2) log2(.); Pensia / "
          "Orseau / da Cunha / Malach width formulas of §4.3", "§4.5", "numeric", covers=["counting-lower"],
          kind="bridge", optional=True)
def _b_widths():
    counting = import_attr("probprune.subsetsum.widths", "counting_lower_bound")
    pensia = import_attr("probprune.subsetsum.widths", "pensia_block_width")
    orseau = import_attr("probprune.subsetsum.widths", "orseau_block_width")
    dacunha = import_attr("probprune.subsetsum.widths", "da_cunha_conv_width")
    malach = import_attr("probprune.subsetsum.widths", "malach_width")
    d, eps, dp, l, de, C, k, c0, c1 = sp.symbols("d eps dp l delta C k c0 c1", positive=True)
    f_N = _lamb((d, eps), d ** 2 * sp.log(1 / (4 * eps), 2))
    f_w = _lamb((d, eps), d / 2 * sp.log(1 / (4 * eps), 2))
    rng = np.random.default_rng(113)
    dd = rng.integers(1, 500, 300).astype(float)
    ee = 10 ** rng.uniform(-6, np.log10(0.249), 300)
    res = counting(dd, ee)
    close(res.params, f_N(dd, ee), rtol=RTOL, what="counting N")
    close(res.width, f_w(dd, ee), rtol=RTOL, what="counting width")
    mn = sp.Min(eps, de)
    f_p = _lamb((dp, d, l, eps, de, C), C * dp * sp.log(dp * d * l / mn))
    f_o = _lamb((dp, d, l, eps, de, C), C * dp * d * sp.log(dp * d * l / mn))
    f_c = _lamb((k, c0, c1, l, eps, de, C), C * sp.log(k ** 2 * c0 * c1 * l / mn))
    for _ in range(100):
        a_, b_, L_ = (float(x) for x in rng.integers(1, 1000, 3))
        e_, dl_ = float(10 ** rng.uniform(-4, -0.5)), float(10 ** rng.uniform(-4, -0.5))
        Cc = float(rng.uniform(0.5, 5))
        close(pensia(a_, b_, L_, e_, dl_, C=Cc).width, f_p(a_, b_, L_, e_, dl_, Cc), rtol=RTOL, what="Pensia width")
        close(pensia(a_, b_, L_, e_, dl_, C=Cc, log_base=2).width, f_p(a_, b_, L_, e_, dl_, Cc) / math.log(2),
              rtol=RTOL, what="Pensia width, log base 2")
        close(orseau(a_, b_, L_, e_, dl_, C=Cc).width, f_o(a_, b_, L_, e_, dl_, Cc), rtol=RTOL, what="Orseau width")
        kk = float(rng.integers(1, 8))
        close(dacunha(kk, a_, b_, L_, e_, dl_, C=Cc).width, f_c(kk, a_, b_, L_, e_, dl_, Cc), rtol=RTOL,
              what="da Cunha width")
        close(malach(a_, L_, e_, C=Cc, a=5, b=2, c=2).width, Cc * a_ ** 5 * L_ ** 2 * e_ ** -2, rtol=RTOL,
              what="Malach monomial")
    return "300 counting-bound points; 100 points per width formula"


@register("bridge-subsetsum-construction", "subsetsum.construction: entry_tolerance = (eps/(2l))/sqrt(c_i r d_i d_{i-1}) "
          "(c_1 = 2); compose_bound = A-fwd recursion, prod(1+eps_i)-1 for unit norms", "§4.2", "numeric",
          covers=["per-entry-tolerance", "composition"], kind="bridge", optional=True)
def _b_construction():
    entry_tolerance = import_attr("probprune.subsetsum.construction", "entry_tolerance")
    compose_bound = import_attr("probprune.subsetsum.construction", "compose_bound")
    Cfg = import_attr("probprune.subsetsum.construction", "ConstructionConfig")
    fcn_spec = import_attr("probprune.net.templates", "fcn_spec")
    rng = np.random.default_rng(114)
    for _ in range(20):
        widths = [int(x) for x in rng.integers(1, 40, int(rng.integers(2, 6)))]
        spec = fcn_spec(widths, "relu")
        eps = float(10 ** rng.uniform(-3, 0))
        cfg = Cfg(eps=eps)
        l = spec.depth
        for i, L in enumerate(spec.layers):
            want = (eps / (2 * l)) / math.sqrt((2 if i == 0 else 1) * L.d_in * L.d_out)
            close(entry_tolerance(L, i, l, cfg), want, rtol=1e-12, what="entry tolerance")
            # per-entry tolerance -> Frobenius <= eps_i
            require(want * math.sqrt((2 if i == 0 else 1) * L.d_in * L.d_out) <= eps / (2 * l) * (1 + 1e-12),
                    "Frobenius")
    for l in range(1, 7):
        syms = [sp.symbols(f"{nm}1:{l + 1}", positive=True) for nm in ("L", "w", "x")]
        Ls, ws, xs = syms
        # A-fwd closed form with what_j <= w_j + x_j and ||h_{i-1}|| <= prod_{j<i} L_j w_j
        fwd = sum(Ls[i] * xs[i] * sp.prod([Ls[k] * ws[k] for k in range(i)])
                  * sp.prod([Ls[k] * (ws[k] + xs[k]) for k in range(i + 1, l)]) for i in range(l))
        f = sp.lambdify(syms, fwd, "numpy")
        for _ in range(30):
            L_, w_, x_ = rng.uniform(0.5, 2, l), rng.uniform(0.1, 2, l), rng.uniform(0, 0.3, l)
            close(compose_bound(w_, x_, L_), f(L_, w_, x_), rtol=1e-12, what=f"compose_bound depth {l}")
            close(compose_bound(np.ones(l), x_, np.ones(l)), np.prod(1 + x_) - 1, rtol=1e-12,
                  what="compose_bound, unit norms")
    return "entry tolerance on 20 FCNs; compose_bound on depth 1..6"


# ------------------------------------------------------------------------------------------------ norms
@register("bridge-conv-norm", "norms.layer_operator_norm_upper >= the explicit operator norm (FFT and Lemma C paths), "
          "<= sqrt(r)||mat W||(1+1e-9); spectral_norm_upper >= SVD", "§3.11", "numeric", covers=["lemmaC", "cert-D"],
          kind="bridge")
def _b_conv_norm():
    upper = import_attr("probprune.theory.norms", "layer_operator_norm_upper")
    snu = import_attr("probprune.theory.norms", "spectral_norm_upper")
    cnn_spec = import_attr("probprune.net.templates", "cnn_spec")
    ConvLayer = import_attr("probprune.net.templates", "ConvLayer")
    rng = np.random.default_rng(115)
    n, tight = 0, []
    for k in (1, 2, 3, 4, 5):
        for s_ in (1, 2, 3):
            for pad in sorted({0, k // 2, k - 1}):
                H = 9
                spec = cnn_spec((2, H, H), [ConvLayer(3, k, s_, pad)], [4], "relu")
                L = spec.layers[0]
                W = rng.uniform(-1, 1, L.weight_shape)
                T, _, _ = conv_operator(W, H, H, L.stride, L.padding)
                exact = np.linalg.norm(T, 2)
                lemma_c = math.sqrt(L.r) * np.linalg.norm(W.reshape(W.shape[0], -1), 2)
                for method in ("fft", "kernel"):
                    u = upper(L, W, method)
                    require(u >= exact * (1 - 1e-12), f"{method} norm {u} < exact operator norm {exact} "
                                                      f"(k={k}, s={s_}, pad={pad})")
                    require(u <= lemma_c * (1 + 1e-8), f"{method} norm {u} > Lemma C bound {lemma_c}")
                tight.append(exact / upper(L, W, "fft"))
                n += 1
    for _ in range(100):
        M = rng.standard_normal(tuple(rng.integers(1, 60, 2))) * 10 ** rng.uniform(-3, 3)
        sv = np.linalg.svd(M, compute_uv=False)[0]
        u = snu(M)
        require(sv <= u <= sv * (1 + 1e-7), f"spectral_norm_upper {u} vs SVD {sv}")
    return f"{n} conv configs, exact/upper in [{min(tight):.3f}, {max(tight):.3f}]; 100 dense matrices"


@register("bridge-exact-k", "bounds.exact_k_line_count_bound: hypergeometric union bound P(D > D*) <= delta_D (MC, "
          "2000 exact-k masks) and RR-mask eta with D*", "§3.4", "numeric", covers=["RR-mask"], kind="bridge")
def _b_exact_k():
    line_bound = import_attr("probprune.theory.apriori", "exact_k_line_count_bound")
    rng = np.random.default_rng(116)
    worst = 0.0
    for rows, cols, k, dD in ((20, 30, 120, 0.1), (50, 10, 100, 0.2), (40, 40, 800, 0.05)):
        Ds = line_bound(rows, cols, k, dD)
        want = max(stats.hypergeom.ppf(1 - dD / (rows + cols), rows * cols, k, cols),
                   stats.hypergeom.ppf(1 - dD / (rows + cols), rows * cols, k, rows))
        require(Ds == int(want), f"D* = {Ds}, hypergeometric quantile {want}")
        T = 2000
        exceed = 0
        for _ in range(T):
            P = np.zeros(rows * cols, bool)
            P[rng.permutation(rows * cols)[:k]] = True
            P = P.reshape(rows, cols)
            exceed += int(max(P.sum(1).max(), P.sum(0).max()) > Ds)
        frac = exceed / T
        worst = max(worst, frac / dD)
        require(frac <= dD + 3 * math.sqrt(dD / T), f"P(D > D*) ~ {frac} > delta_D = {dD}")
    return f"3 layer shapes; max observed P(D > D*)/delta_D = {worst:.2f}"
