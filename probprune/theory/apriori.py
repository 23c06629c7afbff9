"""A-priori pruning bounds with explicit constants (THEORY.md §3, all statements [D] = derived here).

Setting (THEORY §1): bias-free network, activations with (H-act) (L-Lipschitz, sigma(0) = 0), weights i.i.d.
U[-a_i, a_i] (paper law a_i = K/sqrt(m_i)) or N(0, s_i^2) (§3.12), inputs in the unit ball, error
err = sup_{||x||<=1} ||F(x) - F_pruned(x)||_2. With probability >= 1 - delta over the weights (and the mask for
random pruning), err <= ``BoundResult.eps``.

These are NOT the paper's theorems: Qian & Klabjan state only shapes with unspecified constants (§2.2); that shape
is :func:`paper_width_condition`, with user-supplied constants.

Vectorisation: ``fractions`` may be a scalar (same fraction in every layer), a per-layer sequence, or an array whose
last axis is the layer axis (length depth, or 1 for the same fraction in every layer); every per-layer quantity in the result has that shape and ``eps`` has the leading shape.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats

from probprune.core import registry
from probprune.core.errors import HypothesisError, ProbPruneError, check_delta, check_fraction
from probprune.net.templates import NetSpec
from probprune.theory.lemma_moments import unroll as _unroll  # Lemma A's sum, one implementation

METHODS = ("magnitude", "random", "random_rescaled")
EXACT_METHODS = ("random_exact", "magnitude_exact")
LAWS = ("uniform", "gaussian")
STATEMENT_MODES = ("best", "bernstein", "sharp")

_STATEMENTS = {
    ("magnitude", "uniform"): "THEORY.md §3.4 Theorem RM (+ §3.6 RC for conv layers)",
    ("random", "uniform"): "THEORY.md §3.4 Theorem RR (+ §3.6 RC for conv layers)",
    ("random_rescaled", "uniform"): "THEORY.md §3.4 Theorem RR' (+ §3.6 RC for conv layers)",
    ("magnitude", "gaussian"): "THEORY.md §3.12 Gaussian analogue, magnitude (with §3.4 composition)",
    ("random", "gaussian"): "THEORY.md §3.12 Gaussian analogue, random by truncation (with §3.4 composition)",
    ("random_rescaled", "gaussian"): "THEORY.md §3.12 Gaussian analogue, rescaled random by truncation",
}


# --------------------------------------------------------------------------------------------- primitives
from probprune.theory.bernstein import bernstein_tail, beta  # noqa: F401  (the one matrix Bernstein, §3.2)


def product_form(B, eta, Lip: float = 1.0):
    """(A*) of Corollary A1 (THEORY §3.1 [D]): Lip * prod(B) * (prod(1 + eta/B) - 1), last axis = layer."""
    B, eta = np.asarray(B, float), np.asarray(eta, float)
    return Lip * np.prod(B, axis=-1) * np.expm1(np.sum(np.log1p(eta / B), axis=-1))


def lemma_a(norm_W, norm_What, norm_E, lips=None):
    """Lemma A under (H-act) (THEORY §3.1 [D]): min(A-fwd, A-bwd) with
    A-fwd = Lip sum_i ||E_i|| prod_{j<i} ||W_j|| prod_{j>i} ||What_j||,
    A-bwd = Lip sum_i ||E_i|| prod_{j<i} ||What_j|| prod_{j>i} ||W_j||.
    Arrays with last axis = layer; ``lips`` are the L_i (L_l = 1), default all 1."""
    w, wh, e = (np.asarray(x, float) for x in (norm_W, norm_What, norm_E))
    Lip = 1.0 if lips is None else float(np.prod(lips))
    return Lip * np.minimum(_unroll(e, w, wh), _unroll(e, wh, w))


# --------------------------------------------------------------------------------------------- delta split
@dataclass(frozen=True)
class DeltaAllocation:
    """Union-bound allocation of delta (THEORY §3.8): one event per layer for ||W_i|| <= B_i, one per pruned
    layer for ||E_i|| <= eta_i (and, for the Gaussian random bound, one truncation event per pruned layer).
    ``delta_W``/``delta_E``/``delta_T`` have the fractions' shape; they sum to at most delta."""

    delta: float
    delta_W: np.ndarray
    delta_E: np.ndarray
    delta_T: np.ndarray
    n_events: np.ndarray

    @staticmethod
    def equal_split(delta: float, pruned: np.ndarray, truncation: bool = False) -> "DeltaAllocation":
        """Equal split over the events present: delta_e = delta/|events| (= delta/(2l) if every layer is pruned)."""
        pruned = np.asarray(pruned, bool)
        depth = pruned.shape[-1]
        n_e = np.sum(pruned, axis=-1)
        n_ev = depth + n_e * (2 if truncation else 1)
        de = delta / n_ev
        per = np.broadcast_to(de[..., None], pruned.shape).astype(float)
        dE = np.where(pruned, per, 0.0)
        return DeltaAllocation(delta, per.copy(), dE, dE.copy() if truncation else np.zeros_like(dE), n_ev)


# --------------------------------------------------------------------------------------------- per-layer terms
def _layer_arrays(spec: NetSpec):
    m = np.array([L.m for L in spec.layers], float)
    n = np.array([L.n for L in spec.layers], float)
    N = np.array([L.N for L in spec.layers], float)
    a = np.array([L.half_width for L in spec.layers], float)
    sr = np.sqrt(np.array([L.r for L in spec.layers], float))
    d_out = np.array([L.d_out for L in spec.layers], float)
    d_in = np.array([L.d_in for L in spec.layers], float)
    return m, n, N, a, sr, d_out, d_in


def norm_bound(spec: NetSpec, delta_W, law: str = "uniform"):
    """B_i (THEORY §3.4; §3.12 for Gaussian; x sqrt(r_i) for conv layers, §3.6): ||W_i|| <= B_i w.p. >= 1 - delta_W_i.
    Uniform: beta(m a^2/3, a, ln(n/delta_W)). Gaussian: s(sqrt(d_i) + sqrt(d_{i-1}) + sqrt(2 ln(2/delta_W)))."""
    m, n, N, a, sr, d_out, d_in = _layer_arrays(spec)
    dW = np.asarray(delta_W, float)
    if law not in LAWS:
        raise ProbPruneError(f"unknown weight law {law!r}; use one of {LAWS}")
    return registry.LAWS[law].bernstein_norm_bound(m, n, a, sr, d_out, d_in, dW)  # the law's formula (§3.4, §3.12)


