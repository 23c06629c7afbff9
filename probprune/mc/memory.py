"""Memory estimate of a Monte Carlo sweep before any work (issue 18 item 2: "sizes estimated before allocation").

One chunk (:func:`probprune.mc.trials.evaluate_unit`) holds ``n`` = min(batch_size, n_trials) networks of one group
at once, all float64 (8 bytes). Its peak is estimated from the terms that scale with the sizes (elements; N = weights
of one network, N_max = its largest layer, d_0 = input size, d_l = output size, w = widest layer output):

* weights: W, the mask scores U (random methods), the pruned What and E = W - What of the current and of the previous
  (method, fraction), plus per-layer copies of the certified norm (scaled copy, Gram matrix):
  n (N (4 + [random]) + 3 N_max);
* FCN linear parts (exact error of linear nets; the SVD start of PGD): the products of W and What and their difference
  with its SVD: n (5 d_l d_0 + 2 max_i d_i d_0 + k (d_l + d_0)), k = min(d_l, d_0);
* PGD (non-linear nets): S = pgd_starts + 2 d_0 (basis) + 2 starts per network; the start tensor three times (list,
  stack, normalisation): 3 n S d_0; one sub-batch of B elements (the batching rule of
  :func:`probprune.mc.measure.pgd_lower_bound`: as many networks as fit in 40e6 elements, at least one, at most n) through two networks with autograd, both chains of the homogeneous
  search: (8 depth + 8) B;
* data inputs (``dataset``): the average error's sub-batches, (2 depth + 2) B elements with dataset_n inputs in place of S.

The largest group decides; ``workers`` chunks run at once. The estimate is compared with
:func:`probprune.core.errors.check_memory` (80% of RAM or PROBPRUNE_MEMORY_LIMIT) before the run folder is created.
It is an estimate, not a bound: it was checked against the measured peak resident memory of real chunks
(tests/test_mc_integrity.py, docs/montecarlo.md).
"""
from __future__ import annotations

from dataclasses import dataclass

from probprune.core.errors import check_memory
from probprune.mc.config import MCConfig

BYTES = 8  # float64
PGD_BLOCK = 40_000_000  # max_batch_elems of probprune.mc.measure
BASE = 300 * 2**20  # interpreter + torch + numpy + pandas loaded


@dataclass(frozen=True)
class ChunkMemory:
    """Estimated peak bytes of one chunk of the largest group, with its terms."""

    group: str
    networks: int
    weights: float
    linear_parts: float
    pgd: float
    data: float

    @property
    def total(self) -> float:
        return BASE + self.weights + self.linear_parts + self.pgd + self.data


def _layers(cfg: MCConfig, g):
    """(input size, [(d_out, d_in, out elements)], depth, is_fcn, nonlinear) of a group, without drawing weights."""
    import numpy as np

    from probprune.mc.trials import graph_network

    net = g.network
    if net.graph_model:
        gn = graph_network(net.model_path, net.model_input_shape)
        d0 = int(np.prod(gn.input_shape))
        widest = max(int(np.prod(node.out_shape)) if node.out_shape else 1 for node in gn.graph.nodes)
        sizes = [(L.N, 1, widest) for L in gn.layers]
        return d0, sizes, len(gn.layers), False, True
    spec = net.spec(g.activation, cfg.K)
    d0 = int(np.prod(spec.input_shape))
    sizes = [(L.d_out, L.d_in, int(np.prod(L.out_shape)) if L.out_shape else L.d_out) for L in spec.layers]
    linear = spec.is_fcn and all(L.act.name == "identity" for L in spec.layers[:-1])
    return d0, sizes, spec.depth, spec.is_fcn, not linear


def _block(n: int, per_network: int) -> int:
    """Elements of one sub-batch of the measurement's batching rule: as many networks as fit in 40e6 elements (at
    least one), at most the chunk's n."""
    sub = max(1, PGD_BLOCK // max(1, per_network))
    return min(n, sub) * per_network


def chunk_memory(cfg: MCConfig) -> ChunkMemory:
    """The estimated peak memory of one chunk of the sweep's most demanding group (module doc)."""
    from probprune.mc.trials import groups

    n = min(cfg.batch_size, cfg.n_trials)
    rnd = 1 if any(m.startswith("random") for m in cfg.methods) else 0
    best = None
    for g in groups(cfg):
        d0, sizes, depth, fcn, nonlinear = _layers(cfg, g)
        N = sum(a * b for a, b, _ in sizes)
        Nmax = max(a * b for a, b, _ in sizes)
        widest = max([d0] + [o for _, _, o in sizes])
        weights = n * (N * (4 + rnd) + 3 * Nmax)
        lin = 0
        if fcn:
            dl = sizes[-1][0]
            k = min(dl, d0)
            lin = n * (5 * dl * d0 + 2 * max(a * d0 for a, _, _ in sizes) + k * (dl + d0))
        pgd = 0
        if nonlinear:
            S = cfg.pgd_starts + (2 * d0 if cfg.pgd_basis else 0) + (2 if fcn else 0)
            pgd = 3 * n * S * d0 + 3 * d0 * d0 + (8 * depth + 8) * _block(n, S * widest)
        data = (2 * depth + 2) * _block(n, cfg.dataset_n * widest) if cfg.dataset else 0
        cm = ChunkMemory(g.network.label, n, BYTES * weights, BYTES * lin, BYTES * pgd, BYTES * data)
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
