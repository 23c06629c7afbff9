"""The package's one PGD attack: a lower bound on the worst-case error sup_{||x||<=1} ||F(x) - Fhat(x)|| (THEORY §6).

Every value it reports is ||F(x) - Fhat(x)|| at a feasible input x (||x|| <= 1), so it is a lower bound on the
sup error by construction; certificates (upper bounds) are tested against it.

* :func:`pgd_ascent` — the ascent itself on a batch of n problems with S starts each, over a callable
  ``sq_diff(x) -> ||F(x) - Fhat(x)||^2`` of shape (n, S). Used by the Monte Carlo engine (stacked weights,
  :func:`probprune.mc.measure.pgd_lower_bound`), the experiments and the subset-sum construction.
* :func:`pgd_sup_error` — the same on two plain callables f, f_hat (torch modules, traced graphs, closures):
  seeded Gaussian restarts, optional +-e_j and caller-supplied starts; returns a :class:`PGDResult`. Optionally over
  another region: the l2 ball or the l_inf box of radius r around a centre c (data-region certificates, THEORY
  §12.5), searched as x = c + r u with u in the unit ball / box.

Algorithm (§6). Positively homogeneous nets (F(cx) = cF(x) for c >= 0, e.g. bias-free ReLU nets): ascent on the unit
sphere with two chains per start: a local chain of projected normalized-gradient steps
x <- normalize(x + eta_t grad/||grad||) (eta_t decaying geometrically from ``step`` to 1e-4 ``step``) and a
fixed-point chain whose first half are steps x <- normalize(grad f(x)) (on a linear region the power step) and whose
second half are local steps. Other nets: the local steps with the ball projection x / max(1, ||x||); in the box
(``box=True``) sign-gradient steps x <- clip(x + eta_t sign(grad), -1, 1) with the same decay. The result is the
largest value seen at any evaluated feasible x, divided by max(1, ||x||) on homogeneous nets so that float rounding of
||x|| cannot inflate it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from probprune.core.errors import ProbPruneError

STEP_DECAY = 1e-4  # eta_t decays geometrically from step to STEP_DECAY * step


def unit(x: torch.Tensor) -> torch.Tensor:
    """x / ||x|| per start; x has shape (n, S, *input_shape)."""
    nrm = x.flatten(2).norm(dim=-1).clamp_min(1e-300)
    return x / nrm.reshape(*nrm.shape, *([1] * (x.dim() - 2)))


def proj_ball(x: torch.Tensor) -> torch.Tensor:
    """x / max(1, ||x||) per start (projection onto the unit ball)."""
    nrm = x.flatten(2).norm(dim=-1).clamp_min(1.0)
    return x / nrm.reshape(*nrm.shape, *([1] * (x.dim() - 2)))


def proj_box(x: torch.Tensor) -> torch.Tensor:
    """clip(x, -1, 1) (projection onto the unit l_inf box)."""
    return x.clamp(-1.0, 1.0)


def pgd_ascent(sq_diff: Callable[[torch.Tensor], torch.Tensor], x0: torch.Tensor, steps: int, step: float,
               homogeneous: bool, box: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Multi-start projected gradient ascent of ``sq_diff`` (THEORY §6); the one PGD implementation.

    ``x0``: starts, shape (n, S, *input_shape) (n independent problems, S starts each). ``sq_diff(x)`` returns
    ||F(x) - Fhat(x)||^2 of shape (n, S') for x of shape (n, S', *input_shape) and must be differentiable.
    ``homogeneous``: the nets are positively homogeneous (sphere search with the fixed-point chain); otherwise the
    ball projection is used (always valid). ``box``: search the unit l_inf box instead of the l2 ball (sign-gradient
    steps, clipping; not with ``homogeneous``). Returns (best, best_x): the largest ||F(x) - Fhat(x)|| seen at a
    feasible x per problem, shape (n,), and that x, shape (n, *input_shape)."""
    if steps < 0:
        raise ProbPruneError(f"PGD needs steps >= 0, got {steps}")
    if box and homogeneous:
        raise ProbPruneError("PGD in the l_inf box has no homogeneous (sphere) mode")
    n = x0.shape[0]
    best = torch.zeros(n, dtype=x0.dtype)
    best_x = torch.zeros((n, *x0.shape[2:]), dtype=x0.dtype)
    feasible = unit if homogeneous else (proj_box if box else proj_ball)
    x = feasible(x0)
    S = x.shape[1]
    fp_iters = steps // 2 if homogeneous else 0
    if homogeneous:
        # two chains per start: a local chain (normalized-gradient steps only) and a fixed-point chain (power steps on
        # the current linear region, then local steps); the fixed-point step is non-local and can jump away from a
        # narrow maximum that the local chain keeps.
        x = torch.cat([x, x], dim=1)
    fp_chain = torch.zeros(x.shape[1], dtype=torch.bool)
    fp_chain[S:] = homogeneous
    fp_chain = fp_chain.reshape(1, -1, *([1] * (x.dim() - 2)))
    rows = torch.arange(n)
    for t in range(steps + 1):
        x = x.detach().requires_grad_(t < steps)
        with torch.set_grad_enabled(t < steps):
            f = sq_diff(x)  # (n, S)
        val = f.detach().sqrt()
        nrm = (x.detach().flatten(2).abs().amax(dim=-1) if box else x.detach().flatten(2).norm(dim=-1)).clamp_min(1.0)
        if homogeneous:
            val = val / nrm  # F(cx) = cF(x): value at x / max(1, ||x||)
        else:
            val = torch.where(nrm <= 1.0 + 1e-12, val, torch.zeros_like(val))
        vmax, arg = val.max(dim=1)
        better = vmax > best
        if bool(better.any()):
            xb = x.detach()[rows, arg]
            xb = xb / nrm[rows, arg].reshape(-1, *([1] * (xb.dim() - 1))) if homogeneous else xb
            best_x = torch.where(better.reshape(-1, *([1] * (xb.dim() - 1))), xb, best_x)
        best = torch.maximum(best, vmax)
        if t == steps:
            break
        (g,) = torch.autograd.grad(f.sum(), x)
        g = g.detach()
        gn = g.flatten(2).norm(dim=-1)
        gn = gn.reshape(*gn.shape, *([1] * (g.dim() - 2)))
        xd = x.detach()
        ok = gn > 0
        u = g.sign() if box else torch.where(ok, g / gn.clamp_min(1e-300), torch.zeros_like(g))
        # local chains: geometric step decay step -> step*1e-4 over all iterations;
        # fixed-point chains: power steps for fp_iters, then the same decay over the remaining iterations
        eta_loc = step * STEP_DECAY ** (t / max(1, steps - 1))
        tt = max(0, t - fp_iters)
        eta_fp = step * STEP_DECAY ** (tt / max(1, steps - fp_iters - 1))
        x_loc = xd + eta_loc * u
        x_fp = torch.where(ok, u, xd) if t < fp_iters else xd + eta_fp * u
        x = feasible(torch.where(fp_chain, x_fp, x_loc))
    return best, best_x


