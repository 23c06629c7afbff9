"""One entry point, ``prune(model, method, sparsity, ...)``: scores -> densities -> mask -> (optional) apply, with
a :class:`~.report.PruneReport` (THEORY.md §5).

Methods: ``magnitude`` (|w|; ``scope="layer"`` or ``"global"``; ``sampling="threshold"`` prunes |w| < ``threshold``),
``random`` (densities by ``scheme`` uniform | er | erk | snip_ratio, positions by ``sampling`` exact | bernoulli),
``snip`` (|w g| at the current weights on one batch, global top-k), ``grad`` (|w g| on trained weights; layer or
global), ``structured`` (neuron/filter L1 or L2 norms; see :mod:`.structured`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

from probprune.core import registry
from probprune.core.errors import ProbPruneError, check_fraction
from probprune.pruning import densities as D
from probprune.pruning.masks import apply_mask, maskable_parameters, validate_mask
from probprune.pruning.report import PruneReport, sparsity_report
from probprune.pruning.sampling import ROUNDING, global_topk_mask, layerwise_topk_mask, random_mask, threshold_mask
from probprune.pruning.scores import grad_magnitude_scores, magnitude_scores, snip_scores
from probprune.pruning.structured import structured_mask

#: the method families ``prune`` accepts: the names of :data:`probprune.core.registry.FAMILIES` (the families of the
#: registry's methods, in registration order); a registry method name (e.g. ``random_exact``) fixes family and
#: sampling model
FAMILIES = tuple(registry.FAMILIES)


#: ranking scope -> the exact top-k rule (per layer, or over all maskable weights at once)
SCOPES = {"layer": layerwise_topk_mask, "global": global_topk_mask}
GLOBAL = "global"  # the scope of the families that always rank globally (FamilyRules.global_only)


#: which options each pruning method reads (the others would be silently ignored, so they are refused):
#: option -> (methods that read it, what decides instead for the others)
OPTION_APPLIES = {
    "scope": (("magnitude", "grad", "structured", "snip"), "random pruning: the scheme sets the per-layer densities"),
    "scheme": (("random",), "the per-layer densities of random pruning"),
    "norm": (("structured",), "the neuron norm of structured pruning"),
    "erk_power_scale": (("random",), "the ERK exponent (random pruning with --scheme erk)"),
    "batch_for_scores": (("snip", "grad", "random"), "the data batch of snip / grad / snip_ratio scores"),
}


def check_prune_options(method: str, sampling: str = "exact", scheme: str | None = None,
                        given: frozenset | set = frozenset(), scope: str | None = None, flag=lambda n: n) -> None:
    """Refuse, before any work, an option that ``method`` / ``sampling`` would ignore (THEORY §5 defines what each
    method reads). ``given``: names of the options the user set explicitly (``fraction``, ``threshold``, ``scope``,
    ``scheme``, ``norm``, ``rounding``, ``erk_power_scale``, ``batch_for_scores``); ``flag`` spells a name as the
    caller's option (the CLI: ``--scope``). Raises :class:`ProbPruneError` with one line saying why."""
    given = set(given)
    method = str(method).lower().replace("-", "_")
    fam = FAMILY_RULES.get(method, _NO_FAMILY)
    sch = (scheme or "uniform").lower().replace("-", "_")
    smp = registry.SAMPLINGS.get(sampling)  # the sampling model's behaviour (None: refused by prune)
    if smp is not None and not smp.counted and sampling not in fam.samplings:
        raise ProbPruneError(f"{flag('sampling')} {sampling} applies to {_families_with(sampling)} pruning only, not "
                             f"{method}")
    if smp is not None and not smp.fraction_given:
        if "fraction" in given:
            raise ProbPruneError(f"{flag('fraction')} does not apply with {flag('sampling')} {sampling} (the "
                                 f"threshold decides what is pruned); give one of them")
        for opt in ("scope", "rounding"):
            if opt in given:
                raise ProbPruneError(f"{flag(opt)} does not apply with {flag('sampling')} {sampling} "
                                     f"({smp.no_rounding})")
    elif "threshold" in given:
        raise ProbPruneError(f"{flag('threshold')} applies to {flag('sampling')} threshold only")
    elif smp is not None and smp.no_rounding and "rounding" in given:
        raise ProbPruneError(f"{flag('rounding')} does not apply with {flag('sampling')} {sampling} "
                             f"({smp.no_rounding})")
    for opt, (methods, what) in OPTION_APPLIES.items():
        if opt in given and method not in methods:
            raise ProbPruneError(f"{flag(opt)} does not apply to {method} pruning ({what})")
    if fam.global_only and "scope" in given and scope != GLOBAL:
        raise ProbPruneError(f"{flag('scope')} {scope} does not apply to {method} pruning ({method} ranks all weights "
                             "globally)")
    entry = D.SCHEME_TABLE.get(sch)
    if fam.random and "erk_power_scale" in given and (entry is None or "erk_power_scale" not in entry.options):
        raise ProbPruneError(f"{flag('erk_power_scale')} applies to {flag('scheme')} erk only, not {sch}")
    if fam.random and "batch_for_scores" in given and (entry is None or not entry.needs_batch):
        raise ProbPruneError(f"{flag('batch_for_scores')} applies to random pruning with {flag('scheme')} "
                             f"snip_ratio only, not {sch}")


