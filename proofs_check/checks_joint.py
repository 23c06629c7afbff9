"""THEORY.md §12.12 (issue 19): the joint S-procedure bound on the coupled chain (Statement 12.60).

Numeric: (a) the coupled-chain identity u_i = D_i X_i u_{i-1}, F - F_hat = X_L u_{L-1} with the actual slopes of
sampled inputs (diagonals in [0, 1]), to 1e-9; (b) the step inequality u^T G u <= u'^T G' u' for random forms,
factors, diagonal multipliers and slopes; (c) the bound against ground truth: exact sup for linear chains with
biases (a trust-region problem solved exactly), sampled inputs and a 32-restart PGD for small ReLU nets with biases
and for a max-pool CNN (``--bound joint`` accepts it)."""
from __future__ import annotations

import numpy as np

from ._core import register, require


def _mlp_pair(seed: int, widths=(6, 7, 5, 3), keep: float = 0.6, act: str = "relu", keep_first: bool = False):
    import torch
    import torch.nn as nn

    from probprune.certificates.lower import lower_graph_pair
    from probprune.net.trace import from_torch

    torch.manual_seed(seed)
    layers = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), nn.ReLU() if act == "relu" else nn.Identity()]
    m = nn.Sequential(*layers[:-1]).double().eval()
    g = from_torch(m, (widths[0],))
    rng = np.random.default_rng(seed)
    masks = {k: rng.random(w.shape) < keep for k, w in g.weights.items()}
    if keep_first:
        masks[min(masks)] = np.ones_like(masks[min(masks)])
    gh = g.with_masks(masks)
    F, Fh = lower_graph_pair(g, gh)
    return g, gh, F, Fh


def _residual_pair(seed: int, keep: float = 0.6):
    """(g, g_hat, F, F_hat): proofs_check's residual + BatchNorm net (5 inputs) with a random mask keeping ``keep``."""
    from probprune.certificates.lower import lower_graph_pair
    from probprune.net.trace import from_torch

    from .checks_budget_graph import residual_bn_net

    g = from_torch(residual_bn_net(seed).double().eval(), (5,))
    rng = np.random.default_rng(seed)
    gh = g.with_masks({k: rng.random(w.shape) < keep for k, w in g.weights.items()})
    return (g, gh) + lower_graph_pair(g, gh)


def _exact_affine_sup(A: np.ndarray, c: np.ndarray, r: float) -> float:
    """max_{||x|| <= r} ||A x + c||: the trust-region problem, solved by bisection on the secular equation
    (the easy case; the hard case is avoided with probability one for random data) and a boundary check."""
    U, s, Vt = np.linalg.svd(A, full_matrices=True)
    s2 = np.zeros(U.shape[0])
    s2[:s.size] = s ** 2
    beta = U.T @ c

    def val(mu):  # the dual function: ||c||^2 + mu r^2 + sum s^2 beta^2 / (mu - s^2)
        return float(c @ c + mu * r * r + np.sum(s2 * beta ** 2 / (mu - s2)))

    from scipy.optimize import minimize_scalar
    lo = float(s2.max())
    res = minimize_scalar(lambda z: val(lo + np.exp(z)), bounds=(-40, 20), method="bounded", options={"xatol": 1e-12})
    return float(np.sqrt(res.fun))


def _exact_linear_chain_sup(F, Fh, r: float = 1.0) -> float:
    """The exact sup over the ball of ||F(x) - F_hat(x)|| for lowered chains with identity activations (affine maps,
    composed exactly, then :func:`_exact_affine_sup`)."""
    A, c = np.eye(F.n_in), np.zeros(F.n_in)
    Ah, ch = A.copy(), c.copy()
    for st, sth in zip(F.stages, Fh.stages):
        A, c = st.M @ A, st.M @ c + st.b
        Ah, ch = sth.M @ Ah, sth.M @ ch + sth.b
    return _exact_affine_sup(A - Ah, c - ch, r)


@register("joint-identity", "Statement 12.60 (a): u_i = D_i X_i u_(i-1) with diagonal slopes in [0, 1] and F - F_hat "
          "= X_L u_(L-1)", "§12.12", "numeric", covers=["joint-identity"])
