"""Lemma A, Corollary A1, (A*) and the first-order reading (THEORY.md §3.1, §3.7).

General depth is handled by an induction step proved with sympy: the sum/product objects are peeled by their
definitions (last term of a finite Sum, last factor of a finite Product, both with a symbolic upper limit n), the
peeled expressions are rewritten with sympy's ``factor_terms`` (linearity of the sum), and the remaining algebra
under the induction hypothesis is checked to expand to 0. The explicit identities are also expanded for l <= 6.
"""
from __future__ import annotations

import numpy as np
import sympy as sp

from ._core import hypothesis_cases, register, require, sym_zero

MAX_L = 6


# ------------------------------------------------------------------------------- sympy induction machinery
_n = sp.Symbol("n", integer=True, positive=True)
_i, _j = sp.symbols("i j", integer=True, positive=True)
_f, _g = sp.Function("f"), sp.Function("g")


def _peel_sum(s: sp.Sum) -> sp.Expr:
    """Sum_{i=a}^{b} F(i) -> Sum_{i=a}^{b-1} F(i) + F(b) (definition of a finite sum)."""
    (v, a, b), = s.limits
    return sp.Sum(s.function, (v, a, b - 1)) + s.function.subs(v, b)


def _peel_product(p: sp.Product) -> sp.Expr:
    """Prod_{j=a}^{b} G(j) -> Prod_{j=a}^{b-1} G(j) * G(b) (definition of a finite product, a <= b)."""
    (v, a, b), = p.limits
    return sp.Product(p.function, (v, a, b - 1)) * p.function.subs(v, b)


def _is_empty_product(e) -> bool:
    return isinstance(e, sp.Product) and sp.simplify(e.limits[0][2] - e.limits[0][1] + 1) == 0


def _same(lhs, rhs) -> bool:
    """lhs == rhs for expressions with Sum/Product objects: expand, pull factors out of sums (linearity)."""
    return sp.simplify(sp.factor_terms(sp.expand(lhs - rhs))) == 0


def S_after(N, f=_f, g=_g):
    """S_N = sum_{i=1}^{N} f(i) prod_{j=i+1}^{N} g(j)."""
    return sp.Sum(f(_i) * sp.Product(g(_j), (_j, _i + 1, N)), (_i, 1, N))


def S_before(N, f=_f, g=_g):
    """S_N = sum_{i=1}^{N} f(i) prod_{j=1}^{i-1} g(j)."""
    return sp.Sum(f(_i) * sp.Product(g(_j), (_j, 1, _i - 1)), (_i, 1, N))


def prove_sum_recursions() -> None:
    """Generic lemma (f, g arbitrary functions, n symbolic):
    S_after(n+1) = g(n+1) S_after(n) + f(n+1);   S_before(n+1) = S_before(n) + f(n+1) prod_{j<=n} g(j).
    """
    x = _peel_sum(S_after(_n + 1)).replace(_is_empty_product, lambda e: sp.Integer(1))
    # inside the remaining sum i <= n, so the product over j = i+1..n+1 is non-empty: peel its last factor
    x = x.replace(lambda e: isinstance(e, sp.Sum),
                  lambda s: sp.Sum(s.function.replace(lambda e: isinstance(e, sp.Product), _peel_product),
                                   s.limits[0]))
    require(_same(x, _g(_n + 1) * S_after(_n) + _f(_n + 1)), "recursion of S_after not verified")
    y = _peel_sum(S_before(_n + 1))
    require(_same(y, S_before(_n) + _f(_n + 1) * sp.Product(_g(_j), (_j, 1, _n))),
            "recursion of S_before not verified")
    P = sp.Product(1 + sp.IndexedBase("r")[_j], (_j, 1, _n + 1))
    require(sp.simplify(_peel_product(P) - sp.Product(P.function, (_j, 1, _n)) * (1 + sp.IndexedBase("r")[_n + 1]))
            == 0, "product peel")
    # guard the helpers: the definitions evaluate as expected for small N
    for N in range(1, 5):
        fv = sp.symbols(f"f1:{N + 1}")
        gv = sp.symbols(f"g1:{N + 1}")
        F = sp.Lambda(_i, sp.Piecewise(*[(fv[k], sp.Eq(_i, k + 1)) for k in range(N)], (0, True)))
        G = sp.Lambda(_j, sp.Piecewise(*[(gv[k], sp.Eq(_j, k + 1)) for k in range(N)], (1, True)))
        want = sum(fv[k] * sp.prod(gv[k + 1:]) for k in range(N))
        require(sp.expand(S_after(N, F, G).doit() - want) == 0, f"S_after definition at N={N}")


