"""Registries of the package's strategies: pruning methods, weight laws, bounds (open_lth-style).

One spelling per strategy across API, CLI and JSON: every entry has one canonical name; accepted aliases are mapped
to it once, by :func:`canonical`, which raises :class:`~probprune.core.errors.ProbPruneError` listing the choices for an
unknown name. Modules validate names through this file instead of keeping their own tuples of strings.

* ``METHODS``: pruning methods, each with the sampling model it implies (THEORY §1.5, §1.6, §5) and the
  statements that cover it (a-priori theorem, per-network certificate); a method's behaviour is that of its
  ``FAMILIES`` entry (what ranks the weights: the score and its cut-off) and its ``SAMPLINGS`` entry (how the pruned
  set is drawn given the score).
  A method also carries what the statements ask of it: ``entry`` (its i.i.d. entry model), ``exact_of`` (the
  i.i.d. rule it is the exact-k version of), ``second_moments`` (table S, §9.11), and the derived ``is_threshold``,
  ``max_fraction``, ``exact_variant``, ``exact_k_random`` / ``exact_k_magnitude``.
* ``LAWS``: weight laws of the target network (THEORY §1.3, §3.12), each with its formulas, once: the threshold of a
  fraction, the even-moment ratios of table M (§9.1), the line-sum statistics of table L (§9.4), the second and even
  moments of tables S and F (§9.11-9.13) (:class:`UniformLaw`, :class:`GaussianLaw`).
* ``ENTRY_MODELS``: the law of one pruned or kept entry for the i.i.d. rules ("full", "magnitude", "random",
  "random_rescaled", "kept_*"), combining the law's moments (THEORY §9.1 table M). The §9 modules, the a-priori and
  calibrated budgets and the API ask these objects instead of comparing names to string literals
  (tests/test_registry_th.py counts what is left).
* ``BOUNDS``: statement ids of docs/THEORY.md (the ids of ``proofs_check.statements``) -> the function that
  implements the statement, as a ``"module:function"`` target resolved lazily (no import cycles).
* ``ACTIVATIONS``: the activation names of the one activation table, ``probprune.net.templates.ACTIVATIONS``.
* ``BUDGET_RULES``: the budget rules of THEORY §3.9b ("exact_k", "threshold", "bernoulli") -> their sampling model
  (what a budget's ``max_prunable`` counts and which per-layer field it reports); ``LAYER_KINDS``: weight-layer kinds
  (``dense`` or a convolution); :func:`cert_r_method`: Cert-R's ``sampling`` argument -> its method; ``BASE_METHODS``:
  the i.i.d. rules with an exact-k variant (magnitude, random). Outside this file and the CLI's parsing no module
  compares a strategy name to a spelled string (tests/test_registry_switches_ub.py runs the issue-22 grep).
"""
from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable, Mapping

import numpy as np

from probprune.core.errors import ProbPruneError


# --------------------------------------------------------------------------------------------- entries
def _magnitude_score(w, u):
    return w.abs()


def _random_score(w, u):
    return u


def _magnitude_cutoff(fraction: float, a: float, law: str) -> float:
    return LAWS[law].magnitude_threshold(fraction, a)


def _random_cutoff(fraction: float, a: float, law: str) -> float:
    return fraction


@dataclass(frozen=True)
class MethodFamily:
    """What ranks the weights of a pruning method (THEORY §1.5, §1.6, §5). For the data-free families of the Monte
    Carlo engine: ``batched_score(w, u)`` (stacked weights and their uniform draws -> the score; pruned = low score)
    and ``cutoff(fraction, a, law)`` (the score below which an entry is pruned by a threshold / Bernoulli sampling
    model: tau(q) a_i under the weight law for |w|, §1.5; p for u, §1.6). ``random``: the mask is independent of W
    (Cert-R applies). ``error_exponent``: the exponent of the fraction in the a-priori error's leading term (THEORY
    §3.4: q^{3/2} magnitude, p^{1/2} random), drawn as the theory line of the figures. ``fraction_label``: how the
    fraction is called on a figure axis."""

    name: str
    description: str
    random: bool = False
    batched_score: Callable | None = None
    cutoff: Callable | None = None
    error_exponent: float | None = None
    fraction_label: str = "pruned fraction q"


def _below_cutoff(score, cutoff: float, fraction: float):
    return score < cutoff