def _chk_identity():
    from probprune.certificates.joint import coupled_chain, first_pruned_stage

    n = 0
    for seed, keep_first in ((6101, False), (6102, False), (6103, True)):
        g, gh, F, Fh = _mlp_pair(seed, keep_first=keep_first)
        if keep_first:  # nothing pruned in the first stage: the state carries no delta block before stage 2
            require(first_pruned_stage(F, Fh) == 1, "first pruned stage")
        k0 = first_pruned_stage(F, Fh)
        rng = np.random.default_rng(seed)
        kappa = np.exp(rng.normal(size=F.depth - 1))
        mats = coupled_chain(F, Fh, kappa)[0][::-1]  # input side first
        for _ in range(50):
            x = rng.normal(size=F.n_in)
            s, sh = x.copy(), x.copy()
            u = np.r_[x, 1.0]
            for i, (st, sth) in enumerate(zip(F.stages, Fh.stages)):
                z, zh = st.M @ s + st.b, sth.M @ sh + sth.b
                y = mats[i] @ u
                if i == F.depth - 1:
                    require(np.allclose(y, z - zh, atol=1e-9), f"seed {seed}: output identity fails")
                    break
                s, sh = np.where(st.relu, np.maximum(z, 0), z), np.where(sth.relu, np.maximum(zh, 0), zh)
                u_new = np.r_[s - sh, kappa[i] * sh, 1.0] if i >= k0 else np.r_[kappa[i] * sh, 1.0]
                with np.errstate(divide="ignore", invalid="ignore"):
                    d = np.where(np.abs(y) > 1e-300, u_new / y, 1.0)
                require(np.all((d >= -1e-9) & (d <= 1 + 1e-9)), f"seed {seed} stage {i}: a slope outside [0, 1]")
                require(np.allclose(u_new, d * y, atol=1e-9), f"seed {seed} stage {i}: u != D X u'")
                require(abs(u_new[-1] - 1.0) < 1e-15, "constant coordinate")
                u = u_new
            n += 1
    return (f"{n} sampled inputs on 3 chain pairs (one with an unpruned first stage): the coupled-chain identity holds "
            "to 1e-9, slopes in [0, 1]")


@register("joint-step", "Statement 12.60 (b): u^T G u <= u'^T G' u' for u = D X u', D = 1 on the fixed coordinates "
          "(identity, constant), in [0, 1] on the relaxed ones, any diagonal T with 2T - G_RR > 0", "§12.12", "numeric",
          covers=["joint-step"])
def _chk_step():
    from probprune.certificates.joint import _Step

    rng = np.random.default_rng(6111)
    worst = -np.inf
    for trial in range(300):
        n, m = int(rng.integers(2, 8)), int(rng.integers(2, 6))
        B = rng.normal(size=(n + 2, n + 1))
        G = B.T @ B  # PSD form on the state (last coordinate: the constant)
        X = rng.normal(size=(n + 1, m + 1))
        X[-1] = 0.0
        X[-1, -1] = 1.0  # the constant row
        rel = np.r_[rng.random(n) < 0.7, False]  # relaxed (ReLU) coordinates; the others are fixed at slope 1
        if not rel.any():
            rel[0] = True
        R, Fx = np.flatnonzero(rel), np.flatnonzero(~rel)
        lmax = np.linalg.eigvalsh(G[np.ix_(R, R)])[-1]
        T = lmax / 2 * (1 + np.exp(rng.normal(size=R.size)))  # 2T - G_RR > 0
        Q = np.linalg.inv(2 * np.diag(T) - G[np.ix_(R, R)])
        Z = T[:, None] * X[R] + G[np.ix_(R, Fx)] @ X[Fx]
        Gp = Z.T @ Q @ Z + X[Fx].T @ G[np.ix_(Fx, Fx)] @ X[Fx]
        st = _Step(B, X, rel)  # the code's step (scalar t = lmax, certified by its eigenvalues) is also an upper form
        st.scalar_setup()
        Cs = st.scalar_C(float(st.lam[-1]))
        for _ in range(20):
            up = np.r_[rng.normal(size=m), rng.normal()]
            y = X @ up
            D = np.where(rel, rng.random(n + 1) * (rng.random(n + 1) < 0.8), 1.0)
            u = D * y
            lhs, rhs = float(u @ G @ u), float(up @ Gp @ up)
            require(lhs <= rhs * (1 + 1e-10) + 1e-10, f"trial {trial}: {lhs} > {rhs}")
            rc = float(np.sum((Cs @ up) ** 2))
            require(lhs <= rc * (1 + 1e-10) + 1e-10, f"trial {trial}: code step {rc} < {lhs}")
            worst = max(worst, lhs - rhs)
    return (f"300 random (G, X, T, fixed set) x 20 (u', D): u^T G u <= u'^T G' u' and <= the code's scalar step "
            f"(largest lhs - rhs {worst:.2e})")


