"""Probes of the joint bound (THEORY §12.12) on the certificate benchmark's networks: what would have to change for
it to reach the max-pool and residual rows of issue 19, measured (every value is a valid bound; only its size and
time are in question).

* ``kappa``: the heuristic scales kappa_i against a coordinate search over them (one sweep of x4, x1/4, x2, x1/2 per
  stage, scalar multipliers), then both with 25 Adam steps of diagonal multipliers;
* ``gamma``: the constant coordinate scaled per step by gamma_i = c Delta_i (c = 0.1, 1, 10; Delta_i the composed
  bound's delta recursion); the bound's value is invariant for fixed multipliers, the greedy per-step choice is not;
* ``adam``: the joint bound through max-pool trees with 0 / 10 / 40 Adam steps against the mixed bound;
* ``stability``: the share of F_hat's ReLU inputs that CROWN leaves unstable on the unit ball, per hidden stage
  (stable ones could be fixed in the recursion);
* ``perterm``: Statement 12.8's terms, each by Statement 12.60's recursion on its own chain, against the mixed
  bound's terms;
* ``budget_cnn``: issue 22's digits CNN with max pooling at q = 0.4: the mixed bound's terms against a PGD of each
  term, and CROWN's rows of the last term against a PGD of each row;
* ``median_row``: the row at the overall median (cnn_maxpool_mnist16, q = 0.9): the mixed bound's terms against
  a PGD of each term;
* ``commute``: the joint bound with end-to-end multipliers (Statement 12.62, 0 / 15 / 50 / 100 steps) on the lowering
  of LeNet-5 with every ReLU -> MaxPool2d pair written MaxPool2d -> ReLU (max_i ReLU(z_i) = ReLU(max_i z_i): the same
  function, so every value is a bound on the same error), against the mixed bound of both lowerings, and what
  ``certify --bound joint`` gives on the original lowering and on the rewritten one (Statement 12.64, which it uses),
  and ``certify --bound auto`` at time limits of 10 s and 30 s (the rewritten joint bound runs from 20 s left);
* ``fcomp``: F's own complementarity s_j (z_j - s_j) = 0 (s = delta + shat, z = dz + zhat) added to the end-to-end
  phase as 2x2 blocks rho_j a_j a_j^T of the step's multiplier (a_j = e_delta + e_shat / kappa), rho_j >= 0 started
  at 1e-6 T: the proposal's torch value at 40 steps with and without it (a probe of the relaxation, not certified);
* ``cost``: the scalar joint bound on the 16x16 residual net (4,097 coupled coordinates) next to one eigh of its
  relaxed block size, in the same run.

Ratios are to the PGD values stored in benchmarks/results/certificates.json (same networks, masks and fractions).
Networks come from bench_certificates' cache (trained there with seed 0). One BLAS thread.
Usage: bench_joint_probes.py [PROBE ...]   (default: all); writes benchmarks/results/joint_probes.json."""
from __future__ import annotations

import json
import os
import platform
import sys
import time

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
import bench_certificates as BC  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "results", "joint_probes.json")
KAPPA_NETS = ("mlp_mnist1d_40-100-100", "lenet300-100_mnist5k", "cnn_avgpool_digits", "lenet5_maxpool_digits")
KAPPA_FRACTIONS = (0.3, 0.6)
ADAM_STEPS = 25
POOL_NET = "lenet5_maxpool_digits"
COST_NET = "resnet_bn_mnist16"


def _stored():
    with open(os.path.join(HERE, "results", "certificates.json")) as f:
        res = json.load(f)
    return {(n["name"], f["fraction"]): f for n in res["networks"] for f in n["fractions"]}


def _model(name):
    """(float64 model, input shape) of a bench_certificates network (its cache; trained there with seed 0)."""
    import torch

    torch.set_num_threads(1)
    cache = os.environ.get("PROBPRUNE_BENCH_CACHE", "/tmp/probprune_bench_cache")
    for (n, _fam, dsn, img, build, ep) in BC._nets():
        if n == name:
            ds, model = BC._trained(n, dsn, img, build, ep, cache)
            return model.double().eval(), tuple(ds.input_shape)
    raise SystemExit(f"error: unknown network {name!r}")