gaussian_g = registry.gaussian_g  # g(c) = E[w^2 1{|w| < c s}]/s^2 (THEORY §3.12 [D]), the law's formula, once


def error_bound(spec: NetSpec, q, delta_E, method: str, law: str = "uniform", delta_T=None):
    """eta_i: ||E_i|| <= eta_i w.p. >= 1 - delta_E_i (x sqrt(r_i) for conv layers). eta_i = 0 where q_i = 0.

    uniform (THEORY §3.4): RM beta(m q^3 a^2/3, q a, lam); RR beta(m p a^2/3, a, lam);
    RR' beta(m p a^2/(3(1-p)), a max(1, p/(1-p)), lam), p < 1; lam = ln(n/delta_E).
    gaussian (§3.12): magnitude beta(m s^2 g(c), c s, lam) with c = Phi^{-1}((1+q)/2); random
    beta(m p s^2, s u, lam) with u = sqrt(2 ln(N/delta_T)); rescaled: the same with variance and range / (1-p)."""
    m, n, N, a, sr, d_out, d_in = _layer_arrays(spec)
    q = np.asarray(q, float)
    dE = np.asarray(delta_E, float)
    pruned = q > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        lam = np.log(n / np.where(pruned, dE, 1.0))
        if law not in LAWS:
            raise ProbPruneError(f"unknown weight law {law!r}; use one of {LAWS}")
        if method not in METHODS:
            raise ProbPruneError(f"unknown method {method!r}; use one of {METHODS}")
        # the pruned entry's (variance, range) under the law: the method's entry model, the law's formula
        s2, R = registry.METHODS[method].entry_model.bernstein(registry.LAWS[law], m, q, a, N, pruned, delta_T)
        eta = sr * beta(s2, R, lam)
    return np.where(pruned, eta, 0.0)


# --------------------------------------------------------------------------------------------- the bound
@dataclass(frozen=True)
class BoundResult:
    """An a-priori bound and everything it was computed from. ``eps`` is the guaranteed error bound:
    P(err <= eps) >= 1 - delta. Per-layer arrays have the layer as last axis."""

    eps: float | np.ndarray
    method: str
    law: str
    delta: float
    fractions: np.ndarray
    B: np.ndarray
    eta: np.ndarray
    Lip: float
    allocation: DeltaAllocation
    statement: str
    provenance: str = "[D] derived in THEORY.md (not the paper's theorem; same setting)"
    assumptions: tuple[str, ...] = ()
    paper_hypotheses_violated: tuple[str, ...] = ()
    layer_names: tuple[str, ...] = ()
    #: which candidate statement produced each term (THEORY §9.7): arrays of candidate names with B's / eta's shape
    #: (keys of probprune.theory.sharp.CANDIDATES); empty for results built before §9
    B_source: np.ndarray | None = None
    eta_source: np.ndarray | None = None
    #: "A-star" (eps = (A*) of B and eta, §3.1), "product-moment" (THEORY §9.8, linear FCNs; first batch element),
    #: "second-moment" (§9.11), "fourth-moment" (§9.12), "trace-moment" (§9.13) or "conv-fourth-moment" (§9.14)
    eps_source: str = "A-star"

    @property
    def term_statements(self) -> tuple[dict, ...]:
        """Per layer {"B": statement, "eta": statement} (for batched fractions: of the first element)."""
        if self.B_source is None:
            return tuple({"B": self.statement, "eta": self.statement} for _ in self.layer_names)
        from probprune.theory.sharp import CANDIDATES

        bs = np.asarray(self.B_source).reshape(-1, len(self.layer_names))[0]
        es = np.asarray(self.eta_source).reshape(-1, len(self.layer_names))[0]
        return tuple({"B": CANDIDATES.get(b, b), "eta": CANDIDATES.get(e, e)} for b, e in zip(bs, es))

    @property
    def delta_W(self):
        return self.allocation.delta_W

    @property
    def delta_E(self):
        return self.allocation.delta_E

    def as_dict(self) -> dict:
        return {
            "eps": self.eps,
            "method": self.method,
            "law": self.law,
            "delta": self.delta,
            "statement": self.statement,
            "eps_statement": _eps_statement(self.eps_source, self.method),
            "provenance": self.provenance,
            "Lip": self.Lip,
            "layers": [
                {
                    "name": nm,
                    "fraction": np.asarray(self.fractions)[..., i],
                    "B": np.asarray(self.B)[..., i],
                    "eta": np.asarray(self.eta)[..., i],
                    "delta_W": np.asarray(self.allocation.delta_W)[..., i],
                    "delta_E": np.asarray(self.allocation.delta_E)[..., i],
                    "B_statement": ts["B"],
                    "eta_statement": ts["eta"],
                }
                for i, (nm, ts) in enumerate(zip(self.layer_names, self.term_statements))
            ],
            "assumptions": list(self.assumptions),
            "paper_hypotheses_violated": list(self.paper_hypotheses_violated),
        }


#: eps_source -> the statement that produced eps (THEORY §9.7: eps is the minimum of these candidates)
EPS_STATEMENTS = {
    "second-moment": "THEORY §9.11 S9.11 second moment of ||D||_F (identity activations, dense or conv)",
    "fourth-moment": "THEORY §9.12 S9.12 exact fourth moment of ||D||_F (linear dense; threshold, Bernoulli, rescaled)",
    "trace-moment": "THEORY §9.13 S9.13 exact Schatten moments E tr((DD^T)^p) (linear dense; threshold, Bernoulli, "
                    "rescaled; exact-k random via §9.5(b))",
    "conv-fourth-moment": "THEORY §9.14 S9.14 exact fourth moment of ||D||_F with weight sharing (conv, identity)",
    "lemma-moment": "THEORY §9.15 S9.15 Lemma A in one event by exact layer trace moments (dense, (H-act) activations)",
}
#: the product-moment statement by method (S9.8 and its exact-k / rescaled variants)
PRODUCT_MOMENT_STATEMENTS = {"magnitude_exact": "THEORY §9.8b S9.8b product moment bound (exact-k magnitude)",
                             "random_rescaled": "THEORY §9.8c S9.8c product moment bound (rescaled random)"}