@register("joint-ground-truth", "Statement 12.60 (c): joint bound >= exact sup (linear chains with biases) and >= "
          "sampled / PGD errors (ReLU MLPs with biases, residual nets with BatchNorm, a max-pool CNN)", "§12.12",
          "numeric",
          covers=["joint-ground-truth"])
def _chk_ground_truth():
    import torch

    from probprune.certificates.joint import joint_bound
    from probprune.certificates.tight import unscale
    from probprune.measure.attack import pgd_sup_error

    ratios = []
    for seed in (6121, 6122, 6123):  # linear chains with biases: exact sup of an affine map over the ball
        g, gh, F, Fh = _mlp_pair(seed, act="identity")
        ex = unscale(_exact_linear_chain_sup(F, Fh), F.scale_exp)
        jb = unscale(joint_bound(F, Fh, 1.0, diag_steps=30).eps, F.scale_exp)
        require(jb >= ex * (1 - 1e-9), f"linear seed {seed}: joint {jb} < exact {ex}")
        ratios.append(jb / ex)
    pg = []
    for seed in (6131, 6132, 6133, 6134):  # ReLU MLPs with biases
        g, gh, F, Fh = _mlp_pair(seed, widths=(5, 8, 8, 3))
        jb = unscale(joint_bound(F, Fh, 1.0, diag_steps=30).eps, F.scale_exp)
        a = pgd_sup_error(g.forward, gh.forward, (5,), restarts=32, steps=80, seed=seed).value
        rng = np.random.default_rng(seed)
        X = rng.normal(size=(4000, 5))
        X /= np.linalg.norm(X, axis=1, keepdims=True)
        with torch.no_grad():
            t = torch.as_tensor(X)
            smp = float(np.linalg.norm((g.forward(t) - gh.forward(t)).numpy(), axis=1).max())
        require(jb >= max(a, smp), f"relu seed {seed}: joint {jb} < attack {max(a, smp)}")
        pg.append(jb / max(a, smp))
    from .checks_mixed_pool_tc import tiny_maxpool_pair

    res = []
    for seed in (6151, 6152):  # residual + BatchNorm: carried coordinates (identity, fixed at slope 1)
        g, gh, F, Fh = _residual_pair(seed)
        jb = unscale(joint_bound(F, Fh, 1.0, diag_steps=30).eps, F.scale_exp)
        a = pgd_sup_error(g.forward, gh.forward, (5,), restarts=32, steps=80, seed=seed).value
        require(jb >= a, f"residual seed {seed}: joint {jb} < attack {a}")
        res.append(jb / a)

    g, gh, F, Fh = tiny_maxpool_pair(6141)  # a max-pool CNN (the explicit method accepts it; auto skips it)
    jb = unscale(joint_bound(F, Fh, 1.0, diag_steps=30).eps, F.scale_exp)
    a = pgd_sup_error(g.forward, gh.forward, (1, 4, 4), restarts=32, steps=80, seed=6141).value
    require(jb >= a, f"max-pool CNN: joint {jb} < attack {a}")
    return (f"linear chains: joint / exact {min(ratios):.3f}-{max(ratios):.3f}; ReLU MLPs: joint / attack "
            f"{min(pg):.2f}-{max(pg):.2f}; residual+BN: {min(res):.2f}-{max(res):.2f}; max-pool CNN: {jb / a:.2f}")


@register("tight-joint-thin", "Statement 12.61: the thin scalar step (state C with fewer rows than relaxed "
          "coordinates) gives the form of 12.60 (b) at the same t up to rounding, and u^T G u <= ||C' u'||^2",
          "§12.12", "numeric", covers=["tight-joint-thin"])
