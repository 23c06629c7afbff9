"""Bound propagation on the difference network F - F_hat as ONE coupled graph (THEORY.md §12.3-§12.5 [D]).

Both networks are lowered to chains of the same structure (:mod:`probprune.certificates.lower`). With shat_i the pruned
network's activations and delta_i = s_i - shat_i the error channel (shared input: delta_0 = 0, shat_0 = x):

    zhat_i = Mhat_i shat_{i-1} + bhat_i,       dz_i = z_i - zhat_i = M_i delta_{i-1} + E_i shat_{i-1} + (b_i - bhat_i),
    shat_i = ReLU(zhat_i),                     delta_i = ReLU(zhat_i + dz_i) - ReLU(zhat_i)          (E_i = M_i - Mhat_i)

and F(x) - F_hat(x) = dz_L. Every neuron of F is coupled with its pruned copy through delta (in the spirit of Li,
Drummond & Duncan 2020, and of ReluDiff, Paulsen et al. 2020): delta_i lies between 0 and dz_i (ReLU is monotone
and 1-Lipschitz), is 0 when both copies are inactive and equals dz_i when both are active, so its linear
relaxation is as narrow as the *difference* dz_i, not as wide as the neuron's own range. shat uses the CROWN ReLU
relaxation (Zhang et al. 2018). Linear bounds are propagated backwards (CROWN) to the input and maximised in closed
form over the region (l2 ball: Cauchy-Schwarz; l_inf box: Hoelder), which gives per-coordinate bounds; the l2 norm
of the error is bounded by the smaller of the coordinate bound and a Lagrangian-dual (trust-region) bound on the
affine midpoint plus the half-width (§12.4). Nothing here is an estimate: each number is an upper bound, inflated
by a floating-point allowance (§12.3, FP_REL).
"""
from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from probprune.core.errors import ProbPruneError
from probprune.certificates.compose import StepClock
from probprune.certificates.lower import Chain, stage_diff

MEMO_BYTES = 256 << 20  # (TB) memo of the mixed bound's propagator queries, bytes
FP_REL = 1e-7  # relative floating-point allowance on every propagated bound (THEORY §12.3)
SPARSE_MIN_SIZE = 65_536  # stage matrices with at least this many entries ...
SPARSE_MAX_DENSITY = 0.25  # ... and at most this fraction of nonzeros are applied as sparse operators (§12.9)
OPERATORS = ("auto", "dense", "sparse")
_IDENTITY = "identity"


def _as_operator(A, operators: str):
    """The stage matrix A (torch float64) as the operator used in the backward substitution L -> L A (THEORY §12.9):
    a torch sparse CSR matrix when it is large and sparse (convolutions, pooling, max-pool trees and carried identity
    blocks), else None (dense matmul). The product is the same sum of the same nonzero terms, in another order."""
    import warnings

    import torch

    if A.dim() == 2 and A.shape[0] == A.shape[1] and A.shape[0] > 1 and bool(
            (torch.diagonal(A) == 1).all()) and int(torch.count_nonzero(A)) == A.shape[0]:
        return _IDENTITY  # stage breaks around max-pool trees: L I = L exactly (n ones on the diagonal, no other)
    if operators == "dense":
        return None
    n = A.numel()
    if operators == "auto" and n < SPARSE_MIN_SIZE:
        return None
    a = A.numpy()
    nnz = int(np.count_nonzero(a))
    if operators == "auto" and nnz > SPARSE_MAX_DENSITY * n:
        return None
    with warnings.catch_warnings():  # torch: "sparse CSR support is in beta"
        warnings.simplefilter("ignore")
        # stored transposed: L A = (A^T L^T)^T, a sparse-times-dense product (about 2x faster than dense-times-sparse
        # on one thread; the same terms summed in another order, TB)
        return _SparseT(A.T.contiguous().to_sparse_csr())


@dataclass(frozen=True, eq=False)
class _SparseT:
    """A^T of a stage matrix A as a torch sparse CSR matrix (the operator form of §12.9)."""

    At: object


