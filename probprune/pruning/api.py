"""One entry point, ``prune(model, method, sparsity, ...)``: scores -> densities -> mask -> (optional) apply, with
a :class:`~.report.PruneReport` (THEORY.md §5).

Methods: ``magnitude`` (|w|; ``scope="layer"`` or ``"global"``; ``sampling="threshold"`` prunes |w| < ``threshold``),
``random`` (densities by ``scheme`` uniform | er | erk | snip_ratio, positions by ``sampling`` exact | bernoulli),
``snip`` (|w g| at the current weights on one batch, global top-k), ``grad`` (|w g| on trained weights; layer or
global), ``structured`` (neuron/filter L1 or L2 norms; see :mod:`.structured`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from probprune.core import registry
from probprune.core.errors import ProbPruneError, check_fraction
from probprune.pruning import densities as D
from probprune.pruning.masks import apply_mask, maskable_parameters, validate_mask
from probprune.pruning.report import PruneReport, sparsity_report
from probprune.pruning.sampling import ROUNDING, global_topk_mask, layerwise_topk_mask, random_mask, threshold_mask
from probprune.pruning.scores import grad_magnitude_scores, magnitude_scores, snip_scores
from probprune.pruning.structured import structured_mask

METHODS = ("magnitude", "random", "snip", "grad", "structured")


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
    sch = (scheme or "uniform").lower().replace("-", "_")
    if sampling == "threshold":
        if method != "magnitude":
            raise ProbPruneError(f"{flag('sampling')} threshold applies to magnitude pruning only, not {method}")
        if "fraction" in given:
            raise ProbPruneError(f"{flag('fraction')} does not apply with {flag('sampling')} threshold (the "
                                 f"threshold decides what is pruned); give one of them")
        for opt in ("scope", "rounding"):
            if opt in given:
                raise ProbPruneError(f"{flag(opt)} does not apply with {flag('sampling')} threshold (every |w| < "
                                     f"tau is pruned)")
    elif "threshold" in given:
        raise ProbPruneError(f"{flag('threshold')} applies to {flag('sampling')} threshold only")
    if sampling == "bernoulli":
        if method != "random":
            raise ProbPruneError(f"{flag('sampling')} bernoulli applies to random pruning only, not {method}")
        if "rounding" in given:
            raise ProbPruneError(f"{flag('rounding')} does not apply with {flag('sampling')} bernoulli (each weight "
                                 "is kept independently; no count is rounded)")
    for opt, (methods, what) in OPTION_APPLIES.items():
        if opt in given and method not in methods:
            raise ProbPruneError(f"{flag(opt)} does not apply to {method} pruning ({what})")
    if method == "snip" and "scope" in given and scope != "global":
        raise ProbPruneError(f"{flag('scope')} {scope} does not apply to snip pruning (snip ranks all weights "
                             "globally)")
    if method == "random" and "erk_power_scale" in given and sch != "erk":
        raise ProbPruneError(f"{flag('erk_power_scale')} applies to {flag('scheme')} erk only, not {sch}")
    if method == "random" and "batch_for_scores" in given and sch != "snip_ratio":
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
    if method not in METHODS and method in registry.METHODS:  # a registry name fixes family and sampling model
        entry = registry.METHODS[method]
        if entry.rescaled:
            raise ProbPruneError(f"{method!r} rescales kept weights (a sampling model of the bounds and the MC "
                                 "engine); prune() does not rescale: use method='random', sampling='bernoulli'")
        method, sampling = entry.family, entry.sampling
    if method not in METHODS:
        raise ProbPruneError(f"unknown pruning method {method!r}; use one of {', '.join(METHODS)} "
                             "(or magnitude_exact / random_exact)")
    if rounding not in ROUNDING:
        raise ProbPruneError(f"unknown rounding {rounding!r}; use one of {', '.join(ROUNDING)}")
    if scope not in ("layer", "global"):
        raise ProbPruneError(f"unknown scope {scope!r}; use 'layer' or 'global'")
    if sampling not in ("exact", "bernoulli", "threshold"):
        raise ProbPruneError(f"unknown sampling {sampling!r}; use exact, bernoulli or threshold")
    if sampling == "threshold":
        if method != "magnitude" or threshold is None:
            raise ProbPruneError("sampling='threshold' is for magnitude pruning and needs threshold=tau")
    else:
        if sparsity is None:
            raise ProbPruneError("sparsity is required")
        sparsity = float(check_fraction(sparsity, "sparsity", upper_open=True))
    if sampling == "bernoulli" and method != "random":
        raise ProbPruneError("sampling='bernoulli' applies to method='random' only")
    if prev_mask is not None:
        prev_mask = validate_mask(model, prev_mask)
    kw = dict(exclude_first=exclude_first, exclude_last=exclude_last)
    params = maskable_parameters(model, **kw)
    shapes = {k: tuple(v.shape) for k, v in params.items()}
    alloc = None
    requested = sparsity

    def need_batch():
        if X is None or y is None:
            raise ProbPruneError(f"method {method!r} needs a batch of data (X, y)")

    if method == "magnitude":
        sc = magnitude_scores(model, names=list(shapes))
        if sampling == "threshold":
            mask = threshold_mask(sc, float(threshold), prev_mask)
            requested = None
        elif scope == "layer":
            mask = layerwise_topk_mask(sc, sparsity, prev_mask, rounding)
        else:
            mask = global_topk_mask(sc, sparsity, prev_mask, rounding)
    elif method in ("snip", "grad"):
        need_batch()
        if method == "snip":
            sc = snip_scores(model, X, y, names=list(shapes), mask=prev_mask)
            scope_m = "global"
        else:
            sc = grad_magnitude_scores(model, X, y, names=list(shapes), mask=prev_mask)
            scope_m = scope
        mask = (global_topk_mask(sc, sparsity, prev_mask, rounding) if scope_m == "global"
                else layerwise_topk_mask(sc, sparsity, prev_mask, rounding))
    elif method == "random":
        sch = scheme.lower().replace("-", "_")
        if sch == "snip_ratio":
            need_batch()
            alloc = D.snip_ratio_densities(model, X, y, sparsity, seed=seed, names=list(shapes))
        elif sch in ("er", "erk"):
            alloc = D.allocate(sch, shapes, sparsity, custom=custom_densities, custom_in_budget=custom_in_budget,
                               **({"erk_power_scale": erk_power_scale} if sch == "erk" else {}))
        else:
            alloc = D.allocate(sch, shapes, sparsity)
        mask = random_mask(shapes, alloc.densities, seed, sampling=sampling, rounding=rounding)
        if prev_mask is not None:
            mask = {k: v & prev_mask[k] if k in prev_mask else v for k, v in mask.items()}
        requested = {k: 1.0 - d for k, d in alloc.densities.items()}
    else:  # structured
        res = structured_mask(model, sparsity, norm=norm, scope=scope, exclude_first=exclude_first, rounding=rounding)
        mask = res.mask
        if prev_mask is not None:
            mask = {k: v & prev_mask[k] if k in prev_mask else v for k, v in mask.items()}
        alloc = res
        requested = None
    if apply:
        apply_mask(model, mask)
    rep = sparsity_report(
        model, mask, requested=requested if not isinstance(requested, float) else requested,
        method=method + ("" if method in ("random", "structured") else f"/{scope}"),
        sampling=sampling if method in ("random", "magnitude") else "exact",
        rounding=rounding, scheme=scheme if method == "random" else None,
        seeds={"mask": seed} if method == "random" else {}, input_shape=input_shape,
        maskable_set="weights of Linear/Conv layers" + (", first excluded" if exclude_first else "")
        + (", last excluded" if exclude_last else ""),
        extra={"requested_overall": sparsity, "norm": norm} if method == "structured" else
        {"requested_overall": sparsity},
    )
    # the one spelling of what was done (probprune.core.registry): family + sampling model, e.g. random + exact = random_exact
    rep.extra["registry_method"] = registry.method_for(method, rep.sampling).name
    if method == "structured":
        rep.extra["explicitly_masked"] = alloc.total_masked
        rep.extra["removed_units"] = {k: len(v) for k, v in alloc.removed_units.items()}
    return PruneResult(mask, rep, alloc)
