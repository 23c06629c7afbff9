"""Relative and task-level budgets for a given (trained) network (THEORY.md §10.3-10.4 [D]).

- :func:`network_output_scale`: sup_{||x||<=1} ||F(x)||, a certified upper bound (the activation-norm recursion of
  Lemma A's general form, §3.1, with certified operator norms and the bias terms) and a lower estimate (the largest
  ||F(x)|| at feasible points: data directions on the unit sphere and, for bias-free homogeneous nets, PGD). A relative
  tolerance ``eps_rel`` means eps = eps_rel x the upper bound.
- Certified accuracy (§10.4): with ||F(x) - Fhat(x)||_2 <= e(x), the prediction c = argmax F(x) is provably still the
  unique argmax of Fhat(x) iff F_c(x) - F_j(x) > sqrt(2) e(x) for every j != c (sqrt(2) is exact). The error
  certificate is for the unit ball, so the inputs are scaled into it by one common factor s = max_i ||x_i|| *inside
  the network*: G(u) = F(s u) has first-layer weights s W_1 (same biases, same mask), G(x/s) = F(x), and the
  certificate of G bounds the error at every x with ||x|| <= s. For bias-free positively homogeneous nets the bound
  at x is additionally scaled by ||x||/s.
- :func:`budget_for_accuracy_drop`: the largest certified budget such that the certified accuracy is at least the
  network's accuracy minus A points: the tolerance is the largest eps keeping enough margins (an order statistic of
  margin / (sqrt(2) r_i)), inverted with the certified budget of :mod:`probprune.budgets.certified`, then checked.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

from probprune.core.errors import ProbPruneError

SQRT2 = math.sqrt(2.0)


def _certified_budget():
    try:
        from probprune.budgets.certified import certified_budget
    except ImportError:  # pragma: no cover - before the move
        from probprune.budgets.apriori import certified_budget
    return certified_budget


# --------------------------------------------------------------------------------------------- margins
def margins(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(top class c, F_c - max_{j != c} F_j) per row; the margin is 0 on ties (c is then not the unique argmax)."""
    Z = np.asarray(logits, float)
    if Z.ndim != 2 or Z.shape[1] < 2:
        raise ProbPruneError("certified accuracy needs logits of shape (n, classes >= 2)")
    c = np.argmax(Z, axis=1)
    top2 = np.sort(Z, axis=1)[:, -2:]
    return c, top2[:, 1] - top2[:, 0]


def prediction_stable(logits: np.ndarray, err: np.ndarray | float) -> np.ndarray:
    """THEORY §10.4 [D]: for every Fhat with ||F(x) - Fhat(x)||_2 <= err(x), argmax Fhat(x) = argmax F(x) (unique)
    iff margin(x) > sqrt(2) err(x). Returns the boolean per row."""
    _, m = margins(logits)
    return m > SQRT2 * np.broadcast_to(np.asarray(err, float), m.shape)


# --------------------------------------------------------------------------------------------- scale
@dataclass(frozen=True)
class NetworkScale:
    """sup_{||x||<=1} ||F(x)|| for one network: ``upper`` certified, ``lower`` an estimate from feasible points."""

    upper: float
    lower: float
    upper_kind: str
    lower_kind: str

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def network_output_scale(parsed, X=None, conv_method: str = "fft", pgd_starts: int = 32, seed: int = 0) -> NetworkScale:
    """Certified upper bound b_l of sup_{||x||<=1} ||F(x)||: b_0 = 1, b_i = L_i(||W_i|| b_{i-1} + ||bias_i||) + o_i
    (THEORY §3.1 general form; L_l = 1, o_l = 0), certified operator norms. Lower estimate: max ||F(x/||x||)|| over the
    rows of ``X`` (feasible points) and, for bias-free positively homogeneous FCNs, the PGD lower bound of
    :func:`probprune.mc.measure.pgd_lower_bound` against the zero network."""
    import torch

    from probprune.certificates.lemma import _offsets
    from probprune.theory.norms import layer_operator_norm_upper

    spec, W = parsed.spec, [np.asarray(w, float) for w in parsed.weights]
    nW = [layer_operator_norm_upper(L, w, conv_method) for L, w in zip(spec.layers, W)]
    bn, ao = _offsets(spec, parsed.biases)
    b = 1.0
    for i, L in enumerate(spec.layers):
        b = L.lip * (nW[i] * b + bn[i]) + ao[i]
    lows, kinds = [0.0], []
    model = _torch_model(parsed)
    if X is not None:
        Xt = torch.as_tensor(np.asarray(X), dtype=torch.float64)
        nrm = Xt.flatten(1).norm(dim=1)
        Xt = Xt[nrm > 0] / nrm[nrm > 0].reshape(-1, *([1] * (Xt.dim() - 1)))
        with torch.no_grad():
            lows.append(float(model(Xt.reshape(len(Xt), *spec.input_shape)).flatten(1).norm(dim=1).max()))
        kinds.append(f"max over {len(Xt)} data directions on the unit sphere")
    if not parsed.has_bias and spec.positively_homogeneous and spec.is_fcn:
        from probprune.mc.measure import pgd_lower_bound

        Wt = [torch.as_tensor(w, dtype=torch.float64).unsqueeze(0) for w in W]
        g = [torch.Generator().manual_seed(seed)]
        lows.append(float(pgd_lower_bound(spec, Wt, [torch.zeros_like(w) for w in Wt], n_random=pgd_starts, iters=40,
                                          basis=False, generators=g)[0]))
        kinds.append(f"PGD ({pgd_starts} random starts + SVD start)")
    return NetworkScale(float(b), float(max(lows)), "activation-norm recursion (Lemma A general form, certified norms)",
                        " and ".join(kinds) or "none")