@dataclass(frozen=True)
class Region:
    """Inputs x with ||x - center||_p <= radius (p = 2 or inf), one region per row of ``centers``."""

    centers: np.ndarray  # (B, n)
    radius: float
    norm: str = "l2"  # "l2" | "linf"

    def __post_init__(self):
        if self.norm not in ("l2", "linf"):
            raise ProbPruneError(f"region norm must be 'l2' or 'linf', got {self.norm!r}")
        if not (math.isfinite(self.radius) and self.radius >= 0):
            raise ProbPruneError(f"radius must be finite and >= 0, got {self.radius!r}")
        c = np.asarray(self.centers, float)
        if c.ndim != 2 or not np.all(np.isfinite(c)):
            raise ProbPruneError("region centers must be a finite (B, n) array")
        object.__setattr__(self, "centers", c)


def _relu_relax(l, u):
    """CROWN relaxation of s = ReLU(z), z in [l, u]: aL z + cL <= s <= aU z + cU (adaptive lower slope)."""
    import torch

    act = l >= 0
    dead = u <= 0
    unst = ~(act | dead)
    den = torch.where(unst, u - l, torch.ones_like(u))
    aU = torch.where(act, torch.ones_like(u), torch.where(unst, u / den, torch.zeros_like(u)))
    cU = torch.where(unst, -u * l / den, torch.zeros_like(u))
    # any lower slope in [0, 1] is valid; 1 when u >= -l, with a relative tolerance so that exact ties (max-pool
    # differences a - b over an origin-centred ball have l = -u) do not flip with the summation order (§12.9)
    aL = torch.where(act | (unst & (u >= -l * (1 - 1e-9))), torch.ones_like(u), torch.zeros_like(u))
    cL = torch.zeros_like(u)
    return aL, cL, aU, cU


def _delta_relax(l, u, zl, zu, dl, du):
    """Relaxation of delta = ReLU(zhat + dz) - ReLU(zhat) in dz (THEORY §12.3, Lemma 12.3):
    zhat in [l, u], z = zhat + dz in [zl, zu], dz in [dl, du]."""
    import torch

    one, zero = torch.ones_like(u), torch.zeros_like(u)
    den = torch.where(du > dl, du - dl, one)
    # general case: delta between 0 and dz
    aU = torch.where(du <= 0, zero, torch.where(dl >= 0, one, du / den))
    cU = torch.where((du > 0) & (dl < 0), -du * dl / den, zero)
    aL = torch.where(dl >= 0, zero, torch.where(du <= 0, one, -dl / den))
    cL = torch.where((du > 0) & (dl < 0), dl * du / den, zero)
    # refinements from the regimes of the two copies
    hat_act, hat_dead, z_act, z_dead = l >= 0, u <= 0, zl >= 0, zu <= 0
    aL = torch.where(hat_act, one, torch.where(hat_dead, zero, aL))  # zhat >= 0: delta >= dz; zhat <= 0: delta >= 0
    cL = torch.where(hat_act | hat_dead, zero, cL)
    aU = torch.where(z_act, one, torch.where(z_dead, zero, aU))  # z >= 0: delta <= dz; z <= 0: delta <= 0
    cU = torch.where(z_act | z_dead, zero, cU)
    both_dead = hat_dead & z_dead
    both_act = hat_act & z_act
    aL = torch.where(both_dead, zero, torch.where(both_act, one, aL))
    aU = torch.where(both_dead, zero, torch.where(both_act, one, aU))
    cL = torch.where(both_dead | both_act, zero, cL)
    cU = torch.where(both_dead | both_act, zero, cU)
    return aL, cL, aU, cU


@dataclass
class _Relax:
    aL: object
    cL: object
    aU: object
    cU: object
    ident: bool = True  # identity on every coordinate (no ReLU, or every ReLU provably active): n -> n
    const: bool = False  # some relaxation constant is nonzero

    def finalize(self):
        self.ident = bool((self.aL == 1).all() and (self.aU == 1).all())
        self.const = bool(self.cU.any() or self.cL.any())
        if self.ident and self.const:
            self.ident = False
        return self


def _identity_relax(relu_mask, B, dtype):
    import torch

    n = relu_mask.shape[0]
    one = torch.ones(B, n, dtype=dtype)
    zero = torch.zeros(B, n, dtype=dtype)
    return _Relax(one, zero, one.clone(), zero.clone())


def _set(relax: _Relax, idx, aL, cL, aU, cU):
    relax.aL[:, idx] = aL
    relax.cL[:, idx] = cL
    relax.aU[:, idx] = aU
    relax.cU[:, idx] = cU