def induction_product_identity(order: str) -> str:
    """prod_{j=1}^{n}(1+r_j) - 1 = S_n for every n >= 1, with f = r and g = 1 + r.

    order="after": S_n = sum_i r_i prod_{j>i}(1+r_j) (Corollary A1 as stated);
    order="before": S_n = sum_i r_i prod_{j<i}(1+r_j) (the (A-bwd) / composition order).
    """
    prove_sum_recursions()
    # base case n = 1 (and n = 0: empty sum = empty product - 1 = 0)
    r1 = sp.Symbol("r1")
    require(sp.expand((1 + r1) - 1 - r1) == 0, "base case")
    # induction step: X = P_n = prod_{j<=n}(1+r_j), Y = S_n, rr = r_{n+1}; hypothesis Y = X - 1;
    # P_{n+1} = X (1 + rr) by the definition of the product (_peel_product, verified in prove_sum_recursions' guard)
    X, Y, rr = sp.symbols("X Y rr")
    if order == "after":
        S_next = (1 + rr) * Y + rr  # S_after(n+1) = g(n+1) S(n) + f(n+1)
    else:
        S_next = Y + rr * X  # S_before(n+1) = S(n) + f(n+1) prod_{j<=n} g(j)
    sym_zero(S_next.subs(Y, X - 1) - (X * (1 + rr) - 1), f"induction step ({order})")
    return "base + step"


def expand_identity(l: int, order: str) -> None:
    """Corollary A1 at depth l, by full expansion."""
    r = sp.symbols(f"r1:{l + 1}")
    lhs = sp.prod([1 + x for x in r]) - 1
    if order == "after":
        rhs = sum(r[i] * sp.prod([1 + r[k] for k in range(i + 1, l)]) for i in range(l))
    else:
        rhs = sum(r[i] * sp.prod([1 + r[k] for k in range(i)]) for i in range(l))
    require(sp.expand(lhs - rhs) == 0, f"product identity fails at l={l} ({order})")


@register("A1-induction", "Corollary A1 for every depth: symbolic induction (both orders)", "§3.1", "symbolic",
          covers=["corA1"])
def _chk_a1_induction():
    induction_product_identity("after")
    induction_product_identity("before")
    return "base case, structural recursion and step proved for symbolic n"


@register("A1-expand", "Corollary A1 expanded for l = 1..6, both orders", "§3.1", "symbolic", covers=["corA1"])
def _chk_a1_expand():
    for l in range(1, MAX_L + 1):
        for order in ("after", "before"):
            expand_identity(l, order)
    return f"expand(lhs - rhs) == 0 for l <= {MAX_L}, both orders"


def _unrolled(l: int, direction: str):
    """Unroll Delta_i = L_i (e_i h_{i-1} + what_i Delta_{i-1}) (fwd) or L_i (w_i Delta_{i-1} + e_i hhat_{i-1}) (bwd)."""
    L = sp.symbols(f"L1:{l + 1}", positive=True)
    w = sp.symbols(f"w1:{l + 1}", positive=True)
    wh = sp.symbols(f"wh1:{l + 1}", positive=True)
    e = sp.symbols(f"e1:{l + 1}", positive=True)
    D = sp.Integer(0)
    for i in range(l):
        if direction == "fwd":
            h_prev = sp.prod([L[k] * w[k] for k in range(i)])  # ||h_{i-1}|| <= prod_{j<i} L_j ||W_j||
            D = L[i] * (e[i] * h_prev + wh[i] * D)
        else:
            hh_prev = sp.prod([L[k] * wh[k] for k in range(i)])
            D = L[i] * (w[i] * D + e[i] * hh_prev)
    Lip = sp.prod(L)
    if direction == "fwd":
        closed = Lip * sum(e[i] * sp.prod(w[:i]) * sp.prod(wh[i + 1:]) for i in range(l))
    else:
        closed = Lip * sum(e[i] * sp.prod(wh[:i]) * sp.prod(w[i + 1:]) for i in range(l))
    return D, closed