def _eps_statement(eps_source: str, method: str) -> str:
    if eps_source == "product-moment":
        return PRODUCT_MOMENT_STATEMENTS.get(method, "THEORY §9.8 S9.8 product moment bound")
    return EPS_STATEMENTS.get(eps_source, "THEORY §3.1 (A*) of the per-layer terms")


def broadcast_fractions(spec: NetSpec, fractions, upper_open: bool = False) -> tuple[np.ndarray, bool]:
    """Fractions as an array (..., depth); the flag says whether the input was a scalar."""
    q = check_fraction(fractions, "fraction", upper_open=upper_open)
    scalar = q.ndim == 0
    if scalar:
        q = np.full(spec.depth, float(q))
    elif q.shape[-1] == 1:  # (..., 1): the same fraction in every layer, batched
        q = np.repeat(q, spec.depth, axis=-1)
    elif q.shape[-1] != spec.depth:
        raise ProbPruneError(f"fractions need one value per layer ({spec.depth}), got shape {q.shape}")
    return q, scalar


ASSUME_LAW_NOTE = ("ASSUMED by the caller (assume_law=True): the network read from a model is treated as a draw from "
                   "the weight law with these half-widths; the statement is about that law, not about the given weights "
                   "(THEORY §3.0)")


def check_law_origin(spec: NetSpec, assume_law: bool = False, what: str = "the a-priori bound") -> list[str]:
    """Law statements only where the law holds (THEORY §3.0, issue 22 item 3). A spec read from a given network
    (``spec.origin == "model"``, e.g. ``from_torch(model).spec`` with a_i = max|w|) is not a draw from the weight law:
    refuse it with a ProbPruneError naming the certificate as the tool for a given network, unless the caller passes
    ``assume_law=True``, in which case the returned note (to be repeated in the result's assumptions) states it."""
    if getattr(spec, "origin", "law") != "model":
        return []
    if not assume_law:
        raise ProbPruneError(
            f"{what} is a statement about a network drawn from the weight law; this spec was read from a given model "
            "(a_i = max|w|), which is not such a draw: use the certificate for a given network (probprune certify / "
            "probprune.certificates, budgets.certified.certified_budget), or pass assume_law=True to state the "
            "assumption explicitly")
    return [ASSUME_LAW_NOTE]


def check_spec_for_apriori(spec: NetSpec, assume_law: bool = False) -> list[str]:
    """(H-act) and the bias-free hypothesis of the a-priori theorems; raises HypothesisError naming the violation.
    A model-derived spec is refused unless ``assume_law`` (:func:`check_law_origin`)."""
    law_note = check_law_origin(spec, assume_law)
    for L in spec.layers[:-1]:
        if not L.act.zero_at_zero:
            raise HypothesisError(
                f"layer {L.name}: activation {L.act.name} has sigma(0) = {L.act.value_at_zero} != 0, violating (H-act) "
                "(THEORY §1.2); use the per-network certificate instead"
            )
    notes = [
        "no biases; linear output layer (THEORY §1.1)",
        "activations coordinate-wise, L_i-Lipschitz, sigma(0) = 0 (H-act, §1.2)",
        "inputs in the unit l2 ball; error = sup over the ball (§1.4)",
        "weights i.i.d. across entries and layers (§1.3)",
    ]
    return law_note + notes