class CoupledPropagator:
    """CROWN on the coupled chain (F, F_hat) over a region (one batch of centres). Builds every intermediate bound
    in order on construction; ``output_linear_bounds`` then bounds linear specifications of F - F_hat."""

    def __init__(self, F: Chain, Fhat: Chain, region: Region, chunk_rows: int = 4096, operators: str = "auto",
                 modes: str = "all"):
        """``modes`` "all": intermediate bounds of F_hat, F and the coupled channel (every query); "hat": F_hat's
        only (the queries of mode "hat", e.g. the mixed bound's sup ||E shat|| and sup ||shat||; a third of the
        cost)."""
        import torch

        if modes not in ("all", "hat"):
            raise ProbPruneError(f"modes must be 'all' or 'hat', got {modes!r}")
        self.modes = modes
        # (TB) the F_hat queries of the mixed bound, memoised by content: "auto" runs the mixed bound with single
        # norms, scalar pair bounds and full pair bounds on one propagator, and each asks the same sup ||E_i shat||
        # and sup ||shat_i||; a hit returns the tensors computed earlier for identical inputs (callers never modify
        # them); LRU within MEMO_BYTES
        self._memo: OrderedDict = OrderedDict()
        self._memo_bytes = 0
        self._l2_memo: dict = {}

        if operators not in OPERATORS:
            raise ProbPruneError(f"operators must be one of {', '.join(OPERATORS)}, got {operators!r}")

        if not F.same_structure(Fhat):
            raise ProbPruneError("F and F_hat must be chains of the same structure")
        if region.centers.shape[1] != F.n_in:
            raise ProbPruneError(f"region dimension {region.centers.shape[1]} != network input {F.n_in}")
        self.F, self.Fhat, self.region = F, Fhat, region
        t = lambda a: torch.as_tensor(np.asarray(a, float), dtype=torch.float64)  # noqa: E731
        self.M = [t(s.M) for s in F.stages]
        self.Mh = [t(s.M) for s in Fhat.stages]
        self.E = [t(stage_diff(F, Fhat, i)[0]) for i in range(F.depth)]
        self.E_zero = [bool(torch.count_nonzero(e) == 0) for e in self.E]
        self.b = [t(s.b) for s in F.stages]
        self.bh = [t(s.b) for s in Fhat.stages]
        self.db = [t(stage_diff(F, Fhat, i)[1]) for i in range(F.depth)]
        self.relu = [np.flatnonzero(s.relu) for s in F.stages]
        # operator forms of the stage matrices for the backward substitution (sparse where it pays, §12.9)
        self._ops = {}
        for j in range(F.depth):
            op = self._ops[id(self.M[j])] = _as_operator(self.M[j], operators)
            # max-pool trees, carried blocks, unpruned stages: M_j = Mhat_j (checked exactly), one operator for both
            same = self.E_zero[j] and bool(torch.equal(self.M[j], self.Mh[j]))
            self._ops[id(self.Mh[j])] = op if same else _as_operator(self.Mh[j], operators)
            if not self.E_zero[j]:
                self._ops[id(self.E[j])] = _as_operator(self.E[j], operators)
        self.b_zero = [not bool(v.any()) for v in self.b]
        self.bh_zero = [not bool(v.any()) for v in self.bh]
        self.db_zero = [not bool(v.any()) for v in self.db]
        self.n_sparse = sum(o is not None and o is not _IDENTITY for o in self._ops.values())
        self.x0 = t(region.centers)
        self.B = self.x0.shape[0]
        self.chunk = chunk_rows
        L = F.depth
        self.rel_h: list[_Relax] = []   # shat relaxations (from zhat bounds)
        self.rel_F: list[_Relax] = []   # F-alone relaxations (from z bounds)
        self.rel_d: list[_Relax] = []   # delta relaxations
        self.bounds: list[dict] = []
        # CROWN pre-activation bounds of the first centre per hidden stage: (ReLU indices, l, u of F_hat, l, u of F)
        # (sound on the region; the SDP certificate of §12.6 intersects its intervals with them)
        self.pre_bounds: list = []
        self._hat_lu: list = []  # (l, u) of F_hat's ReLU inputs per hidden stage (reused by upgrade())
        clock = StepClock()
        for j in range(L - 1):
            # interruptible between stages (certify_chains' time limit, TB); UA: not started when predicted (stage j's
            # measured rate; F, F_hat and the coupled channel ~5 x F_hat alone) to end past the deadline
            clock.check(work=5.0 if modes == "all" else 1.0, kind=("stage", j))
            idx = self.relu[j]
            rh = _identity_relax(F.stages[j].relu, self.B, torch.float64)
            info = {"n_relu": int(len(idx))}
            l = u = None
            if len(idx):
                l, u = self._bounds_rows(j, idx, mode="hat")
                _set(rh, idx, *_relu_relax(l, u))
                info.update(hat_unstable=float(((l < 0) & (u > 0)).double().mean()))
            self._hat_lu.append((l, u))
            self.rel_h.append(rh.finalize())
            self.bounds.append(info)
            if modes == "all":
                self._coupled_stage(j)
            else:
                self.pre_bounds.append(None if not len(idx) else
                                       (idx, l[0].numpy().copy(), u[0].numpy().copy(), None, None))

    def _coupled_stage(self, j: int) -> None:
        """The bounds of F and of the coupled channel at hidden stage j (F_hat's are in ``_hat_lu``): the
        relaxations rel_F[j], rel_d[j] and pre_bounds[j] (the same operations whether built at construction or by
        :meth:`upgrade`)."""
        import torch

        F = self.F
        idx = self.relu[j]
        rF = _identity_relax(F.stages[j].relu, self.B, torch.float64)
        rd = _identity_relax(F.stages[j].relu, self.B, torch.float64)
        info = self.bounds[j]
        if len(idx):
            l, u = self._hat_lu[j]
            zl, zu = self._bounds_rows(j, idx, mode="F")
            dl, du = self._bounds_rows(j, idx, mode="coupled")
            zl, zu = torch.maximum(zl, l + dl), torch.minimum(zu, u + du)
            dl, du = torch.maximum(dl, zl - u), torch.minimum(du, zu - l)
            pb = (idx, l[0].numpy().copy(), u[0].numpy().copy(), zl[0].numpy().copy(), zu[0].numpy().copy())
            _set(rF, idx, *_relu_relax(zl, zu))
            _set(rd, idx, *_delta_relax(l, u, zl, zu, dl, du))
            info.update(
                F_unstable=float(((zl < 0) & (zu > 0)).double().mean()),
                pair_unfixed=float((~(((u <= 0) & (zu <= 0)) | ((l >= 0) & (zl >= 0)))).double().mean()),
                dz_width_mean=float((du - dl).mean()),
            )
        else:
            pb = None
        if len(self.pre_bounds) > j:
            self.pre_bounds[j] = pb
        else:
            self.pre_bounds.append(pb)
        self.rel_F.append(rF.finalize())
        self.rel_d.append(rd.finalize())

    def upgrade(self) -> "CoupledPropagator":
        """A propagator built with modes="hat" -> modes="all" in place: F's and the coupled channel's bounds are
        added stage by stage on top of the stored F_hat bounds, with the same operations as a construction with
        modes="all" (so the same numbers); interruptible between stages (certify_chains' time limit). Used by
        "auto", which runs the mixed bound (F_hat queries only) before the coupled propagation (TB)."""
        if self.modes == "all":
            return self
        done = len(self.rel_F)
        clock = StepClock()
        for j in range(done, self.F.depth - 1):
            clock.check(work=4.0, kind=("stage", j))  # F (~1) + the coupled channel (~3) x the F_hat stage
            self._coupled_stage(j)
        self.modes = "all"
        return self

    # -------------------------------------------------------------------------------------------- backward pass
    def _rmul(self, L, A):
        """L A for coefficients L (B, R, n_out) and a stage matrix A (n_out, n_in): dense matmul, or the sparse
        operator of A (§12.9) applied to the B*R specification rows at once."""
        import torch

        op = self._ops.get(id(A))
        if op is None:
            return L @ A
        if op is _IDENTITY:
            return L
        B, R, n = L.shape
        return (op.At @ L.reshape(B * R, n).T).T.reshape(B, R, A.shape[1])

    def _relax_step(self, nd, nh, j, rel_h, const, mag):
        """Replace the coefficients on (delta_j, shat_j) by coefficients on (dz_j, zhat_j) (upper bound)."""
        Ld = None if nd is None else self._relax_one(nd, self.rel_d[j], const, mag)
        Lh = None if nh is None else self._relax_one(nh, rel_h[j], const, mag)
        return Ld, Lh

    @staticmethod
    def _relax_one(n, r, const, mag):
        """Coefficients n on a relaxed activation -> coefficients on its input (upper relaxation where n > 0, lower
        where n < 0); the relaxation constants are added to ``const`` (and their magnitude to ``mag``)."""
        import torch

        if r.ident:
            return n
        pos = n > 0
        out = n * torch.where(pos, r.aU[:, None, :], r.aL[:, None, :])
        if r.const:
            cc = (n * torch.where(pos, r.cU[:, None, :], r.cL[:, None, :])).sum(-1)
            const += cc
            mag += cc.abs()
        return out

    def _backward_upper(self, k, C_dz, C_zh, mode, start_act=False):
        """Upper linear bound, valid on the region, of C_dz . dz_k + C_zh . zhat_k (rows of C: specifications).
        mode "coupled"/"hat" uses the coupled chain; "F" runs C_zh on F alone. Returns (Lx (B,R,n0), const (B,R),
        mag (B,R)) with mag a magnitude for the floating-point allowance."""
        import torch

        if self.modes == "hat" and (mode != "hat" or C_dz is not None):
            raise ProbPruneError("this propagator was built with modes='hat': F and coupled queries need modes='all'")
        key = None
        if C_dz is None and mode == "hat" and start_act:  # the mixed bound's queries (sup ||E shat||, sup ||shat||)
            key = (k, C_zh.shape, hashlib.blake2b(C_zh.contiguous().numpy().tobytes(), digest_size=20).digest())
            hit = self._memo.get(key)
            if hit is not None:
                self._memo.move_to_end(key)
                return hit
        out = self._backward_upper_impl(k, C_dz, C_zh, mode, start_act)
        if key is not None:
            nbytes = sum(t.numel() * 8 for t in out)
            if nbytes <= MEMO_BYTES // 4:
                self._memo[key] = out
                self._memo_bytes += nbytes
                while self._memo_bytes > MEMO_BYTES:
                    self._memo_bytes -= sum(t.numel() * 8 for t in self._memo.popitem(last=False)[1])
        return out

    def _backward_upper_impl(self, k, C_dz, C_zh, mode, start_act=False):
        import torch

        B = self.B
        R = (C_dz if C_dz is not None else C_zh).shape[-2]
        Ld = None if C_dz is None else C_dz.expand(B, -1, -1)
        Lh = None if C_zh is None else C_zh.expand(B, -1, -1)
        const = torch.zeros(B, R, dtype=torch.float64)
        mag = torch.zeros(B, R, dtype=torch.float64)
        rel_h = self.rel_F if mode == "F" else self.rel_h
        if start_act:  # C are coefficients on the activation outputs (delta_k, shat_k) of stage k
            if k >= self.F.depth - 1:
                raise ProbPruneError("start_act needs a stage with an activation (not the output stage)")
            Ld, Lh = self._relax_step(Ld, Lh, k, rel_h, const, mag)
            if Ld is None and Lh is None:
                return torch.zeros(B, R, self.F.n_in, dtype=torch.float64), const, mag
        return self._run_from(k, Ld, Lh, const, mag, mode)

    def _run_from(self, k, Ld, Lh, const, mag, mode):
        """Backward substitution from linear stage k down to the input, given coefficients (Ld, Lh) on (dz_k, zhat_k)
        (or z_k in mode "F") and the accumulated (const, mag)."""
        import torch

        B = self.B
        R = const.shape[1]
        Ms = self.M if mode == "F" else self.Mh
        bs = self.b if mode == "F" else self.bh
        bz = self.b_zero if mode == "F" else self.bh_zero
        rel_h = self.rel_F if mode == "F" else self.rel_h
        clock = StepClock()
        for j in range(k, -1, -1):
            # interruptible between stages (certify_chains' time limit, TB); UA: a step (stage j's products and the
            # relaxation below it, ~ rows) is not started when predicted (stage j's last step) to end past the deadline
            clock.check(work=R * (3.0 if mode == "coupled" else 1.0), kind=("backsub", j))  # coupled: 3 products
            # linear stage j: zhat_j = Mh_j shat_{j-1} + bh_j; dz_j = M_j delta_{j-1} + E_j shat_{j-1} + db_j
            nd, nh = None, None
            if Lh is not None:
                if not bz[j]:  # zero biases (carried blocks, stage breaks) add nothing
                    const += Lh @ bs[j]
                    mag += Lh.abs() @ bs[j].abs()
                nh = self._rmul(Lh, Ms[j])
            if Ld is not None:
                if not self.db_zero[j]:
                    const += Ld @ self.db[j]
                    mag += Ld.abs() @ self.db[j].abs()
                if j > 0:
                    nd = self._rmul(Ld, self.M[j])
                if not self.E_zero[j]:
                    t = self._rmul(Ld, self.E[j])
                    nh = t if nh is None else nh + t
            if j == 0:
                Lx = nh if nh is not None else torch.zeros(B, R, self.F.n_in, dtype=torch.float64)
                return Lx, const, mag
            # activation of stage j-1 (upper bound: positive coefficient -> upper relaxation)
            Ld, Lh = self._relax_step(nd, nh, j - 1, rel_h, const, mag)
            if Ld is None and Lh is None:
                return torch.zeros(B, R, self.F.n_in, dtype=torch.float64), const, mag
        raise AssertionError("unreachable")

    def _concretize(self, Lx, const, mag):
        """max over the region of Lx x + const (+ allowance)."""
        import torch

        r = self.region.radius
        dual = Lx.norm(dim=-1) if self.region.norm == "l2" else Lx.abs().sum(-1)
        v = torch.einsum("brn,bn->br", Lx, self.x0) + const + r * dual
        m = mag + torch.einsum("brn,bn->br", Lx.abs(), self.x0.abs()) + r * dual
        return v + FP_REL * (m + v.abs())

    def _bounds_rows(self, k, idx, mode):
        """(lower, upper) of the coordinates ``idx`` of zhat_k (mode "hat"), z_k ("F") or dz_k ("coupled"); the first
        substitution is a row selection (no multiplication by an identity specification)."""
        import torch

        ii = torch.as_tensor(np.asarray(idx), dtype=torch.long)
        if mode == "coupled":
            nd0 = self.M[k][ii] if k > 0 else None
            nh0 = None if self.E_zero[k] else self.E[k][ii]
            c0 = self.db[k][ii]
        else:
            nd0 = None
            nh0 = (self.M if mode == "F" else self.Mh)[k][ii]
            c0 = (self.b if mode == "F" else self.bh)[k][ii]
        R = len(idx)
        if k == 0:  # affine in x: exact maximum over the region
            Lx = nh0 if nh0 is not None else torch.zeros(R, self.F.n_in, dtype=torch.float64)
            center = self.x0 @ Lx.T + c0
            dual = Lx.norm(dim=1) if self.region.norm == "l2" else Lx.abs().sum(1)
            rad = self.region.radius * dual
            mag = self.x0.abs() @ Lx.abs().T + c0.abs() + rad
            allow = FP_REL * (mag + center.abs() + rad)
            return center - rad - allow, center + rad + allow
        lo, up = [], []
        B = self.B
        clock = StepClock()
        for a in range(0, R, self.chunk):
            clock.check(work=min(self.chunk, R - a) * (3.0 if mode == "coupled" else 1.0), kind=("chunk", k))
            sl = slice(a, a + self.chunk)
            nd = None if nd0 is None else torch.cat([nd0[sl], -nd0[sl]]).expand(B, -1, -1)
            nh = None if nh0 is None else torch.cat([nh0[sl], -nh0[sl]]).expand(B, -1, -1)
            cc = torch.cat([c0[sl], -c0[sl]])
            m = cc.shape[0] // 2
            const = cc.expand(B, -1).clone()
            mag = const.abs()
            rel_h = self.rel_F if mode == "F" else self.rel_h
            Ld, Lh = self._relax_step(nd, nh, k - 1, rel_h, const, mag)
            if Ld is None and Lh is None:
                v = self._concretize(torch.zeros(B, 2 * m, self.F.n_in, dtype=torch.float64), const, mag)
            else:
                v = self._concretize(*self._run_from(k - 1, Ld, Lh, const, mag, mode))
            up.append(v[:, :m])
            lo.append(-v[:, m:])
        return torch.cat(lo, 1), torch.cat(up, 1)

    def _bounds(self, k, C_dz, C_zh, mode):
        """(lower, upper) of the specification rows at stage k, each (B, R)."""
        import torch

        R = (C_dz if C_dz is not None else C_zh).shape[-2]
        lo, up = [], []
        for a in range(0, R, self.chunk):
            sl = slice(a, a + self.chunk)
            cd = None if C_dz is None else torch.cat([C_dz[sl], -C_dz[sl]])
            ch = None if C_zh is None else torch.cat([C_zh[sl], -C_zh[sl]])
            m = (cd if cd is not None else ch).shape[0] // 2
            v = self._concretize(*self._backward_upper(k, cd, ch, mode))
            up.append(v[:, :m])
            lo.append(-v[:, m:])
        return torch.cat(lo, 1), torch.cat(up, 1)

    # -------------------------------------------------------------------------------------------- outputs
    def output_linear_bounds(self, C_dz, C_zh=None, mode="coupled"):
        """Upper linear bounds (Lx, const, mag) of C_dz . (F - F_hat)(x) + C_zh . F_hat(x) on the region."""
        import torch

        k = self.F.depth - 1
        t = lambda a: None if a is None else torch.as_tensor(np.asarray(a, float), dtype=torch.float64)  # noqa
        return self._backward_upper(k, t(C_dz), t(C_zh), mode)

    def output_upper(self, C_dz, C_zh=None, mode="coupled") -> np.ndarray:
        return self._concretize(*self.output_linear_bounds(C_dz, C_zh, mode)).numpy()


