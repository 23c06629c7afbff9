"""Pruning methods on torch models (THEORY.md §5): masks keyed by parameter FQN, scores, layer-density allocation,
mask sampling, structured pruning, iterative magnitude pruning (lottery tickets) and sparsity reports."""
from probprune.pruning.masks import (apply_mask, from_torch_prune, full_mask, is_nested, load_mask, mask_and, maskable_parameters,
                    remove_mask_parametrizations, save_mask, to_torch_prune, validate_mask)
from probprune.pruning.scores import grad_magnitude_scores, magnitude_scores, random_scores, snip_scores
from probprune.pruning.densities import DensityAllocation, er_densities, erk_densities, snip_ratio_densities, uniform_densities
from probprune.pruning.sampling import global_topk_mask, layerwise_topk_mask, pruned_count, random_mask, threshold_mask
from probprune.pruning.structured import StructuredResult, dead_downstream, structured_mask
from probprune.pruning.report import PruneReport, neuron_sparsity, sparsity_report
from probprune.pruning.api import FAMILIES, PruneResult, prune

__all__ = [
    "apply_mask", "from_torch_prune", "full_mask", "is_nested", "load_mask", "mask_and", "maskable_parameters",
    "remove_mask_parametrizations", "save_mask", "to_torch_prune", "validate_mask", "grad_magnitude_scores",
    "magnitude_scores", "random_scores", "snip_scores", "DensityAllocation", "er_densities", "erk_densities",
    "snip_ratio_densities", "uniform_densities", "global_topk_mask", "layerwise_topk_mask", "pruned_count",
    "random_mask", "threshold_mask", "StructuredResult", "dead_downstream", "structured_mask", "PruneReport",
    "neuron_sparsity", "sparsity_report", "FAMILIES", "PruneResult", "prune",
]
