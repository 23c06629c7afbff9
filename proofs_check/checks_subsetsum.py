"""Subset-sum lottery tickets: containment (§4.1), the Pensia construction algebra (§4.2), error composition
(§4.4) and the counting lower bound (§4.5)."""
from __future__ import annotations

import itertools
import math

import numpy as np
import sympy as sp
from scipy import stats

from ._core import hypothesis_cases, register, require, sym_positive, sym_zero


# ---------------------------------------------------------------------------------------------- §4.1
@register("contain-product", "uv, u,v ~ U[-1,1]: density -ln|z|/2, integrates to 1, >= ln2/2 on [-1/2,1/2]; "
          "same law as v|u|", "§4.1", "symbolic+numeric", covers=["contain-product"])
def _chk_contain_product():
    z = sp.Symbol("z", positive=True)  # by symmetry, z in (0, 1]
    t = sp.Symbol("t", positive=True)
    # density of uv at z: int_{-1}^{1} (1/2) (1/2) 1{|z/u| <= 1} / |u| du = 2 * (1/4) int_{z}^{1} du/u
    f = 2 * sp.Rational(1, 4) * sp.integrate(1 / t, (t, z, 1))
    sym_zero(f + sp.log(z) / 2, "density of uv")
    # v |u|: |u| ~ U[0,1], v ~ U[-1,1]: int_0^1 (1/2)(1/t) 1{z <= t} dt
    f2 = sp.integrate(sp.Rational(1, 2) / t, (t, z, 1))
    sym_zero(f2 - f, "v|u| has the same density")
    sym_zero(2 * sp.integrate(-sp.log(z) / 2, (z, 0, 1)) - 1, "density integrates to 1")
    sym_positive(-sp.diff(-sp.log(z) / 2, z), "density decreasing in |z|")
    sym_zero((-sp.log(z) / 2).subs(z, sp.Rational(1, 2)) - sp.log(2) / 2, "density at 1/2")
    # numeric: histogram of products vs the density
    rng = np.random.default_rng(41)
    prod = rng.uniform(-1, 1, 2_000_000) * rng.uniform(-1, 1, 2_000_000)
    hist, edges = np.histogram(np.abs(prod), bins=20, range=(0.05, 0.95))
    mid = (edges[1:] + edges[:-1]) / 2
    emp = hist / (prod.size * (edges[1] - edges[0])) / 2  # density of uv at +-mid
    require(np.max(np.abs(emp / (-np.log(mid) / 2) - 1)) < 0.02, "sampled density of uv")
    return "symbolic density, normalisation, monotonicity, value ln2/2 at 1/2; histogram of 2e6 products"


@register("contain-gauss", "N(0,1) contains 2 phi(1) U[-1,1] (phi >= phi(1) on [-1,1]); 2 phi(1) ~ 0.484", "§4.1",
          "symbolic+numeric", covers=["contain-gauss"])
def _chk_contain_gauss():
    x = sp.Symbol("x", real=True)
    phi = sp.exp(-x ** 2 / 2) / sp.sqrt(2 * sp.pi)
    alpha = 2 * phi.subs(x, 1)
    # alpha U[-1,1] has density alpha/2 = phi(1) on [-1,1]; phi is even and decreasing on [0,1]
    y = sp.Symbol("y", positive=True)
    sym_positive(-sp.diff(phi, x).subs(x, y), "phi decreasing on (0, oo)")
    sym_zero(alpha / 2 - phi.subs(x, 1), "mixture density alpha/2 = phi(1)")
    require(abs(float(alpha) - 0.4839414490382867) < 1e-15 and round(float(alpha), 3) == 0.484,
            f"2 phi(1) = {float(alpha)}")
    g = np.linspace(-1, 1, 100001)
    require(np.all(stats.norm.pdf(g) >= float(alpha) / 2 * (1 - 1e-15)), "phi < phi(1) inside [-1, 1]")
    return f"2 phi(1) = {float(alpha):.6f}"


# ---------------------------------------------------------------------------------------------- §4.2
def _relu(x):
    return np.maximum(x, 0.0)


@register("relu-split", "wx = w relu(x) - w relu(-x); relu(ux) = u relu(x) (u>0), |u| relu(-x) (u<0); "
          "||[relu(x); relu(-x)]|| = ||x||", "§4.2", "symbolic", covers=["per-entry-tolerance"])