def apriori_bound(
    spec: NetSpec,
    fractions,
    delta: float,
    method: str = "magnitude",
    law: str = "uniform",
    allocation: DeltaAllocation | None = None,
    statement: str = "best",
    assume_law: bool = False,
    whole_network: bool = True,
) -> BoundResult:
    """The a-priori bound for pruning a network drawn from the weight law (THEORY §3.4 RM/RR/RR', §3.6 RC for conv
    layers, §3.12 Gaussian). With probability >= 1 - delta, err <= eps = Lip prod B (prod(1 + eta/B) - 1).

    magnitude: threshold form, prune |w| < q_i a_i (Gaussian: |w| < c_i s_i with 2 Phi(c_i) - 1 = q_i), §1.5.
    random: R-Bern, each entry pruned independently with probability p_i, kept weights unchanged (§1.6).
    random_rescaled: R-Bern with kept weights multiplied by 1/(1 - p_i), p_i < 1.
    ``allocation`` overrides the default equal delta split (§3.8).

    ``statement``: "best" (default) = per term the minimum of the matrix-Bernstein bound of §3.4/§3.12 and the sharper
    bounds of THEORY §9 (S9.1-S9.5), each valid at the same failure probability, so the minimum is too (§9.7);
    "bernstein" = §3.4/§3.12 only (the pre-§9 bound); "sharp" = §9 only. ``result.term_statements`` says which
    statement produced each B_i and eta_i. Methods "random_exact" / "magnitude_exact" (exactly floor(q_i N_i)
    entries pruned per layer) are routed to :func:`exact_k_bound` / :func:`exact_k_magnitude_bound` (§9.5, §9.6).
    A spec read from a model (``spec.origin == "model"``) is refused unless ``assume_law=True`` (THEORY §3.0).
    ``whole_network=False`` skips the minimum with the whole-network statements (S9.8-S9.15): eps is then (A*) of
    the per-layer terms alone, for callers that read only B, eta and the allocation (the budgets' term tables)."""
    method, law = registry.normalize("method", method), registry.normalize("law", law)  # aliases -> one spelling
    if method in EXACT_METHODS:
        if allocation is not None:
            raise ProbPruneError(f"{method}: a custom delta allocation is not supported")
        fn = exact_k_bound if registry.METHODS[method].exact_k_random else exact_k_magnitude_bound
        return fn(spec, fractions, delta, law=law, statement=statement, assume_law=assume_law)
    if statement not in STATEMENT_MODES:
        raise ProbPruneError(f"unknown statement {statement!r}; use one of {', '.join(STATEMENT_MODES)}")
    if method not in METHODS:
        raise ProbPruneError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    if law not in LAWS:
        raise ProbPruneError(f"unknown weight law {law!r}; use one of {', '.join(LAWS)}")
    delta = check_delta(delta)
    meth = registry.METHODS[method]
    q, scalar = broadcast_fractions(spec, fractions, upper_open=meth.rescaled)
    notes = check_spec_for_apriori(spec, assume_law)
    truncation = not registry.LAWS[law].bounded and not meth.is_threshold and statement == "bernstein"
    alloc = allocation or DeltaAllocation.equal_split(delta, q > 0, truncation=truncation)
    B, B_src, eta, eta_src = _terms(spec, q, alloc, method, law, statement)
    Lip = spec.Lip
    eps = product_form(B, eta, Lip)
    eps_source = "A-star"
    whole = statement != "bernstein" and whole_network
    if whole and _is_linear_fcn(spec):
        from probprune.theory.sharp import product_moment_bound, rescaled_product_moment_bound

        hw = [L.half_width for L in spec.layers]
        x = (rescaled_product_moment_bound(spec.widths, hw, q, delta, law)[0] if meth.rescaled
             else product_moment_bound(spec.widths, hw, q, delta, method, law)[0])
        eps_source = np.where(x < eps, "product-moment", "A-star")
        eps = np.minimum(eps, x)
        notes.append("identity activations: eps is also bounded directly on ||prod W - prod What|| by the product "
                     f"moment bound (THEORY §9.8{'c' if method == 'random_rescaled' else ''}, full delta, no split); "
                     "the smaller is reported")
    if whole:
        eps, eps_source = _second_moment_min(spec, eps, eps_source, method, law, delta, notes, q=q)
    if whole:
        eps, eps_source = _conv_fourth_min(spec, eps, eps_source, method, law, delta, notes, q)
    if whole and _is_linear_fcn(spec):
        from probprune.theory.sharp import fourth_moment_bound

        x4, _ = fourth_moment_bound(spec.widths, [L.half_width for L in spec.layers], q, delta, method, law)
        eps_source = np.where(x4 < eps, "fourth-moment", eps_source)
        eps = np.minimum(eps, x4)
        eps_source = str(eps_source) if np.ndim(eps_source) == 0 else eps_source
        notes.append("identity activations: eps is also bounded by the exact fourth moment of ||prod W - prod What||_F "
                     "and Markov (THEORY §9.12, full delta); the smaller is reported")
        from probprune.theory.trace_moments import TRACE_BATCH_MAX, trace_moment_bound

        if q.size // spec.depth <= TRACE_BATCH_MAX:
            xt, _ = trace_moment_bound(spec.widths, [L.half_width for L in spec.layers], q, delta, method, law)
            eps_source = np.where(xt < eps, "trace-moment", eps_source)
            eps = np.minimum(eps, xt)
            eps_source = str(eps_source) if np.ndim(eps_source) == 0 else eps_source
            notes.append("identity activations: eps is also bounded by the exact Schatten moments E tr((DD^T)^p), "
                         "p = 2, 3, of D = prod W - prod What and Markov (THEORY §9.13, full delta); the smaller is "
                         "reported")
        else:
            notes.append(f"S9.13 (THEORY §9.13) skipped: more than {TRACE_BATCH_MAX} fraction vectors in one call "
                         "(its cost); eps is the minimum of the other statements (valid, possibly larger)")
    if whole:
        eps, eps_source = _lemma_moment_min(spec, eps, eps_source, method, law, delta, notes, q)
    notes.append(f"weights i.i.d. {registry.LAWS[law].iid_text} = {[round(L.half_width, 6) for L in spec.layers]}")
    if meth.is_threshold:
        notes.append("magnitude pruning in threshold form: prune |w| < tau_i = q_i a_i; E[#pruned] = q_i N_i (§1.5)")
    else:
        notes.append("random pruning: Bernoulli(p_i) mask independent of the weights (R-Bern, §1.6)")
    if any(L.kind == "conv" for L in spec.layers):
        notes.append("conv layers: kernel entries i.i.d.; B_i and eta_i multiplied by sqrt(r_i) (Lemma C, §3.5-3.6)")
    out_eps = float(eps) if (scalar or np.ndim(eps) == 0) else eps
    return BoundResult(
        eps=out_eps,
        method=method,
        law=law,
        delta=delta,
        fractions=q,
        B=B,
        eta=eta,
        Lip=Lip,
        allocation=alloc,
        statement=_statement_text(_STATEMENTS[(method, law)], statement),
        assumptions=tuple(notes),
        paper_hypotheses_violated=tuple(spec.paper_hypotheses()),
        layer_names=tuple(L.name for L in spec.layers),
        B_source=B_src,
        eta_source=eta_src,
        eps_source=eps_source if np.ndim(eps_source) == 0 else np.asarray(eps_source).reshape(-1)[0],
    )


def _min_candidate(eps, eps_source, x, source: str, note: str, notes: list):
    """min(eps, x) with the source of each element (THEORY §9.7: every candidate is a deterministic threshold at the
    full delta, so the minimum is valid) and the candidate's note; scalars stay Python scalars."""
    src = np.where(x < eps, source, eps_source)
    out = np.minimum(eps, x)
    notes.append(note)
    if np.ndim(out) == 0:
        return float(out), str(src)
    return out, src


def _second_moment_min(spec: NetSpec, eps, eps_source, method: str, law: str, delta: float, notes: list,
                       q=None, ks=None):
    """min(eps, x_S9.11) where S9.11 applies (identity activations, dense or conv layers, no pooling; THEORY §9.11):
    both are deterministic thresholds for the same err at the full delta (§9.7). Returns (eps, eps_source)."""
    from probprune.theory import sharp

    if not sharp.second_moment_applies(spec):
        return eps, eps_source
    x, _ = sharp.second_moment_bound(spec, method, law, delta, q=q, ks=ks)
    return _min_candidate(eps, eps_source, x, "second-moment",
                          "identity activations: eps is also bounded by the exact second moment of ||prod W - prod "
                          "What||_F and Markov (THEORY §9.11, full delta); the smaller is reported", notes)


