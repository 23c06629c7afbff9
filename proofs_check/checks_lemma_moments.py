"""Issue 20: S9.15, Lemma A's sum in one Markov event by exact layer trace moments (THEORY §9.15). Checks: the
pattern-class formula for E tr((XX^T)^p) against a brute-force sum over every index tuple (sympy, symbolic entry
moments) and against Monte Carlo; Minkowski over independent layers and the Markov threshold checked on Lemma A's
value computed per draw (exact spectral norms); coverage of the ReLU-network error by a many-start PGD attack."""
from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import sympy as sp

from ._core import register, require, sym_zero


def _sample_layers(rng, dims, law: str, method: str, T: int, q: float):
    """Per layer (a, W, What, E): proofs_check's own numpy sampler (checks_sharp_sm.sample_pruned_layers)."""
    from proofs_check.checks_sharp_sm import sample_pruned_layers

    return [(a, w, wh, w - wh) for a, w, wh in sample_pruned_layers(rng, dims, law, method, T, q)]


def index_sum_trace_moment(n: int, m: int, mom, p: int):
    """E tr((XX^T)^p) by brute force over every index tuple (i_1..i_p, j_1..j_p) of an n x m matrix with i.i.d.
    symmetric entries, E x^(2j) = mom[j - 1] (numbers or sympy symbols): the independent count S9.15 step 3 groups."""
    total = 0
    for rows in itertools.product(range(n), repeat=p):
        for cols in itertools.product(range(m), repeat=p):
            mult = Counter()
            for s in range(p):
                mult[(rows[s], cols[s])] += 1
                mult[(rows[(s + 1) % p], cols[s])] += 1
            if all(v % 2 == 0 for v in mult.values()):
                term = 1
                for v in mult.values():
                    term = term * mom[v // 2 - 1]
                total = total + term
    return total


@register("lm-walk-table", "S9.15 step 3: E tr((XX^T)^p) = sum over classes of (row, column) set-partition pairs of "
          "N (n)_r (m)_c prod E x^mult equals a brute-force sum over every index tuple with symbolic entry moments "
          "(p = 1..4 at several n, m; p = 5 at 2 x 3), the p = 2 closed form N m4 + N(n + m - 2) m2^2, and the class "
          "counts sum to Bell(p)^2 minus the odd pairs", "§9.15", "symbolic+numeric", covers=("lemma-moment",))
def _chk_table():
    from probprune.theory import lemma_moments as lm

    mu = sp.symbols("m2 m4 m6 m8 m10")
    n_cases = 0
    for p, shapes in ((1, [(2, 3), (4, 1)]), (2, [(2, 3), (3, 3)]), (3, [(2, 3), (3, 2)]), (4, [(2, 2), (3, 2)]),
                      (5, [(2, 3)])):
        for n, m in shapes:
            brute = index_sum_trace_moment(n, m, mu, p)
            got = lm.matrix_trace_moment(n, m, list(mu[:p]), p)
            sym_zero(sp.expand(brute - got), f"p={p} {n}x{m}")
            n_cases += 1
    n_, m_, m2, m4 = sp.symbols("n m m2 m4", positive=True)
    closed = n_ * m_ * m4 + n_ * m_ * (n_ + m_ - 2) * m2**2
    for n, m in ((5, 7), (1, 9), (30, 4)):
        got = lm.matrix_trace_moment(n, m, [m2, m4], 2)
        sym_zero(sp.expand(got - closed.subs({n_: n, m_: m})), f"closed form {n}x{m}")
    bell = {1: 1, 2: 2, 3: 5, 4: 15, 5: 52, 6: 203}
    for p in range(1, 7):
        tot = sum(c for _, c in lm.walk_table(p))
        require(0 < tot <= bell[p] ** 2, f"p={p}: {tot} even pairs of {bell[p] ** 2}")
    require(len(lm.walk_table(6)) == 44, f"p = 6 has {len(lm.walk_table(6))} classes")
    return f"{n_cases} brute-force index sums equal; closed form p = 2; class tables p <= 6"


@register("lm-minkowski-mc", "S9.15 steps 2-4: for depth 2-3 dense chains (uniform and Gaussian laws; threshold "
          "magnitude, Bernoulli and rescaled random), m_p from the table agrees with a Monte Carlo E tr((XX^T)^p) "
          "(5 standard errors); the Monte Carlo E[A^(2p)] of Lemma A's value A (exact spectral norms per draw) is <= "
          "(Lip S_p)^(2p) (Minkowski over independent layers), and the frequency of A > x (the bound at delta) is "
          "<= delta within a 1e-3 Clopper-Pearson limit", "§9.15", "numeric", covers=("lemma-moment",))
def _chk_mc():
    from scipy import stats

    from probprune.theory import lemma_moments as lm

    rng = np.random.default_rng(915)
    T, q, delta = 10_000, 0.3, 0.05
    n = 0
    for dims in ([4, 5, 3], [3, 4, 4, 2]):
        for law in ("uniform", "gaussian"):
            for method in ("magnitude", "random", "random_rescaled"):
                layers = _sample_layers(rng, dims, law, method, T, q)
                a = [x[0] for x in layers]
                for p in (2, 3):
                    for k, (ak, w, wh, e) in enumerate(layers):
                        mom = lm.layer_entry_moments(method, law, ak, q, p)
                        for key, X in (("W", w), ("What", wh), ("E", e)):
                            G = X @ np.swapaxes(X, 1, 2)
                            tr = np.trace(np.linalg.matrix_power(G, p), axis1=1, axis2=2)
                            want = lm.matrix_trace_moment(dims[k + 1], dims[k], mom[key], p)
                            se = tr.std() / np.sqrt(T)
                            require(abs(tr.mean() - want) <= 5 * se + 1e-12 * want,
                                    f"{dims} {law} {method} p={p} layer {k} {key}: MC {tr.mean()} vs {want} (se {se})")
                norms = [[np.linalg.norm(X, 2, axis=(1, 2)) for X in (w, wh, e)] for (_, w, wh, e) in layers]
                L = len(layers)
                A = sum(norms[i][2] * np.prod([norms[j][0] for j in range(i)], axis=0)
                        * np.prod([norms[j][1] for j in range(i + 1, L)], axis=0) for i in range(L))
                res = lm.lemma_moment_bound(dims, a, np.full(L, q), delta, method, law)
                for p in (1, 3, 6):
                    S = res.per_order[p][0] * delta ** (1 / (2 * p))
                    emp = np.mean(A ** (2 * p))
                    se = np.std(A ** (2 * p)) / np.sqrt(T)
                    require(emp - 5 * se <= S ** (2 * p), f"{dims} {law} {method} p={p}: E A^2p {emp} > {S ** (2 * p)}")
                viol = int(np.sum(A > res.per_order[res.order][0 if res.direction == "fwd" else 1]))
                lo = stats.beta.ppf(1e-3, viol, T - viol + 1) if viol else 0.0
                require(lo <= delta, f"{dims} {law} {method}: {viol}/{T} draws above the bound")
                n += 1
    return f"{n} families: trace moments, Minkowski and Markov hold"


@register("lm-relu-coverage", "S9.15 on ReLU networks: for 200 draws each of [6, 8, 8, 3] and [5, 10, 4] ReLU nets "
          "(uniform law; magnitude and Bernoulli random at q = 0.1, 0.5), a 24-start PGD attack on "
          "sup ||F(x) - Fhat(x)|| never exceeds S9.15's bound at delta = 0.05 beyond the Clopper-Pearson 1e-3 limit",
          "§9.15", "numeric", covers=("lemma-moment",))
def _chk_relu():
    import torch
    from scipy import stats

    from probprune.mc.measure import pgd_lower_bound
    from probprune.net.templates import fcn_spec
    from probprune.theory import lemma_moments as lm

    rng = np.random.default_rng(9150)
    T, delta = 200, 0.05
    worst = 0.0
    for dims in ([6, 8, 8, 3], [5, 10, 4]):
        spec = fcn_spec(dims, "relu")
        for method in ("magnitude", "random"):
            for q in (0.1, 0.5):
                layers = _sample_layers(rng, dims, "uniform", method, T, q)
                a = [x[0] for x in layers]
                W = [torch.as_tensor(x[1]) for x in layers]
                Wh = [torch.as_tensor(x[2]) for x in layers]
                gens = [torch.Generator().manual_seed(int(s)) for s in rng.integers(0, 2**31, T)]
                lb = pgd_lower_bound(spec, W, Wh, n_random=24, iters=40, generators=gens).numpy()
                eps = lm.lemma_moment_bound(dims, a, np.full(len(a), q), delta, method, "uniform").eps
                viol = int(np.sum(lb > eps))
                lo = stats.beta.ppf(1e-3, viol, T - viol + 1) if viol else 0.0
                require(lo <= delta, f"{dims} {method} q={q}: {viol}/{T} attacks above the bound {eps}")
                worst = max(worst, float(np.max(lb) / eps))
    return f"no coverage violation; largest attack / bound {worst:.3f}"