def _chk_relu_split():
    w = sp.Symbol("w", real=True)
    u_pos = sp.Symbol("u", positive=True)
    u_neg = -sp.Symbol("v", positive=True)
    xp = sp.Symbol("xp", positive=True)  # x > 0
    xn = -sp.Symbol("xn", positive=True)  # x < 0
    relu = lambda e: sp.Max(e, 0)  # noqa: E731
    for x in (xp, xn, sp.Integer(0)):
        sym_zero(w * relu(x) - w * relu(-x) - w * x, f"relu split at x={x}")
        for ww in (u_pos, u_neg):
            sym_zero(relu(ww * x) - relu(-ww * x) - ww * x, f"sigma(wx) - sigma(-wx) = wx at x={x}")
        sym_zero(relu(u_pos * x) - u_pos * relu(x), f"u > 0 homogeneity at x={x}")
        sym_zero(relu(u_neg * x) - sp.Abs(u_neg) * relu(-x), f"u < 0 at x={x}")
        sym_zero(relu(x) ** 2 + relu(-x) ** 2 - x ** 2, f"relu(x)^2 + relu(-x)^2 = x^2 at x={x}")
    return "all sign cases of x, u"


@register("per-entry-tolerance", "eps' = eps_i/sqrt(c_i d_i d_{i-1}) => ||What - W|| <= ||.||_F <= eps_i (c_1 = 2 via "
          "[s(x); s(-x)])", "§4.2", "symbolic+numeric", covers=["per-entry-tolerance"])
def _chk_tolerance():
    eps, d0, d1 = sp.symbols("eps d0 d1", positive=True)
    for ci in (1, 2):
        ep = eps / sp.sqrt(ci * d1 * d0)
        # Frobenius of a d1 x (c_i d0) matrix with every entry <= eps' is <= eps' sqrt(c_i d1 d0) = eps
        sym_zero(sp.sqrt(ci * d1 * d0 * ep ** 2) - eps, f"Frobenius bound, c_i = {ci}")

    def case(seed, d_in, d_out, eps_):
        rng = np.random.default_rng(seed)
        W = rng.uniform(-1, 1, (d_out, d_in)) / np.sqrt(d_in)
        ep1 = eps_ / math.sqrt(2 * d_out * d_in)
        A = W + rng.uniform(-ep1, ep1, W.shape)  # the sigma(x) branch: A ~ W
        C = -W + rng.uniform(-ep1, ep1, W.shape)  # the sigma(-x) branch: C ~ -W
        x = rng.standard_normal(d_in)
        x /= np.linalg.norm(x)
        block = A @ _relu(x) + C @ _relu(-x)
        Delta = np.concatenate([A - W, C + W], axis=1)
        assert np.linalg.norm(Delta) <= eps_ * (1 + 1e-12)
        assert abs(np.linalg.norm(np.concatenate([_relu(x), _relu(-x)])) - 1.0) < 1e-12
        assert np.linalg.norm(block - W @ x) <= np.linalg.norm(Delta, 2) * (1 + 1e-12) + 1e-15
        ep = eps_ / math.sqrt(d_out * d_in)  # layers i >= 2 (inputs >= 0)
        Wh = W + rng.uniform(-ep, ep, W.shape)
        assert np.linalg.norm(Wh - W, 2) <= np.linalg.norm(Wh - W) * (1 + 1e-12) <= eps_ * (1 + 1e-12)

    from hypothesis import strategies as st

    n = hypothesis_cases(case, st.integers(0, 2**31 - 1), st.integers(1, 20), st.integers(1, 20),
                         st.floats(1e-4, 1.0), max_examples=150)
    return f"symbolic Frobenius arithmetic; {n} random layer-1/layer-i blocks"


@register("pensia-block", "the masked two-layer block computes y -> What y with What[a,j] = sum_S v|u| (exact, y >= 0; "
          "signed first layer via the u<0 units)", "§4.2", "numeric", covers=["per-entry-tolerance"])