def _lemma_moment_min(spec: NetSpec, eps, eps_source, method: str, law: str, delta: float, notes: list, q):
    """min(eps, x_S9.15) for dense FCNs with (H-act) activations, ReLU included (THEORY §9.15: Lemma A's sum in one
    event by the exact trace moments of every layer's W, What and E, Minkowski over the independent layers and Markov;
    full delta, §9.7). Threshold magnitude, Bernoulli and rescaled random pruning (i.i.d. entries)."""
    from probprune.theory.lemma_moments import LEMMA_METHODS, lemma_moment_bound

    if method not in LEMMA_METHODS or not spec.is_fcn:
        return eps, eps_source
    res = lemma_moment_bound(spec.widths, [L.half_width for L in spec.layers], q, delta, method, law, lip=spec.Lip)
    return _min_candidate(eps, eps_source, res.eps, "lemma-moment",
                          "dense layers: eps is also bounded by Lemma A's sum with every layer's norm replaced by its "
                          "exact Schatten moment (E tr((XX^T)^p))^(1/(2p)), p <= 6, in one Markov event over the "
                          "independent layers (THEORY §9.15, full delta); the smaller is reported", notes)


def _conv_fourth_min(spec: NetSpec, eps, eps_source, method: str, law: str, delta: float, notes: list, q):
    """min(eps, x_S9.14) for small conv nets with identity activations (THEORY §9.14: exact E||D||_F^4 with weight
    sharing, Cantelli/Markov with S9.11's exact second moment; full delta, §9.7). Threshold magnitude and Bernoulli
    random only; skipped (noted) above TRACE_BATCH_MAX fraction vectors per call."""
    from probprune.theory import conv_moments
    from probprune.theory.trace_moments import TRACE_BATCH_MAX

    m = registry.METHODS.get(method)
    if m is None or m.entry is None or m.rescaled or not any(L.kind == "conv" for L in spec.layers) \
            or not conv_moments.applies(spec):
        return eps, eps_source
    rows = np.asarray(q, float).reshape(-1, spec.depth)
    if rows.shape[0] > TRACE_BATCH_MAX:
        notes.append(f"S9.14 (THEORY §9.14) skipped: more than {TRACE_BATCH_MAX} fraction vectors in one call")
        return eps, eps_source
    try:
        x = np.array([conv_moments.conv_fourth_moment_bound(spec, r, delta, method, law)[0] for r in rows])
    except ProbPruneError as e:  # too large an intermediate state: no S9.14 candidate (fail closed, noted)
        notes.append(f"S9.14 (THEORY §9.14) skipped: {e}")
        return eps, eps_source
    x = x.reshape(np.shape(eps)) if np.ndim(eps) else float(x[0])
    return _min_candidate(eps, eps_source, x, "conv-fourth-moment",
                          "identity activations, conv layers: eps is also bounded by the exact fourth moment of "
                          "||prod W - prod What||_F with weight sharing and Cantelli (THEORY §9.14, full delta); the "
                          "smaller is reported", notes)


def _exact_k_fourth_min(spec: NetSpec, eps: float, eps_source: str, method: str, law: str, delta: float, notes: list,
                        ks) -> tuple[float, str]:
    """min(eps, x_S9.12(K)) for linear dense FCNs pruned by an exact-k rule (THEORY §9.12(K), full delta, §9.7)."""
    if not _is_linear_fcn(spec):
        return eps, eps_source
    from probprune.theory.sharp import exact_k_fourth_moment_bound

    x, _ = exact_k_fourth_moment_bound(spec.widths, [L.half_width for L in spec.layers], ks, delta, method, law)
    notes.append("identity activations: eps is also bounded by the exact fourth moment of ||prod W - prod What||_F "
                 "under the exact-k rule (THEORY §9.12(K), full delta); the smaller is reported")
    return (float(x), "fourth-moment") if x < eps else (eps, eps_source)


def _is_linear_fcn(spec: NetSpec) -> bool:
    """Dense layers with identity activations, the output layer's included (the product statement S9.8 applies):
    ``NetSpec.is_linear_fcn`` plus the last activation (a spec may carry one on its output)."""
    return spec.is_linear_fcn and spec.layers[-1].act.is_identity


def _statement_text(base: str, mode: str) -> str:
    if mode == "bernstein":
        return base
    whole = "; min with the whole-network statements S9.8-S9.15 that apply (eps_statement names the one)"
    if mode == "sharp":
        return "THEORY.md §9 sharper a-priori bounds (S9.1-S9.5) composed by (A*) §3.1" + whole
    return f"THEORY.md §9.7 best of {{{base}; §9 S9.1-S9.5}} per term, composed by (A*) §3.1" + whole


