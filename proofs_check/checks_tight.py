"""Tighter certificates (THEORY.md §12): composition, the ReLU pair bound, the unrolling with slopes, the coupled
relaxation of the error channel, the trust-region dual, the mixed bound, certified stability.

Symbolic checks prove the algebraic identities the proofs rest on; numeric checks compare the implementation in
:mod:`probprune.certificates` with independent ground truths (exact sups of linear maps, exhaustive vertex enumeration,
dense sampling of the relaxed sets and of the input region)."""
from __future__ import annotations

import itertools

import numpy as np
import sympy as sp

from ._core import register, require, sym_zero


def _relu_net(rng, widths, bias=True):
    from probprune.net.zoo import mlp

    return mlp(widths, bias=bias, seed=int(rng.integers(1 << 30))).double()


def _masks(model, rng, keep):
    return {k: rng.random(tuple(p.shape)) < keep for k, p in model.named_parameters() if k.endswith("weight")}


def _sample_ball(rng, c, r, n):
    u = rng.normal(size=(n, c.size))
    u *= r * rng.random((n, 1)) ** (1.0 / c.size) / np.linalg.norm(u, axis=1, keepdims=True)
    s = rng.normal(size=(n // 4, c.size))
    s *= r / np.linalg.norm(s, axis=1, keepdims=True)  # the sphere too, where sups of convex maps sit
    return c + np.vstack([u, s])


@register("tight-compose", "lowering reproduces the network; composed Lemma A >= sampled error, = exact sup for "
          "linear nets", "§12.1", "numeric", covers=["tight-lowering", "tight-lemmaA-composed"])
def _chk_compose():
    from probprune.certificates.compose import lemma_a_composed
    from probprune.certificates.lower import lower_pair, pruned_copy

    rng = np.random.default_rng(121)
    n = 0
    for trial in range(12):
        widths = list(rng.integers(2, 8, size=int(rng.integers(2, 5))))
        linear = trial % 3 == 0
        m = _relu_net(rng, widths, bias=not linear)
        if linear:
            import torch.nn as nn
            m = nn.Sequential(*[x for x in m if not isinstance(x, nn.ReLU)])
        mh = pruned_copy(m, _masks(m, rng, 0.6))
        F, Fh = lower_pair(m, mh, (widths[0],))
        X = _sample_ball(rng, np.zeros(widths[0]), 1.0, 4000)
        import torch
        with torch.no_grad():
            ref = (m(torch.as_tensor(X)) - mh(torch.as_tensor(X))).numpy()
        require(np.allclose(F.forward(X) - Fh.forward(X), ref, atol=1e-10), "lowering differs from the network")
        eps = min(lemma_a_composed(F, Fh, 1.0))
        err = float(np.linalg.norm(ref, axis=1).max())
        require(err <= eps * (1 + 1e-9), f"composed Lemma A violated: {err} > {eps}")
        if linear:
            P = F.stages[0].M - Fh.stages[0].M
            exact = float(np.linalg.norm(P, 2))
            require(abs(eps - exact) <= 1e-6 * exact + 1e-12, f"composed bound {eps} != exact {exact} (linear)")
            require(F.depth == 1, "consecutive linear maps were not composed into one stage")
        n += 1
    return f"{n} networks (1/3 linear: exact), 4000+1000 sampled inputs each"


@register("tight-pair", "S-procedure identity of Statement 12.2; pair and chain bounds >= max over all vertices D in "
          "{0,1}^n; pair <= ||A|| ||B||", "§12.2", "symbolic+numeric", covers=["tight-pair", "tight-chain"])
def _chk_pair():
    from probprune.certificates.compose import pair_bound

    # symbolic: for the scalar case, -q u^2 + 2 t u y has maximum t^2 y^2 / q (q > 0), and ||Au||^2 + 2t(u y - u^2)
    # = -(2t - a^2) u^2 + 2 t u y
    u, y, t, a = sp.symbols("u y t a", real=True)
    q = sp.Symbol("q", positive=True)
    f = -q * u ** 2 + 2 * t * u * y
    ustar = sp.solve(sp.diff(f, u), u)[0]
    sym_zero(sp.simplify(f.subs(u, ustar) - t ** 2 * y ** 2 / q), "max of the concave quadratic")
    sym_zero(sp.expand(a ** 2 * u ** 2 + 2 * t * (u * y - u ** 2) - (-(2 * t - a ** 2) * u ** 2 + 2 * t * u * y)),
             "Lagrangian rearrangement")
    d = sp.Symbol("d", real=True)
    sym_zero(sp.expand((d * y) * (y - d * y) - d * (1 - d) * y ** 2), "u(y - u) = d(1 - d) y^2 >= 0 for d in [0,1]")
    rng = np.random.default_rng(122)
    for _ in range(20):
        n = int(rng.integers(2, 10))
        A, B = rng.normal(size=(int(rng.integers(1, 6)), n)), rng.normal(size=(n, int(rng.integers(1, 6))))
        vmax = max(np.linalg.norm(A * np.array(dd) @ B, 2) for dd in itertools.product((0.0, 1.0), repeat=n))
        pb = pair_bound(A, B)
        require(vmax <= pb, f"pair bound {pb} below a vertex value {vmax}")
        require(pb <= np.linalg.norm(A, 2) * np.linalg.norm(B, 2) * (1 + 2e-6), "pair bound above the product")
    from probprune.certificates.compose import sproc_chain_bound

    for _ in range(8):  # Statement 12.10: chains of three factors vs exhaustive vertices of both slopes
        n1, n2 = int(rng.integers(2, 6)), int(rng.integers(2, 6))
        A, B, C = rng.normal(size=(3, n1)), rng.normal(size=(n1, n2)), rng.normal(size=(n2, 2))
        vmax = max(np.linalg.norm((A * np.array(d1)) @ (B * np.array(d2)) @ C, 2)
                   for d1 in itertools.product((0.0, 1.0), repeat=n1) for d2 in itertools.product((0.0, 1.0), repeat=n2))
        for steps in (0, 20):  # scalar and diagonal multipliers
            cb = sproc_chain_bound([A, B, C], diag_steps=steps)
            require(vmax <= cb, f"chain bound {cb} below a vertex value {vmax} (diag_steps={steps})")
        require(abs(sproc_chain_bound([A, B], diag_steps=0) - pair_bound(A, B)) <= 1e-4 * pair_bound(A, B),
                "m = 2 with a scalar multiplier is the pair bound")
    return "3 identities; 20 random pairs and 8 three-factor chains vs exhaustive vertices"


@register("tight-pair-thin", "push-through identity of Statement 12.2b; the thin pair bound (p < n) equals the "
          "12.2 bound on A^T A at the same t and is >= every vertex value", "§12.2", "symbolic+numeric",
          covers=["tight-pair-thin"])
def _chk_pair_thin():
    from probprune.certificates.compose import _scalar_sproc, _thin_pair, pair_bound

    # symbolic: (tau I - A^T A)^{-1} = tau^{-1} (I + A^T (tau I - A A^T)^{-1} A) on a 1 x 2 A (p < n)
    a1, a2 = sp.symbols("a1 a2", real=True)
    tau = sp.Symbol("tau", positive=True)
    A = sp.Matrix([[a1, a2]])
    lhs = (tau * sp.eye(2) - A.T * A).inv()
    rhs = (sp.eye(2) + A.T * (tau * sp.eye(1) - A * A.T).inv() * A) / tau
    for e in lhs - rhs:
        sym_zero(sp.simplify(e), "push-through identity")
    rng = np.random.default_rng(1222)
    n_pairs = 0
    for _ in range(25):
        n = int(rng.integers(3, 11))
        p = int(rng.integers(1, n))
        A, B = rng.normal(size=(p, n)), rng.normal(size=(n, int(rng.integers(1, 7))))
        lmax, SG, weights = _thin_pair(A, B, None)
        G = A.T @ A
        lam, V = np.linalg.eigh(G)
        slack = (p + 10) * np.finfo(float).eps * float((A * A).sum())
        lam2, _, SG2, lmax2, w2 = _scalar_sproc(lam, V, B, slack)
        for s in (-3.0, 0.0, 2.0):  # the same t: equal values up to rounding (slacks differ by O(u ||A||^2))
            t1, t2 = lmax / 2 * (1 + np.exp(s)), lmax2 / 2 * (1 + np.exp(s))
            require(abs(t1 - t2) <= 1e-9 * t1, "thin and full forms choose different t")
            v1, v2 = SG.exact(weights(s)), SG2.exact(w2(s))
            require(abs(v1 - v2) <= 1e-7 * max(v1, v2), f"thin {v1} != full {v2} at the same t")
        vmax = max(np.linalg.norm(A * np.array(dd) @ B, 2) for dd in itertools.product((0.0, 1.0), repeat=n))
        pb = pair_bound(A, B)
        require(vmax <= pb, f"thin pair bound {pb} below a vertex value {vmax}")
        n_pairs += 1
    return f"1 identity; {n_pairs} random pairs with p < n: thin = full at 3 multipliers, >= exhaustive vertices"


@register("tight-unroll", "F - F_hat = sum_i M_L S ... S_i (E_i shat + db_i) with slopes in [0,1]; grouping and "
          "mixed bounds >= sampled errors", "§12.3", "numeric", covers=["tight-unroll", "tight-mixed", "tight-anchored"])
def _chk_unroll():
    from probprune.certificates.compose import lemma_a_pairs
    from probprune.certificates.lower import lower_pair, pruned_copy
    from probprune.certificates.mixed import lemma_a_mixed
    from probprune.certificates.propagate import Region

    rng = np.random.default_rng(123)
    for trial in range(10):
        widths = list(rng.integers(2, 8, size=int(rng.integers(3, 5))))
        m = _relu_net(rng, widths)
        mh = pruned_copy(m, _masks(m, rng, 0.6))
        F, Fh = lower_pair(m, mh, (widths[0],))
        x = rng.normal(size=widths[0])
        # the identity at one point, slopes from the actual pre-activations
        s, sh = x, x
        terms = []
        P_list = []
        for i, (st, sth) in enumerate(zip(F.stages, Fh.stages)):
            z, zh = st.M @ s + st.b, sth.M @ sh + sth.b
            v = (st.M - sth.M) @ sh + (st.b - sth.b)
            terms.append(v)
            if i < F.depth - 1:
                sn, shn = np.maximum(z, 0), np.maximum(zh, 0)
                with np.errstate(invalid="ignore", divide="ignore"):
                    S = np.where(np.abs(z - zh) > 0, (sn - shn) / (z - zh), 0.5)
                require(np.all((S >= -1e-12) & (S <= 1 + 1e-12)), "ReLU difference quotient outside [0, 1]")
                P_list.append(S)
                s, sh = sn, shn
            else:
                out = z - zh
        total = np.zeros_like(out)
        L = F.depth
        for i in range(L):
            vec = terms[i]
            if i < L - 1:
                vec = P_list[i] * vec
                for j in range(i + 1, L):
                    vec = F.stages[j].M @ vec
                    if j < L - 1:
                        vec = P_list[j] * vec
            total = total + vec
        require(np.allclose(total, out, atol=1e-9), "unrolling identity fails")
        c = rng.normal(size=widths[0]) * 0.5
        X = _sample_ball(rng, c, 1.0, 4000)
        err = float(np.linalg.norm(F.forward(X) - Fh.forward(X), axis=1).max())
        mx = lemma_a_mixed(F, Fh, Region(c[None, :], 1.0, "l2")).eps
        require(err <= mx, f"mixed bound violated: {err} > {mx}")
        X0 = _sample_ball(rng, np.zeros(widths[0]), 1.0, 4000)
        err0 = float(np.linalg.norm(F.forward(X0) - Fh.forward(X0), axis=1).max())
        require(err0 <= lemma_a_pairs(F, Fh, 1.0), "pair/grouping bound violated")
    return "10 networks: identity at a point, bounds vs 5000 sampled inputs"


@register("tight-delta-relax", "delta = ReLU(zhat + dz) - ReLU(zhat) within the relaxation of Statement 12.4 on "
          "dense samples of every regime", "§12.4", "numeric", covers=["tight-delta-relax"])
def _chk_delta():
    import torch

    from probprune.certificates.propagate import _delta_relax, _relu_relax

    rng = np.random.default_rng(124)
    cnt = 0
    for _ in range(400):
        l, u = np.sort(rng.normal(size=2) * 2)
        dl, du = np.sort(rng.normal(size=2))
        zh = rng.uniform(l, u, 300)
        dz = rng.uniform(dl, du, 300)
        z = zh + dz
        zl, zu = max(z.min(), l + dl) - 1e-3 * rng.random(), min(z.max(), u + du) + 1e-3 * rng.random()
        # the bounds must contain the samples: use the sample hull widened a little (any valid bounds work)
        zl, zu = min(zl, z.min()), max(zu, z.max())
        T = lambda v: torch.tensor([v], dtype=torch.float64)  # noqa: E731
        aL, cL, aU, cU = (float(t[0]) for t in _delta_relax(T(l), T(u), T(zl), T(zu), T(dl), T(du)))
        g = np.maximum(zh + dz, 0) - np.maximum(zh, 0)
        require(np.all(g >= aL * dz + cL - 1e-12) and np.all(g <= aU * dz + cU + 1e-12),
                f"delta relaxation violated at l={l}, u={u}, dl={dl}, du={du}")
        bL, eL, bU, eU = (float(t[0]) for t in _relu_relax(T(l), T(u)))
        s = np.maximum(zh, 0)
        require(np.all(s >= bL * zh + eL - 1e-12) and np.all(s <= bU * zh + eU + 1e-12), "ReLU relaxation")
        cnt += 1
    return f"{cnt} random boxes x 300 samples"


@register("tight-crown", "coupled CROWN bounds on F - F_hat, F, F_hat contain sampled values (l2 ball, l_inf box)",
          "§12.4", "numeric", covers=["tight-crown-coupled", "tight-l2", "tight-min"])
def _chk_crown():
    from probprune.certificates.lower import lower_pair, pruned_copy
    from probprune.certificates.propagate import CoupledPropagator, Region, region_error_bound, trs_dual_bound

    rng = np.random.default_rng(125)
    for trial in range(10):
        widths = list(rng.integers(2, 7, size=int(rng.integers(3, 5))))
        m = _relu_net(rng, widths)
        mh = pruned_copy(m, _masks(m, rng, 0.6))
        F, Fh = lower_pair(m, mh, (widths[0],))
        c = rng.normal(size=widths[0])
        for norm in ("l2", "linf"):
            r = float(rng.uniform(0.05, 1.0))
            reg = Region(c[None, :], r, norm)
            prop = CoupledPropagator(F, Fh, reg)
            if norm == "l2":
                X = _sample_ball(rng, c, r, 4000)
            else:
                X = c + rng.uniform(-r, r, size=(4000, c.size))
                X[:500] = c + r * np.sign(rng.normal(size=(500, c.size)))
            D = F.forward(X) - Fh.forward(X)
            n = F.n_out
            up = prop.output_upper(np.vstack([np.eye(n), -np.eye(n)]))[0]
            require(np.all(D.max(0) <= up[:n]) and np.all(-D.min(0) <= up[n:]), "coupled CROWN violated")
            upF = prop.output_upper(None, np.eye(n), mode="F")[0]
            require(np.all(F.forward(X).max(0) <= upF), "CROWN on F violated")
            upH = prop.output_upper(None, np.eye(n), mode="hat")[0]
            require(np.all(Fh.forward(X).max(0) <= upH), "CROWN on F_hat violated")
            e = region_error_bound(F, Fh, reg, prop).eps[0]
            require(np.linalg.norm(D, axis=1).max() <= e, "l2 error bound violated")
            if norm == "l2" and trial < 4:
                from probprune.certificates.tight import certify_chains
                ct = certify_chains(F, Fh, "auto", r, center=c)
                require(np.linalg.norm(D, axis=1).max() <= ct.eps, "certify_chains (minimum) violated")
    for _ in range(10):
        M, g = rng.normal(size=(3, 5)), rng.normal(size=3)
        U = rng.normal(size=(20000, 5))
        U /= np.linalg.norm(U, axis=1, keepdims=True)
        require(np.linalg.norm(U @ M.T + g, axis=1).max() <= trs_dual_bound(M, g, 1.0), "TRS dual violated")
    return "10 networks x (l2, linf) x 4000 samples; 10 TRS instances"


@register("tight-stability", "certified prediction stability: sampled points keep both predictions; radius 0 = "
          "point check", "§12.5", "numeric", covers=["tight-stability"])
def _chk_stability():
    from probprune.certificates.lower import lower_pair, pruned_copy
    from probprune.certificates.stability import certified_stability

    rng = np.random.default_rng(126)
    checked = 0
    for trial in range(6):
        widths = [5, 10, 8, 3]
        m = _relu_net(rng, widths)
        mh = pruned_copy(m, _masks(m, rng, 0.8))
        F, Fh = lower_pair(m, mh, (5,))
        X = rng.normal(size=(30, 5)) * 2
        s0 = certified_stability(F, Fh, X, 0.0)
        require(np.array_equal(s0.certified, np.argmax(F.forward(X), 1) == np.argmax(Fh.forward(X), 1)),
                "radius 0 is not the point check")
        s = certified_stability(F, Fh, X, 0.2, "l2")
        for i in np.flatnonzero(s.certified):
            P = _sample_ball(rng, X[i], 0.2, 800)
            require(np.all(np.argmax(F.forward(P), 1) == s.label[i]), "F prediction changed in a certified region")
            require(np.all(np.argmax(Fh.forward(P), 1) == s.label[i]), "F_hat prediction changed")
            checked += 1
    return f"{checked} certified regions x 1000 samples"


@register("tight-sdp", "cross-network SDP (§12.6): lifted constraints hold at sampled inputs; the certificate is >= "
          "the exact sup of a single affine stage (= ||E||) and >= the sampled error of small ReLU nets; "
          "the strongly concave form (ii) holds for arbitrary multipliers", "§12.6", "numeric",
          covers=["tight-sdp-constraints", "tight-sdp-dual"])
def _chk_sdp():
    from probprune.certificates.lower import lower_pair, pruned_copy
    from probprune.certificates.sdp import _certify_schur, build_qcqp, sdp_certificate

    rng = np.random.default_rng(1206)
    n_pts = 0
    for trial in range(4):
        widths = [3, 5, 4, 2]
        m = _relu_net(rng, widths)
        mh = pruned_copy(m, _masks(m, rng, 0.6))
        F, Fh = lower_pair(m, mh, (3,))
        c0 = rng.normal(size=3) * (trial % 2)
        r = 1.0
        N, AD, G, Gabs, tpr, kinds, fam, box, dscale = build_qcqp(F, Fh, c0, r)
        P = _sample_ball(rng, c0, r, 400)
        err = np.linalg.norm(F.forward(P) - Fh.forward(P), axis=1)
        for x in P[:100]:
            v = [np.ones(1), x]
            s, sh = x, x
            for a, b in zip(F.stages[:-1], Fh.stages[:-1]):
                s = np.where(a.relu, np.maximum(a.M @ s + a.b, 0), a.M @ s + a.b)
                sh = np.where(b.relu, np.maximum(b.M @ sh + b.b, 0), b.M @ sh + b.b)
                v += [s, sh]
            v = np.concatenate(v) / dscale  # the scaled lifted vector
            g = G.T @ np.outer(v, v).ravel()
            tol = 1e-9 * (1 + Gabs.T @ np.abs(np.outer(v, v)).ravel())
            require(np.all(g[kinds == "ineq"] >= -tol[kinds == "ineq"]), "a lifted inequality fails at a real input")
            require(np.all(np.abs(g[kinds == "eq"]) <= tol[kinds == "eq"]), "a lifted equality fails at a real input")
            n_pts += 1
        cert = sdp_certificate(F, Fh, r, c0)
        require(cert.eps >= err.max() * (1 - 1e-12), f"SDP certificate {cert.eps} below sampled error {err.max()}")
        # form (ii) with random multipliers made strictly concave by the norm multiplier: still an upper bound
        lam = np.where(kinds == "ineq", rng.random(len(kinds)), rng.normal(size=len(kinds)))
        kn = int(np.flatnonzero(fam == "norm")[0])
        Q = AD.T @ AD + (G @ lam).reshape(N, N)
        lam[kn] += max(0.0, float(np.linalg.eigvalsh((Q + Q.T)[1:, 1:] / 2)[-1])) + 1.0
        out = _certify_schur(AD, G, Gabs, tpr, lam, kinds, box)
        require(out is not None and out[0] >= err.max() ** 2 * (1 - 1e-12), "form (ii) below the sampled error")
    # a single affine stage: the relaxation is exact
    m = _relu_net(rng, [4, 3])
    mh = pruned_copy(m, _masks(m, rng, 0.5))
    F, Fh = lower_pair(m, mh, (4,))
    E = F.stages[0].M - Fh.stages[0].M
    e = sdp_certificate(F, Fh).eps
    require(np.linalg.norm(E, 2) * (1 - 1e-12) <= e <= np.linalg.norm(E, 2) * (1 + 1e-6), "affine stage not exact")
    return f"{n_pts} lifted points, 4 ReLU pairs, 1 affine stage"