# ------------------------------------------------------------------------------------------------ l2 of an affine
def trs_dual_bound(M: np.ndarray, g: np.ndarray, r: float) -> float:
    """Upper bound on max_{||u||_2 <= r} ||M u + g||_2 (Lemma 12.4): for every mu > ||M||^2,
    max <= sqrt(||g||^2 + mu r^2 + sum_i s_i^2 (u_i.g)^2 / (mu - s_i^2)); minimised over mu numerically (any mu is
    valid). Inflated by 1e-9 relative."""
    M = np.asarray(M, float)
    g = np.asarray(g, float)
    if r == 0 or not np.any(M):
        return float(np.linalg.norm(g)) * (1 + 1e-9)
    # the singular values and projections from the Gram matrix on the smaller side (an eigh of min(m, n)^2 instead
    # of an SVD): s_i^2 (u_i.g)^2 = lam_i (u_i.g)^2 (left side) = (v_i.M^T g)^2 (right side)
    if M.shape[0] <= M.shape[1]:
        lam, U = np.linalg.eigh(M @ M.T)
        lam = np.maximum(lam, 0.0)
        num = lam * (U.T @ g) ** 2
    else:
        lam, V = np.linalg.eigh(M.T @ M)
        lam = np.maximum(lam, 0.0)
        num = (V.T @ (M.T @ g)) ** 2
    s1 = math.sqrt(float(lam[-1])) * (1 + 1e-9) + 1e-300
    return trs_dual_from_spectrum(lam, num, float(g @ g), r, s1 * s1, s1 * s1)