def _chk_thin_step():
    import probprune.certificates.joint as J

    rng = np.random.default_rng(6112)
    worst_rel = 0.0
    for trial in range(200):
        n, m = int(rng.integers(4, 12)), int(rng.integers(2, 6))
        rel = np.r_[rng.random(n) < 0.8, False]
        if rel.sum() < 3:
            rel[:3] = True
        C = rng.normal(size=(int(rng.integers(1, rel.sum())), n + 1))  # fewer rows than relaxed coordinates
        X = rng.normal(size=(n + 1, m + 1))
        X[-1] = 0.0
        X[-1, -1] = 1.0
        forms = []
        try:
            for thin in (True, False):
                J.THIN_STEPS = thin
                st = J._Step(C, X, rel)
                require(st.thin == thin, "the thin path was not taken")
                lmax = st.scalar_setup()
                if thin:  # one multiplier for both forms (the slacks differ by O(u), far below its margin)
                    t = lmax / 2 * (1 + float(np.exp(rng.normal())))
                Cs = st.scalar_C(t)
                forms.append((Cs.T @ Cs, st))
        finally:
            J.THIN_STEPS = True
        Gt, Gf = forms[0][0], forms[1][0]
        rel_err = float(np.abs(Gt - Gf).max() / max(np.abs(Gf).max(), 1e-300))
        worst_rel = max(worst_rel, rel_err)
        require(rel_err <= 1e-8, f"trial {trial}: thin and full forms differ by {rel_err:.2e} (relative)")
        G = C.T @ C
        for _ in range(20):
            up = np.r_[rng.normal(size=m), rng.normal()]
            y = X @ up
            u = np.where(rel, rng.random(n + 1) * (rng.random(n + 1) < 0.8), 1.0) * y
            lhs, rhs = float(u @ G @ u), float(up @ Gt @ up)
            require(lhs <= rhs * (1 + 1e-10) + 1e-10, f"trial {trial}: {lhs} > {rhs}")
    return f"200 random thin steps x 20 (u', D): thin = full form at the same t (largest relative gap {worst_rel:.1e})"


@register("joint-end-to-end", "Statement 12.62: the joint bound at multipliers chosen end to end (all steps at once "
          "against the final bound) is certified at them: >= exact sup (linear chains with biases, 2-D ReLU nets on a "
          "fine grid of the disk), >= PGD (ReLU MLPs, residual + BatchNorm), <= the greedy value it starts from",
          "§12.12", "numeric", covers=["joint-end-to-end"])
def _chk_end_to_end():
    import torch

    from probprune.certificates.joint import (ReluRows, _end_to_end, _recursion, _recursion_relu_at, coupled_chain,
                                              heuristic_scales, joint_bound, relu_rows)
    from probprune.certificates.tight import unscale
    from probprune.measure.attack import pgd_sup_error

    gains, ratios, n = [], [], 0
    for seed in (6151, 6152, 6153):  # linear chains with biases: exact sup
        g, gh, F, Fh = _mlp_pair(seed, act="identity")
        ex = unscale(_exact_linear_chain_sup(F, Fh), F.scale_exp)
        jb = unscale(joint_bound(F, Fh, 1.0, diag_steps=10, e2e_steps=30).eps, F.scale_exp)
        require(jb >= ex * (1 - 1e-9), f"linear seed {seed}: end-to-end joint {jb} < exact {ex}")
        n += 1
    th = np.linspace(0, 2 * np.pi, 4001)[:-1]
    rad = np.sqrt(np.linspace(0, 1, 301))
    disk = np.concatenate([np.c_[r * np.cos(th), r * np.sin(th)] for r in rad])  # 1.2M points of the unit disk
    for seed in (6161, 6162, 6163, 6164, 6165, 6166):  # 2-D ReLU nets: the grid maximum (a near-exact sup)
        for widths in ((2, 6, 5, 2), (2, 8, 2)):
            g, gh, F, Fh = _mlp_pair(seed, widths=widths, keep=0.5)
            kappa = heuristic_scales(F, Fh, 1.0)
            mats, rel = coupled_chain(F, Fh, kappa)
            used: list = []
            vg, _ = _recursion(mats, rel, 1.0, 10, None, used)
            none = [ReluRows.none(X.shape[0]) for X in mats[1:]]
            zero = [np.zeros(0)] * len(none)
            require(abs(_recursion_relu_at(mats, rel, none, used, zero, 1.0) - vg) <= 1e-8 * vg,
                    f"seed {seed}: the dense recursion with nu = 0 differs from the greedy value")
            rows = relu_rows(F, Fh, kappa)
            found = _end_to_end(mats, rel, used, 1.0, 60, rows=rows)
            ve = _recursion_relu_at(mats, rel, rows, *found, 1.0) if found is not None else vg
            jb = unscale(min(vg, ve), F.scale_exp)
            with torch.no_grad():
                t = torch.as_tensor(disk)
                grid = float(np.linalg.norm((g.forward(t) - gh.forward(t)).numpy(), axis=1).max())
            require(jb >= grid, f"2-D seed {seed}: end-to-end joint {jb} < grid maximum {grid}")
            ratios.append(jb / grid)
            gains.append(min(vg, ve) / vg)
            n += 1
    for seed in (6171, 6172, 6173):  # ReLU MLPs with biases: a 64-restart PGD
        g, gh, F, Fh = _mlp_pair(seed, widths=(5, 9, 7, 3))
        jb = unscale(joint_bound(F, Fh, 1.0, diag_steps=10, e2e_steps=40).eps, F.scale_exp)
        a = pgd_sup_error(g.forward, gh.forward, (5,), restarts=64, steps=100, seed=seed).value
        require(jb >= a, f"relu seed {seed}: end-to-end joint {jb} < PGD {a}")
        n += 1
    for seed in (6181, 6182):  # residual + BatchNorm (carried coordinates fixed)
        g, gh, F, Fh = _residual_pair(seed)
        r0 = joint_bound(F, Fh, 1.0, diag_steps=10)
        r1 = joint_bound(F, Fh, 1.0, diag_steps=10, e2e_steps=40)
        require(r1.eps <= r0.eps, f"residual seed {seed}: end-to-end {r1.eps} above the greedy {r0.eps}")
        jb = unscale(r1.eps, F.scale_exp)
        a = pgd_sup_error(g.forward, gh.forward, (5,), restarts=64, steps=100, seed=seed).value
        require(jb >= a, f"residual seed {seed}: end-to-end joint {jb} < PGD {a}")
        gains.append(r1.eps / r0.eps)
        n += 1
    return (f"{n} pairs: >= exact / grid maximum / PGD; on 2-D nets bound / grid maximum {min(ratios):.3f}-"
            f"{max(ratios):.3f}; end-to-end / greedy {min(gains):.3f}-{max(gains):.3f}")