def _torch_model(parsed, weights: Sequence[np.ndarray] | None = None):
    """The parsed network as an nn.Sequential (float64) with its biases; ``weights`` replace the weights."""
    import torch

    from probprune.net.templates import to_torch

    W = parsed.weights if weights is None else weights
    model = to_torch(parsed.spec, [np.asarray(w, float) for w in W])
    lin = [m for m in model.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    for m, bias in zip(lin, parsed.biases):
        if bias is not None:
            m.bias = torch.nn.Parameter(torch.as_tensor(np.asarray(bias, float), dtype=torch.float64))
    return model.eval()


def _logits(parsed, X, weights=None) -> np.ndarray:
    import torch

    model = _torch_model(parsed, weights)
    Xt = torch.as_tensor(np.asarray(X), dtype=torch.float64).reshape(len(X), *parsed.spec.input_shape)
    with torch.no_grad():
        return model(Xt).flatten(1).numpy()


# --------------------------------------------------------------------------------------------- certified accuracy
def scaled_into_ball(parsed, X) -> tuple[object, float, np.ndarray]:
    """(G, s, r): G is the network with first-layer weights s W_1, s = max_i ||x_i||, so that G(x/s) = F(x) and the
    unit-ball certificate of G covers every input; r_i = ||x_i||/s in [0, 1]."""
    Xf = np.asarray(X, float).reshape(len(X), -1)
    nrm = np.linalg.norm(Xf, axis=1)
    s = float(nrm.max())
    if not np.isfinite(s) or s <= 0:
        raise ProbPruneError("certified accuracy needs at least one non-zero finite input")
    W = [np.asarray(w, float) for w in parsed.weights]
    W[0] = W[0] * s
    return replace(parsed, weights=W), s, nrm / s


@dataclass(frozen=True)
class CertifiedAccuracy:
    """Accuracy of F on (X, y), the certified accuracy of the pruned network (the fraction of inputs that F classifies
    correctly with margin > sqrt(2) x the certified error bound there, §10.4), and the measured accuracy of the pruned
    network (>= certified accuracy whenever the certificate holds)."""

    accuracy: float
    certified_accuracy: float
    pruned_accuracy: float
    eps_ball: float  # the certificate of G (error bound on ||x|| <= s)
    input_scale: float
    per_input_scaling: bool
    n: int
    certificate: str
    statement: str = "THEORY.md §10.4: prediction unchanged if margin > sqrt(2) x certified error (exact constant)"

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def certified_accuracy(parsed, pruned_weights, X, y, conv_method: str = "fft") -> CertifiedAccuracy:
    """Certified accuracy (THEORY §10.4 [D]) of the pruning ``pruned_weights`` (same shapes as the weights; biases
    kept) on inputs X with labels y, using Cert-D (§3.11) of the network scaled into the ball."""
    from probprune.certificates.lemma import certify

    y = np.asarray(y).astype(int)
    G, s, r = scaled_into_ball(parsed, X)
    Wh = [np.asarray(w, float) for w in pruned_weights]
    Gh = list(Wh)
    Gh[0] = Gh[0] * s
    eps = certify(G.spec, G.weights, Gh, G.biases, conv_method=conv_method).eps
    homog = (not parsed.has_bias) and parsed.spec.positively_homogeneous
    err = eps * r if homog else np.full(len(r), eps)
    Z = _logits(parsed, X)
    pred = np.argmax(Z, axis=1)
    ok = (pred == y) & prediction_stable(Z, err)
    Zh = _logits(parsed, X, Wh)
    return CertifiedAccuracy(float(np.mean(pred == y)), float(np.mean(ok)), float(np.mean(np.argmax(Zh, 1) == y)),
                             float(eps), s, bool(homog), int(len(y)), "Cert-D (Lemma A, certified norms)")


def eps_for_accuracy_drop(logits, y, radii, drop_points: float) -> tuple[float, int]:
    """The largest tolerance e such that certified accuracy >= accuracy - drop_points/100 when the error at x_i is
    <= e r_i (§10.4): with t_i = margin_i/(sqrt(2) r_i) on the correctly classified inputs and m = ceil(n (acc - A))
    inputs needed, any e < t_(m) (m-th largest) works; returns (t_(m) (1 - 1e-9), m). e = inf when m <= 0."""
    y = np.asarray(y).astype(int)
    c, m = margins(logits)
    correct = c == y
    n = len(y)
    need = int(math.ceil(n * (np.mean(correct) - drop_points / 100.0) - 1e-9))
    if need <= 0:
        return math.inf, 0
    r = np.asarray(radii, float)
    with np.errstate(divide="ignore"):
        t = np.where(r > 0, m / (SQRT2 * np.where(r > 0, r, 1.0)), np.inf)
    t = np.sort(t[correct])[::-1]
    return float(t[need - 1] * (1.0 - 1e-9)), need  # strictly below t_(m), with room for the rounding of sqrt(2) e r


@dataclass(frozen=True)
class AccuracyBudget:
    drop_points: float
    eps_needed: float  # the tolerance for G (inputs scaled into the ball)
    budget: dict  # the certified budget's as_dict (for G)
    check: CertifiedAccuracy  # certified accuracy at the returned allocation
    method: str

    def as_dict(self) -> dict:
        return {"max_acc_drop_points": self.drop_points, "eps_needed": self.eps_needed, "method": self.method,
                "budget": self.budget, "check": self.check.as_dict()}


def pruned_weights_for(parsed, counts: Sequence[int], method: str, seed: int = 0) -> list[np.ndarray]:
    """Layer-wise exact-k magnitude pruning with the given counts, or (random) a seeded Bernoulli mask per layer
    with p_i = count_i / N_i."""
    from probprune.budgets.apriori import magnitude_prune_count

    W = [np.asarray(w, float) for w in parsed.weights]
    if method == "magnitude":
        return [magnitude_prune_count(w, int(k)) for w, k in zip(W, counts)]
    rng = np.random.default_rng(seed)
    return [w * (rng.random(w.shape) >= k / w.size) for w, k in zip(W, counts)]


def budget_for_accuracy_drop(parsed, X, y, drop_points: float, method: str = "magnitude", mode: str = "optimal",
                             delta: float | None = None, conv_method: str = "fft", seed: int = 0) -> AccuracyBudget:
    """Max prunable weights such that the certified accuracy drops by at most ``drop_points`` points (§10.4):
    eps from :func:`eps_for_accuracy_drop` for the network scaled into the ball (per-input radii for bias-free
    homogeneous nets), inverted by the certified budget (Cert-D magnitude / Cert-R random), then the certified
    accuracy of the returned allocation is computed (random: on one seeded mask; Cert-R holds w.p. 1 - delta)."""
    if not (0 <= drop_points <= 100):
        raise ProbPruneError(f"--max-acc-drop is in accuracy points, 0..100; got {drop_points}")
    G, s, r = scaled_into_ball(parsed, X)
    homog = (not parsed.has_bias) and parsed.spec.positively_homogeneous
    Z = _logits(parsed, X)
    e, _ = eps_for_accuracy_drop(Z, y, r if homog else np.ones_like(r), drop_points)
    L = parsed.spec.layers
    if not math.isfinite(e):
        counts = [Li.N for Li in L]
        bud = {"note": "any pruning keeps the certified accuracy within the drop", "total_prunable": sum(counts),
               "total_weights": sum(counts), "layers": [{"name": Li.name, "n_weights": Li.N, "max_prunable": Li.N}
                                                        for Li in L]}
    elif e <= 0:
        counts = [0] * len(L)
        bud = {"note": "no tolerance: the margins leave no room", "total_prunable": 0,
               "total_weights": sum(Li.N for Li in L),
               "layers": [{"name": Li.name, "n_weights": Li.N, "max_prunable": 0} for Li in L]}
    else:
        res = _certified_budget()(G, e, method, mode, delta=delta, conv_method=conv_method)
        bud = res.as_dict()
        counts = [Lb["max_prunable"] for Lb in bud["layers"]]
    Wh = pruned_weights_for(parsed, counts, method, seed)
    chk = certified_accuracy(parsed, Wh, X, y, conv_method)
    return AccuracyBudget(float(drop_points), float(e), bud, chk, method)