def _exact_k(score, cutoff: float, fraction: float):
    import math

    from probprune.pruning.sampling import exact_k_prune_mask

    n = score.shape[0]
    k = int(math.floor(fraction * (score.numel() // n)))
    return exact_k_prune_mask(score.reshape(n, -1), k).reshape(score.shape)


@dataclass(frozen=True)
class SamplingModel:
    """How the pruned set is drawn given the scores (THEORY §1.5, §1.6): ``batched_mask(score, cutoff, fraction)``
    is the prune mask (True = pruned) for stacked scores (n, ...): every score below the family's cut-off
    ("threshold", "bernoulli": u < p), or exactly floor(q N_i) lowest scores per network ("exact"; ties by flat
    index, :func:`probprune.pruning.sampling.exact_k_prune_mask`). ``counted``: a count is rounded (the rounding
    option applies); ``fraction_given``: the fraction is an input (False for "threshold": the threshold decides).
    ``no_rounding``: why the rounding option does not apply (None where it does). ``rule``: the name of the budget
    rule (THEORY §3.9b) whose guarantee is about this sampling model ("exact_k", "threshold", "bernoulli";
    :data:`BUDGET_RULES`), and ``budget_field``: the per-layer field a budget of that rule reports (the count
    ``exact_k``, the ``threshold`` t_i, the probability ``bernoulli_p``)."""

    name: str
    description: str
    batched_mask: Callable
    counted: bool = False
    fraction_given: bool = True
    no_rounding: str | None = None
    rule: str = ""
    budget_field: str = ""


@dataclass(frozen=True)
class PruningMethod:
    """A pruning method and the sampling model it implies.

    ``family``: what ranks the weights (magnitude | random | snip | grad | structured). ``sampling``: how the
    pruned set is drawn given the ranking: "threshold" (every |w| < tau_i = q_i a_i, count Binomial(N_i, q_i);
    THEORY §1.5), "exact" (exactly k_i = floor(q_i N_i) entries; ties by flat index, see
    :func:`probprune.pruning.sampling.exact_k_prune_mask`), "bernoulli" (each entry independently with probability
    p_i, independent of W; §1.6 R-Bern). ``rescaled``: kept weights multiplied by 1/(1 - p_i) (§1.6).
    ``apriori``: statement id of the a-priori theorem covering it under the paper's weight law (None: none).
    ``certificate``: per-network certificate statement (Cert-D holds for every mask; Cert-R for masks drawn
    independently of W). ``cert_r_sampling``: the ``sampling`` argument of
    :func:`probprune.certificates.lemma.certify_random` for this method (None when Cert-R does not apply).
    """

    name: str
    family: str
    sampling: str
    theory: str
    description: str
    rescaled: bool = False
    apriori: str | None = None
    certificate: str = "cert-D"
    cert_r_sampling: str | None = None
    needs_data: bool = False
    aliases: tuple[str, ...] = ()
    entry: str | None = None
    exact_of: str | None = None
    second_moments: Callable | None = None
    #: the certificate a certified budget of a given network inverts for this method (THEORY §3.9, §3.11):
    #: "lemma-a" (Cert-D: the k smallest |w|) or "cert-r" (Cert-R over the Bernoulli mask); None: not supported
    budget_certificate: str | None = None

    @property
    def family_model(self) -> MethodFamily:
        """The family's behaviour (:data:`FAMILIES`)."""
        return FAMILIES[self.family]

    @property
    def sampling_model(self) -> SamplingModel:
        """The sampling model's behaviour (:data:`SAMPLINGS`)."""
        return SAMPLINGS[self.sampling]

    @property
    def random_mask(self) -> bool:
        """The mask is drawn independently of the weights (R-Bern, R-Bern-rescaled, R-exact): Cert-R applies, and a
        measured statement about it is one over seeded draws."""
        return self.family_model.random

    @property
    def is_threshold(self) -> bool:
        """The pruned set is every |w| below a threshold (THEORY §1.5 threshold form): the budget reports the
        threshold t_i, not a Bernoulli probability."""
        return not self.sampling_model.fraction_given

    @property
    def entry_model(self) -> "EntryModel | None":
        """The law of one pruned entry for the rules that prune entries i.i.d. given the fraction (threshold
        magnitude, Bernoulli random, rescaled random; :data:`ENTRY_MODELS`); None for exact-k and data rules."""
        return None if self.entry is None else ENTRY_MODELS[self.entry]

    @property
    def max_fraction(self) -> float:
        """The largest fraction the a-priori / calibrated searches try: 1, or 1 - 1e-9 for a rescaled method (the
        factor 1/(1 - p) needs p < 1)."""
        return 1.0 - 1e-9 if self.rescaled else 1.0

    @property
    def exact_variant(self) -> "PruningMethod | None":
        """The exact-k method of this i.i.d. rule (magnitude -> magnitude_exact, random -> random_exact;
        THEORY §9.5-9.6), None when there is none."""
        return next((m for m in METHODS.values() if m.exact_of == self.name), None)

    @property
    def exact_k_random(self) -> bool:
        """An exact-k mask drawn independently of W (R-exact: a uniform k-subset; THEORY §1.6, §9.5)."""
        return self.exact_of is not None and self.random_mask

    @property
    def exact_k_magnitude(self) -> bool:
        """The k smallest |w| of the layer (exact-k magnitude, THEORY §1.5, §9.6)."""
        return self.exact_of is not None and not self.random_mask

    def entry_second_moments(self, law: "WeightLaw", a, q=None, k=None, N=None):
        """(E w^2, E w what, E what^2) of one kernel entry under ``law`` (THEORY §9.11 table S); ``q`` for the
        threshold / Bernoulli rules, ``k`` and ``N`` for the exact-k rules. ProbPruneError where S9.11 does not cover
        this method."""
        if self.second_moments is None:
            raise ProbPruneError(f"S9.11 does not cover the pruning rule {self.name!r}")
        a = np.asarray(a, float)
        return self.second_moments(law, a, a * a * law.var_factor, q, k, N)

    def prune(self, model, fraction, **kw):
        """Prune a torch module with this method: :func:`probprune.pruning.prune` (the family and sampling model
        fixed by this entry)."""
        prune = getattr(importlib.import_module("probprune.pruning.api"), "prune")  # resolved lazily (no cycle)
        return prune(model, self.name, fraction, **kw)

    def prune_batched(self, w, u, fraction: float, half_width: float, law: str = "uniform"):
        """The prune mask (bool torch tensor, True = pruned) for stacked weights ``w`` (n, ...) of one layer and
        uniform scores ``u`` (same shape; the random masks' draws, nested in the fraction): threshold form
        |w| < tau(q) a_i under the weight law (THEORY §1.5), Bernoulli u < p (§1.6), or exact-k of |w| / u (ties by
        flat index, :func:`probprune.pruning.sampling.exact_k_prune_mask`). Pruned weights: ``where(P, 0, w)``, then
        :meth:`rescale`. The family gives the score and cut-off, the sampling model the rule."""
        fam = self.family_model
        if fam.batched_score is None:
            raise ProbPruneError(f"method {self.name!r} has no batched data-free mask (use probprune.pruning.prune)")
        return self.sampling_model.batched_mask(fam.batched_score(w, u), fam.cutoff(fraction, half_width, law),
                                                fraction)

    def rescale(self, fraction: float) -> float:
        """The factor on kept weights: 1/(1 - p) for rescaled methods (inverted dropout, §1.6), else 1."""
        return 1.0 / (1.0 - fraction) if self.rescaled else 1.0


def _uniform_quantile(q: float) -> float:
    return q


def _uniform_sample(rng, a: float, shape):
    return rng.uniform(-a, a, size=shape)


def _normal_sample(rng, a: float, shape):
    return rng.normal(0.0, a, size=shape)


def _gaussian_quantile(q: float) -> float:
    import math

    from scipy.stats import norm

    return float(norm.ppf((1.0 + q) / 2.0)) if q < 1 else math.inf


def log_double_factorial_odd(k):
    """log (2k-1)!! = log (2k)! - k log 2 - log k!  (k >= 0; (-1)!! = 1); arrays broadcast."""
    from scipy import special

    k = np.asarray(k, float)
    return special.gammaln(2 * k + 1) - k * np.log(2.0) - special.gammaln(k + 1)


@dataclass(frozen=True)
class WeightLaw:
    """A weight law of the target network: U[-a_i, a_i] or N(0, s_i^2) with s_i = a_i (THEORY §1.3, §3.12), with its
    sampler (numpy ``Generator`` method and how ``a`` enters it), its second moment E w^2 = ``var_factor`` a^2, and
    the |w|-quantile of a fraction q (P(|w| < c a) = q: c = q uniform, Phi^-1((1 + q)/2) Gaussian).

    The law's moments live here, once (subclasses :class:`UniformLaw`, :class:`GaussianLaw`): the threshold of a
    fraction (:meth:`threshold`), the even-moment ratios of table M of THEORY §9.1 (:meth:`log_base_ratio`,
    :meth:`log_truncated_ratio`, :meth:`log_tail_ratio`), the line-sum statistics of table L (§9.4), the second
    moments of table S (§9.11) and the even moments of table F (§9.12-9.13). The pruning rules combine them
    (:data:`ENTRY_MODELS`, :attr:`PruningMethod.second_moments`). ``threshold_text``: how a budget names the
    threshold; ``abs_uniform``: |w|/a is U[0, 1] (closed-form order statistics, §9.12(K)); ``full_tail``: the §9
    candidate name of the full-matrix tail bound besides S9.1 (S9.3 "lipschitz" or S9.2 "gauss-full"). ``bounded``:
    the entries are a.s. bounded by a_i (the matrix-Bernstein range of a Bernoulli-pruned entry needs no truncation
    event, THEORY §3.4 vs §3.12); ``iid_text``: how the assumptions name the law and its scale. The matrix-Bernstein
    terms of Theorems RM/RR/RR' (§3.4) and their Gaussian analogue (§3.12): :meth:`bernstein_norm_bound` (B_i) and
    the entry models' :attr:`EntryModel.bernstein` (the variance and range of eta_i)."""

    name: str
    theory: str
    description: str
    aliases: tuple[str, ...] = ()
    sampler: Callable = _uniform_sample
    var_factor: float = 1.0 / 3.0
    quantile: Callable[[float], float] = _uniform_quantile
    threshold_text: str = "threshold t_i = q_i a_i"
    abs_uniform: bool = True
    full_tail: str = "lipschitz"
    bounded: bool = True
    iid_text: str = "U[-a_i, a_i], a"

    def sample(self, rng, a: float, shape):
        """i.i.d. draws of this law with scale ``a`` (half-width / standard deviation) from a numpy Generator."""
        return self.sampler(rng, a, shape)

    def second_moment(self, a: float) -> float:
        return self.var_factor * a * a

    def magnitude_threshold(self, q: float, a: float) -> float:
        """tau with P(|w| < tau) = q for w of this law with scale a (magnitude pruning's threshold form, §1.5)."""
        c = self.quantile(q)
        return c * a if math.isfinite(c) else c

    # the law's formulas (THEORY §1.5, §9.1 table M, §9.4 table L, §9.11 table S, §9.12 table F); arrays broadcast
    def threshold(self, q, a):
        """The magnitude threshold of fraction q, vectorised: q a (uniform, §1.5), Phi^-1((1+q)/2) s (Gaussian)."""
        raise NotImplementedError

    def log_base_ratio(self, k):
        """log rho_k of the full entry w (table M): log(E w^(2k) / (a^(2k) (2k-1)!!)), k broadcast."""
        raise NotImplementedError

    def log_truncated_ratio(self, q, k):
        """log rho_k of w 1{|w| < tau(q)} (the threshold magnitude pruned entry, table M)."""
        raise NotImplementedError

    def log_tail_ratio(self, q, k):
        """log rho_k of w 1{|w| >= tau(q)} (the threshold magnitude kept entry, table M)."""
        raise NotImplementedError

    def truncated_abs_stats(self, q, a):
        """Table L (§9.4) of e = w 1{|w| < tau(q)}: (E|e|, E e^2, R, R_nz, m_nz, bounded)."""
        raise NotImplementedError

    def bernoulli_abs_stats(self, q, a):
        """Table L (§9.4) of e = w b, b ~ Bern(q)."""
        raise NotImplementedError

    def rescaled_abs_stats(self, q, a):
        """Table L (§9.4) of e = w (b - (1 - b) q/(1 - q))."""
        raise NotImplementedError

    def truncated_second_moment(self, q, a):
        """E[w^2 1{|w| < tau(q)}] (table S, §9.11)."""
        raise NotImplementedError

    def even_moment(self, j: int, a):
        """E w^(2j) (table F, §9.12-9.13)."""
        raise NotImplementedError

    # the matrix-Bernstein terms of THEORY §3.4 (uniform) and §3.12 (Gaussian); arrays broadcast (layer axis last)
    def bernstein_norm_bound(self, m, n, a, sr, d_out, d_in, dW):
        """B_i with ||W_i|| <= B_i w.p. >= 1 - dW (x sqrt(r_i) = ``sr`` for conv layers; §3.4, §3.12)."""
        raise NotImplementedError

    def truncated_bernstein(self, m, q, a):
        """(variance sum s2, range R) of the threshold magnitude error matrix (Theorem RM, §3.4; §3.12)."""
        raise NotImplementedError

    def bernoulli_bernstein(self, m, q, a, N, pruned, delta_T):
        """(s2, R) of the R-Bern error matrix (Theorem RR, §3.4; §3.12 with the truncation event delta_T)."""
        raise NotImplementedError

    def rescaled_bernstein(self, m, q, a, N, pruned, delta_T):
        """(s2, R) of the R-Bern-rescaled error matrix (Theorem RR', §3.4; §3.12), p < 1."""
        raise NotImplementedError

    def truncated_even_moment(self, j: int, q, w):
        """E[w^(2j) 1{|w| < tau(q)}] given ``w`` = E w^(2j) (table F)."""
        raise NotImplementedError

    def position_moments(self, a: float) -> tuple[float, float]:
        """(E w^2, E w^4) of one entry (§9.12(K))."""
        raise NotImplementedError

    def exact_k_pruned_second_moment(self, N: int, k: int, a) -> float:
        """E e_theta^2 for one position of a layer of N i.i.d. entries pruned by exact-k magnitude (the k smallest
        |w|; THEORY §9.11 table S): (1/N) E sum_(j<=k) |w|_(j)^2; 0 for k <= 0, E w^2 for k >= N."""
        N, k = int(N), int(k)
        if k <= 0:
            return 0.0
        if k >= N:
            return float(a) ** 2 * self.var_factor
        return self._exact_k_pruned_second_moment(N, k, a)

    def _exact_k_pruned_second_moment(self, N: int, k: int, a) -> float:
        raise NotImplementedError


@dataclass(frozen=True)
class UniformLaw(WeightLaw):
    """w ~ U[-a, a] (THEORY §1.3): E w^(2k) = a^(2k)/(2k+1), |w| = a u with u ~ U[0, 1]."""

    def threshold(self, q, a):
        return q * a

    def log_base_ratio(self, k):
        return -(log_double_factorial_odd(k + 1))  # E w^(2k)/(a^(2k) (2k-1)!!) = 1/(2k+1)!!

    def log_truncated_ratio(self, q, k):
        return self.log_base_ratio(k) + (2 * k + 1) * np.log(q)

    def log_tail_ratio(self, q, k):
        return self.log_base_ratio(k) + np.log1p(-np.power(q, 2 * k + 1))

    def truncated_abs_stats(self, q, a):
        return q * q * a / 2, q**3 * a * a / 3, q * a, q * a, q * a / 2, True

    def bernoulli_abs_stats(self, q, a):
        return q * a / 2, q * a * a / 3, a + 0 * q, a + 0 * q, a / 2 + 0 * q, True

    def rescaled_abs_stats(self, q, a):
        r = q / (1 - q)
        return q * a, (q + q * q / (1 - q)) * a * a / 3, a * np.maximum(1.0, r), None, None, True

    def truncated_second_moment(self, q, a):
        return a * a * q**3 / 3.0

    def even_moment(self, j: int, a):
        return a ** (2 * j) / (2 * j + 1)

    def truncated_even_moment(self, j: int, q, w):
        return w * q ** (2 * j + 1)

    def position_moments(self, a: float) -> tuple[float, float]:
        return a * a / 3.0, a**4 / 5.0

    def _exact_k_pruned_second_moment(self, N: int, k: int, a) -> float:
        # E u_(j)^2 = j(j+1)/((N+1)(N+2)): a^2 k(k+1)(k+2) / (3 N(N+1)(N+2))
        return float(a) ** 2 * k * (k + 1.0) * (k + 2.0) / (3.0 * N * (N + 1.0) * (N + 2.0))

    def bernstein_norm_bound(self, m, n, a, sr, d_out, d_in, dW):
        from probprune.theory.bernstein import beta

        return sr * beta(m * a * a / 3.0, a, np.log(n / dW))  # beta(m a^2/3, a, ln(n/delta_W)) (§3.4)

    def truncated_bernstein(self, m, q, a):
        return m * q**3 * a * a / 3.0, q * a  # RM: beta(m q^3 a^2/3, q a, lam)

    def bernoulli_bernstein(self, m, q, a, N, pruned, delta_T):
        return m * q * a * a / 3.0, np.broadcast_to(a, q.shape)  # RR: beta(m p a^2/3, a, lam)

    def rescaled_bernstein(self, m, q, a, N, pruned, delta_T):
        # RR': beta(m p a^2/(3(1-p)), a max(1, p/(1-p)), lam)
        return m * q * a * a / (3.0 * (1.0 - q)), a * np.maximum(1.0, q / (1.0 - q))


def _gaussian_c(q):
    from scipy import stats

    return stats.norm.ppf((1.0 + q) / 2.0)


def gaussian_g(c):
    """E[w^2 1{|w| < c s}]/s^2 for w ~ N(0, s^2): g(c) = 2 Phi(c) - 1 - 2 c phi(c) (THEORY §3.12 [D]); g(inf) = 1.
    (``probprune.theory.apriori.gaussian_g`` is this function.)"""
    from scipy import stats

    c = np.asarray(c, float)
    with np.errstate(invalid="ignore"):
        out = 2.0 * stats.norm.cdf(c) - 1.0 - 2.0 * c * stats.norm.pdf(c)
    return np.where(np.isinf(c), 1.0, out)


@dataclass(frozen=True)
class GaussianLaw(WeightLaw):
    """w ~ N(0, s^2), s = a (THEORY §3.12): E w^(2k) = (2k-1)!! s^(2k); E[g^(2k) 1{|g| < c}] = (2k-1)!!
    P(chi2_(2k+1) < c^2) with 2 Phi(c) - 1 = q."""

    def threshold(self, q, a):
        return _gaussian_c(q) * a

    def log_base_ratio(self, k):
        return 0.0 * k

    def log_truncated_ratio(self, q, k):
        from scipy import stats

        c2 = _gaussian_c(q) ** 2
        return np.log(stats.chi2.cdf(c2, 2 * k + 1))  # E[g^(2k) 1{|g|<c}] = (2k-1)!! P(chi2_(2k+1) < c^2)

    def log_tail_ratio(self, q, k):
        from scipy import stats

        c2 = _gaussian_c(q) ** 2
        return np.log(stats.chi2.sf(c2, 2 * k + 1))

    def truncated_abs_stats(self, q, a):
        from scipy import stats

        c = stats.norm.ppf((1 + q) / 2)
        ma = a * np.sqrt(2 / np.pi) * (1 - np.exp(-c * c / 2))
        with np.errstate(invalid="ignore"):
            sec = a * a * np.where(np.isinf(c), 1.0, 2 * stats.norm.cdf(c) - 1 - 2 * c * stats.norm.pdf(c))
        return ma, sec, c * a, c * a, ma / q, True

    def bernoulli_abs_stats(self, q, a):
        return None, None, None, None, a * np.sqrt(2 / np.pi) + 0 * q, False

    def rescaled_abs_stats(self, q, a):
        return None, None, None, None, None, False

    def truncated_second_moment(self, q, a):
        from scipy import stats

        c = _gaussian_c(q)
        with np.errstate(invalid="ignore"):
            g = np.where(np.isinf(c), 1.0, 2 * stats.norm.cdf(c) - 1 - 2 * c * stats.norm.pdf(c))
        return a * a * g

    def even_moment(self, j: int, a):
        return float(np.prod(np.arange(1, 2 * j, 2))) * a ** (2 * j)

    def truncated_even_moment(self, j: int, q, w):
        from scipy import stats

        return w * stats.chi2.cdf(_gaussian_c(q) ** 2, 2 * j + 1)

    def position_moments(self, a: float) -> tuple[float, float]:
        return a * a, 3.0 * a**4

    def _exact_k_pruned_second_moment(self, N: int, k: int, a) -> float:
        # int_0^1 F^-1(u)^2 P(Beta(k, N-k) > u) du, F^-1(u) = a Phi^-1((1+u)/2): position theta is pruned iff fewer
        # than k of the other N - 1 are smaller
        from scipy import integrate, stats

        f = lambda u: stats.norm.ppf((1.0 + u) / 2.0) ** 2 * stats.beta.sf(u, k, N - k)  # noqa: E731
        hi = float(stats.beta.isf(1e-14, k, N - k))
        pts = [float(stats.beta.ppf(x, k, N - k)) for x in (0.01, 0.5, 0.99)]
        v, _ = integrate.quad(f, 0.0, hi, points=pts, limit=400, epsabs=0.0, epsrel=1e-10)
        return float(a) ** 2 * v

    def bernstein_norm_bound(self, m, n, a, sr, d_out, d_in, dW):
        return sr * a * (np.sqrt(d_out) + np.sqrt(d_in) + np.sqrt(2.0 * np.log(2.0 / dW)))  # §3.12

    def truncated_bernstein(self, m, q, a):
        from scipy import stats

        c = stats.norm.ppf((1.0 + q) / 2.0)
        return m * a * a * gaussian_g(c), c * a  # beta(m s^2 g(c), c s, lam)

    def bernoulli_bernstein(self, m, q, a, N, pruned, delta_T):
        dT = np.asarray(delta_T, float)
        u = np.sqrt(2.0 * np.log(N / np.where(pruned, dT, 1.0)))  # |w| <= s u on the truncation event (§3.12)
        return m * q * a * a, a * u  # beta(m p s^2, s u, lam)

    def rescaled_bernstein(self, m, q, a, N, pruned, delta_T):
        s2, R = self.bernoulli_bernstein(m, q, a, N, pruned, delta_T)
        return s2 / (1.0 - q), R * np.maximum(1.0, q / (1.0 - q))  # variance and range / (1 - p)


@dataclass(frozen=True)
class EntryModel:
    """The law of one entry e of a pruned (or kept) matrix for a rule that treats entries i.i.d. given the fraction
    (THEORY §9.1 table M, §9.4 table L, §9.12 table F): "full" (e = w), "magnitude" (w 1{|w| < tau(q)}), "random"
    (w b, b ~ Bern(q)), "random_rescaled" (w (b - (1 - b) q/(1 - q))), and the kept entries "kept_*". The law supplies
    the moments (:class:`WeightLaw`), the entry model says which: ``log_ratio(law, q, k)`` = log rho_k,
    ``abs_stats(law, q, a)`` = table L (None: no line-sum statistics), ``even_pruned(law, j, q, w)`` = E e^(2j) given
    w = E w^(2j) (None: not a pruned entry of table F), ``kept``: the entry model of the kept entries.
    ``bernstein(law, m, q, a, N, pruned, delta_T)``: (s2, R) of the pruned-entry error matrix for the matrix-Bernstein
    eta_i of Theorems RM/RR/RR' (THEORY §3.4) and §3.12 (None: no such theorem)."""

    name: str
    description: str
    log_ratio: Callable
    abs_stats: Callable | None = None
    even_pruned: Callable | None = None
    kept: str | None = None
    bernstein: Callable | None = None

    def log_moment_ratio(self, law: WeightLaw, q, k):
        return self.log_ratio(law, q, k)

    def line_stats(self, law: WeightLaw, q, a):
        if self.abs_stats is None:
            raise ProbPruneError(f"no Schur line-sum statistics for {self.name!r} under the {law.name!r} law")
        return self.abs_stats(law, q, a)


def _second_threshold(law, a, alpha, q, k, N):
    gamma = alpha - law.truncated_second_moment(np.asarray(q, float), a)
    return alpha, gamma, gamma


def _second_bernoulli(law, a, alpha, q, k, N):
    gamma = alpha * (1.0 - np.asarray(q, float))
    return alpha, gamma, gamma


def _second_rescaled(law, a, alpha, q, k, N):
    q = np.asarray(q, float)
    return alpha, alpha + 0.0 * q, alpha / (1.0 - q)


def _second_random_exact(law, a, alpha, q, k, N):
    gamma = alpha * (1.0 - int(k) / int(N))
    return alpha, gamma, gamma


def _second_magnitude_exact(law, a, alpha, q, k, N):
    gamma = alpha - law.exact_k_pruned_second_moment(int(N), int(k), float(a))
    return alpha, gamma, gamma


def _even_times_q(law, j, q, w):
    return w * q


@dataclass(frozen=True)
class Bound:
    """A statement of docs/THEORY.md and the function implementing it (``target`` = "module:function")."""

    name: str  # the statement id (proofs_check.statements)
    theory: str
    target: str
    kind: str  # "a-priori" | "certificate" | "lemma" | "lottery"
    description: str
    aliases: tuple[str, ...] = ()
    #: a matrix-Bernstein statement (THEORY §3.4/§3.12; statement mode "bernstein" of the a-priori bounds)
    bernstein: bool = False
    #: the weight laws the statement is proved for (a-priori statements)
    laws: tuple[str, ...] = ("uniform", "gaussian")

    @property
    def function(self) -> Callable:
        module, _, attr = self.target.partition(":")
        return getattr(importlib.import_module(module), attr)

    def evaluate(self, *args, **kwargs):
        """Evaluate the statement: its implementing function on these arguments (see its docstring for them)."""
        return self.function(*args, **kwargs)


# --------------------------------------------------------------------------------------------- tables
def _table(*entries) -> Mapping:
    return MappingProxyType({e.name: e for e in entries})


FAMILIES: Mapping[str, MethodFamily] = _table(
    MethodFamily("magnitude", "|w| ranks the weights (THEORY §1.5)", batched_score=_magnitude_score,
                 cutoff=_magnitude_cutoff, error_exponent=1.5),
    MethodFamily("random", "a uniform draw u per weight, independent of W (THEORY §1.6)", random=True,
                 batched_score=_random_score, cutoff=_random_cutoff, error_exponent=0.5,
                 fraction_label="prune probability p"),
    MethodFamily("snip", "|w dL/dw| on a data batch (THEORY §5)"),
    MethodFamily("grad", "gradient-magnitude scores on a data batch (THEORY §5)"),
    MethodFamily("structured", "the l1 / l2 norm of a neuron's / channel's weights (THEORY §5)"),
)

SAMPLINGS: Mapping[str, SamplingModel] = _table(
    SamplingModel("exact", "exactly floor(q_i N_i) lowest scores per layer (THEORY §1.5 exact-k, §1.6 R-exact)",
                  _exact_k, counted=True, rule="exact_k", budget_field="exact_k"),
    SamplingModel("bernoulli", "each entry independently with probability p_i (THEORY §1.6 R-Bern)", _below_cutoff,
                  no_rounding="each weight is kept independently; no count is rounded", rule="bernoulli",
                  budget_field="bernoulli_p"),
    SamplingModel("threshold", "every |w| < tau_i (THEORY §1.5 threshold form; count Binomial(N_i, q_i))",
                  _below_cutoff, fraction_given=False, no_rounding="every |w| < tau is pruned", rule="threshold",
                  budget_field="threshold"),
)

ENTRY_MODELS: Mapping[str, EntryModel] = _table(
    EntryModel("full", "e = w (the full matrix)", lambda law, q, k: law.log_base_ratio(k) + 0.0 * q),
    EntryModel("magnitude", "e = w 1{|w| < tau(q)} (threshold magnitude, THEORY §1.5)",
               lambda law, q, k: law.log_truncated_ratio(q, k), lambda law, q, a: law.truncated_abs_stats(q, a),
               lambda law, j, q, w: law.truncated_even_moment(j, q, w), kept="kept_magnitude",
               bernstein=lambda law, m, q, a, N, pruned, dT: law.truncated_bernstein(m, q, a)),
    EntryModel("random", "e = w b, b ~ Bern(q) independent of W (R-Bern, THEORY §1.6)",
               lambda law, q, k: law.log_base_ratio(k) + np.log(q), lambda law, q, a: law.bernoulli_abs_stats(q, a),
               _even_times_q, kept="kept_random", bernstein=lambda law, *x: law.bernoulli_bernstein(*x)),
    EntryModel("random_rescaled", "e = w (b - (1 - b) q/(1 - q)) (R-Bern-rescaled, THEORY §1.6)",
               lambda law, q, k: law.log_base_ratio(k) + np.logaddexp(np.log(q), 2 * k * np.log(q)
                                                                       - (2 * k - 1) * np.log1p(-q)),
               lambda law, q, a: law.rescaled_abs_stats(q, a), _even_times_q, kept="kept_rescaled",
               bernstein=lambda law, *x: law.rescaled_bernstein(*x)),
    EntryModel("kept_magnitude", "what = w 1{|w| >= tau(q)}", lambda law, q, k: law.log_tail_ratio(q, k)),
    EntryModel("kept_random", "what = w (1 - b)", lambda law, q, k: law.log_base_ratio(k) + np.log1p(-q)),
    EntryModel("kept_rescaled", "what = w (1 - b)/(1 - q)",
               lambda law, q, k: law.log_base_ratio(k) + (1 - 2 * k) * np.log1p(-q)),
)

METHODS: Mapping[str, PruningMethod] = _table(
    PruningMethod("magnitude", "magnitude", "threshold", "THEORY §1.5, §3.4 Theorem RM",
                  "prune every |w| < q_i a_i per layer (threshold form; count Binomial(N_i, q_i))",
                  apriori="thm-RM-RR", aliases=("magnitude_threshold", "rm"), entry="magnitude",
                  second_moments=_second_threshold, budget_certificate="lemma-a"),
    PruningMethod("magnitude_exact", "magnitude", "exact", "THEORY §1.5 exact-k, §9.6 S9.6, §3.11 Cert-D",
                  "prune the floor(q_i N_i) smallest |w| per layer (ties by flat index); a-priori bound S9.6 (§9.6)",
                  apriori="sharp-S9.6", aliases=("magnitude_topk", "exact_k_magnitude"), exact_of="magnitude",
                  second_moments=_second_magnitude_exact),
    PruningMethod("random", "random", "bernoulli", "THEORY §1.6 R-Bern, §3.4 Theorem RR",
                  "prune each entry independently with probability p_i; kept weights unchanged",
                  apriori="thm-RM-RR", certificate="cert-R-bern", cert_r_sampling="bernoulli",
                  aliases=("random_bernoulli", "bernoulli", "r_bern", "rr"), entry="random",
                  second_moments=_second_bernoulli, budget_certificate="cert-r"),
    PruningMethod("random_rescaled", "random", "bernoulli", "THEORY §1.6 R-Bern-rescaled, §3.4 Theorem RR'",
                  "R-Bern, then kept weights multiplied by 1/(1 - p_i) (inverted dropout)", rescaled=True,
                  apriori="thm-RM-RR", certificate="cert-R-rescaled", cert_r_sampling="rescaled",
                  aliases=("rescaled", "r_bern_rescaled", "random_bernoulli_rescaled"), entry="random_rescaled",
                  second_moments=_second_rescaled),
    PruningMethod("random_exact", "random", "exact", "THEORY §1.6 R-exact, §3.11 Cert-R",
                  "prune a uniformly random subset of exactly floor(p_i N_i) entries per layer",
                  apriori="RR-mask", certificate="cert-R-exact", cert_r_sampling="exact",
                  aliases=("r_exact", "exact_random"), exact_of="random", second_moments=_second_random_exact),
    PruningMethod("snip", "snip", "exact", "THEORY §5 (SNIP |w dL/dw|), §3.11 Cert-D",
                  "prune the lowest |w * dL/dw| on a data batch (exact count)", needs_data=True),
    PruningMethod("grad", "grad", "exact", "THEORY §5 (gradient-magnitude scores), §3.11 Cert-D",
                  "prune the lowest |dL/dw| scores on a data batch (exact count)", needs_data=True),
    PruningMethod("structured", "structured", "exact", "THEORY §5 (structured neuron/channel pruning), §3.11 Cert-D",
                  "remove whole neurons/channels by the l1/l2 norm of their weights"),
)

LAWS: Mapping[str, WeightLaw] = _table(
    UniformLaw("uniform", "THEORY §1.3", "w ~ U[-a_i, a_i], a_i = K / sqrt(m_i)", aliases=("u", "unif")),
    GaussianLaw("gaussian", "THEORY §3.12", "w ~ N(0, s_i^2), s_i = a_i", aliases=("normal", "gauss", "n"),
                sampler=_normal_sample, var_factor=1.0, quantile=_gaussian_quantile,
                threshold_text="threshold t_i = Phi^-1((1+q_i)/2) s_i", abs_uniform=False, full_tail="gauss-full",
                bounded=False, iid_text="N(0, s_i^2), s"),
)

BOUNDS: Mapping[str, Bound] = _table(
    Bound("thm-RM-RR", "THEORY §3.4, §3.6, §3.12", "probprune.theory.apriori:apriori_bound", "a-priori",
          "Theorems RM, RR, RR' (and RC for conv layers, Gaussian analogue): eps bound w.p. >= 1 - delta",
          aliases=("apriori",), bernstein=True),
    Bound("RR-mask", "THEORY §3.4 RR-mask", "probprune.theory.apriori:exact_k_bound", "a-priori",
          "random masks independent of W with at most D_i pruned per line (R-exact)", aliases=("exact_k",),
          bernstein=True, laws=("uniform",)),
    # THEORY §9 sharper a-priori bounds [D] (proofs_check ids sharp-S9.*): per-layer norm thresholds in
    # probprune.theory.sharp, the network bounds that combine them in probprune.theory.apriori
    Bound("sharp-S9.1", "THEORY §9.1", "probprune.theory.sharp:moment_bound", "lemma",
          "S9.1 moment comparison: P(||X|| >= x) <= T_p / x^(2p) for a random matrix with centred entries"),
    Bound("sharp-S9.2", "THEORY §9.2", "probprune.theory.sharp:gaussian_full_bound", "lemma",
          "S9.2 Gaussian matrix: ||W|| <= s (sqrt(d1) + sqrt(d2) + sqrt(2 ln(1/delta)))"),
    Bound("sharp-S9.3", "THEORY §9.3", "probprune.theory.sharp:lipschitz_uniform_bound", "lemma",
          "S9.3 uniform matrix as an a sqrt(2/pi)-Lipschitz image of a Gaussian one"),
    Bound("sharp-S9.4", "THEORY §9.4", "probprune.theory.sharp:schur_bound", "lemma",
          "S9.4 Schur test with line sums (count, conditional, Bernstein forms), monotone in the support"),
    Bound("sharp-S9.5", "THEORY §9.5", "probprune.theory.apriori:exact_k_bound", "a-priori",
          "S9.5 masks independent of W (exact-k random = Bernoulli given its count), uniform or Gaussian law"),
    Bound("sharp-S9.6", "THEORY §9.6", "probprune.theory.apriori:exact_k_magnitude_bound", "a-priori",
          "S9.6 exact-k magnitude: order-statistic bracket, shell, threshold given its count",
          aliases=("exact_k_magnitude",)),
    Bound("sharp-S9.7", "THEORY §9.7", "probprune.theory.apriori:apriori_bound", "a-priori",
          "S9.7 per term the minimum of thresholds at the same failure probability (statement='best')"),
    Bound("sharp-S9.8", "THEORY §9.8", "probprune.theory.sharp:product_moment_bound", "lemma",
          "S9.8 product moment recursion for linear nets (disjoint supports, Chevet, Minkowski)"),
    Bound("cert-D", "THEORY §3.11 Cert-D", "probprune.certificates.lemma:certify", "certificate",
          "deterministic per-network certificate Lip min(A-fwd, A-bwd) with certified operator norms",
          aliases=("cert_d", "certd")),
    Bound("cert-R-bern", "THEORY §3.11 Cert-R", "probprune.certificates.lemma:certify_random", "certificate",
          "per-network certificate over an R-Bern mask (sampling='bernoulli')", aliases=("cert_r", "certr")),
    Bound("cert-R-rescaled", "THEORY §3.11 Cert-R", "probprune.certificates.lemma:certify_random", "certificate",
          "per-network certificate over an R-Bern-rescaled mask (sampling='rescaled')"),
    Bound("cert-R-exact", "THEORY §3.11 Cert-R", "probprune.certificates.lemma:certify_random", "certificate",
          "per-network certificate over an R-exact mask (sampling='exact')"),
    Bound("lemmaA-general", "THEORY §3.1", "probprune.certificates.lemma:lemma_a_general", "lemma",
          "Lemma A general form (biases, sigma(0) != 0): (A-fwd, A-bwd)"),
    Bound("graph-lemmaA", "THEORY §8.2", "probprune.net.lemma:lemma_a_graph", "lemma",
          "Lemma A on traced network graphs (residual additions, folded BatchNorm, pooling anywhere)",
          aliases=("lemma_a_graph",)),
    Bound("A-star", "THEORY §3.1 (A*)", "probprune.theory.apriori:product_form", "lemma",
          "Lip prod(B) (prod(1 + eta_i/B_i) - 1)"),
    Bound("beta-def", "THEORY §3", "probprune.theory.apriori:beta", "lemma",
          "beta(s2, R, lam): the inverse of the matrix Bernstein tail"),
    Bound("composition", "THEORY §4.4", "probprune.subsetsum.construction:compose_bound", "lottery",
          "error composition of per-layer subset-sum approximations"),
)

#: the i.i.d. rules that have an exact-k variant, one per data-free family (magnitude, random): the methods the
#: figures and benchmark tables compare side by side
BASE_METHODS: tuple[str, ...] = tuple(m.name for m in METHODS.values() if m.exact_variant is not None)

#: budget rule (THEORY §3.9b) -> the sampling model its guarantee is about (registration order: exact_k, threshold,
#: bernoulli); :func:`budget_rule` looks a name up
BUDGET_RULES: Mapping[str, SamplingModel] = MappingProxyType(
    {SAMPLINGS[s].rule: SAMPLINGS[s] for s in ("exact", "threshold", "bernoulli")})


def budget_rule(name: str) -> SamplingModel:
    """The sampling model of the budget rule ``name`` ("exact_k", "threshold", "bernoulli"); ProbPruneError naming the
    valid rules otherwise."""
    if name not in BUDGET_RULES:
        raise ProbPruneError(f"unknown rule {name!r}; use one of {', '.join(BUDGET_RULES)}")
    return BUDGET_RULES[name]


def cert_r_method(sampling: str) -> PruningMethod:
    """The method whose Cert-R ``sampling`` argument is ``sampling`` ("bernoulli" R-Bern, "rescaled" R-Bern-rescaled,
    "exact" R-exact; :attr:`PruningMethod.cert_r_sampling`, THEORY §3.11); ProbPruneError naming the valid ones."""
    by = {m.cert_r_sampling: m for m in METHODS.values() if m.cert_r_sampling is not None}
    if sampling not in by:
        *first, last = by
        raise ProbPruneError(f"unknown sampling {sampling!r}; use {', '.join(first)} or {last}")
    return by[sampling]


@dataclass(frozen=True)
class LayerKind:
    """A weight layer's kind: ``LayerSpec.kind`` ("linear", "conv") and the traced ``Affine.layer`` ("linear",
    "conv1d", "conv2d"). ``dense``: a matrix acting on the flattened input (nn.Linear): its operator norm is the
    matrix norm (THEORY §11.1), no Lemma C lift (§3.5); otherwise a convolution (§3.5-3.6, §11.2)."""

    name: str
    description: str
    dense: bool = False


LAYER_KINDS: Mapping[str, LayerKind] = _table(
    LayerKind("linear", "a dense layer x -> W x (+ b)", dense=True),
    LayerKind("conv", "a 2-d convolution in its kernel-matrix view (LayerSpec; Lemma C, THEORY §3.5)"),
    LayerKind("conv1d", "a traced 1-d convolution (nn.Conv1d)"),
    LayerKind("conv2d", "a traced 2-d convolution (nn.Conv2d)"),
)


def layer_kind(name: str) -> LayerKind:
    """The :data:`LAYER_KINDS` entry of a layer kind; ProbPruneError naming the kinds otherwise."""
    if name not in LAYER_KINDS:
        raise ProbPruneError(f"unknown layer kind {name!r}; choices: {', '.join(LAYER_KINDS)}")
    return LAYER_KINDS[name]


@dataclass(frozen=True)
class ActivationName:
    """An activation of the one table in ``probprune.net.templates`` (its numpy/torch/module dispatch lives there)."""

    name: str
    aliases: tuple[str, ...] = ()

    @property
    def activation(self):
        from probprune.net.activations import activation

        return activation(self.name)


def _activation_table() -> Mapping[str, ActivationName]:
    from probprune.net.activations import ACTIVATION_ALIASES, ACTIVATIONS  # the one activation table

    return MappingProxyType({n: ActivationName(n, tuple(a for a, c in ACTIVATION_ALIASES.items() if c == n))
                             for n in ACTIVATIONS})


#: registry kind -> its table (the activation table is read lazily from probprune.net.activations: no import cycle)
_KINDS: dict[str, Callable[[], Mapping]] = {"method": lambda: METHODS, "law": lambda: LAWS, "bound": lambda: BOUNDS,
                                            "activation": _activation_table}


def _norm(name: str) -> str:
    return str(name).strip().lower().replace("-", "_").replace(" ", "_")


def table(kind: str) -> Mapping:
    """The registry of ``kind``: "method", "law", "bound" or "activation"."""
    if kind not in _KINDS:
        raise ProbPruneError(f"unknown registry kind {kind!r}; choices: {', '.join(_KINDS)}")
    return _KINDS[kind]()


def choices(kind: str) -> tuple[str, ...]:
    """Canonical names of ``kind`` in registration order (for CLI Enum choices)."""
    return tuple(table(kind))


def canonical(kind: str, name: str) -> str:
    """The canonical spelling of ``name`` in registry ``kind`` (aliases, case, '-'/'_' folded).

    Raises ProbPruneError naming the kind and listing the canonical choices when ``name`` is unknown."""
    tab = table(kind)
    if name in tab:  # exact canonical spelling (bound ids keep their '-')
        return name
    key = _norm(name)
    for canon, entry in tab.items():
        if key == _norm(canon) or key in (_norm(a) for a in getattr(entry, "aliases", ())):
            return canon
    raise ProbPruneError(f"unknown {kind} {name!r}; choices: {', '.join(tab)}")


def normalize(kind: str, name):
    """``canonical(kind, name)`` when the registry knows ``name``; otherwise ``name`` unchanged (so the caller's own
    check reports it). For entry points that accept aliases but keep their own error messages."""
    try:
        return canonical(kind, name)
    except (ProbPruneError, TypeError, AttributeError):
        return name


def get(kind: str, name: str):
    """The registry entry for ``name`` (any accepted spelling)."""
    return table(kind)[canonical(kind, name)]


def method(name: str) -> PruningMethod:
    return get("method", name)


def law(name: str) -> WeightLaw:
    return get("law", name)


def bound(name: str) -> Bound:
    return get("bound", name)


def error_exponent(name: str, default: float | None = None) -> float | None:
    """The exponent of the fraction in the a-priori error's leading term for the method ``name`` (its family's
    :attr:`MethodFamily.error_exponent`: 1.5 magnitude, 0.5 random; THEORY §3.4); ``default`` for names the registry
    does not know (e.g. the Monte Carlo engine's lib_* methods) or families without one."""
    try:
        e = method(name).family_model.error_exponent
    except ProbPruneError:
        return default
    return default if e is None else e


def method_for(family: str, sampling: str, rescaled: bool = False) -> PruningMethod:
    """The registered method with this family, sampling model and rescaling (e.g. ("random", "exact") ->
    random_exact); ProbPruneError when no method has that combination."""
    for m in METHODS.values():
        if (m.family, m.sampling, m.rescaled) == (family, sampling, bool(rescaled)):
            return m
    raise ProbPruneError(f"no registered pruning method with family={family!r}, sampling={sampling!r}"
                         f"{', rescaled' if rescaled else ''}; methods: {', '.join(METHODS)}")


__all__ = ["PruningMethod", "MethodFamily", "SamplingModel", "WeightLaw", "UniformLaw", "GaussianLaw",
           "EntryModel", "ENTRY_MODELS", "log_double_factorial_odd", "Bound", "ActivationName", "METHODS",
           "BASE_METHODS", "BUDGET_RULES", "budget_rule", "cert_r_method", "LayerKind", "LAYER_KINDS", "layer_kind",
           "FAMILIES", "SAMPLINGS", "LAWS", "BOUNDS", "table", "choices", "canonical", "normalize", "get", "method",
           "law", "bound", "error_exponent", "method_for"]