def _pair(name, q):
    from probprune.certificates.lower import lower_graph_pair
    from probprune.net.trace import from_torch

    model, shape = _model(name)
    g = from_torch(model, shape)
    return lower_graph_pair(g, g.with_masks(BC.graph_masks(model, g, q)))


def _value(F, Fh, kappa, steps=0, gamma=None):
    """Statement 12.60's bound (unscaled) at scales kappa, with the constant coordinate of state i scaled by
    gamma[i - 1] (a diagonal change of variables on a fixed coordinate)."""
    from probprune.certificates.joint import _recursion, coupled_chain
    from probprune.certificates.tight import unscale

    mats, rel = coupled_chain(F, Fh, kappa)
    if gamma is not None:
        L = len(mats)
        mats = [X.copy() for X in mats]
        for j, X in enumerate(mats):
            i = L - j  # X maps u_{i-1} -> stage i
            X[:, -1] /= 1.0 if i == 1 else gamma[i - 2]
            if j > 0:
                X[-1, :] *= gamma[i - 1]
    v, _ = _recursion(mats, rel, 1.0, steps)
    return unscale(v, F.scale_exp)


def probe_kappa(stored):
    from probprune.certificates.joint import heuristic_scales

    rows = []
    for name in KAPPA_NETS:
        for q in KAPPA_FRACTIONS:
            F, Fh = _pair(name, q)
            pgd = stored[(name, q)]["pgd_ball"]
            k0 = heuristic_scales(F, Fh, 1.0)
            v0 = _value(F, Fh, k0)
            k, best = k0.copy(), v0
            for i in range(len(k)):
                for fct in (4.0, 0.25, 2.0, 0.5):
                    kk = k.copy()
                    kk[i] *= fct
                    v = _value(F, Fh, kk)
                    if v < best:
                        best, k = v, kk
            rows.append({"network": name, "fraction": q, "scalar_heuristic_over_pgd": v0 / pgd,
                         "scalar_searched_over_pgd": best / pgd,
                         f"adam{ADAM_STEPS}_heuristic_over_pgd": _value(F, Fh, k0, ADAM_STEPS) / pgd,
                         f"adam{ADAM_STEPS}_searched_over_pgd": _value(F, Fh, k, ADAM_STEPS) / pgd})
            print(rows[-1], flush=True)
    return rows


def _deltas(F, Fh):
    from probprune.certificates.compose import stage_norms

    n = stage_norms(F, Fh)
    h, d, out = 1.0, 0.0, []
    for i in range(F.depth - 1):
        d = float(n.E[i]) * h + float(n.M[i]) * d + float(n.bias_diff[i])
        h = float(n.Mhat[i]) * h + float(n.bias_hat[i])
        out.append(max(d, 1e-300))
    return np.asarray(out)


def probe_gamma(stored):
    from probprune.certificates.joint import heuristic_scales

    rows = []
    for name in ("mlp_mnist1d_40-100-100", POOL_NET):
        for q in KAPPA_FRACTIONS:
            F, Fh = _pair(name, q)
            pgd = stored[(name, q)]["pgd_ball"]
            k0, D = heuristic_scales(F, Fh, 1.0), _deltas(F, Fh)
            row = {"network": name, "fraction": q, "gamma_1_over_pgd": _value(F, Fh, k0) / pgd}
            for c in (0.1, 1.0, 10.0):
                row[f"gamma_{c:g}Delta_over_pgd"] = _value(F, Fh, k0, gamma=c * D) / pgd
            rows.append(row)
            print(row, flush=True)
    return rows


