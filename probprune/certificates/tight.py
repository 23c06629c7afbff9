"""One entry point for the tighter certificates (THEORY.md §12 [D]) over the unit ball (the paper's metric) or any
ball around a centre, with a per-stage report of where the looseness comes from."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from probprune.core.errors import ProbPruneError
from probprune.certificates.compose import certify_composed
from probprune.certificates.lower import Chain, lower_pair
from probprune.certificates.mixed import lemma_a_mixed
from probprune.certificates.propagate import CoupledPropagator, Region, region_error_bound
from probprune.certificates.sdp import check_lifted_dim, crown_bounds, lifted_dim, sdp_certificate

METHODS = ("auto", "composed", "pairs", "mixed", "propagate", "sdp")
SDP_AUTO_DIM = 160  # "auto" adds the SDP certificate (§12.6) when the lifted problem has at most this many coordinates
# (seconds there); explicit method="sdp" runs it up to sdp.MAX_DIM (minutes at a few hundred coordinates)


@dataclass(frozen=True)
class TightCertificate:
    """``eps`` upper-bounds sup_{||x - c||_2 <= radius} ||F(x) - F_hat(x)||_2 deterministically (min over the
    valid methods computed). ``components``: every bound computed, by method."""

    eps: float
    method: str
    components: dict
    radius: float
    stages: tuple[dict, ...]
    statement: str
    assumptions: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        return {"eps": self.eps, "method": self.method, "components": dict(self.components), "radius": self.radius,
                "stages": list(self.stages), "statement": self.statement, "assumptions": list(self.assumptions)}


def certify_chains(F: Chain, Fhat: Chain, method: str = "auto", radius: float = 1.0, center=None
                   ) -> TightCertificate:
    """Tight certificate for lowered chains (§12.1-§12.4). ``center`` None = the origin (the paper's ball); the
    norm-based methods (composed, pairs) need the origin-centred ball."""
    if method not in METHODS:
        raise ProbPruneError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    if not (math.isfinite(radius) and radius >= 0):
        raise ProbPruneError(f"radius must be finite and >= 0, got {radius!r}")
    c = np.zeros(F.n_in) if center is None else np.asarray(center, float).reshape(-1)
    if c.size != F.n_in:
        raise ProbPruneError(f"center has {c.size} entries, the network input has {F.n_in}")
    at_origin = not np.any(c)
    comps: dict[str, float] = {}
    stages = []
    if method == "sdp":
        check_lifted_dim(F)  # refuse before any work
    if method in ("auto", "composed", "pairs"):
        if not at_origin:
            if method != "auto":
                raise ProbPruneError(f"method {method!r} bounds the ball centred at the origin only; use "
                                     "'propagate' for a ball around a data point")
        else:
            cr = certify_composed(F, Fhat, radius, pairs=(method != "composed"))
            comps["composed_fwd"] = cr.fwd
            comps["composed_bwd"] = cr.bwd
            if method != "composed":
                comps["pairs"] = cr.pairs
            n = cr.norms
            for i, s in enumerate(F.stages):
                stages.append({"stage": s.name, "ops": list(s.ops), "norm_M": float(n.M[i]),
                               "norm_Mhat": float(n.Mhat[i]), "norm_E": float(n.E[i]),
                               "product_of_op_norms": float(n.factor_product[i]),
                               "composition_gain": float(n.factor_product[i] / n.M[i]) if n.M[i] > 0 else float("nan"),
                               "bias_diff": float(n.bias_diff[i])})
    prop = None
    if method in ("auto", "mixed", "propagate", "sdp"):
        reg = Region(c[None, :], float(radius), "l2")
        prop = CoupledPropagator(F, Fhat, reg)
    if method in ("auto", "mixed"):
        mx = lemma_a_mixed(F, Fhat, reg, prop)
        comps["mixed"] = mx.eps
        for i in range(min(len(stages), len(mx.terms))):
            stages[i].update({"mixed_term": mx.terms[i], "sup_v_bound": mx.V[i], "slope_product_bound": mx.Pi[i]})
    if method in ("auto", "propagate"):
        r = region_error_bound(F, Fhat, reg, prop)
        comps["propagate"] = float(r.eps[0])
        comps["propagate_coordinate"] = float(r.coordinate[0])
        comps["propagate_affine"] = float(r.affine[0])
        for i, info in enumerate(r.layer_info):
            if i < len(stages):
                stages[i].update({k: v for k, v in info.items()})
            else:
                stages.append({"stage": F.stages[i].name, **info})
    sdp_info = None
    if method == "sdp" or (method == "auto" and lifted_dim(F) <= SDP_AUTO_DIM):
        sc = sdp_certificate(F, Fhat, radius, None if at_origin else c, crown=crown_bounds(prop))
        comps["sdp"] = sc.eps
        sdp_info = {k: v for k, v in sc.__dict__.items() if k != "eps"}
    keys = [k for k in ("composed_fwd", "composed_bwd", "pairs", "mixed", "propagate", "sdp") if k in comps]
    best = min(keys, key=lambda k: comps[k])
    if sdp_info is not None:
        stages = stages + [{"stage": "sdp (whole network, §12.6)", **sdp_info}]
    return TightCertificate(
        eps=float(comps[best]), method=best, components=comps, radius=float(radius), stages=tuple(stages),
        statement="THEORY.md §12 (composed Lemma A §12.1, pair bound §12.2, unrolling and mixed bound §12.3, "
                  "coupled propagation §12.4, cross-network SDP §12.6)",
        assumptions=("deterministic: holds for this network and mask",
                     f"inputs in the l2 ball of radius {radius} around {'the origin' if at_origin else 'the centre'}"
                     " (Frobenius for images)",
                     "ReLU activations; affine operations composed exactly in float64",
                     "floating-point allowances: norms (1 + 1e-9), pair bound (1 + 1e-6), propagation FP_REL = 1e-7"))


def certify_tight(model, pruned_model, input_shape, method: str = "auto", radius: float = 1.0, center=None
                  ) -> TightCertificate:
    """Lower F and F_hat (torch modules) and certify (§12)."""
    F, Fh = lower_pair(model, pruned_model, input_shape)
    return certify_chains(F, Fh, method, radius, center)