@dataclass(frozen=True)
class PGDResult:
    """A PGD lower bound on sup_{||x||<=1} ||f(x) - f_hat(x)||: ``value`` = ||f(x) - f_hat(x)|| at the feasible
    ``x`` found (``x`` in input shape)."""

    value: float
    x: np.ndarray
    restarts: int
    steps: int
    seed: int
    homogeneous: bool
    n_starts: int
    radius: float = 1.0  # the region: ||x - center|| <= radius in ``norm`` (center: the origin unless given)
    norm: str = "l2"
    statement: str = "lower bound by evaluation at a feasible input (THEORY §6, PGD protocol)"


def starts(input_shape: Sequence[int], restarts: int, generator: torch.Generator | None, basis: bool = False,
           extra: torch.Tensor | None = None, dtype=torch.float64) -> torch.Tensor:
    """Starting points (S, d_0), unnormalised: ``restarts`` Gaussian directions from ``generator``, then +-e_j
    (``basis``), then ``extra`` rows (e.g. +-the top right singular vector of the linear part)."""
    d0 = int(np.prod(tuple(input_shape)))
    parts = []
    if restarts > 0:
        if generator is None:
            raise ProbPruneError("random PGD starts need a seeded torch.Generator")
        parts.append(torch.randn(restarts, d0, generator=generator, dtype=dtype))
    if basis:
        eye = torch.eye(d0, dtype=dtype)
        parts.append(torch.cat([eye, -eye]))
    if extra is not None:
        parts.append(torch.as_tensor(extra, dtype=dtype).reshape(-1, d0))
    if not parts:
        raise ProbPruneError("PGD needs at least one start")
    return torch.cat(parts)


