"""Per-network certificates (THEORY §3.11 [D]).

Cert-D: for given weights W_i and pruned weights What_i, err <= min(A-fwd, A-bwd) (Lemma A, §3.1) evaluated with
upper bounds on the actual operator norms. It holds deterministically, for any mask (magnitude, exact-k, structured,
an already drawn random mask).

Cert-R: before the random mask is drawn, a (1 - delta) bound over the mask only, conditioned on the given weights.

Biases (an extension derived here from Lemma A's general form, §3.1): pruning masks only weights, so the bias
terms cancel in W h + b - (What h' + b); they only enter the bound on the activations,
b_i = L_i (||W_i|| b_{i-1} + ||bias_i||) + |sigma_i(0)| sqrt(dim_i). The same recursion covers sigma(0) != 0.
For conv layers the bias map's norm is ||bias|| sqrt(H_out W_out).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from .bounds import beta
from .errors import ProbPruneError, check_delta, check_finite_array, check_fraction
from .networks import NetSpec, ParsedModel, as_matrix
from .norms import layer_operator_norm_upper, power_iteration_norm


@dataclass(frozen=True)
class CertificateResult:
    """A certificate for one concrete network and pruning. ``eps`` upper-bounds sup_{||x||<=1} ||F(x) - F_hat(x)||
    (deterministically for Cert-D; with probability >= 1 - delta over the mask for Cert-R)."""

    eps: float
    kind: str  # "Cert-D" | "Cert-R"
    norm_W: np.ndarray
    norm_What: np.ndarray
    norm_E: np.ndarray
    lips: np.ndarray
    fwd: float
    bwd: float
    layer_names: tuple[str, ...]
    statement: str
    delta: float | None = None
    assumptions: tuple[str, ...] = ()
    power_iteration_W: np.ndarray | None = None  # lower estimates, display only

    def as_dict(self) -> dict:
        d = {
            "eps": self.eps,
            "kind": self.kind,
            "statement": self.statement,
            "A_fwd": self.fwd,
            "A_bwd": self.bwd,
            "delta": self.delta,
            "layers": [
                {"name": n, "norm_W": float(a), "norm_What": float(b), "norm_E": float(c), "L": float(l)}
                for n, a, b, c, l in zip(self.layer_names, self.norm_W, self.norm_What, self.norm_E, self.lips)
            ],
            "assumptions": list(self.assumptions),
        }
        if self.power_iteration_W is not None:
            d["power_iteration_norm_W_lower_estimate"] = [float(x) for x in self.power_iteration_W]
        return d


def _offsets(spec: NetSpec, biases: Sequence[np.ndarray | None] | None):
    """Per-layer additive terms for the activation-norm recursion: bias-map norm and |sigma(0)| sqrt(dim)."""
    bias_norm = np.zeros(spec.depth)
    act_off = np.zeros(spec.depth)
    for i, L in enumerate(spec.layers):
        b = None if biases is None else biases[i]
        if b is not None:
            b = check_finite_array(b, f"bias of {L.name}")
            spatial = 1 if L.kind == "linear" else L.out_shape[1] * L.out_shape[2]
            bias_norm[i] = float(np.linalg.norm(b)) * math.sqrt(spatial)
        if i < spec.depth - 1 and not L.act.zero_at_zero:
            if L.kind == "linear":
                dim = L.d_out
            else:
                c, h, w = L.out_shape
                if L.pool is not None:
                    h, w = L.pool.out_hw(h, w)
                dim = c * h * w
            act_off[i] = abs(L.act.value_at_zero) * math.sqrt(dim)
    return bias_norm, act_off


def lemma_a_general(norm_W, norm_What, norm_E, lips, bias_norm=None, act_off=None) -> tuple[float, float]:
    """Lemma A, general form (THEORY §3.1), with bias terms: returns (A-fwd, A-bwd).

    A-fwd: Delta_i <= L_i (e_i b_{i-1} + what_i Delta_{i-1}), b_i = L_i (w_i b_{i-1} + beta_i) + o_i, b_0 = 1.
    A-bwd: Delta_i <= L_i (w_i Delta_{i-1} + e_i bhat_{i-1}), bhat with what_i. L_l = 1 (linear output)."""
    w, wh, e, L = (np.asarray(x, float) for x in (norm_W, norm_What, norm_E, lips))
    l = len(w)
    bn = np.zeros(l) if bias_norm is None else np.asarray(bias_norm, float)
    ao = np.zeros(l) if act_off is None else np.asarray(act_off, float)

    def run(first, second):
        b, D = 1.0, 0.0
        for i in range(l):
            D = L[i] * (e[i] * b + second[i] * D)
            b = L[i] * (first[i] * b + bn[i]) + ao[i]
        return D

    return float(run(w, wh)), float(run(wh, w))


def _layer_norms(spec: NetSpec, weights, pruned, conv_method: str):
    nW, nWh, nE = [], [], []
    for L, W, Wh in zip(spec.layers, weights, pruned):
        W = np.asarray(W, float)
        Wh = np.asarray(Wh, float)
        if W.size != L.N or Wh.size != L.N:
            raise ProbPruneError(f"layer {L.name}: expected {L.N} weights, got {W.size} and {Wh.size}")
        nW.append(layer_operator_norm_upper(L, W, conv_method))
        nWh.append(layer_operator_norm_upper(L, Wh, conv_method))
        nE.append(layer_operator_norm_upper(L, W - Wh, conv_method) if np.any(W != Wh) else 0.0)
    return np.array(nW), np.array(nWh), np.array(nE)


def certify(
    spec: NetSpec,
    weights: Sequence[np.ndarray],
    pruned_weights: Sequence[np.ndarray],
    biases: Sequence[np.ndarray | None] | None = None,
    conv_method: str = "fft",
    show_power_iteration: bool = False,
) -> CertificateResult:
    """Cert-D (THEORY §3.11 [D]): a deterministic upper bound on sup_{||x||<=1} ||F(x) - F_hat(x)|| for the given
    weights and pruned weights, from upper bounds on the layers' operator norms and Lemma A (min of fwd/bwd)."""
    if len(weights) != spec.depth or len(pruned_weights) != spec.depth:
        raise ProbPruneError(f"need {spec.depth} weight and pruned-weight tensors")
    for L, W, Wh in zip(spec.layers, weights, pruned_weights):
        check_finite_array(W, f"weights of {L.name}")
        check_finite_array(Wh, f"pruned weights of {L.name}")
    nW, nWh, nE = _layer_norms(spec, weights, pruned_weights, conv_method)
    lips = np.array([L.lip for L in spec.layers])
    bn, ao = _offsets(spec, biases)
    fwd, bwd = lemma_a_general(nW, nWh, nE, lips, bn, ao)
    notes = ["deterministic: holds for this network and mask", "inputs in the unit l2 ball (Frobenius for images)"]
    if np.any(bn > 0):
        notes.append("biases kept unpruned; they enter through the activation-norm recursion (Lemma A general form)")
    if np.any(ao > 0):
        notes.append("an activation has sigma(0) != 0: Lemma A's general form with |sigma(0)| sqrt(d_i) terms")
    if any(L.kind == "conv" for L in spec.layers):
        notes.append(f"conv operator norms: {'FFT of the periodic extension (Sedghi et al.) and Lemma C, the smaller' if conv_method == 'fft' else 'Lemma C kernel-matrix bound'}")
    pi = None
    if show_power_iteration:
        pi = np.array([power_iteration_norm(L, W) for L, W in zip(spec.layers, weights)])
    return CertificateResult(min(fwd, bwd), "Cert-D", nW, nWh, nE, lips, fwd, bwd,
                             tuple(L.name for L in spec.layers), "THEORY.md §3.11 Cert-D (Lemma A, §3.1)",
                             assumptions=tuple(notes), power_iteration_W=pi)