def _terms(spec: NetSpec, q, alloc: DeltaAllocation, method: str, law: str, mode: str):
    """B_i and eta_i (last axis = layer) for the statement mode, with the candidate names (THEORY §9.7).
    Every candidate for a term holds at that term's failure probability (delta_W_i for B_i; delta_E_i + delta_T_i
    for eta_i), so their minimum does too."""
    from probprune.theory import sharp

    dW = np.broadcast_to(np.asarray(alloc.delta_W, float), q.shape)
    dE = np.broadcast_to(np.asarray(alloc.delta_E, float), q.shape)
    dT = np.broadcast_to(np.asarray(alloc.delta_T, float), q.shape)
    cands_B, cands_E = [], []
    if mode in ("bernstein", "best"):
        cands_B.append(("bernstein", np.broadcast_to(norm_bound(spec, dW, law), q.shape)))
        if not registry.LAWS[law].bounded and not registry.METHODS[method].is_threshold and not np.any(dT > 0):
            with np.errstate(divide="ignore", invalid="ignore"):  # no truncation events: spend half of delta_E on it
                eb = error_bound(spec, q, dE / 2, method, law, delta_T=dE / 2)
        else:
            eb = error_bound(spec, q, dE, method, law, delta_T=dT)
        cands_E.append(("bernstein", eb))
    if mode in ("sharp", "best"):
        Bs = np.empty(q.shape)
        Bn = np.empty(q.shape, dtype=object)
        Es = np.empty(q.shape)
        En = np.empty(q.shape, dtype=object)
        for i, L in enumerate(spec.layers):
            sr = math.sqrt(L.r)
            u, inv = np.unique(dW[..., i], return_inverse=True)  # B_i depends on delta_W_i only
            v, nm = sharp.full_norm_bound(L.d_out, L.d_in, L.half_width, u, law)
            inv = np.ravel(inv)
            Bs[..., i] = np.reshape((sr * np.asarray(v, float))[inv], q.shape[:-1])
            Bn[..., i] = np.reshape(np.asarray(nm, dtype=object)[inv], q.shape[:-1])
            with np.errstate(divide="ignore"):
                v, nm = sharp.error_norm_bound(L.d_out, L.d_in, method, law, q[..., i], L.half_width,
                                               np.where(q[..., i] > 0, dE[..., i] + dT[..., i], 1.0))
            Es[..., i], En[..., i] = sr * v, nm
        cands_B.append(("sharp", (Bs, Bn)))
        cands_E.append(("sharp", (Es, En)))
    return (*_pick(cands_B, q.shape), *_pick(cands_E, q.shape))


def _pick(cands, shape):
    """Elementwise minimum over candidates [(kind, values or (values, names))] with the winning names."""
    vals, names = [], []
    for kind, c in cands:
        if kind == "bernstein":
            v = np.broadcast_to(np.asarray(c, float), shape)
            vals.append(v)
            names.append(np.where(v > 0, "bernstein", "zero").astype(object))
        else:
            vals.append(np.broadcast_to(c[0], shape))
            names.append(np.broadcast_to(c[1], shape))
    V = np.stack(vals)
    V = np.where(np.isnan(V), np.inf, V)  # a NaN candidate is no bound (fail closed), never the minimum
    i = np.argmin(V, axis=0)
    return np.take_along_axis(V, i[None], 0)[0], np.take_along_axis(np.stack(names), i[None], 0)[0]


# --------------------------------------------------------------------------------------------- masks given
def random_mask_bound(spec: NetSpec, max_line_counts: Sequence[int], delta: float,
                      assume_law: bool = False) -> BoundResult:
    """RR-mask (THEORY §3.4 [D]): for any mask independent of W (exact-k, structured random, ...), conditional on the
    mask, ||E_i|| <= beta(D_i a_i^2/3, a_i, ln(n_i/delta_E)) where D_i is the largest number of pruned entries in a
    row or column of the realised mask (uniform law only)."""
    delta = check_delta(delta)
    D = np.asarray(max_line_counts, float)
    if D.shape != (spec.depth,) or np.any(D < 0):
        raise ProbPruneError(f"max_line_counts must be {spec.depth} non-negative counts, got {max_line_counts!r}")
    notes = check_spec_for_apriori(spec, assume_law)
    alloc = DeltaAllocation.equal_split(delta, D > 0)
    notes.append("mask independent of W; bound conditional on the realised mask (RR-mask)")
    return _line_count_bound(spec, D, alloc, "random_mask", D, "THEORY.md §3.4 RR-mask", notes)


def _line_count_bound(spec, D, alloc, method, fractions, statement, notes) -> BoundResult:
    """RR-mask's eta_i = sqrt(r_i) beta(D_i a_i^2/3, a_i, ln(n_i/delta_E)) composed by (A*)."""
    m, n, N, a, sr, *_ = _layer_arrays(spec)
    B = norm_bound(spec, alloc.delta_W)
    pruned = D > 0
    with np.errstate(divide="ignore"):
        eta = np.where(pruned, sr * beta(D * a * a / 3.0, a, np.log(n / np.where(pruned, alloc.delta_E, 1.0))), 0.0)
    eps = float(product_form(B, eta, spec.Lip))
    return BoundResult(eps, method, "uniform", alloc.delta, fractions, B, eta, spec.Lip, alloc, statement,
                       assumptions=tuple(notes), paper_hypotheses_violated=tuple(spec.paper_hypotheses()),
                       layer_names=tuple(L.name for L in spec.layers))


def exact_k_line_count_bound(N_rows: int, N_cols: int, k: int, delta_D: float) -> int:
    """High-probability bound on D (max pruned entries in a row or column) for an exact-k uniformly random mask
    [D here, extends THEORY §3.4 RR-mask]: a row of length c holds Hypergeometric(N, k, c) pruned entries; a union
    bound over the d_out + d_in lines gives P(D > D*) <= delta_D with D* the (1 - delta_D/(rows+cols)) quantile."""
    N = N_rows * N_cols
    lines = N_rows + N_cols
    q_row = stats.hypergeom.ppf(1.0 - delta_D / lines, N, k, N_cols)
    q_col = stats.hypergeom.ppf(1.0 - delta_D / lines, N, k, N_rows)
    return int(max(q_row, q_col))


def _exact_k_setup(spec: NetSpec, fractions, delta: float, fname: str, note: str, assume_law: bool = False):
    """Shared set-up of the exact-k bounds (§3.4 RR-mask, §9.5, §9.6): per-layer fractions, the delta split over the
    W events of every layer and the two count/norm events of each pruned layer (§3.8), and k_i = floor(q_i N_i)."""
    q, scalar = broadcast_fractions(spec, fractions)
    if q.ndim != 1:
        raise ProbPruneError(f"{fname} takes a scalar or one fraction per layer")
    notes = check_spec_for_apriori(spec, assume_law)
    pruned = q > 0
    n_ev = spec.depth + 2 * int(pruned.sum())
    de = delta / n_ev
    dE = np.where(pruned, de, 0.0)
    alloc = DeltaAllocation(delta, np.full(spec.depth, de), dE, dE.copy(), np.asarray(n_ev))
    notes.append(note)
    ks = [int(math.floor(qi * L.N)) for L, qi in zip(spec.layers, q)]
    return q, scalar, notes, pruned, alloc, ks