def trs_dual_from_spectrum(lam: np.ndarray, num: np.ndarray, c: float, r: float, top: float, scale: float) -> float:
    """sqrt(min over mu of c + mu r^2 + sum_i num_i / (mu - lam_i)) (1 + 1e-9), mu = top + e^z on a log grid of z
    around log(scale) (+-40, 161 points), refined by a bounded 1-D search: Lemma 12.4's dual for a form with
    eigenvalues ``lam`` and numerators ``num`` = (projections of its linear term)^2 (any mu > max(lam), mu >= 0 is
    valid, so the minimisation is only for size; ``top`` must be >= both)."""
    from scipy.optimize import minimize_scalar

    def f(logt):
        mu = top + math.exp(logt)
        return c + mu * r * r + float(np.sum(num / (mu - lam)))

    centre = math.log(max(scale, 1e-300))
    grid = np.linspace(centre - 40, centre + 40, 161)
    mu = top + np.exp(grid)  # the grid evaluated at once (the same formula as f, one row per mu)
    vals = c + mu * r * r + np.sum(num[None, :] / (mu[:, None] - lam[None, :]), axis=1)
    i = int(np.argmin(vals))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    res = minimize_scalar(f, bounds=(lo, hi), method="bounded", options={"xatol": 1e-6})
    best = min(float(vals[i]), float(res.fun)) if res.success else float(vals[i])
    return math.sqrt(max(best, 0.0)) * (1 + 1e-9)