def certify_parsed(parsed: ParsedModel, masks: Mapping[str, np.ndarray], **kw) -> CertificateResult:
    """Cert-D for a model read by :func:`probprune.networks.from_torch` and a mask dict keyed by parameter FQN
    (True/1 = kept). Parameters without a mask are unpruned."""
    unknown = set(masks) - set(parsed.names)
    if unknown:
        raise ProbPruneError(f"mask for unknown parameter(s): {sorted(unknown)}; model has {parsed.names}")
    pruned = []
    for nm, W in zip(parsed.names, parsed.weights):
        if nm in masks:
            m = np.asarray(masks[nm])
            if m.shape != W.shape:
                raise ProbPruneError(f"mask for {nm!r} has shape {m.shape}, parameter has shape {W.shape}")
            pruned.append(W * m.astype(float))
        else:
            pruned.append(W)
    return certify(parsed.spec, parsed.weights, pruned, parsed.biases, **kw)


def _cert_r_line_terms(W: np.ndarray):
    M = as_matrix(W)
    rho = math.sqrt(max(float((M * M).sum(axis=1).max()), float((M * M).sum(axis=0).max())))
    mu = float(np.abs(M).max())
    return rho, mu


def certify_random(
    spec: NetSpec,
    weights: Sequence[np.ndarray],
    p,
    delta: float,
    sampling: str = "bernoulli",
    biases: Sequence[np.ndarray | None] | None = None,
    conv_method: str = "fft",
    norm_W: Sequence[float] | None = None,
) -> CertificateResult:
    """Cert-R (THEORY §3.11 [D]): with probability >= 1 - delta over a random mask drawn AFTER the weights are fixed,
    err <= eps. sampling: "bernoulli" (R-Bern), "rescaled" (R-Bern-rescaled), "exact" (R-exact, k_i = p_i N_i, by
    Hoeffding's with/without-replacement domination). delta is split equally over the randomly pruned layers.
    Plugged into A-fwd with exact ||W_j|| for j < i and the Cert-R bounds on ||What_j|| for j > i.
    ``norm_W``: operator-norm upper bounds of the layers already computed by the caller (reused, not recomputed)."""
    delta = check_delta(delta)
    p = check_fraction(p, "p", upper_open=(sampling == "rescaled"))
    p = np.full(spec.depth, float(p)) if p.ndim == 0 else p
    if p.shape != (spec.depth,):
        raise ProbPruneError(f"p must be a scalar or {spec.depth} per-layer values")
    if sampling not in ("bernoulli", "rescaled", "exact"):
        raise ProbPruneError(f"unknown sampling {sampling!r}; use bernoulli, rescaled or exact")
    n_pruned = int(np.sum(p > 0))
    de = delta / max(n_pruned, 1)
    nW, nWh, nE = np.zeros(spec.depth), np.zeros(spec.depth), np.zeros(spec.depth)
    for i, (L, W) in enumerate(zip(spec.layers, weights)):
        W = check_finite_array(W, f"weights of {L.name}")
        w = float(norm_W[i]) if norm_W is not None else layer_operator_norm_upper(L, W, conv_method)
        nW[i] = w
        pi = float(p[i])
        if pi == 0:
            nWh[i], nE[i] = w, 0.0
            continue
        rho, mu = _cert_r_line_terms(W)
        lam = math.log(L.n / de)
        sr = math.sqrt(L.r)  # mat-level Bernstein, lifted to the conv operator by Lemma C
        if sampling == "bernoulli":
            t = sr * float(beta(pi * (1 - pi) * rho**2, max(pi, 1 - pi) * mu, lam))
            nE[i], nWh[i] = pi * w + t, (1 - pi) * w + t
        elif sampling == "rescaled":
            t = sr * float(beta(pi * rho**2 / (1 - pi), mu * max(pi, 1 - pi) / (1 - pi), lam))
            nE[i], nWh[i] = t, w + t
        else:
            t = sr * float(beta(pi * rho**2, mu + w / L.N, lam))
            nE[i], nWh[i] = pi * w + t, (1 - pi) * w + t
        if pi == 1.0 and sampling != "rescaled":
            nE[i], nWh[i] = w, 0.0  # everything pruned: deterministic
    lips = np.array([L.lip for L in spec.layers])
    bn, ao = _offsets(spec, biases)
    fwd, _ = lemma_a_general(nW, nWh, nE, lips, bn, ao)
    notes = [f"probability >= 1 - {delta} over the {sampling} mask only, conditional on these weights",
             "A-fwd with exact ||W_j|| (j < i) and Cert-R bounds on ||What_j|| (j > i)"]
    return CertificateResult(fwd, "Cert-R", nW, nWh, nE, lips, fwd, float("nan"),
                             tuple(L.name for L in spec.layers), "THEORY.md §3.11 Cert-R", delta=delta,
                             assumptions=tuple(notes))