def exact_k_bound(spec: NetSpec, fractions, delta: float, law: str = "uniform", statement: str = "best",
                  assume_law: bool = False) -> BoundResult:
    """A-priori bound for R-exact (exactly k_i = floor(p_i N_i) entries pruned, uniformly at random) [D here]:
    RR-mask (THEORY §3.4) with D_i replaced by its hypergeometric (1 - delta_D) quantile; delta is split equally
    over the W, E and D events (three per pruned layer). statement "best" (default) also takes, per term, the §9
    bounds (S9.4 Schur with hypergeometric line counts, S9.5 masked moments) at the same delta_E + delta_D;
    "sharp" takes only those; the Gaussian law has no RR-mask candidate (§9.5 covers it)."""
    delta = check_delta(delta)
    if law not in LAWS:
        raise ProbPruneError(f"unknown weight law {law!r}; use one of {', '.join(LAWS)}")
    if statement not in STATEMENT_MODES:
        raise ProbPruneError(f"unknown statement {statement!r}; use one of {', '.join(STATEMENT_MODES)}")
    rr_mask = law in registry.BOUNDS["RR-mask"].laws  # the §3.4 RR-mask statement is proved for this law
    if not rr_mask and statement == "bernstein":
        raise ProbPruneError("exact-k random pruning under the Gaussian law has no matrix-Bernstein (RR-mask) bound; "
                             "use statement='best' or 'sharp' (THEORY §9.5)")
    q, scalar, notes, pruned, alloc, ks = _exact_k_setup(
        spec, fractions, delta, "exact_k_bound",
        "R-exact: exactly floor(p_i N_i) entries pruned per layer, uniformly at random, independent of W", assume_law)
    de = float(alloc.delta_W[0])  # the per-event failure probability
    cB, cE = [], []
    if statement in ("bernstein", "best") and rr_mask:
        D = np.array([exact_k_line_count_bound(L.d_out, L.d_in, k, de) if k > 0 else 0
                      for L, k in zip(spec.layers, ks)], float)
        old = _line_count_bound(spec, D, alloc, "random_exact", q, "", notes)
        cB.append(("bernstein", old.B))
        cE.append(("bernstein", old.eta))
    if statement in ("sharp", "best"):
        cB.append(_sharp_B(spec, alloc.delta_W, law))
        cE.append(_exact_terms(spec, ks, de, law, "random_exact"))
    B, B_src = _pick(cB, q.shape)
    eta, eta_src = _pick(cE, q.shape)
    base = "THEORY.md §3.4 RR-mask + hypergeometric line counts [D here]"
    st = {"bernstein": base, "sharp": "THEORY.md §9.4-9.5 exact-k random (Schur with hypergeometric counts, masked "
          "moments, Bernoulli given its count)"}.get(
        statement, f"THEORY.md §9.7 best of {{{base}; §9.4-9.5}} per term" if rr_mask
        else "THEORY.md §9.4-9.5 exact-k random, Gaussian law (no §3.4 statement applies)")
    eps = float(product_form(B, eta, spec.Lip))
    eps_source = "A-star"
    if statement != "bernstein" and _is_linear_fcn(spec):
        from probprune.theory.sharp import product_moment_bound

        # S9.8 with S9.5(b): the exact-k masks are Bernoulli(k_i/N_i) masks conditioned on their counts
        qe = np.array([k / L.N for L, k in zip(spec.layers, ks)])
        pmf = float(np.prod([stats.binom.pmf(k, L.N, k / L.N) for L, k in zip(spec.layers, ks)]))
        x, _ = product_moment_bound(spec.widths, [L.half_width for L in spec.layers], qe, delta * pmf, "random", law)
        if float(x) < eps:
            eps, eps_source = float(x), "product-moment"
        notes.append("identity activations: eps also bounded by S9.8 at delta x P(Bernoulli counts = k_i) (§9.5(b))")
    if statement != "bernstein":
        eps, eps_source = _second_moment_min(spec, eps, eps_source, "random_exact", law, delta, notes, ks=ks)
    if statement != "bernstein":
        eps, eps_source = _exact_k_fourth_min(spec, eps, eps_source, "random_exact", law, delta, notes, ks)
    if statement != "bernstein" and _is_linear_fcn(spec):
        from probprune.theory.trace_moments import trace_moment_bound

        # S9.13 with S9.5(b): the exact-k masks are Bernoulli(k_i/N_i) masks conditioned on their counts
        qe = np.array([k / L.N for L, k in zip(spec.layers, ks)])
        pmf = float(np.prod([stats.binom.pmf(k, L.N, k / L.N) for L, k in zip(spec.layers, ks)]))
        if pmf > 0:
            xt, _ = trace_moment_bound(spec.widths, [L.half_width for L in spec.layers], qe, delta * pmf, "random", law)
            if float(xt) < eps:
                eps, eps_source = float(xt), "trace-moment"
            notes.append("identity activations: eps also bounded by S9.13 at delta x P(Bernoulli counts = k_i) "
                         "(THEORY §9.13 with §9.5(b))")
    return BoundResult(eps, "random_exact", law, delta, q, B, eta, spec.Lip, alloc,
                       st, assumptions=tuple(notes), paper_hypotheses_violated=tuple(spec.paper_hypotheses()),
                       layer_names=tuple(L.name for L in spec.layers), B_source=B_src, eta_source=eta_src,
                       eps_source=eps_source)