@dataclass(frozen=True)
class PruneResult:
    mask: dict
    report: PruneReport
    allocation: object | None = None


def prune(
    model,
    method: str,
    sparsity: float | None,
    *,
    scope: str = "layer",
    scheme: str = "uniform",
    sampling: str = "exact",
    rounding: str = "floor",
    seed: int = 0,
    X=None,
    y=None,
    norm: str = "l1",
    threshold: float | None = None,
    exclude_first: bool = False,
    exclude_last: bool = False,
    erk_power_scale: float = 1.0,
    custom_densities: Mapping[str, float] | None = None,
    custom_in_budget: bool = False,
    prev_mask: Mapping | None = None,
    apply: bool = True,
    input_shape=None,
) -> PruneResult:
    """Compute a mask for ``model`` and (when ``apply``) zero the pruned weights in place. ``sparsity`` is the
    requested fraction of the maskable weights to prune, in [0, 1). ``X, y``: one batch for snip / grad /
    snip_ratio. ``prev_mask``: earlier mask to respect (pruned entries stay pruned). Returns mask + report."""
    method = str(method).lower().replace("-", "_")
    if method not in FAMILIES and method in registry.METHODS:  # a registry name fixes family and sampling model
        entry = registry.METHODS[method]
        if entry.rescaled:
            raise ProbPruneError(f"{method!r} rescales kept weights (a sampling model of the bounds and the MC "
                                 "engine); prune() does not rescale: use method='random', sampling='bernoulli'")
        method, sampling = entry.family, entry.sampling
    if method not in FAMILIES:
        raise ProbPruneError(f"unknown pruning method {method!r}; use one of {', '.join(FAMILIES)} "
                             "(or magnitude_exact / random_exact)")
    if rounding not in ROUNDING:
        raise ProbPruneError(f"unknown rounding {rounding!r}; use one of {', '.join(ROUNDING)}")
    if scope not in SCOPES:
        raise ProbPruneError(f"unknown scope {scope!r}; use 'layer' or 'global'")
    if sampling not in registry.SAMPLINGS:
        raise ProbPruneError(f"unknown sampling {sampling!r}; use exact, bernoulli or threshold")
    fam = FAMILY_RULES[method]
    if not registry.SAMPLINGS[sampling].fraction_given:  # threshold: the threshold decides
        if "threshold" not in fam.samplings or threshold is None:
            raise ProbPruneError("sampling='threshold' is for magnitude pruning and needs threshold=tau")
    else:
        if sparsity is None:
            raise ProbPruneError("sparsity is required")
        sparsity = float(check_fraction(sparsity, "sparsity", upper_open=True))
    if sampling not in fam.samplings:
        raise ProbPruneError("sampling='bernoulli' applies to method='random' only")
    if prev_mask is not None:
        prev_mask = validate_mask(model, prev_mask)
    params = maskable_parameters(model, exclude_first=exclude_first, exclude_last=exclude_last)
    shapes = {k: tuple(v.shape) for k, v in params.items()}
    job = _Job(model, method, sparsity, shapes, scope, scheme, sampling, rounding, seed, X, y, norm, threshold,
               exclude_first, erk_power_scale, custom_densities, custom_in_budget, prev_mask)
    mask, alloc, requested = fam.masks(job)
    if apply:
        apply_mask(model, mask)
    rep = sparsity_report(
        model, mask, requested=requested if not isinstance(requested, float) else requested,
        method=method + (f"/{scope}" if fam.scope_in_label else ""),
        sampling=sampling,  # "exact" for the families with one sampling model (checked above)
        rounding=rounding, scheme=scheme if fam.random else None,
        seeds={"mask": seed} if fam.random else {}, input_shape=input_shape,
        maskable_set="weights of Linear/Conv layers" + (", first excluded" if exclude_first else "")
        + (", last excluded" if exclude_last else ""),
        extra={"requested_overall": sparsity, "norm": norm} if fam.structured else {"requested_overall": sparsity},
    )
    # the one spelling of what was done (probprune.core.registry): family + sampling model, e.g. random + exact = random_exact
    rep.extra["registry_method"] = registry.method_for(method, rep.sampling).name
    if fam.structured:
        rep.extra["explicitly_masked"] = alloc.total_masked
        rep.extra["removed_units"] = {k: len(v) for k, v in alloc.removed_units.items()}
    return PruneResult(mask, rep, alloc)