@register("joint-relu-step", "Statement 12.63: with the ReLU's linear constraints (shat >= 0, shat >= zhat, s >= 0, "
          "s >= z) and multipliers nu >= 0 the step's form bounds u^T G u at every actual ReLU point, for indefinite G",
          "§12.12", "numeric", covers=["joint-relu-step"])
def _chk_relu_step():
    from probprune.certificates.joint import ReluRows, _relu_step

    rng = np.random.default_rng(6191)
    worst, n = -np.inf, 0
    for trial in range(300):
        nu_n = int(rng.integers(1, 5))  # ReLU units; state u = [delta (nu_n); kappa shat (nu_n); carried (c); 1]
        c = int(rng.integers(0, 3))
        m = 2 * nu_n + c + 1
        mi = int(rng.integers(2, 6)) + 1  # the previous state, its constant last
        kap = float(np.exp(rng.normal()))
        rows = ReluRows(m=m, h=nu_n + np.arange(nu_n), d=np.arange(nu_n), dh=nu_n + np.arange(nu_n), inv_kappa=1 / kap)
        rel = np.zeros(m, bool)
        rel[:2 * nu_n] = True
        B = rng.normal(size=(m + 1, m))
        G = B.T @ B
        w = rng.normal(size=m)  # an indefinite part in the constant's row and column (as 12.63's forms carry)
        G[:, -1] += w
        G[-1, :] += w
        X = rng.normal(size=(m, mi))
        X[-1] = 0.0
        X[-1, -1] = 1.0
        R = np.flatnonzero(rel)
        lmax = max(np.linalg.eigvalsh(G[np.ix_(R, R)])[-1], 1e-3)
        T = lmax / 2 * (1 + np.exp(rng.normal(size=R.size)))
        nu = np.exp(rng.normal(size=rows.n_nu) - 1) * (rng.random(rows.n_nu) < 0.8)
        Gp = _relu_step(G, X, rel, rows, T, nu)
        require(Gp is not None, f"trial {trial}: admissible multipliers refused")
        for _ in range(20):
            up = np.r_[rng.normal(size=mi - 1), 1.0]
            y = X @ up
            u = y.copy()
            sh = np.maximum(y[nu_n:2 * nu_n], 0.0)  # kappa shat = ReLU(kappa zhat)
            s_ = np.maximum(y[:nu_n] + y[nu_n:2 * nu_n] / kap, 0.0)  # s = ReLU(z), z = dz + zhat
            u[nu_n:2 * nu_n] = sh
            u[:nu_n] = s_ - sh / kap  # delta = s - shat
            lhs, rhs = float(u @ G @ u), float(up @ Gp @ up)
            require(lhs <= rhs + 1e-9 * (1 + abs(rhs)), f"trial {trial}: u^T G u {lhs} > {rhs}")
            worst = max(worst, lhs - rhs)
            n += 1
    return f"{n} actual ReLU points of 300 random steps (indefinite G, nu >= 0): u^T G u <= u'^T G' u' (max {worst:.2e})"