def _chk_block():
    rng = np.random.default_rng(42)
    d_in, d_out, n_per = 3, 2, 8
    W = rng.uniform(-0.5, 0.5, (d_out, d_in))
    # first-layer style block with signed inputs: n_per units per input, random signs
    u = rng.uniform(-1, 1, (d_in, n_per))
    v = rng.uniform(-1, 1, (d_out, d_in, n_per))
    M1 = np.zeros((d_in * n_per, d_in))
    for j in range(d_in):
        M1[j * n_per:(j + 1) * n_per, j] = u[j]  # block-diagonal mask S_1: unit (j,k) reads input j only
    M2 = np.zeros((d_out, d_in * n_per))
    Wplus = np.zeros_like(W)
    Wminus = np.zeros_like(W)
    for a_, j in itertools.product(range(d_out), range(d_in)):
        for sign, target, store in ((1, W[a_, j], Wplus), (-1, -W[a_, j], Wminus)):
            ks = [k for k in range(n_per) if np.sign(u[j, k]) == sign]
            cs = [v[a_, j, k] * abs(u[j, k]) for k in ks]
            best, bestS = abs(target), ()
            for r in range(1, len(ks) + 1):  # brute-force subset sum (n_per small)
                for S in itertools.combinations(range(len(ks)), r):
                    e = abs(target - sum(cs[i] for i in S))
                    if e < best:
                        best, bestS = e, S
            for i in bestS:
                M2[a_, j * n_per + ks[i]] = v[a_, j, ks[i]]
            store[a_, j] = sum(cs[i] for i in bestS)
    X = rng.standard_normal((d_in, 200))
    block = M2 @ _relu(M1 @ X)
    # algebra: units with u > 0 give v u relu(x_j) (sum = W+ ~ W), units with u < 0 give v |u| relu(-x_j)
    # (sum = W- ~ -W), so block(x) = W+ relu(x) + W- relu(-x) ~ W relu(x) - W relu(-x) = W x
    require(np.allclose(block, Wplus @ _relu(X) + Wminus @ _relu(-X), atol=1e-12),
            "masked block != W+ relu(x) + W- relu(-x)")
    tol = max(np.abs(Wplus - W).max(), np.abs(Wminus + W).max())
    Delta = np.concatenate([Wplus - W, Wminus + W], axis=1)
    err = np.linalg.norm(block - W @ X, axis=0) / np.linalg.norm(X, axis=0)
    require(np.all(err <= np.linalg.norm(Delta, 2) * (1 + 1e-12)), "block error exceeds ||[W+ - W, W- + W]||")
    require(np.linalg.norm(Delta) <= tol * math.sqrt(2 * d_out * d_in) * (1 + 1e-12), "Frobenius vs per-entry")
    # for y >= 0 only the u > 0 units contribute: block(y) = W+ y exactly
    Y = np.abs(X)
    require(np.allclose(M2 @ _relu(M1 @ Y), Wplus @ Y, atol=1e-12), "block on y >= 0 != W+ y")
    return f"{d_out}x{d_in} target, {n_per} units per input; exact block algebra"


# ---------------------------------------------------------------------------------------------- §4.4
@register("composition", "e_i <= e_{i-1} + eps_i(1+e_{i-1}) => e_l <= prod(1+eps_i) - 1 (= A-bwd with ||W||<=1); "
          "(1+eps/(2l))^l - 1 <= e^(eps/2) - 1 <= eps for eps <= 1", "§4.4", "symbolic+numeric",
          covers=["composition"])
def _chk_composition():
    e, ep = sp.symbols("e eps_i", nonnegative=True)
    # 1 + e_i <= (1 + e_{i-1})(1 + eps_i): the recursion is this identity
    sym_zero((1 + e) * (1 + ep) - (1 + e + ep * (1 + e)), "1 + rhs = (1 + e)(1 + eps)")
    # A-bwd with w_j = 1 and what_j = 1 + eps_j gives sum_i eps_i prod_{j<i}(1+eps_j) = prod(1+eps) - 1
    for l in range(1, 7):
        eps_ = sp.symbols(f"e1:{l + 1}", nonnegative=True)
        bwd = sum(eps_[i] * sp.prod([1 + x for x in eps_[:i]]) for i in range(l))
        require(sp.expand(bwd - (sp.prod([1 + x for x in eps_]) - 1)) == 0, f"A-bwd form at l={l}")
    # (1 + x/l)^l <= e^x: l ln(1 + x/l) <= x since ln(1+y) <= y (k(y) = y - ln(1+y), k(0)=0, k' = y/(1+y) >= 0)
    y = sp.Symbol("y", positive=True)
    kf = y - sp.log(1 + y)
    sym_zero(kf.subs(y, 0), "k(0)")
    sym_positive(sp.diff(kf, y), "k'(y)")
    # e^{x/2} - 1 <= x on [0, 1]: convex, equality at 0, e^{1/2} - 1 < 1 at 1
    x = sp.Symbol("x", positive=True)
    fx = sp.exp(x / 2) - 1 - x
    sym_positive(sp.diff(fx, x, 2), "convexity")
    sym_zero(fx.subs(x, 0), "value at 0")
    require(bool(fx.subs(x, 1) < 0), "value at 1")
    g = np.linspace(0, 1, 100001)
    for L in (1, 2, 3, 5, 10, 100):
        lhs = np.expm1(L * np.log1p(g / (2 * L)))
        require(np.all(lhs <= np.expm1(g / 2) * (1 + 1e-15) + 1e-300), f"(1+eps/(2l))^l > e^(eps/2) at l={L}")
    require(np.all(np.expm1(g / 2) <= g + 1e-15), "e^(eps/2)-1 > eps on [0,1]")

    def case(e_, L):
        # evaluated as expm1(l log1p(eps/(2l))): the naive (1 + x)^l - 1 loses ~1e-9 relative accuracy at small eps
        # (hypothesis found eps = 1.19e-7, l = 222, where the naive form exceeds e^(eps/2) - 1 by rounding alone)
        assert math.expm1(L * math.log1p(e_ / (2 * L))) <= math.expm1(e_ / 2) * (1 + 1e-14) + 1e-300
        assert math.expm1(e_ / 2) <= e_ * (1 + 1e-15)

    from hypothesis import strategies as st

    hypothesis_cases(case, st.floats(0, 1), st.integers(1, 10_000), max_examples=200)
    # the recursion bound through real layers: random blocks with ||g_i(y) - W_i y|| <= eps_i ||y||
    rng = np.random.default_rng(44)
    for trial in range(30):
        l = int(rng.integers(1, 6))
        d = 6
        Ws = [(M := rng.standard_normal((d, d))) / np.linalg.norm(M, 2) for _ in range(l)]
        eps_l = rng.uniform(0, 0.2, l)
        Wh = []
        for M, ei in zip(Ws, eps_l):
            D = rng.standard_normal(M.shape)
            Wh.append(M + ei * D / np.linalg.norm(D, 2))
        xx = rng.standard_normal((d, 100))
        xx /= np.linalg.norm(xx, axis=0)
        h, hh = xx, xx
        for i in range(l):
            h, hh = Ws[i] @ h, Wh[i] @ hh
            if i < l - 1:
                h, hh = _relu(h), _relu(hh)
        err = np.linalg.norm(h - hh, axis=0).max()
        require(err <= np.prod(1 + eps_l) - 1 + 1e-12, f"composition violated: {err}")
    return ("symbolic recursion / A-bwd form / elementary inequalities; grid 6 x 100001 + 200 hypothesis cases; "
            "30 random networks")