# --------------------------------------------------------------------------------------------- family strategies
@dataclass(frozen=True)
class _Job:
    """The validated arguments of one :func:`prune` call, handed to the family's mask strategy."""

    model: object
    method: str
    sparsity: float | None
    shapes: dict
    scope: str
    scheme: str
    sampling: str
    rounding: str
    seed: int
    X: object
    y: object
    norm: str
    threshold: float | None
    exclude_first: bool
    erk_power_scale: float
    custom_densities: Mapping | None
    custom_in_budget: bool
    prev_mask: Mapping | None

    def need_batch(self):
        if self.X is None or self.y is None:
            raise ProbPruneError(f"method {self.method!r} needs a batch of data (X, y)")

    def keep_previous(self, mask: dict) -> dict:
        """Entries pruned by ``prev_mask`` stay pruned."""
        if self.prev_mask is None:
            return mask
        return {k: v & self.prev_mask[k] if k in self.prev_mask else v for k, v in mask.items()}

    def topk(self, scores, scope: str | None = None) -> dict:
        """Exact top-k of the scores in the scope's ranking (:data:`SCOPES`; the call's own scope by default)."""
        return SCOPES[scope or self.scope](scores, self.sparsity, self.prev_mask, self.rounding)


def _magnitude_masks(job: _Job):
    """|w| scores: threshold (every |w| < tau), or exact top-k per layer / globally (THEORY §5)."""
    sc = magnitude_scores(job.model, names=list(job.shapes))
    if not registry.SAMPLINGS[job.sampling].fraction_given:  # threshold: every |w| < tau
        return threshold_mask(sc, float(job.threshold), job.prev_mask), None, None
    return job.topk(sc), None, job.sparsity


def _snip_masks(job: _Job):
    """SNIP |w dL/dw| on one batch, global top-k."""
    job.need_batch()
    sc = snip_scores(job.model, job.X, job.y, names=list(job.shapes), mask=job.prev_mask)
    return job.topk(sc, GLOBAL), None, job.sparsity


def _grad_masks(job: _Job):
    """|w dL/dw| on trained weights, layer-wise or global top-k."""
    job.need_batch()
    sc = grad_magnitude_scores(job.model, job.X, job.y, names=list(job.shapes), mask=job.prev_mask)
    return job.topk(sc), None, job.sparsity


def _random_masks(job: _Job):
    """Per-layer densities by the scheme (uniform | er | erk | snip_ratio), positions by the sampling model."""
    sch = D.scheme(job.scheme)
    if sch.needs_batch:  # snip_ratio
        job.need_batch()
        alloc = D.snip_ratio_densities(job.model, job.X, job.y, job.sparsity, seed=job.seed, names=list(job.shapes))
    else:
        given = {"custom": job.custom_densities, "custom_in_budget": job.custom_in_budget,
                 "erk_power_scale": job.erk_power_scale}
        alloc = sch.allocate(job.shapes, job.sparsity, **{k: given[k] for k in sch.options})
    mask = random_mask(job.shapes, alloc.densities, job.seed, sampling=job.sampling, rounding=job.rounding)
    return job.keep_previous(mask), alloc, {k: 1.0 - d for k, d in alloc.densities.items()}


def _structured_masks(job: _Job):
    """Whole neurons / channels by the l1 / l2 norm of their weights (:mod:`.structured`)."""
    res = structured_mask(job.model, job.sparsity, norm=job.norm, scope=job.scope, exclude_first=job.exclude_first,
                          rounding=job.rounding)
    return job.keep_previous(res.mask), res, None


@dataclass(frozen=True)
class FamilyRules:
    """What one method family of :func:`prune` does: its mask strategy ``masks`` (a validated call -> mask,
    allocation, requested per-layer fractions or None), the sampling models it accepts, whether it always ranks
    globally, draws at random (seeded; densities by a scheme), removes whole units, and shows its scope in the report's
    method label."""

    masks: Callable | None = None
    samplings: tuple = ("exact",)
    global_only: bool = False
    random: bool = False
    structured: bool = False
    scope_in_label: bool = True


#: family -> its rules (the families of the registry, probprune.core.registry.METHODS)
FAMILY_RULES: Mapping[str, FamilyRules] = {
    "magnitude": FamilyRules(_magnitude_masks, samplings=("exact", "threshold")),
    "random": FamilyRules(_random_masks, samplings=("exact", "bernoulli"), random=True, scope_in_label=False),
    "snip": FamilyRules(_snip_masks, global_only=True),
    "grad": FamilyRules(_grad_masks),
    "structured": FamilyRules(_structured_masks, structured=True, scope_in_label=False),
}
_NO_FAMILY = FamilyRules(samplings=())


def _families_with(sampling: str) -> str:
    return " / ".join(f for f, r in FAMILY_RULES.items() if sampling in r.samplings)