@register("A-unroll", "Lemma A: unrolled recursion equals (A-fwd) and (A-bwd), l = 1..6; general-depth step",
          "§3.1", "symbolic", covers=["lemmaA-fwd", "lemmaA-bwd"])
def _chk_unroll():
    for l in range(1, MAX_L + 1):
        for direction in ("fwd", "bwd"):
            D, closed = _unrolled(l, direction)
            require(sp.expand(D - closed) == 0, f"unrolled {direction} recursion differs at l={l}")
    # general depth. (A-fwd): the closed form is S_after(n) with f(i) = L_i e_i H_{i-1}, g(j) = L_j what_j,
    # where H_{i-1} = prod_{k<i} L_k w_k bounds ||h_{i-1}||. By the generic lemma (proved in A1-induction),
    # S_after(n+1) = g(n+1) S_after(n) + f(n+1), i.e. exactly the recursion
    # Delta_{n+1} = L_{n+1}(e_{n+1} H_n + what_{n+1} Delta_n), with S_after(0) = 0 = Delta_0.
    prove_sum_recursions()
    L, e, wh, w, H, Hh, Dn = sp.symbols("L e wh w H Hh Dn", positive=True)
    sym_zero((L * wh) * Dn + (L * e * H) - L * (e * H + wh * Dn), "A-fwd recursion = lemma instance")
    # (A-bwd): f(i) = L_i e_i Hhat_{i-1}, g(j) = L_j w_j; Delta_{n+1} = L_{n+1}(w_{n+1} Delta_n + e_{n+1} Hhat_n)
    sym_zero((L * w) * Dn + (L * e * Hh) - L * (w * Dn + e * Hh), "A-bwd recursion = lemma instance")
    return f"recursion == closed form for l <= {MAX_L}; general depth via the sum-recursion lemma"


@register("A-star-identity", "(A*): sum_i eta_i prod_{j<i} B_j prod_{j>i}(B_j+eta_j) = prod B (prod(1+eta/B) - 1)",
          "§3.1", "symbolic", covers=["A-star"])
def _chk_astar():
    for l in range(1, MAX_L + 1):
        B = sp.symbols(f"B1:{l + 1}", positive=True)
        eta = sp.symbols(f"eta1:{l + 1}", nonnegative=True)
        lhs = sum(eta[i] * sp.prod(B[:i]) * sp.prod([B[k] + eta[k] for k in range(i + 1, l)]) for i in range(l))
        rhs = sp.prod(B) * (sp.prod([1 + eta[k] / B[k] for k in range(l)]) - 1)
        sym_zero(sp.expand(lhs - rhs), f"(A*) identity at l={l}")
    # general depth: (A-fwd) term with ||W_j|| <= B_j, ||What_j|| <= B_j + eta_j is monotone in every norm
    # (all terms are products of nonnegative factors), and dividing by prod B turns it into Corollary A1 with
    # r_i = eta_i/B_i, which the induction check proves for every depth.
    return f"identity for l <= {MAX_L}; general depth via Corollary A1 with r_i = eta_i/B_i"


# ------------------------------------------------------------------------------------- numeric Lemma A
def _spec_norm(M):
    return float(np.linalg.norm(M, 2))


ACTS = {
    "relu": (lambda x: np.maximum(x, 0.0), 1.0, 0.0),
    "tanh": (np.tanh, 1.0, 0.0),
    "leaky2": (lambda x: np.where(x >= 0, x, 2.0 * x), 2.0, 0.0),
    "hardtanh": (lambda x: np.clip(x, -1.0, 1.0), 1.0, 0.0),
    "sigmoid": (lambda x: 1.0 / (1.0 + np.exp(-x)), 0.25, 0.5),
    "identity": (lambda x: x, 1.0, 0.0),
}