@dataclass(frozen=True)
class RegionErrorBound:
    """Per-centre upper bounds on sup_{x in region} ||F(x) - F_hat(x)||_2 (§12.4)."""

    eps: np.ndarray  # (B,) the certificate: min of the two bounds below
    coordinate: np.ndarray  # (B,) sqrt(sum_k max(up_k, -lo_k)^2)
    affine: np.ndarray  # (B,) TRS dual bound on the midpoint + ||half-width|| (l2 regions; inf for l_inf)
    coord_lower: np.ndarray  # (B, n_out)
    coord_upper: np.ndarray  # (B, n_out)
    layer_info: tuple = ()
    statement: str = "THEORY.md §12.4 (coupled bound propagation on F - F_hat)"


def region_error_bound(F: Chain, Fhat: Chain, region: Region, prop: CoupledPropagator | None = None
                       ) -> RegionErrorBound:
    """sup over each region of ||F(x) - F_hat(x)||_2, bounded from above (THEORY §12.4 [D])."""
    prop = prop or CoupledPropagator(F, Fhat, region)
    n = F.n_out
    I = np.eye(n)
    Lx, const, mag = prop.output_linear_bounds(np.vstack([I, -I]))
    return l2_sup_from_linear(prop, Lx, const, mag, n)


def l2_sup_from_linear(prop: CoupledPropagator, Lx, const, mag, n: int) -> RegionErrorBound:
    """Statement 12.6: from upper linear bounds of +v_k (rows 0..n-1) and -v_k (rows n..2n-1) on the region, an upper
    bound on sup ||v||_2 (coordinate form and, for l2 balls, midpoint TRS-dual form). Memoised on ``prop`` for the
    same Lx object (a memoised query of the mixed bound) and the same const / mag bytes (TB)."""
    memo = getattr(prop, "_l2_memo", None)
    key = None
    if memo is not None and any(v[0] is Lx for v in prop._memo.values()):
        key = (id(Lx), n, hashlib.blake2b(const.contiguous().numpy().tobytes() + mag.contiguous().numpy().tobytes(),
                                          digest_size=20).digest())
        hit = memo.get(key)
        if hit is not None and hit[0] is Lx:
            return hit[1]
    out = _l2_sup_from_linear(prop, Lx, const, mag, n)
    if key is not None:
        live = [v[0] for v in prop._memo.values()]
        for kk in [kk for kk, v in memo.items() if not any(v[0] is x for x in live)]:
            del memo[kk]  # entries whose query left the LRU (do not keep its tensors alive)
        memo[key] = (Lx, out)
    return out