def pgd_sup_error(f: Callable, f_hat: Callable, input_shape: Sequence[int], restarts: int = 64, steps: int = 60,
                  seed: int = 0, *, step: float = 0.5, basis: bool = False, extra_starts=None,
                  homogeneous: bool = False, dtype=torch.float64, center=None, radius: float = 1.0,
                  norm: str = "l2") -> PGDResult:
    """Lower bound on sup_{||x||<=1} ||f(x) - f_hat(x)|| by :func:`pgd_ascent` (THEORY §6).

    ``f`` and ``f_hat`` map a batch (B, *input_shape) to outputs (B, ...) (flattened per input); they must be
    differentiable in torch. Starts: ``restarts`` Gaussian directions from ``torch.Generator().manual_seed(seed)``,
    +-e_j if ``basis``, and ``extra_starts`` rows. ``homogeneous=True`` only for positively homogeneous f, f_hat
    (e.g. bias-free ReLU nets): sphere search with the fixed-point chain; the default uses the ball projection,
    valid for any f.

    Region: by default the unit l2 ball at the origin. ``center`` (input shape), ``radius`` and ``norm`` ("l2" or
    "linf") select {x : ||x - center|| <= radius}, searched as x = center + radius u over the unit ball (l2) or box
    (linf); the starts (and ``extra_starts``) are directions u, scaled to the unit sphere (l2) or the box boundary
    (linf). ``homogeneous=True`` needs the l2 ball centred at the origin."""
    shape = tuple(int(v) for v in input_shape)
    if norm not in ("l2", "linf"):
        raise ProbPruneError(f"PGD norm must be 'l2' or 'linf', got {norm!r}")
    radius = float(radius)
    if not (np.isfinite(radius) and radius >= 0):
        raise ProbPruneError(f"PGD radius must be finite and >= 0, got {radius!r}")
    c = None if center is None else torch.as_tensor(np.asarray(center, float), dtype=dtype).reshape(1, *shape)
    if homogeneous and (norm != "l2" or (c is not None and bool(c.any()))):
        raise ProbPruneError("homogeneous=True needs the l2 ball centred at the origin")
    gen = torch.Generator().manual_seed(int(seed))
    if norm == "l2":
        x0 = unit(starts(shape, restarts, gen, basis, extra_starts, dtype)[None]).reshape(1, -1, *shape)
    else:
        z = starts(shape, restarts, gen, basis, extra_starts, dtype)
        x0 = (z / z.abs().amax(dim=1, keepdim=True).clamp_min(1e-300)).reshape(1, -1, *shape)

    def point(u):  # u in the unit ball / box -> x = center + radius u
        if c is None:
            return u if radius == 1.0 else radius * u
        return c + radius * u

    def sq_diff(x):
        xs = point(x.reshape(-1, *shape))
        d = (f(xs) - f_hat(xs)).reshape(xs.shape[0], -1)
        return (d * d).sum(-1).reshape(1, -1)

    best, bx = pgd_ascent(sq_diff, x0, int(steps), float(step), bool(homogeneous), box=(norm == "linf"))
    return PGDResult(float(best[0]), point(bx[:1])[0].detach().cpu().numpy(), int(restarts), int(steps), int(seed),
                     bool(homogeneous), int(x0.shape[1]), radius=radius, norm=norm)


__all__ = ["pgd_ascent", "pgd_sup_error", "PGDResult", "starts", "unit", "proj_ball", "proj_box"]