def probe_adam(stored):
    from probprune.certificates.joint import heuristic_scales

    rows = []
    for q in BC.FRACTIONS:
        F, Fh = _pair(POOL_NET, q)
        pgd = stored[(POOL_NET, q)]["pgd_ball"]
        row = {"network": POOL_NET, "fraction": q, "mixed_over_pgd": stored[(POOL_NET, q)]["merged_auto_components"]
               .get("mixed", float("nan")) / pgd}
        for s in (0, 10, 40):
            t = time.perf_counter()
            row[f"joint_adam{s}_over_pgd"] = _value(F, Fh, heuristic_scales(F, Fh, 1.0), s) / pgd
            row[f"joint_adam{s}_seconds"] = time.perf_counter() - t
        rows.append(row)
        print(row, flush=True)
    return rows


def probe_stability(stored):
    from probprune.certificates.propagate import CoupledPropagator, Region

    F, Fh = _pair(POOL_NET, 0.6)
    P = CoupledPropagator(F, Fh, Region(centers=np.zeros((1, F.n_in)), radius=1.0), modes="hat")
    rows = [{"network": POOL_NET, "fraction": 0.6, "stage": F.stages[j].name, "relu": info["n_relu"],
             "hat_unstable": info["hat_unstable"]} for j, info in enumerate(P.bounds) if info["n_relu"]]
    for r in rows:
        print(r, flush=True)
    return rows


def probe_cost(stored):
    from probprune.certificates.joint import coupled_chain, coupled_width, heuristic_scales

    F, Fh = _pair(COST_NET, 0.3)
    t = time.perf_counter()
    v = _value(F, Fh, heuristic_scales(F, Fh, 1.0))
    sec = time.perf_counter() - t
    _, rel = coupled_chain(F, Fh, heuristic_scales(F, Fh, 1.0))
    relaxed = max(int(r.sum()) for r in rel)  # the largest G_RR block: ReLU rows of both channels
    A = np.random.default_rng(0).standard_normal((relaxed, relaxed))
    A = A @ A.T
    t = time.perf_counter()
    np.linalg.eigh(A)
    eig = time.perf_counter() - t
    row = {"network": COST_NET, "fraction": 0.3, "coupled_width": coupled_width(F), "relaxed_block": relaxed,
           "scalar_joint_seconds": sec, "scalar_joint_over_pgd": v / stored[(COST_NET, 0.3)]["pgd_ball"],
           "auto_over_pgd": stored[(COST_NET, 0.3)]["merged_auto_over_pgd"], "one_eigh_seconds": eig,
           "recursion_steps_with_relaxed_block": sum(bool(np.any(s.relu)) for s in F.stages[:-1])}
    print(row, flush=True)
    return [row]


def _term_chain(F, Fh, i):
    """The chain of Statement 12.8's term i (0-based stage i pruned) for Statement 12.60's recursion: F_hat's channel
    [shat; 1] before stage i, the rows [E_i, db_i] at it, then only the error channel through F's stages (slopes in
    [0, 1], no constant: E and db are 0 there in the term). Output side first, as joint.coupled_chain."""
    from probprune.certificates.lower import stage_diff

    L, mats, rel = F.depth, [], []
    for j in range(L - 1, -1, -1):
        if j > i:
            mats.append(F.stages[j].M)
        elif j == i:
            E, db = stage_diff(F, Fh, j)
            mats.append(np.hstack([E, db[:, None]]))
        else:
            sh = Fh.stages[j]
            one = np.zeros((1, sh.M.shape[1] + 1))
            one[0, -1] = 1.0
            mats.append(np.vstack([np.hstack([sh.M, sh.b[:, None]]), one]))
    for j in range(L - 2, -1, -1):
        rel.append(np.asarray(F.stages[j].relu, bool) if j >= i
                   else np.concatenate([np.asarray(Fh.stages[j].relu, bool), [False]]))
    return mats, rel