# ---------------------------------------------------------------------------------------------- §4.5
@register("counting-lower", "2^N >= (1/(4 eps))^(d^2) => N >= d^2 log2(1/(4eps)); [I,-I]/sqrt2 relu([W;-W]/sqrt2 x) = "
          "Wx/2; depth 2: w >= (d/2) log2(1/(4eps))", "§4.5", "symbolic+numeric", covers=["counting-lower"])
def _chk_counting():
    N, d, eps, w = sp.symbols("N d eps w", positive=True)
    # packing: M vol(B_{2eps}) >= vol(B_{1/2}) in dimension D = d^2 => M >= (1/(4 eps))^{d^2}
    D = d ** 2
    sym_zero(((sp.Rational(1, 2)) / (2 * eps)) ** D - (1 / (4 * eps)) ** D, "volume ratio")
    # 2^N >= M  =>  N >= log2 M = d^2 log2(1/(4 eps))
    sym_zero(sp.expand_log(sp.log((1 / (4 * eps)) ** D, 2), force=True)
             - sp.expand_log(D * sp.log(1 / (4 * eps), 2), force=True), "log2 of the packing number")
    # depth 2, M1 in R^{w x d}, M2 in R^{d x w}: N = 2 w d >= d^2 log2(1/(4eps)) => w >= (d/2) log2(1/(4 eps))
    sol = sp.solve(sp.Eq(2 * w * d, D * sp.log(1 / (4 * eps), 2)), w)
    sym_zero(sol[0] - d / 2 * sp.log(1 / (4 * eps), 2), "width bound")
    # the class contains x -> W x / 2 for ||W|| <= 1
    for val in (sp.Symbol("yp", positive=True), -sp.Symbol("yn", positive=True), 0):
        sym_zero((sp.Max(val, 0) - sp.Max(-val, 0)) / 2 - val / 2, "(relu(y) - relu(-y))/2 = y/2")
    rng = np.random.default_rng(45)
    for _ in range(20):
        dd = int(rng.integers(1, 8))
        Wm = rng.standard_normal((dd, dd))
        Wm /= np.linalg.norm(Wm, 2)
        M1 = np.concatenate([Wm, -Wm]) / np.sqrt(2)
        M2 = np.concatenate([np.eye(dd), -np.eye(dd)], axis=1) / np.sqrt(2)
        X = rng.standard_normal((dd, 50))
        require(np.allclose(M2 @ _relu(M1 @ X), Wm @ X / 2, atol=1e-12), "two-layer realisation of Wx/2")
        require(abs(np.linalg.norm(M1, 2) - 1) < 1e-12 and abs(np.linalg.norm(M2, 2) - 1) < 1e-12,
                "factor norms must be <= 1")
    return "packing arithmetic, width algebra; realisation of Wx/2 with unit-norm factors (20 random W)"