def _l2_sup_from_linear(prop: CoupledPropagator, Lx, const, mag, n: int) -> RegionErrorBound:
    region = prop.region
    up_all = prop._concretize(Lx, const, mag).numpy()
    Lx, const, mag = Lx.numpy(), const.numpy(), mag.numpy()
    up, lo = up_all[:, :n], -up_all[:, n:]
    coord = np.sqrt(np.sum(np.maximum(up, -lo) ** 2, axis=1)) * (1 + 1e-9)
    aff = np.full(len(up), np.inf)
    if region.norm == "l2":
        r = region.radius
        for bi in range(len(up)):
            AU, cU = Lx[bi, :n], const[bi, :n]
            AL, cL = -Lx[bi, n:], -const[bi, n:]
            x0 = region.centers[bi]
            Mmid, cmid = (AU + AL) / 2, (cU + cL) / 2
            g = Mmid @ x0 + cmid
            Hw = (AU - AL) / 2
            w = Hw @ x0 + (cU - cL) / 2 + r * np.linalg.norm(Hw, axis=1)
            w = np.maximum(w, 0.0)
            allow = FP_REL * (np.abs(mag[bi]).sum() + np.abs(Lx[bi]) @ np.abs(x0) + r * np.linalg.norm(Lx[bi], axis=1)).sum()
            aff[bi] = trs_dual_bound(Mmid, g, r) + float(np.linalg.norm(w)) + allow
    return RegionErrorBound(eps=np.minimum(coord, aff), coordinate=coord, affine=aff, coord_lower=lo,
                            coord_upper=up, layer_info=tuple(prop.bounds))