def lemma_a_reference(W, What, lips):
    """(A-fwd), (A-bwd) with the Lipschitz product (reference implementation used by the numeric checks)."""
    w = [_spec_norm(M) for M in W]
    wh = [_spec_norm(M) for M in What]
    e = [_spec_norm(M - Mh) for M, Mh in zip(W, What)]
    l = len(W)
    Lip = float(np.prod(lips))
    fwd = Lip * sum(e[i] * np.prod(w[:i]) * np.prod(wh[i + 1:]) for i in range(l))
    bwd = Lip * sum(e[i] * np.prod(wh[:i]) * np.prod(w[i + 1:]) for i in range(l))
    return fwd, bwd


def lemma_a_general_reference(W, What, lips, sig0):
    """General form: b_0 = 1, b_i = L_i||W_i|| b_{i-1} + |sigma_i(0)| sqrt(d_i)."""
    l = len(W)
    b = [1.0]
    for i in range(l - 1):
        b.append(lips[i] * _spec_norm(W[i]) * b[-1] + abs(sig0[i]) * np.sqrt(W[i].shape[0]))
    wh = [_spec_norm(M) for M in What]
    tot = 0.0
    for i in range(l):
        tot += lips[i] * _spec_norm(W[i] - What[i]) * b[i] * np.prod([lips[j] * wh[j] for j in range(i + 1, l)])
    return tot


def _forward(W, x, act):
    h = x
    for i, M in enumerate(W):
        h = M @ h
        if i < len(W) - 1:
            h = act(h)
    return h


def _sampled_err(W, What, act, rng, n=400):
    d0 = W[0].shape[1]
    X = rng.standard_normal((d0, n))
    X /= np.linalg.norm(X, axis=0, keepdims=True)
    # add the top right singular vectors of the linear parts (worst directions for the linearisation)
    A = np.linalg.multi_dot(W[::-1]) if len(W) > 1 else W[0]
    Ah = np.linalg.multi_dot(What[::-1]) if len(W) > 1 else What[0]
    _, _, vt = np.linalg.svd(A - Ah)
    X = np.concatenate([X, vt[:3].T, -vt[:3].T], axis=1)
    return float(np.max(np.linalg.norm(_forward(W, X, act) - _forward(What, X, act), axis=0)))


def _random_net(rng, l, widths=None, scale=1.0):
    widths = widths or [int(rng.integers(3, 12)) for _ in range(l + 1)]
    W = [rng.uniform(-1, 1, (widths[i + 1], widths[i])) * scale / np.sqrt(max(widths[i], widths[i + 1]))
         for i in range(l)]
    return W


def _random_pruning(rng, W, kind):
    out = []
    for M in W:
        if kind == "magnitude":
            out.append(np.where(np.abs(M) < np.quantile(np.abs(M), rng.uniform(0.1, 0.7)), 0.0, M))
        elif kind == "random":
            out.append(M * (rng.random(M.shape) >= rng.uniform(0.1, 0.7)))
        else:  # arbitrary perturbation (Lemma A allows any What)
            out.append(M + rng.standard_normal(M.shape) * 0.3 / np.sqrt(M.size))
    return out


@register("A-numeric", "Lemma A (A-fwd, A-bwd, general form) vs sampled sup error: relu/tanh/leaky/hardtanh/sigmoid",
          "§3.1", "numeric", covers=["lemmaA-fwd", "lemmaA-bwd", "lemmaA-general"])
