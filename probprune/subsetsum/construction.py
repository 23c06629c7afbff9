"""The Pensia et al. subset-sum construction for bias-free ReLU FCNs (THEORY.md §4.2) and its convolutional version
following da Cunha et al. 2022 (§4.3), with the error composition of §4.4.

Given a target f(x) = W_l s(... s(W_1 x)) (ReLU s, no biases), build a random network g of depth 2l with i.i.d.
U[-1, 1] entries and prune it so that each pair of layers computes W_i up to a small error:

* block i (d_{i-1} -> d_i): M_{2i-1} in R^{n_i x d_{i-1}} (n_i = units_per_input * d_{i-1}), ReLU, then M_{2i} in
  R^{d_i x n_i}, then the target's ReLU (and pooling) except after the last block;
* mask of M_{2i-1} is block-diagonal: hidden unit (j, k) keeps only its weight u_{j,k} from input j (shared by all
  outputs, §4.2 step 3);
* for output a and input j the candidates are the products c_k = v_{a,(j,k)} |u_{j,k}| over the units with u > 0,
  and a subset with |W_i[a, j] - sum c_k| <= eps'_i is found with the exact solver (§4.2 step 4; identity
  s(u y) = u s(y) for u > 0);
* first block only: inputs are signed, so the units with u < 0 (s(u x) = |u| s(-x)) approximate -W_1[a, j]:
  x = s(x) - s(-x) (§4.2 steps 1, 5);
* per-entry tolerance [D] (§4.2 step 6): eps'_i = eps_i / sqrt(c_i d_i d_{i-1}) with c_1 = 2, c_i = 1 otherwise,
  eps_i = eps / (2l) (§4.4); for conv layers (matrix view d_{i-1} = c_{i-1} k^2) the extra Lemma C factor gives
  eps'_i = eps_i / sqrt(c_i r_i d_i d_{i-1}) [D, extension here];
* CNN (da Cunha et al. [RC]): a conv layer becomes a 1x1 conv c_{i-1} -> units_per_input * c_{i-1} (channel-block
  diagonal) then a k x k conv (the target's stride/padding) whose kernel entries are subset sums, entry by entry.

Every entry whose subset misses its tolerance is a **failure** and is reported (layer, index, target, achieved,
error); nothing is dropped silently. The result is an ordinary ``nn.Sequential`` (pruned weights are zeros; the
masks, keyed by state_dict name, come with it) plus a :class:`ConstructionReport`.

Error composition [D] (generalises §4.4 to ||W_i|| > 1 and pooling with Lipschitz factor L_i): with
eps_i := ||g_i - W_i|| on admissible inputs (layer 1: the operator norm of [E+, E-] acting on [s(x); s(-x)], whose
norm is ||x||), P_0 = 1, e_0 = 0:
    e_i <= L_i (||W_i|| e_{i-1} + eps_i (P_{i-1} + e_{i-1})),  P_i = L_i ||W_i|| P_{i-1},
and sup_{||x||<=1} ||f(x) - g(x)|| <= e_l. With ||W_i|| <= 1, L_i = 1 this is e_l <= prod(1 + eps_i) - 1 (§4.4).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace

import numpy as np

from probprune.core.errors import (ProbPruneError, UnsupportedLayerError, check_delta, check_memory,
                                   check_positive)
from probprune.net.activations import activation
from probprune.net.templates import LayerSpec, ParsedModel, from_torch
from probprune.theory.norms import layer_operator_norm_upper, spectral_norm_upper
from probprune.subsetsum.solver import solve


@dataclass(frozen=True)
class ConstructionConfig:
    """Parameters of the construction.

    eps: target sup error on the unit ball (split as eps_i = eps / (2l), §4.4); delta: failure probability in the
    width formula; C, log_base: width constant (units per input n' = ceil(C log(d_{i-1} d_i l / min(eps, delta))),
    Pensia Thm 1 [RC], no published C); units_per_input: override n' directly; tolerance: "theorem" (eps'_i of
    §4.2 step 6) or "per-weight" (eps' = eps for every entry, as in Pensia et al.'s experiment 1 [CODE]);
    signs: "random" (faithful: all entries U[-1, 1], 2n' units per input in every block, only the right-signed
    units are candidates) or "assigned" (|u| with signs set: block 1 gets n' positive + n' negative units, later
    blocks n' positive units); mode: solver objective, "sparsest" (fewest kept weights within eps') or "closest";
    max_candidates: cap on candidates per entry (the solver is exact up to 48); seed: all draws;
    rescale: divide each W_i by s_i = max(1, ||W_i||) first, so the target is in Pensia's class (||W_i|| <= 1);
    by positive homogeneity the construction then approximates f / prod(s_i) (same argmax predictions), which is
    returned as ``Construction.effective_target`` and recorded as ``report.output_scale``."""

    eps: float = 0.1
    delta: float = 0.05
    C: float = 3.0
    log_base: str | float = "e"
    units_per_input: int | None = None
    tolerance: str = "theorem"
    signs: str = "random"
    mode: str = "sparsest"
    max_candidates: int = 40
    seed: int = 0
    rescale: bool = False

    def validate(self) -> None:
        check_positive(self.eps, "eps")
        check_delta(self.delta)
        check_positive(self.C, "C")
        if self.tolerance not in ("theorem", "per-weight"):
            raise ProbPruneError(f"tolerance must be 'theorem' or 'per-weight', got {self.tolerance!r}")
        if self.signs not in SIGN_SCHEMES:
            raise ProbPruneError(f"signs must be 'random' or 'assigned', got {self.signs!r}")
        if self.mode not in ("sparsest", "closest"):
            raise ProbPruneError(f"mode must be 'sparsest' or 'closest', got {self.mode!r}")
        if self.units_per_input is not None and int(self.units_per_input) < 1:
            raise ProbPruneError(f"units_per_input must be >= 1, got {self.units_per_input}")
        if not (1 <= int(self.max_candidates) <= 48):
            raise ProbPruneError(f"max_candidates must be in [1, 48], got {self.max_candidates}")


@dataclass
class LayerReport:
    """One target layer's block: sizes, tolerance, per-entry errors and failures, realized error norm."""

    name: str
    kind: str
    d_in: int
    d_out: int
    units_per_input: int
    hidden: int
    tol: float
    entries: int
    failures: int
    max_error: float
    mean_error: float
    mean_terms: float
    mean_candidates: float
    min_candidates: int
    norm_W: float
    norm_E: float
    fro_E: float
    lip: float
    params_random: int
    params_kept: int
    seconds: float
    errors: dict = field(default_factory=dict, repr=False)  # branch -> per-entry |error| array (W's shape)
    failure_list: list = field(default_factory=list, repr=False)

    def row(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("errors", "failure_list")}