def exact_k_magnitude_bound(spec: NetSpec, fractions, delta: float, law: str = "uniform",
                            statement: str = "best", assume_law: bool = False) -> BoundResult:
    """A-priori bound for exact-k magnitude pruning (the floor(q_i N_i) smallest |w| of each layer) [D, THEORY §9.6]:
    the k-th order statistic is bracketed by binomial (Beta) quantiles; the error is bounded by Schur line sums of the
    threshold error at the upper bracket (monotone in the support) or by the moment bound of the lower-bracket
    threshold error plus a Schur bound of the shell. delta is split equally over the W events and two per pruned
    layer (E and the bracket's share, S9.6); there is no §3.4 statement for it, so "bernstein" is refused."""
    delta = check_delta(delta)
    if law not in LAWS:
        raise ProbPruneError(f"unknown weight law {law!r}; use one of {', '.join(LAWS)}")
    if statement == "bernstein":
        raise ProbPruneError("exact-k magnitude pruning has no matrix-Bernstein bound (||.|| is not monotone under "
                             "entrywise domination); use statement='best' or 'sharp' (THEORY §9.6)")
    if statement not in STATEMENT_MODES:
        raise ProbPruneError(f"unknown statement {statement!r}; use one of {', '.join(STATEMENT_MODES)}")
    q, scalar, notes, pruned, alloc, ks = _exact_k_setup(
        spec, fractions, delta, "exact_k_magnitude_bound",
        "exact-k magnitude: exactly floor(q_i N_i) smallest |w| pruned per layer (ties have probability 0)",
        assume_law)
    de = float(alloc.delta_W[0])  # the per-event failure probability
    cB = [_sharp_B(spec, alloc.delta_W, law)]
    if statement == "best":
        cB.append(("bernstein", norm_bound(spec, alloc.delta_W, law)))
    B, B_src = _pick(cB, q.shape)
    eta, eta_src = _pick([_exact_terms(spec, ks, de, law, "magnitude_exact")], q.shape)
    eps = float(product_form(B, eta, spec.Lip))
    eps_source = "A-star"
    if _is_linear_fcn(spec) and any(k < L.N for k, L in zip(ks, spec.layers) if k > 0):
        from probprune.theory.sharp import exact_k_magnitude_product_bound

        if all(k < L.N for k, L in zip(ks, spec.layers)):
            x, _ = exact_k_magnitude_product_bound(spec.widths, [L.half_width for L in spec.layers], ks, delta, law)
            if float(x) < eps:
                eps, eps_source = float(x), "product-moment"
            notes.append("identity activations: eps also bounded by S9.8b (THEORY §9.8b: S9.8 given the order "
                         "statistics, full delta); the smaller is reported")
    eps, eps_source = _second_moment_min(spec, eps, eps_source, "magnitude_exact", law, delta, notes, ks=ks)
    if registry.LAWS[law].abs_uniform:  # S9.12(K) for exact-k magnitude needs |w|/a ~ U[0, 1]
        eps, eps_source = _exact_k_fourth_min(spec, eps, eps_source, "magnitude_exact", law, delta, notes, ks)
    return BoundResult(eps, "magnitude_exact", law, delta, q, B, eta, spec.Lip,
                       alloc, "THEORY.md §9.6 exact-k magnitude (order-statistic bracket, Schur / moment + shell)"
                       + ("; §9.8b product moment" if eps_source == "product-moment" else ""),
                       assumptions=tuple(notes), paper_hypotheses_violated=tuple(spec.paper_hypotheses()),
                       layer_names=tuple(L.name for L in spec.layers), B_source=B_src, eta_source=eta_src,
                       eps_source=eps_source)


def _sharp_B(spec: NetSpec, delta_W, law: str):
    from probprune.theory import sharp

    dW = np.broadcast_to(np.asarray(delta_W, float), (spec.depth,))
    vals, names = np.empty(spec.depth), np.empty(spec.depth, dtype=object)
    for i, L in enumerate(spec.layers):
        v, nm = sharp.full_norm_bound(L.d_out, L.d_in, L.half_width, dW[i], law)
        vals[i], names[i] = math.sqrt(L.r) * float(v), nm
    return ("sharp", (vals, names))


def _exact_terms(spec: NetSpec, ks, de: float, law: str, method: str):
    """eta_i for exact-k pruning (``method``: an exact-k method) at failure probability 2 de per pruned layer (its E
    and count/bracket events)."""
    from probprune.theory import sharp

    fn = sharp.exact_k_random_bound if registry.METHODS[method].exact_k_random else sharp.exact_k_magnitude_bound
    vals, names = np.zeros(spec.depth), np.full(spec.depth, "zero", dtype=object)
    for i, (L, k) in enumerate(zip(spec.layers, ks)):
        if k > 0:
            v, nm = fn(L.d_out, L.d_in, law, k, L.half_width, 2 * de)
            vals[i], names[i] = math.sqrt(L.r) * float(v), nm
    return ("sharp", (vals, names))


# --------------------------------------------------------------------------------------------- paper shape
@dataclass(frozen=True)
class PaperWidthCondition:
    """Theorem 1's width condition with user-supplied constants [PAPER-R shape, constants NR] (THEORY §2.2)."""

    d_min: float
    terms: dict
    eps: float
    delta: float
    alpha: float
    provenance: str = "[PAPER-R] shape restated by Sahu et al.; C1..C5 are unknown and supplied by the user"

    def satisfied_by(self, d: float) -> bool:
        return d >= self.d_min


def paper_width_condition(eps, delta, alpha, C1, C2, C3, C4, C5) -> PaperWidthCondition:
    """d >= max(C1^(1/alpha), (C2/eps)^(1/alpha), (C3/delta)^(1/alpha), C4 + C5 log(1/delta)) (THEORY §2.2)."""
    from probprune.core.errors import check_eps, check_positive

    eps = float(check_eps(eps))
    delta = check_delta(delta)
    alpha = float(alpha)
    if not (0.0 < alpha < 1.0):
        raise ProbPruneError(f"alpha must be in (0, 1), got {alpha!r}")
    for nm, c in (("C1", C1), ("C2", C2), ("C3", C3), ("C5", C5)):
        check_positive(c, nm)
    terms = {
        "C1^(1/alpha)": C1 ** (1 / alpha),
        "(C2/eps)^(1/alpha)": (C2 / eps) ** (1 / alpha),
        "(C3/delta)^(1/alpha)": (C3 / delta) ** (1 / alpha),
        "C4 + C5 log(1/delta)": C4 + C5 * math.log(1 / delta),
    }
    return PaperWidthCondition(max(terms.values()), terms, eps, delta, alpha)