def _chk_a_numeric():
    rng = np.random.default_rng(20260311)
    worst = 0.0
    n = 0
    for act_name, (act, L, s0) in ACTS.items():
        for trial in range(12):
            l = int(rng.integers(1, 5))
            W = _random_net(rng, l, scale=2.0)
            What = _random_pruning(rng, W, ("magnitude", "random", "perturb")[trial % 3])
            lips = [L] * (l - 1) + [1.0]
            err = _sampled_err(W, What, act, rng)
            general = lemma_a_general_reference(W, What, lips, [s0] * (l - 1) + [0.0])
            require(err <= general * (1 + 1e-9) + 1e-12, f"general form violated ({act_name}): {err} > {general}")
            if s0 == 0.0:
                fwd, bwd = lemma_a_reference(W, What, lips)
                require(err <= min(fwd, bwd) * (1 + 1e-9) + 1e-12,
                        f"min(A-fwd, A-bwd) violated ({act_name}): {err} > {min(fwd, bwd)}")
                require(abs(general - fwd) <= 1e-9 * max(1.0, fwd), "general form != A-fwd when sigma(0)=0")
                worst = max(worst, err / min(fwd, bwd)) if min(fwd, bwd) > 0 else worst
            n += 1
    # linear networks: the sup is exact (SVD of the end-to-end difference)
    for trial in range(40):
        l = int(rng.integers(1, 5))
        W = _random_net(rng, l)
        What = _random_pruning(rng, W, ("magnitude", "random", "perturb")[trial % 3])
        A = np.linalg.multi_dot(W[::-1]) if l > 1 else W[0]
        Ah = np.linalg.multi_dot(What[::-1]) if l > 1 else What[0]
        exact = _spec_norm(A - Ah)
        fwd, bwd = lemma_a_reference(W, What, [1.0] * l)
        require(exact <= min(fwd, bwd) * (1 + 1e-9) + 1e-12, f"linear net: exact {exact} > {min(fwd, bwd)}")
        n += 1
    return f"{n} networks, max sampled err / bound = {worst:.3f}"


@register("A-star-numeric", "(A*) dominates min(A-fwd, A-bwd) whenever ||W_i|| <= B_i, ||E_i|| <= eta_i",
          "§3.1", "numeric", covers=["A-star"])
def _chk_astar_numeric():
    from hypothesis import strategies as st

    def case(seed, l, slackB, slackE):
        rng = np.random.default_rng(seed)
        W = _random_net(rng, l, scale=1.5)
        What = _random_pruning(rng, W, "random")
        B = np.array([_spec_norm(M) for M in W]) * (1 + slackB)
        eta = np.array([_spec_norm(M - Mh) for M, Mh in zip(W, What)]) * (1 + slackE)
        fwd, bwd = lemma_a_reference(W, What, [1.0] * l)
        astar = np.prod(B) * (np.prod(1 + eta / B) - 1)
        assert min(fwd, bwd) <= astar * (1 + 1e-9) + 1e-12, (fwd, bwd, astar)

    n = hypothesis_cases(case, st.integers(0, 2**31 - 1), st.integers(1, 5), st.floats(0, 2), st.floats(0, 2),
                         max_examples=120)
    return f"{n} hypothesis cases"


@register("norm-increase", "zeroing an entry can increase ||.||: [[1,1],[1,-1]] -> [[1,1],[1,0]]", "§3.1",
          "symbolic", covers=["norm-increase"])
def _chk_norm_increase():
    A = sp.Matrix([[1, 1], [1, -1]])
    B = sp.Matrix([[1, 1], [1, 0]])
    sA = max(sp.sqrt(ev) for ev in (A.T * A).eigenvals())
    sB = max(sp.sqrt(ev) for ev in (B.T * B).eigenvals())
    sym_zero(sA - sp.sqrt(2), "||[[1,1],[1,-1]]||")
    sym_zero(sB - (1 + sp.sqrt(5)) / 2, "||[[1,1],[1,0]]||")
    require(sp.simplify(sB - sA) > 0, "example does not increase the norm")
    return f"sqrt(2) = {float(sA):.4f} < (1+sqrt5)/2 = {float(sB):.4f}"


@register("first-order", "prod(1+x r_i) - 1 = x sum r_i + O(x^2); all coefficients >= 0 so >= sum r_i", "§3.7",
          "symbolic", covers=["first-order"])
def _chk_first_order():
    x = sp.Symbol("x")
    for l in range(1, MAX_L + 1):
        r = sp.symbols(f"r1:{l + 1}", nonnegative=True)
        f = sp.prod([1 + x * ri for ri in r]) - 1
        ser = sp.series(f, x, 0, 2).removeO()
        sym_zero(ser - x * sum(r), f"first-order term at l={l}")
        poly = sp.Poly(sp.expand(sp.prod([1 + ri for ri in r]) - 1 - sum(r)), *r)
        require(all(c >= 0 for c in poly.coeffs()), f"negative coefficient at l={l}")
    return f"l <= {MAX_L}"