@dataclass
class ConstructionReport:
    """What the construction did and what it guarantees / measured."""

    config: ConstructionConfig
    layers: list[LayerReport]
    target_params: int
    params_before: int
    params_after: int
    failures: int
    success: bool
    bound_realized: float  # §4.4 recursion with the realized ||E_i|| (always valid, [D])
    bound_tolerance: float | None  # the same recursion with the tolerances eps_i (valid when success)
    hypotheses: list[str]
    seconds: float
    assumptions: tuple[str, ...] = ()
    output_scale: float = 1.0  # g approximates f / output_scale (rescale=True), else 1
    measured: dict = field(default_factory=dict)

    @property
    def failure_list(self) -> list[dict]:
        return [f for L in self.layers for f in L.failure_list]

    def as_dict(self, max_failures: int = 100) -> dict:
        c = self.config
        return {
            "config": dict(c.__dict__),
            "target_params": self.target_params,
            "params_before": self.params_before,
            "params_after": self.params_after,
            "kept_over_target": self.params_after / max(self.target_params, 1),
            "failures": self.failures,
            "success": self.success,
            "bound_realized": self.bound_realized,
            "bound_tolerance": self.bound_tolerance,
            "hypotheses_violated": self.hypotheses,
            "seconds": self.seconds,
            "output_scale": self.output_scale,
            "layers": [L.row() for L in self.layers],
            "failure_list": self.failure_list[:max_failures],
            "measured": self.measured,
            "assumptions": list(self.assumptions),
            "statement": "Pensia et al. construction (THEORY §4.2) [RC]; tolerances and composition (§4.2 step 6, "
                         "§4.4) [D]",
        }