def probe_perterm(stored):
    """Statement 12.8's terms one by one by Statement 12.60's recursion (each term is the sup of one error vector
    through the unpruned rest: a valid bound of the term), against the mixed bound's own terms."""
    from probprune.certificates.joint import _recursion
    from probprune.certificates.lower import stage_diff
    from probprune.certificates.mixed import lemma_a_mixed
    from probprune.certificates.propagate import Region
    from probprune.certificates.tight import unscale

    rows = []
    for name, q in ((POOL_NET, 0.3), (POOL_NET, 0.6), ("mlp_mnist1d_40-100-100", 0.3)):
        F, Fh = _pair(name, q)
        pgd = stored[(name, q)]["pgd_ball"]
        mx = lemma_a_mixed(F, Fh, Region(centers=np.zeros((1, F.n_in)), radius=1.0))
        for i in range(F.depth):
            E, db = stage_diff(F, Fh, i)
            if not (np.any(E) or np.any(db)):
                continue
            mats, rel = _term_chain(F, Fh, i)
            row = {"network": name, "fraction": q, "stage": F.stages[i].name,
                   "mixed_term_over_pgd": unscale(mx.terms[i], F.scale_exp) / pgd}
            for s in (0, ADAM_STEPS):
                row[f"joint_term_adam{s}_over_pgd"] = unscale(_recursion(mats, rel, 1.0, s)[0], F.scale_exp) / pgd
            rows.append(row)
            print(row, flush=True)
    return rows


def _term_attacks(m, masks, shape):
    """(hybrids H_0..H_k, PGD of ||H_0 - H_k||, PGD of each ||H_{i-1} - H_i||), H_i = the model with its first i
    masked weight layers pruned (``masks`` in the model's parameter order): Statement 12.8's terms one by one."""
    import copy

    import torch

    from probprune.measure.attack import pgd_sup_error

    names = list(masks)

    def hybrid(i):
        h = copy.deepcopy(m)
        with torch.no_grad():
            params = dict(h.named_parameters())
            for k in names[:i]:
                params[k].mul_(torch.as_tensor(masks[k], dtype=params[k].dtype))
        return h.eval()

    H = [hybrid(i) for i in range(len(names) + 1)]
    total = pgd_sup_error(H[0], H[-1], shape, restarts=128, steps=100).value
    return H, total, [pgd_sup_error(H[i], H[i + 1], shape, restarts=128, steps=100).value for i in range(len(names))]


def probe_median_row(stored):
    """The row at the overall median of certificates.json (cnn_maxpool_mnist16, q = 0.9): the mixed bound's terms
    against a PGD of each term alone, and the slope products Pi_i."""
    from probprune.certificates.mixed import lemma_a_mixed
    from probprune.certificates.propagate import Region
    from probprune.certificates.tight import unscale

    name, q = "cnn_maxpool_mnist16", 0.9
    m, shape = _model(name)
    F, Fh = _pair(name, q)
    mx = lemma_a_mixed(F, Fh, Region(centers=np.zeros((1, F.n_in)), radius=1.0), pair_bounds="none")
    _, total, terms = _term_attacks(m, BC._magnitude_masks(m, q), shape)
    live = [i for i, t in enumerate(mx.terms) if t > 0]
    row = {"network": name, "fraction": q, "pgd_total_stored": stored[(name, q)]["pgd_ball"], "pgd_total": total,
           "mixed_none_over_pgd": unscale(mx.eps, F.scale_exp) / total,
           "mixed_terms": [unscale(mx.terms[i], F.scale_exp) for i in live], "pgd_terms": terms,
           "mixed_term_over_pgd_term": [unscale(mx.terms[i], F.scale_exp) / t for i, t in zip(live, terms)],
           "pgd_terms_sum_over_total": sum(terms) / total, "V": [float(mx.V[i]) for i in live],
           "Pi": [float(mx.Pi[i]) for i in live]}
    print(row, flush=True)
    return [row]