def relu_pool_commuted(model):
    """The Sequential with every ReLU -> MaxPool2d pair written MaxPool2d -> ReLU (Statement 12.64)."""
    import torch.nn as nn

    mods, out, i = list(model), [], 0
    while i < len(mods):
        if i + 1 < len(mods) and isinstance(mods[i], nn.ReLU) and isinstance(mods[i + 1], nn.MaxPool2d):
            out += [mods[i + 1], mods[i]]
            i += 2
        else:
            out.append(mods[i])
            i += 1
    return nn.Sequential(*out)


@register("relu-maxpool-commute", "Statement 12.64: max_i ReLU(z_i) = ReLU(max_i z_i) bitwise (random windows with "
          "ties and signed zeros; random CNNs and their rewritten Sequentials, and the lowering's rewrite "
          "(commute_relu_pool) against both); the joint bound of the rewritten pair >= PGD on the original pair",
          "§12.12", "numeric", covers=["relu-maxpool-commute"])
def _chk_relu_maxpool_commute():
    import torch
    import torch.nn as nn

    from probprune.certificates.joint import joint_bound
    from probprune.certificates.lower import lower_graph_pair
    from probprune.certificates.tight import unscale
    from probprune.measure.attack import pgd_sup_error
    from probprune.net.trace import from_torch

    rng = np.random.default_rng(6401)
    for k in (1, 2, 3, 4, 9):
        z = rng.normal(size=(20_000, k)) * np.exp(rng.normal(size=(20_000, 1)) * 20)
        z[rng.random(z.shape) < 0.1] = 0.0
        z[rng.random(z.shape) < 0.05] = -0.0
        z[:, -1] = np.where(rng.random(20_000) < 0.2, z[:, 0], z[:, -1])  # ties
        lhs, rhs = np.maximum(z, 0.0).max(axis=1), np.maximum(z.max(axis=1), 0.0)
        require(np.array_equal(lhs, rhs), f"window {k}: max ReLU != ReLU max")
    ratios = []
    for seed in (6411, 6412, 6414):
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(3, 4, 3, padding=1),
                              nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True), nn.Flatten(), nn.Linear(4 * 2 * 2, 5),
                              nn.ReLU(), nn.Linear(5, 3)).double().eval()
        m2 = relu_pool_commuted(model)
        x = torch.randn(500, 1, 7, 7, dtype=torch.float64)
        with torch.no_grad():
            require(torch.equal(model(x), m2(x)), f"seed {seed}: the rewritten CNN computes another function")
        g, g2 = from_torch(model, (1, 7, 7)), from_torch(m2, (1, 7, 7))
        masks = {k: np.random.default_rng(seed).random(w.shape) < 0.6 for k, w in g.weights.items()}
        require(set(masks) == set(g2.weights), f"seed {seed}: the rewrite renamed a weight")
        gh, gh2 = g.with_masks(masks), g2.with_masks(masks)
        F2, Fh2 = lower_graph_pair(g, gh, commute_relu_pool=True)  # the package's rewrite, in the lowering
        S2, Sh2 = lower_graph_pair(g2, gh2)  # the rewritten Sequential, lowered as it is
        with torch.no_grad():
            for C, S, net in ((F2, S2, g2), (Fh2, Sh2, gh2)):
                require(np.allclose(C.forward(x.numpy()), net.forward(x).numpy(), rtol=1e-10, atol=1e-12)
                        and C.same_structure(S), f"seed {seed}: the lowering's rewrite differs from the Sequential's")
        jb = unscale(joint_bound(F2, Fh2, 1.0, diag_steps=10, e2e_steps=30).eps, F2.scale_exp)
        a = pgd_sup_error(g.forward, gh.forward, (1, 7, 7), restarts=128, steps=100, seed=seed).value
        require(jb >= a, f"seed {seed}: joint bound of the rewritten pair {jb} < PGD of the original {a}")
        if a > 0:
            ratios.append(jb / a)
    return (f"max ReLU = ReLU max bitwise on 100,000 windows; 3 random CNNs rewritten exactly (Sequential and "
            f"lowering); joint bound of the rewritten pair / PGD {min(ratios):.2f}-{max(ratios):.2f}")