@dataclass
class Construction:
    """The pruned network (``model``, an ordinary ``nn.Sequential``), its masks keyed by state_dict name, the
    approximated target matrices ``W_hat`` (per target layer: {"+": ..., "-": ...}) and the report."""

    model: object
    masks: dict
    W_hat: list
    report: ConstructionReport
    target: ParsedModel
    effective_target: object = None  # the torch target that ``model`` approximates (rescaled copy if rescale)


# --------------------------------------------------------------------------------------------- helpers
def parse_target(model, input_shape=None) -> ParsedModel:
    """Read and check a target: Linear/Conv2d chain, ReLU hidden activations, linear output, no biases (§4.2)."""
    parsed = model if isinstance(model, ParsedModel) else from_torch(model, input_shape)
    if parsed.has_bias:
        bad = [n for n, b in zip(parsed.names, parsed.biases) if b is not None]
        raise UnsupportedLayerError(
            f"the subset-sum construction is bias-free (THEORY §4.2); layer(s) {', '.join(bad)} have non-zero biases"
        )
    relu = activation("relu")  # the activation table's ReLU (s(ux) = u s(x) for u >= 0, §4.2)
    for L in parsed.spec.layers[:-1]:
        if L.act != relu:
            raise UnsupportedLayerError(
                f"layer {L.name!r} is followed by {L.act.name}; the construction needs ReLU (s(ux) = u s(x), §4.2)"
            )
    seen_linear = False
    for L in parsed.spec.layers:
        block = BLOCK_KINDS[L.kind]
        if block.flat:
            seen_linear = True
        elif seen_linear:
            raise UnsupportedLayerError(f"layer {L.name!r}: conv layers after linear layers are not supported")
        if not block.flat and L.dilation != (1, 1):
            raise UnsupportedLayerError(f"layer {L.name!r}: dilated convolutions are not supported")
    for nm, W in zip(parsed.names, parsed.weights):
        m = float(np.abs(W).max(initial=0.0))
        if m > 1.0:
            raise ProbPruneError(
                f"target weight {nm!r} has an entry of magnitude {m:.4g} > 1: outside the coverable range [-1, 1] "
                "of the U[-1, 1] construction (§4.2 assumes ||W_i|| <= 1); rescale the target"
            )
    return parsed


def units_per_input(L: LayerSpec, depth: int, cfg: ConstructionConfig) -> int:
    """n' = ceil(C log(d_{i-1} d_i l / min(eps, delta))) (Pensia Thm 1 per input [RC]; matrix view for conv)."""
    if cfg.units_per_input is not None:
        return int(cfg.units_per_input)
    x = L.d_in * L.d_out * depth / min(cfg.eps, cfg.delta)
    lg = math.log(x) if cfg.log_base in ("e", None) else math.log(x, float(cfg.log_base))
    return max(1, int(math.ceil(cfg.C * lg)))


def entry_tolerance(L: LayerSpec, i: int, depth: int, cfg: ConstructionConfig) -> float:
    """eps'_i: "theorem": eps/(2l) / sqrt(c_i r_i d_i d_{i-1}) (c_1 = 2, r_i = 1 for linear) [D]; "per-weight": eps."""
    if cfg.tolerance == "per-weight":
        return float(cfg.eps)
    eps_i = cfg.eps / (2 * depth)
    c_i = 2 if i == 0 else 1
    return eps_i / math.sqrt(c_i * L.r * L.d_in * L.d_out)


def construction_memory_bytes(spec, cfg: ConstructionConfig) -> float:
    """Estimated peak memory (bytes) of :func:`construct` for a target ``spec`` (checked before any draw): per block
    A = n_in^2 nu entries of the first matrix and B = c_out n_in nu P of the second (nu units per input); the built
    network keeps its float64 weights and bool masks (9 bytes per entry of every block), and the block being built
    holds the draws, masked copies and keep masks besides (about 16 A + 18 B bytes)."""
    keep, peak = 0.0, 0.0
    for i, L in enumerate(spec.layers):
        nu = SIGN_SCHEMES[cfg.signs].units(units_per_input(L, spec.depth, cfg), i == 0)
        c_out, n_in, kh, kw = BLOCK_KINDS[L.kind].dims(L)
        P = kh * kw
        A = float(n_in) * n_in * nu
        B = float(c_out) * n_in * nu * P
        peak = max(peak, keep + 16 * A + 18 * B)
        keep += 9 * (A + B)
    return max(peak, keep)


