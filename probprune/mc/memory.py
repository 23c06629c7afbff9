"""Memory estimate of a Monte Carlo sweep before any work (issue 18 item 2: "sizes estimated before allocation").

One chunk (:func:`probprune.mc.trials.evaluate_unit`) holds ``n`` = min(batch_size, n_trials) networks of one group
at once, all float64 (8 bytes). Its peak is estimated from the terms that scale with the sizes (elements; N = weights
of one network, N_max = its largest layer, d_0 = input size, d_l = output size, w = widest layer output):

* weights: W, the mask scores U (random methods), the pruned What and E = W - What, plus per-layer copies of the
  certified norm (scaled copy, Gram matrix): n (N (2 + [random]) + 2 N_max);
* FCN linear parts (exact error of linear nets; the SVD start of PGD): the products of W and What, their difference
  and its SVD factors: n (3 d_l d_0 + max_i d_i d_0 + k (d_l + d_0)), k = min(d_l, d_0);
* PGD (non-linear nets): S = pgd_starts + 2 d_0 (basis) + 2 starts per network; the start tensor three times (list,
  stack, normalisation): 3 n S d_0; one sub-batch of b networks (the batching rule of
  :func:`probprune.mc.measure.pgd_lower_bound`: as many as fit in 40e6 elements, at least one, at most n) through
  two networks with autograd and both chains of the homogeneous search: 12 b S A, A = d_0 + the output elements of
  every layer (all activations of one input);
* data inputs (``dataset``): the average error's sub-batches without autograd: 4 b dataset_n A;
* fixed costs: 400 MiB for the interpreter with torch, numpy and pandas, 150 MiB more with a dataset.

The constants were fitted to the measured peak resident memory of five chunks (linear and ReLU FCNs, widths
512-1000, input sizes 64-784, with and without data) and checked on two more (a depth-3 ReLU FCN, a CNN with data):
estimate / measured peak 1.03-1.34 (docs/montecarlo.md, "Memory guard").

The largest group decides; ``workers`` chunks run at once. The estimate is compared with
:func:`probprune.core.errors.check_memory` (80% of RAM or PROBPRUNE_MEMORY_LIMIT) before the run folder is created.
It is an estimate, not a bound.
"""
from __future__ import annotations

from dataclasses import dataclass

from probprune.core.errors import check_memory
from probprune.mc.config import MCConfig

BYTES = 8  # float64
PGD_BLOCK = 40_000_000  # max_batch_elems of probprune.mc.measure
BASE = 400 * 2**20  # interpreter + torch + numpy + pandas loaded (measured: 317 MiB)
DATA_BASE = 150 * 2**20  # a dataset loaded (sklearn / torchvision and the arrays)


@dataclass(frozen=True)
class ChunkMemory:
    """Estimated peak bytes of one chunk of the largest group, with its terms."""

    group: str
    networks: int
    weights: float
    linear_parts: float
    pgd: float
    data: float
    base: float = 0.0

    @property
    def total(self) -> float:
        return self.base + self.weights + self.linear_parts + self.pgd + self.data


def _layers(cfg: MCConfig, g):
    """(input size, [(d_out, d_in, output elements)], depth, is_fcn, nonlinear, activation elements per input) of a
    group, without drawing weights."""
    import numpy as np

    from probprune.mc.trials import bound_setting

    spec, _, graph = bound_setting(cfg, g)  # the chain measured (law template or chain view), or the graph
    if graph is not None:
        d0 = int(np.prod(graph.input_shape))
        outs = [int(np.prod(node.out_shape)) if node.out_shape else 1 for node in graph.nodes]
        sizes = [(int(node.op.weight.size), 1, max(outs)) for node in graph.weight_nodes]
        return d0, sizes, len(sizes), False, True, d0 + sum(outs)
    d0 = int(np.prod(spec.input_shape))
    sizes = [(L.d_out, L.d_in, int(np.prod(L.out_shape)) if L.out_shape else L.d_out) for L in spec.layers]
    linear = spec.is_linear_fcn
    return d0, sizes, spec.depth, spec.is_fcn, not linear, d0 + sum(o for _, _, o in sizes)


def _networks_per_block(n: int, per_network: int) -> int:
    """Networks in one sub-batch of the measurement's batching rule (probprune.mc.measure: as many as fit in 40e6
    elements, at least one), at most the chunk's n."""
    return min(n, max(1, PGD_BLOCK // max(1, per_network)))


def chunk_memory(cfg: MCConfig) -> ChunkMemory:
    """The estimated peak memory of one chunk of the sweep's most demanding group (module doc)."""
    from probprune.mc.config import draws_mask_scores
    from probprune.mc.trials import groups

    n = min(cfg.batch_size, cfg.n_trials)
    rnd = 1 if draws_mask_scores(cfg.methods) else 0
    best = None
    for g in groups(cfg):
        d0, sizes, depth, fcn, nonlinear, act = _layers(cfg, g)
        N = sum(a * b for a, b, _ in sizes)
        Nmax = max(a * b for a, b, _ in sizes)
        widest = max([d0] + [o for _, _, o in sizes])
        weights = n * (N * (2 + rnd) + 2 * Nmax)
        lin = 0
        if fcn:
            dl = sizes[-1][0]
            k = min(dl, d0)
            lin = n * (3 * dl * d0 + max(a * d0 for a, _, _ in sizes) + k * (dl + d0))
        pgd = 0
        if nonlinear:
            S = cfg.pgd_starts + (2 * d0 if cfg.pgd_basis else 0) + (2 if fcn else 0)
            pgd = 3 * n * S * d0 + 3 * d0 * d0 + 12 * _networks_per_block(n, S * widest) * S * act
        data = 0
        if cfg.dataset:
            data = 4 * _networks_per_block(n, cfg.dataset_n * widest) * cfg.dataset_n * act
        cm = ChunkMemory(g.network.label, n, BYTES * weights, BYTES * lin, BYTES * pgd, BYTES * data,
                         BASE + (DATA_BASE if cfg.dataset else 0))
        if best is None or cm.total > best.total:
            best = cm
    return best


def check_run_memory(cfg: MCConfig, workers: int = 1) -> ChunkMemory:
    """Refuse (ProbPruneError naming the estimate) a sweep whose ``workers`` concurrent chunks would not fit in
    memory; called by ``mc plan`` and before ``mc run`` creates anything."""
    cm = chunk_memory(cfg)
    workers = max(1, int(workers))
    who = f"{workers} chunks at once" if workers > 1 else "one chunk"
    check_memory(workers * cm.total, f"the Monte Carlo sweep ({who} of {cm.networks} networks {cm.group}; "
                                     "lower batch_size or --workers)")
    return cm