def probe_budget_cnn(stored):
    """Issue 22's digits CNN with max pooling (bench_budget_ratio's trained network) at the uniform fraction 0.4,
    where its budget target needs a certificate <= eps = 12.34: the mixed bound's terms (Statement 12.8) against a
    PGD of each term alone (sup_x ||H_{i-1}(x) - H_i(x)||, H_i = F with its first i weight layers pruned; the terms'
    sups sum to at least the total's), and CROWN's per-row bounds of the last term against a PGD of each row."""
    import torch

    import bench_budget_ratio as BR
    from probprune.budgets.apriori import magnitude_prune_count
    from probprune.certificates.lower import lower_graph_pair, stage_diff
    from probprune.certificates.mixed import lemma_a_mixed
    from probprune.certificates.propagate import CoupledPropagator, Region, l2_sup_from_linear
    from probprune.certificates.tight import unscale
    from probprune.measure.attack import pgd_sup_error
    from probprune.net.trace import from_torch

    torch.set_num_threads(1)
    q = 0.4
    m, shape, _, _ = BR.trained_networks(0)["digits_cnn_maxpool"]
    g = from_torch(m, shape)
    masks = {k: magnitude_prune_count(w, int(q * w.size)) != 0 for k, w in g.weights.items()}
    F, Fh = lower_graph_pair(g, g.with_masks(masks))
    mx = lemma_a_mixed(F, Fh, Region(centers=np.zeros((1, F.n_in)), radius=1.0))
    H, total, terms = _term_attacks(m, masks, shape)
    live = [unscale(t, F.scale_exp) for t in mx.terms if t > 0]
    # the last term's rows: CROWN upper / lower bounds against a PGD of |row|
    P = CoupledPropagator(F, Fh, Region(centers=np.zeros((1, F.n_in)), radius=1.0), modes="hat")
    E, db = stage_diff(F, Fh, F.depth - 1)
    Lx, const, mag = P._backward_upper(F.depth - 2, None, torch.as_tensor(np.vstack([E, -E])), "hat", start_act=True)
    off = torch.as_tensor(np.concatenate([db, -db]))
    r = l2_sup_from_linear(P, Lx, const + off, mag + off.abs(), E.shape[0])
    crown_rows = unscale(1.0, F.scale_exp) * np.maximum(r.coord_upper[0], -r.coord_lower[0])
    feat = torch.nn.Sequential(*list(H[-1].children())[:-1])
    Wd = (m[-1].weight - H[-1][-1].weight).detach()
    bd = (m[-1].bias - H[-1][-1].bias).detach()
    zero = lambda x: torch.zeros(x.shape[0], 1, dtype=torch.float64)  # noqa: E731
    pgd_rows = [pgd_sup_error(lambda x, j=j: (feat(x) @ Wd.T + bd)[:, j:j + 1], zero, shape, restarts=32,
                              steps=60).value for j in range(E.shape[0])]
    row = {"network": "digits_cnn_maxpool (bench_budget_ratio)", "fraction": q, "eps_needed": 12.335,
           "mixed": unscale(mx.eps, F.scale_exp), "mixed_terms": live, "pgd_total": total, "pgd_terms": terms,
           "pgd_terms_sum_over_total": sum(terms) / total,
           "mixed_term_over_pgd_term": [a / b for a, b in zip(live, terms)],
           "last_term_crown_row_over_pgd_row": [float(a / b) for a, b in zip(crown_rows, pgd_rows)],
           "last_term_crown_l2": unscale(float(r.eps[0]), F.scale_exp)}
    print(row, flush=True)
    return [row]


def _commuted(model):
    """The model with every ReLU -> MaxPool2d pair of its Sequential swapped (the same function, Statement 12.64):
    proofs_check's helper, which its check `relu-maxpool-commute` tests."""
    sys.path.insert(0, os.path.dirname(HERE))
    from proofs_check.checks_joint import relu_pool_commuted

    return relu_pool_commuted(model)