def check_construction_plan(spec, cfg: ConstructionConfig) -> float:
    """Refuse, before any draw, a construction whose estimated peak memory
    (:func:`construction_memory_bytes`) exceeds the limit of :func:`probprune.core.errors.check_memory`."""
    return check_memory(construction_memory_bytes(spec, cfg), "the construction's random network")


def _draw_first(rng, n_in: int, nu: int, first: bool, signs: str) -> np.ndarray:
    """Dense random M_{2i-1} (n_in*nu, n_in), U[-1, 1]; with signs='assigned' the block-diagonal entries get set
    signs (first block: nu/2 positive then negative; later blocks: positive)."""
    M = rng.uniform(-1.0, 1.0, size=(n_in * nu, n_in))
    if SIGN_SCHEMES[signs].assigned:
        j = np.repeat(np.arange(n_in), nu)
        k = np.tile(np.arange(nu), n_in)
        sgn = np.where(k < (nu + 1) // 2, 1.0, -1.0) if first else np.ones_like(k, dtype=float)
        M[j * nu + k, j] = sgn * np.abs(M[j * nu + k, j])
    return M


def _solve_branch(T, Vr, u, sign, tol, cfg, progress):
    """Subset sums for one branch. T (d_out, n_in, P) targets; Vr (d_out, n_in, nu, P) second-layer weights;
    u (n_in, nu) block-diagonal first-layer weights; sign +1 (units u > 0) or -1 (units u < 0).
    Returns achieved (d_out, n_in, P), error, success, keep mask (d_out, n_in, nu, P), n_terms, n_candidates."""
    d_out, n_in, P = T.shape
    nu = u.shape[1]
    achieved = np.zeros(T.shape)
    success = np.zeros(T.shape, dtype=bool)
    n_terms = np.zeros(T.shape, dtype=np.int64)
    keep = np.zeros(Vr.shape, dtype=bool)
    cand = [np.flatnonzero(np.sign(u[j]) == sign)[: cfg.max_candidates] for j in range(n_in)]
    ncand = np.array([c.size for c in cand])
    zero = ncand == 0
    if np.any(zero):  # no candidate at all: the entry is approximated by 0
        success[:, zero, :] = np.abs(T[:, zero, :]) <= tol
    # bucket inputs by candidate count (padding with zero coefficients up to the bucket's max, at most +2): far
    # fewer solver calls. A zero coefficient never enters a sparsest subset (the subset without it is as close
    # and was tried first); in closest mode it may, and padded slots are dropped from the mask (sum unchanged).
    for js in _buckets(ncand, width=2):
        nc = int(ncand[js].max())
        K = np.full((js.size, nc), -1, dtype=np.int64)
        for g, j in enumerate(js):
            K[g, : ncand[j]] = cand[j]
        real = K >= 0
        Ks = np.where(real, K, 0)
        absu = np.where(real, np.abs(u[js[:, None], Ks]), 0.0)  # (G, nc)
        coefs = Vr[:, js[:, None], Ks, :] * absu[None, :, :, None]  # (d_out, G, nc, P)
        coefs = np.moveaxis(coefs, 2, 3).reshape(-1, nc)  # rows (a, g, p)
        tg = T[:, js, :].reshape(-1)
        res = solve(coefs, tg, eps=tol, mode=cfg.mode, on_uncoverable="report")
        achieved[:, js, :] = res.achieved.reshape(d_out, js.size, P)
        success[:, js, :] = res.success.reshape(d_out, js.size, P)
        sub = res.subset.reshape(d_out, js.size, P, nc) & real[None, :, None, :]
        n_terms[:, js, :] = sub.sum(axis=-1)
        a, g, p, c = np.nonzero(sub)
        keep[a, js[g], K[g, c], p] = True
        if progress is not None:
            progress(int(tg.size))
    return achieved, np.abs(T - achieved), success, keep, n_terms, ncand


def _buckets(ncand: np.ndarray, width: int = 2):
    """Group indices with candidate counts >= 1 into runs whose counts differ by at most ``width``."""
    vals = np.unique(ncand[ncand > 0])
    groups, cur = [], []
    for v in vals:
        if cur and v - cur[0] > width:
            groups.append(cur)
            cur = []
        cur.append(v)
    if cur:
        groups.append(cur)
    return [np.flatnonzero(np.isin(ncand, g)) for g in groups]


# --------------------------------------------------------------------------------------------- main entry
def construct(model, cfg: ConstructionConfig | None = None, input_shape=None, dtype=None, progress=None,
              **overrides) -> Construction:
    """Build the random network and prune it to approximate ``model`` (THEORY §4.2; CNN: da Cunha et al.).

    ``model``: a bias-free ReLU ``nn.Module`` that :func:`probprune.net.templates.from_torch` accepts (or its
    ParsedModel); ``input_shape`` (C, H, W) for conv nets. ``cfg`` or keyword overrides of
    :class:`ConstructionConfig`. ``dtype``: torch dtype of the returned model (default float64).
    Returns a :class:`Construction`."""
    import torch
    import torch.nn as nn

    cfg = replace(cfg or ConstructionConfig(), **overrides)
    cfg.validate()
    dtype = dtype or torch.float64
    t_start = time.perf_counter()
    effective = model
    if cfg.rescale:
        model, effective, scales = _rescaled(model, input_shape)
    parsed = parse_target(model, input_shape)
    spec = parsed.spec
    depth = spec.depth
    check_construction_plan(spec, cfg)
    rng = np.random.default_rng(cfg.seed)

    mods: list = []
    masks: dict = {}
    W_hat: list = []
    reports: list[LayerReport] = []
    flattened = len(spec.input_shape) == 1
    for i, (L, W) in enumerate(zip(spec.layers, parsed.weights)):
        t0 = time.perf_counter()
        first = i == 0
        block = BLOCK_KINDS[L.kind]
        nu = SIGN_SCHEMES[cfg.signs].units(units_per_input(L, depth, cfg), first)
        tol = entry_tolerance(L, i, depth, cfg)
        c_out, n_in, kh, kw = block.dims(L)
        M1 = _draw_first(rng, n_in, nu, first, cfg.signs)
        u = M1[np.arange(n_in * nu), np.repeat(np.arange(n_in), nu)].reshape(n_in, nu)
        V = rng.uniform(-1.0, 1.0, size=(c_out, n_in * nu, kh * kw))
        sol = _solve_layer(L, np.asarray(W, float).reshape(c_out, n_in, kh * kw), V.reshape(c_out, n_in, nu, kh * kw),
                           u, first, tol, cfg, progress, W.shape, kw)
        used = sol["keep"].any(axis=(0, 3)).reshape(-1)  # (n_in*nu,) hidden units used by some output
        mask1 = np.zeros(M1.shape, dtype=bool)
        h = np.flatnonzero(used)
        mask1[h, h // nu] = True
        mask2 = sol["keep"].reshape(c_out, n_in * nu, kh * kw)
        what = sol["what"]
        E = [what["+"] - W] + ([what["-"] + W] if first else [])
        norm_E, norm_W = block.error_norm(L, W, E, c_out, n_in), layer_operator_norm_upper(L, W)
        W_hat.append(what)
        if block.flat and not flattened:
            mods.append(nn.Flatten())
            flattened = True
        l1, l2 = block.layers(L, M1 * mask1, V * mask2, n_in, nu, c_out, dtype)
        i1 = len(mods)
        mods += [l1, nn.ReLU(), l2]
        masks[f"{i1}.weight"] = torch.as_tensor(mask1.reshape(l1.weight.shape))
        masks[f"{i1 + 2}.weight"] = torch.as_tensor(mask2.reshape(l2.weight.shape))
        if i < depth - 1:
            mods.append(nn.ReLU())
            if L.pool is not None:
                mods.append(_pool_module(L.pool.kind)(L.pool.kernel, L.pool.stride))
        all_err = np.concatenate([e.ravel() for e in sol["errs"].values()])
        all_terms, all_c = np.concatenate(sol["terms"]), np.concatenate(sol["cands"])
        reports.append(LayerReport(
            name=L.name, kind=L.kind, d_in=L.d_in, d_out=L.d_out, units_per_input=nu, hidden=n_in * nu, tol=tol,
            entries=int(all_err.size), failures=sol["failures"], max_error=float(all_err.max()),
            mean_error=float(all_err.mean()), mean_terms=float(all_terms.mean()),
            mean_candidates=float(all_c.mean()), min_candidates=int(all_c.min()), norm_W=norm_W, norm_E=norm_E,
            fro_E=float(np.sqrt(sum((e ** 2).sum() for e in E))), lip=float(L.lip),
            params_random=int(M1.size + V.size), params_kept=int(mask1.sum() + mask2.sum()),
            seconds=time.perf_counter() - t0, errors=sol["errs"], failure_list=sol["fails"],
        ))
    rep = _construction_report(cfg, spec, parsed, reports, t_start)
    if cfg.rescale:
        rep.output_scale = float(np.prod(scales))
    return Construction(nn.Sequential(*mods).eval(), masks, W_hat, rep, parsed,
                        effective if not isinstance(effective, ParsedModel) else None)


def _solve_layer(L, T, Vr, u, first: bool, tol: float, cfg, progress, shape, kw: int) -> dict:
    """Subset-sum for every entry of one layer: the + branch (and the - branch of the first block, which acts on
    s(-x)). Returns the achieved weights and errors per branch, the union keep mask of the second-layer entries, the
    failures (the first 1000 per branch listed), and the terms / candidates per entry."""
    out = {"what": {}, "errs": {}, "fails": [], "terms": [], "cands": [], "failures": 0,
           "keep": np.zeros(Vr.shape, dtype=bool)}
    for sign, target, key in [(+1, T, "+")] + ([(-1, -T, "-")] if first else []):
        ach, err, ok, keep, nt, nc = _solve_branch(target, Vr, u, sign, tol, cfg, progress)
        out["keep"] |= keep
        out["what"][key] = ach.reshape(shape)
        out["errs"][key] = err.reshape(shape)
        out["terms"].append(nt.ravel())
        out["cands"].append(nc)
        for idx in np.argwhere(~ok)[:1000]:
            a, j, p = (int(v) for v in idx)
            full = BLOCK_KINDS[L.kind].entry_index(a, j, p, kw)
            out["fails"].append({"layer": L.name, "branch": key, "index": full, "target": float(target[a, j, p]),
                                 "achieved": float(ach[a, j, p]), "error": float(err[a, j, p]), "tol": tol})
        n_fail_branch = int(np.count_nonzero(~ok))
        out["failures"] += n_fail_branch
        if n_fail_branch > 1000:
            out["fails"].append({"layer": L.name, "branch": key, "more_failures_not_listed": n_fail_branch - 1000})
    return out


def _error_norm_linear(L, W, E, c_out: int, n_in: int) -> float:
    """Certified ||[E+, E-]|| of one dense block (layer 1 acts on [s(x); s(-x)] with [E+, E-]; others with E+)."""
    return spectral_norm_upper(np.concatenate([e.reshape(c_out, n_in, *W.shape[2:]) for e in E], axis=1))


def _error_norm_conv(L, W, E, c_out: int, n_in: int) -> float:
    """Certified ||[E+, E-]|| of one conv block: the conv operator norm of the stacked kernels (§11.2)."""
    Ecat = np.concatenate([e.reshape(c_out, n_in, *W.shape[2:]) for e in E], axis=1)
    return layer_operator_norm_upper(replace(L, d_in=L.d_in * len(E), in_shape=(n_in * len(E), *L.in_shape[1:])), Ecat)


def _layers_linear(L, w1, V_kept, n_in: int, nu: int, c_out: int, dtype):
    import torch.nn as nn

    l1 = nn.Linear(n_in, n_in * nu, bias=False)
    l2 = nn.Linear(n_in * nu, c_out, bias=False)
    return _copy_in(l1, l2, w1, V_kept.reshape(c_out, n_in * nu), dtype)


def _layers_conv(L, w1, V_kept, n_in: int, nu: int, c_out: int, dtype):
    import torch.nn as nn

    l1 = nn.Conv2d(n_in, n_in * nu, 1, bias=False)
    l2 = nn.Conv2d(n_in * nu, c_out, L.kernel, stride=L.stride, padding=L.padding, bias=False)
    return _copy_in(l1, l2, w1.reshape(n_in * nu, n_in, 1, 1), V_kept.reshape(c_out, n_in * nu, *L.weight_shape[2:]),
                    dtype)


def _copy_in(l1, l2, w1, w2, dtype):
    import torch

    l1, l2 = l1.to(dtype), l2.to(dtype)
    with torch.no_grad():
        l1.weight.copy_(torch.as_tensor(w1))
        l2.weight.copy_(torch.as_tensor(w2))
    return l1, l2


@dataclass(frozen=True)
class BlockKind:
    """What the construction does for a target layer of one kind (a :class:`LayerSpec` kind): ``dims(L)`` ->
    (c_out, n_in, kh, kw); ``flat``: a dense layer (flattened input, after every conv); ``entry_index`` of entry
    (a, j, p) of the (c_out, n_in, kh*kw) view in the weight's own shape; ``error_norm``: the certified norm of the
    block's realized error (§4.4); ``layers``: the two torch layers of the block (Linear or 1x1 conv, then the
    layer's own conv), weights copied in."""

    name: str
    flat: bool
    dims: object
    entry_index: object
    error_norm: object
    layers: object


BLOCK_KINDS = {
    "linear": BlockKind("linear", True, lambda L: (L.d_out, L.d_in, 1, 1), lambda a, j, p, kw: (a, j),
                        _error_norm_linear, _layers_linear),
    "conv": BlockKind("conv", False, lambda L: tuple(L.weight_shape), lambda a, j, p, kw: (a, j, p // kw, p % kw),
                      _error_norm_conv, _layers_conv),
}


@dataclass(frozen=True)
class SignScheme:
    """How the first matrix of a block is signed (``ConstructionConfig.signs``): "random" draws every entry U[-1, 1]
    and keeps 2 n' units per input in every block; "assigned" sets the signs of the block-diagonal entries
    (``assigned``) and needs the 2 n' units in the first block only."""

    name: str
    assigned: bool
    doubled_every_block: bool

    def units(self, n_prime: int, first: bool) -> int:
        """nu: units per input of a block."""
        return 2 * n_prime if (self.doubled_every_block or first) else n_prime


SIGN_SCHEMES = {"random": SignScheme("random", False, True), "assigned": SignScheme("assigned", True, False)}


def _pool_module(kind: str):
    """The torch pooling module class of a LayerSpec pool kind (torch imported lazily)."""
    import torch.nn as nn

    return {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}[kind]


def _construction_report(cfg, spec, parsed, reports, t_start: float) -> ConstructionReport:
    """The report: the realized and tolerance bounds (§4.4 recursion), hypotheses outside Pensia's class."""
    depth = spec.depth
    W_norms = [r.norm_W for r in reports]
    lips = [L.lip for L in spec.layers]
    failures = sum(r.failures for r in reports)
    bound_real = compose_bound(W_norms, [r.norm_E for r in reports], lips)
    eps_i = [cfg.eps / (2 * depth)] * depth
    bound_tol = compose_bound(W_norms, eps_i, lips) if (failures == 0 and cfg.tolerance == "theorem") else None
    hyp = []
    for L, nw in zip(spec.layers, W_norms):
        if nw > 1.0 + 1e-9:
            hyp.append(f"||{L.name}|| = {nw:.4g} > 1 (Pensia's class has ||W_i|| <= 1; bounds use the general recursion)")
        if L.lip > 1.0 + 1e-12:
            hyp.append(f"{L.name}: Lipschitz factor {L.lip:.4g} > 1 after pooling")
    return ConstructionReport(
        config=cfg, layers=reports, target_params=int(sum(np.size(w) for w in parsed.weights)),
        params_before=int(sum(r.params_random for r in reports)),
        params_after=int(sum(r.params_kept for r in reports)),
        failures=failures, success=failures == 0, bound_realized=bound_real, bound_tolerance=bound_tol,
        hypotheses=hyp, seconds=time.perf_counter() - t_start,
        assumptions=(
            "random network entries i.i.d. U[-1, 1] (signs " + cfg.signs + ")",
            "units per input: 2n' in every block (signs=random) or n'+n' in block 1 and n' later (signs=assigned)",
            "per-entry tolerance: " + ("eps'_i = eps/(2l)/sqrt(c_i r_i d_i d_{i-1}), c_1 = 2" if cfg.tolerance ==
                                       "theorem" else "eps' = eps for every entry (Pensia Exp. 1 style)"),
            "bound_realized: §4.4 recursion with realized operator norms of the block errors (valid always) [D]",
            "bound_tolerance: the same recursion with eps_i = eps/(2l) (valid when every entry succeeded)",
            "inputs in the unit ball; by positive homogeneity ||f(x) - g(x)|| <= bound * ||x|| for every x",
        ),
    )


def _rescaled(model, input_shape):
    """Copy of ``model`` with each weight layer divided by s_i = max(1, ||W_i||) (upper bound of the operator norm).
    Returns (ParsedModel of the copy, the torch copy, scales)."""
    import copy

    import torch

    if isinstance(model, ParsedModel):
        raise ProbPruneError("rescale needs a torch module, not a ParsedModel")
    parsed = from_torch(model, input_shape)
    scales = [max(1.0, layer_operator_norm_upper(L, W)) for L, W in zip(parsed.spec.layers, parsed.weights)]
    eff = copy.deepcopy(model).eval()
    params = dict(eff.named_parameters())
    with torch.no_grad():
        for nm, sc in zip(parsed.names, scales):
            params[nm].div_(sc)
    return eff, eff, scales


def compose_bound(norm_W, norm_E, lips) -> float:
    """§4.4 recursion [D]: e_i = L_i (||W_i|| e_{i-1} + eps_i (P_{i-1} + e_{i-1})), P_i = L_i ||W_i|| P_{i-1}:
    Lemma A's forward form (A-fwd, §3.1) with ||What_i|| <= ||W_i|| + eps_i, evaluated by the one Lemma A
    implementation (:func:`probprune.net.lemma.lemma_a_chain`, with its float64 rounding allowance)."""
    from probprune.net.lemma import lemma_a_chain

    w, x = np.asarray(norm_W, float), np.asarray(norm_E, float)
    return float(lemma_a_chain(w, w + x, x, lips).Df)


# --------------------------------------------------------------------------------------------- measurement
def sup_error_lower_bound(f, g, input_shape, n_starts: int = 64, iters: int = 200, step: float = 0.5,
                          seed: int = 0, dtype=None) -> float:
    """Lower bound on sup_{||x|| <= 1} ||f(x) - g(x)|| by the package's one PGD attack
    (:func:`probprune.measure.attack.pgd_sup_error`, THEORY §6; f, g positively homogeneous, e.g. the bias-free ReLU target and
    construction). Starts: ``n_starts`` seeded Gaussian directions, +-e_j when d <= 256."""
    from probprune.measure.attack import pgd_sup_error

    dtype = dtype or next(f.parameters()).dtype
    d = int(np.prod(tuple(int(v) for v in input_shape)))
    return pgd_sup_error(f, g, input_shape, restarts=n_starts, steps=iters, seed=seed, step=step, basis=d <= 256,
                         homogeneous=True, dtype=dtype).value


def evaluate_on_data(f, g, X, y=None, batch: int = 1024) -> dict:
    """Outputs of target f and constructed g on real inputs X: accuracies (if y), max/mean ||f - g||, and the
    max of ||f(x) - g(x)|| / ||x|| (comparable with the ball bound by homogeneity)."""
    import copy

    import torch

    dt = next(g.parameters()).dtype
    f = copy.deepcopy(f).to(dt).eval()
    dev, rel, agree = [], [], 0
    acc_f = acc_g = 0
    with torch.no_grad():
        for i in range(0, len(X), batch):
            x = torch.as_tensor(X[i: i + batch]).to(dt)
            a, b = f(x), g(x)
            dd = (a - b).reshape(len(x), -1).norm(dim=1)
            dev.append(dd)
            rel.append(dd / x.reshape(len(x), -1).norm(dim=1).clamp_min(1e-300))
            agree += int((a.argmax(1) == b.argmax(1)).sum())
            if y is not None:
                yy = torch.as_tensor(y[i: i + batch])
                acc_f += int((a.argmax(1) == yy).sum())
                acc_g += int((b.argmax(1) == yy).sum())
    dev = torch.cat(dev)
    rel = torch.cat(rel)
    out = {"n": int(len(X)), "max_output_dev": float(dev.max()), "mean_output_dev": float(dev.mean()),
           "max_dev_over_norm": float(rel.max()), "prediction_agreement": agree / len(X)}
    if y is not None:
        out["acc_target"] = acc_f / len(X)
        out["acc_constructed"] = acc_g / len(X)
    return out