def probe_commute(stored):
    import torch

    from probprune.certificates.joint import joint_bound
    from probprune.certificates.lower import lower_graph_pair
    from probprune.certificates.tight import certify_chains, pool_pair_for, unscale
    from probprune.net.trace import from_torch

    model, shape = _model(POOL_NET)
    m2 = _commuted(model)
    x = torch.randn(64, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        same = float((model(x) - m2(x)).abs().max())
    g, g2 = from_torch(model, shape), from_torch(m2, shape)
    names = [n for n, p in model.named_parameters() if n.endswith("weight")]
    names2 = [n for n, p in m2.named_parameters() if n.endswith("weight")]
    rows = []
    for q in BC.FRACTIONS:
        masks = BC.graph_masks(model, g, q)
        F2, Fh2 = lower_graph_pair(g2, g2.with_masks({b: masks[a] for a, b in zip(names, names2) if a in masks}))
        pgd = stored[(POOL_NET, q)]["pgd_ball"]
        row = {"network": POOL_NET, "fraction": q, "max_abs_output_difference_of_the_rewrite": same,
               "mixed_over_pgd": stored[(POOL_NET, q)]["merged_auto_components"].get("mixed", float("nan")) / pgd}
        t = time.perf_counter()
        row["mixed_commuted_over_pgd"] = unscale(certify_chains(F2, Fh2, "mixed", 1.0).eps, F2.scale_exp) / pgd
        row["mixed_commuted_seconds"] = time.perf_counter() - t
        F, Fh = lower_graph_pair(g, g.with_masks(masks))
        for tag, pp in (("original", None), ("rewritten", pool_pair_for(g, g.with_masks(masks), "joint"))):
            t = time.perf_counter()  # what `certify --bound joint` gives without / with Statement 12.64's lowering
            row[f"bound_joint_{tag}_over_pgd"] = unscale(certify_chains(F, Fh, "joint", 1.0, pool_pair=pp).eps,
                                                         F.scale_exp) / pgd
            row[f"bound_joint_{tag}_seconds"] = time.perf_counter() - t
        for limit in (10.0, 30.0):  # `certify --bound auto --time-limit LIMIT` (the rewritten joint bound from 20 s)
            t = time.perf_counter()
            gh = g.with_masks(masks)
            Fa, Fha = lower_graph_pair(g, gh)
            c = certify_chains(Fa, Fha, "auto", 1.0, time_limit=limit, clock_start=t,
                               pool_pair=pool_pair_for(g, gh, "auto", limit))
            row[f"auto_{limit:g}s_over_pgd"] = unscale(c.eps, Fa.scale_exp) / pgd
            row[f"auto_{limit:g}s_method"] = c.method
            row[f"auto_{limit:g}s_seconds"] = time.perf_counter() - t
        for s in (0, 15, 50, 100):
            t = time.perf_counter()
            r = joint_bound(F2, Fh2, 1.0, diag_steps=ADAM_STEPS, e2e_steps=s)
            row[f"joint_commuted_e2e{s}_over_pgd"] = unscale(r.eps, F2.scale_exp) / pgd
            row[f"joint_commuted_e2e{s}_seconds"] = time.perf_counter() - t
        rows.append(row)
        print(row, flush=True)
    return rows


def _e2e_with_rho(F, Fh, steps, with_rho):
    """The torch value of joint._end_to_end's objective after ``steps`` Adam steps from the greedy multipliers, with
    (``with_rho``) or without F's complementarity blocks; (start, best), unscaled. A probe: not certified."""
    import numpy as np
    import torch

    import probprune.certificates.joint as J
    from probprune.certificates.compose import adam_log_multipliers
    from probprune.certificates.tight import unscale

    kappa = J.heuristic_scales(F, Fh, 1.0)
    mats, rel = J.coupled_chain(F, Fh, kappa)
    used: list = []
    J._recursion(mats, rel, 1.0, ADAM_STEPS, None, used)
    rows = J.relu_rows(F, Fh, kappa)
    idx = [np.flatnonzero(rj) for rj in rel]
    pairs = [(np.searchsorted(R, rw.d), np.searchsorted(R, rw.dh)) if with_rho and rw.d.size and R.size else None
             for R, rw in zip(idx, rows)]
    p0, lr, offs, noffs = J._e2e_layout(used, idx, rows)  # T and nu as joint._end_to_end, then the rho blocks
    rho0 = [1e-6 * np.asarray(used[k], float)[p[0]] for k, p in enumerate(pairs) if p is not None]
    roffs = p0.size + np.concatenate([[0], np.cumsum([0 if p is None else p[0].size for p in pairs])]).astype(int)
    p0 = np.concatenate([p0] + rho0)
    lr = np.concatenate([lr, np.full(p0.size - lr.size, J.JOINT_NU_LR)])
    X0 = torch.from_numpy(np.ascontiguousarray(mats[0]))
    factors = [J.TorchFactor.of(X, rj) for X, rj in zip(mats[1:], rel)]

    def value(theta):
        G = X0.T @ X0
        for k in range(len(rel)):
            R = idx[k]
            cu, cy = rows[k].linear_terms(torch.exp(theta[noffs[k]:noffs[k + 1]]), xp=torch)
            Q = None
            if R.size:
                Q = torch.diag(torch.exp(theta[offs[k]:offs[k + 1]]))
                if pairs[k] is not None:  # F's complementarity: rho_j a_j a_j^T, a_j = e_delta + e_shat / kappa
                    pd, ph = (torch.from_numpy(v) for v in pairs[k])
                    ik, rho = rows[k].inv_kappa, torch.exp(theta[roffs[k]:roffs[k + 1]])
                    for (a, b), w in (((pd, pd), rho), ((pd, ph), rho * ik), ((ph, pd), rho * ik),
                                      ((ph, ph), rho * ik * ik)):
                        Q = Q.index_put((a, b), w, accumulate=True)
            G = J._torch_relu_step(G, factors[k], Q, cu, cy)
            if G is None:
                return None
        return J._torch_form_trs(G, 1.0)

    found = adam_log_multipliers(J._log_evaluate(value), p0, p0.size, steps, lr=lr)
    return unscale(found[0][0], F.scale_exp), unscale(found[1][0], F.scale_exp)


def probe_fcomp(stored):
    from probprune.certificates.lower import lower_graph_pair
    from probprune.net.trace import from_torch

    rows = []
    for name, q, commute in (("mlp_digits_64-64-32", 0.3, False), ("mlp_mnist1d_40-100-100", 0.3, False),
                             (POOL_NET, 0.6, True)):
        model, shape = _model(name)
        g = from_torch(model, shape)
        masks = BC.graph_masks(model, g, q)
        if commute:
            m2 = _commuted(model)
            names = [n for n, p in model.named_parameters() if n.endswith("weight")]
            names2 = [n for n, p in m2.named_parameters() if n.endswith("weight")]
            g = from_torch(m2, shape)
            masks = {b: masks[a] for a, b in zip(names, names2) if a in masks}
        F, Fh = lower_graph_pair(g, g.with_masks(masks))
        pgd = stored[(name, q)]["pgd_ball"]
        row = {"network": name, "fraction": q, "relu_maxpool_commuted": commute, "steps": 40}
        for tag, flag in (("without", False), ("with_rho", True)):
            t = time.perf_counter()
            s0, best = _e2e_with_rho(F, Fh, 40, flag)
            row[f"{tag}_start_over_pgd"], row[f"{tag}_best_over_pgd"] = s0 / pgd, best / pgd
            row[f"{tag}_seconds"] = time.perf_counter() - t
        rows.append(row)
        print(row, flush=True)
    return rows

CEILING_ROWS = (("lenet5_maxpool_digits", 0.6, (300, 1000)), ("cnn_maxpool_mnist16", 0.6, (60, 200, 1000)),
                ("resnet_bn_digits", 0.6, (100, 300)), ("resnet_bn_mnist16", 0.6, (30, 100)),
                ("vgg_maxpool_mnist16", 0.6, (30,)))


def _strong_attack():
    """The best of the stronger attacks per (network, fraction) in attack_strength.json, where it was run."""
    path = os.path.join(HERE, "results", "attack_strength.json")
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        res = json.load(f)
    return {(r["network"], r["fraction"]): r["best_strong"] for r in res["rows"]}


def probe_ceiling(stored):
    """How far the joint bound goes with no time limit on the rows that miss issue 19's targets: up to 1,000
    end-to-end steps (tight.JOINT_LONG_E2E's float32 search, certified in float64 as every joint value) on the
    rewritten lowering of 12.64 where the network has max pooling, else on the plain lowering; against the stored
    PGD, the stronger attacks where run, and the stored auto (10 s) and mixed values."""
    from probprune.certificates.joint import coupled_width, joint_bound, joint_work
    from probprune.certificates.lower import lower_graph_pair
    from probprune.certificates.tight import JOINT_LONG_E2E, pool_pair_for, unscale
    from probprune.core.errors import ProbPruneError
    from probprune.net.trace import from_torch

    strong = _strong_attack()
    rows = []
    for name, q, counts in CEILING_ROWS:
        model, shape = _model(name)
        g = from_torch(model, shape)
        gh = g.with_masks(BC.graph_masks(model, g, q))
        pp = pool_pair_for(g, gh, "joint")
        F, Fh = pp if pp is not None else lower_graph_pair(g, gh)
        st = stored[(name, q)]
        pgd = st["pgd_ball"]
        row = {"network": name, "fraction": q, "lowering": "12.64 rewritten" if pp is not None else "plain",
               "coupled_width": coupled_width(F), "work": joint_work(F), "pgd": pgd,
               "strong_attack": strong.get((name, q)), "auto_10s_over_pgd": st["auto_eps"] / pgd,
               "auto_10s_method": st["auto_method"],
               "mixed_over_pgd": st.get("merged_auto_components", {}).get("mixed", float("nan")) / pgd}
        for s in counts:
            t = time.perf_counter()
            try:
                r = joint_bound(F, Fh, 1.0, diag_steps=ADAM_STEPS, e2e_steps=s, e2e_options=JOINT_LONG_E2E)
            except ProbPruneError as e:  # e.g. a coupled state above JOINT_MAX_DIM
                row["refused"] = str(e)
                break
            row[f"joint_e2e{s}_over_pgd"] = unscale(r.eps, F.scale_exp) / pgd
            row[f"joint_e2e{s}_seconds"] = time.perf_counter() - t
            print(name, q, s, row[f"joint_e2e{s}_over_pgd"], row[f"joint_e2e{s}_seconds"], flush=True)
        rows.append(row)
        print(row, flush=True)
    return rows


PROBES = {"commute": probe_commute, "fcomp": probe_fcomp, "kappa": probe_kappa, "gamma": probe_gamma,
          "adam": probe_adam, "stability": probe_stability, "cost": probe_cost, "perterm": probe_perterm,
          "budget_cnn": probe_budget_cnn, "median_row": probe_median_row,
          "ceiling": probe_ceiling}


def main(argv):
    names = argv or list(PROBES)
    bad = [n for n in names if n not in PROBES]
    if bad:
        print(f"error: unknown probe {bad[0]!r} (one of {', '.join(PROBES)})", file=sys.stderr)
        return 2
    stored = _stored()
    out = {}
    if os.path.exists(OUT):
        with open(OUT) as f:
            out = json.load(f)
    out.setdefault("probes", {})
    for n in names:
        t = time.perf_counter()
        out["probes"][n] = {"rows": PROBES[n](stored), "seconds": time.perf_counter() - t,
                            "load_start": os.getloadavg()[0]}
    out.update(benchmark="joint bound probes (THEORY §12.12, issue 19)", doc=__doc__.split("\n\n")[0],
               machine=platform.processor() or platform.machine(), blas_threads=1)
    tmp = OUT + ".tmp"
    with open(tmp, "w") as f:
        json.dump(out, f, indent=1)
    os.replace(tmp, OUT)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
