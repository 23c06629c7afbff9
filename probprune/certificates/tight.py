"""One entry point for the tighter certificates (THEORY.md §12 [D]) over the unit ball (the paper's metric) or any
ball around a centre, with a per-stage report of where the looseness comes from."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from probprune.core.errors import ProbPruneError
from probprune.certificates.compose import TimeLimitReached, certify_composed, count_pair_skips, deadline, lemma_a_pairs
from probprune.certificates.compose import predicted_pair_seconds as compose_pair_seconds
from probprune.certificates.joint import (E2EOptions, check_joint_dim, coupled_width, e2e_steps_for, joint_bound,
                                         predicted_joint_seconds)
from probprune.certificates.lower import Chain, lower_pair
from probprune.certificates.mixed import lemma_a_mixed
from probprune.certificates.propagate import CoupledPropagator, Region, region_error_bound
from probprune.certificates.sdp import MAX_DIM, crown_bounds, lifted_dim, sdp_certificate
from probprune.certificates.sdp_fo import FO_MAX_DIM, sdp_fo_certificate

TIGHT_METHODS = ("auto", "composed", "pairs", "mixed", "joint", "propagate", "sdp")
JOINT_DIAG_STEPS = 25  # "auto": Adam steps of the joint bound's diagonal multipliers per step (§12.12), a count (not a
# time) so that without a time limit the result does not depend on the machine's speed; measured on the budget
# LeNet-300-100 at q = 0.28: scalar 0.764, 20 steps 0.618, 60 steps 0.602, 150 steps 0.593 (1.1 / 1.8 / 3.2 s)
JOINT_EXPLICIT_DIAG_STEPS = 150  # --bound joint
JOINT_E2E_STEPS = 100  # "auto": at most this many Adam steps on all of the joint bound's multipliers at once against the
# final bound (§12.12 "End-to-end multipliers"), fewer on wide chains (joint.e2e_steps_for: a count fixed by the
# shape); measured on the budget's residual digits net (q = 0.4): greedy 23.30, + 10 / 40 / 100 steps 19.33 / 16.35 /
# 14.62 with the ReLU constraints (0.2 / 0.7 / 1.5 s); its uniform budget 0.400 at 40, 0.434 at 100 (5.4 / 10.8 s)
JOINT_EXPLICIT_E2E_STEPS = 100  # --bound joint: at most this many, within JOINT_EXPLICIT_E2E_WORK
JOINT_LONG_MIN_SECONDS = 20.0  # "auto" runs the joint bound's long end-to-end search (JOINT_LONG_E2E) only where
# this much of the time limit is left: on max-pool chains on the lowering with ReLU after max pooling (Statement
# 12.64), after its other components; on chains where the plain count (joint.e2e_steps_for) gives no end-to-end steps
# (the 8x8 / 28x28 CNNs, LeNet-300-100, residual nets) first, with JOINT_TIME_SHARE of the time left, where the caller
# asks for it (certify_chains(joint_long=True): probprune.certify, not the budget's probes). LeNet-5 on
# digits, q = 0.3 / 0.6 / 0.9, with the default 10 s (about 50 float32 steps of JOINT_LONG_E2E, 8.7 s instead of
# 1.7 s) it gave 13.0 / 8.4 / 13.6x the attack against mixed's 9.3 / 10.9 / 10.6x: one row in three, for 5x the time
JOINT_LONG_E2E_STEPS = 300  # ... with up to this many end-to-end steps ...
JOINT_POOL_TIME_SHARE = 0.85  # ... ending at this share of the time left on max-pool chains (the proposal's
# certification follows; elsewhere JOINT_TIME_SHARE). Wide chains without max pooling, 60 steps, q = 0.6 (ratio to the
# attack, from the greedy value auto gives at 10 s): the 8x8 average-pool CNN 2.51 -> 1.95 (x1 constant: 1.90),
# LeNet-300-100 2.19 -> 2.08 (2.09), in 10-12 s; resnet_bn_digits 10.84 -> 10.38 (10 steps) / 8.18 (100 steps, 102 s)
JOINT_LONG_E2E = E2EOptions(dtype="float32", lr_scale=2.0, lr_end=0.1, recover=True)  # ... searched in
# float32 (certified in float64), its Adam step decaying to a tenth and recovering after inadmissible points
# (joint.E2EOptions); 300 steps, ratio to the attack (PGD) on issue 22's digits CNN at q = 0.4 / 0.3816 and LeNet-5 at
# q = 0.3 / 0.6 / 0.9: 5.12 / 4.01 and 4.52 / 5.21 / 5.52 (x1 constant, no recovery: 6.80 on the CNN at 0.4; x2
# constant: 5.27 there, 7.07 on LeNet-5 at 0.9; x2 decaying without recovery 4.82 / 4.60, 5.20 at 0.6, 5.40 at 0.9;
# x1 decaying: 10.4 at 0.4 with 33 inadmissible points, 4.06 with recovery, but 11.4 on LeNet-5 at 0.6). Values
# move by tens of percent between nearby fractions (the Adam path is not smooth in the masks); each is a bound
JOINT_LONG_EXPLICIT_E2E_STEPS = 300  # --bound joint with JOINT_LONG_E2E (on the rewritten lowering of max-pool
# chains, and on chains where JOINT_EXPLICIT_E2E_WORK allows fewer than JOINT_EXPLICIT_E2E_STEPS float64 steps): at
# most this many end-to-end steps,
JOINT_LONG_EXPLICIT_E2E_WORK = 80_000.0  # ... within this work (joint.e2e_steps_for): 300 on LeNet-5 (work 129),
# issue 22's digits CNN (258), the 8x8 average-pool CNN (92) and LeNet-300-100 (32), 77 on resnet_bn_digits (1,030),
# 11 on the 16x16 max-pool CNN (6,974); the 300 steps take 30-60 s on the first four
JOINT_EXPLICIT_E2E_WORK = 3000.0  # --bound joint: the work budget of joint.e2e_steps_for (auto: JOINT_E2E_WORK)
CERTIFY_AUTO_TIME_LIMIT = 10.0  # probprune.certify(bound="auto") without time_limit: seconds for the whole call
# (issue 19); also the time the certified budget assumes when it decides whether its search probes the joint bound
JOINT_TIME_SHARE = 0.5  # "auto" with a time limit: the joint bound (run first after the composed bound: on chains
# without max-pool blocks it is the smallest component wherever it finishes its Adam steps) may use this share of the
# time left; it is started only when its recursion without Adam steps is predicted (predicted_joint_seconds) to fit
# in the share, and its Adam steps stop at the end of the share. Without a time limit it runs up to JOINT_MAX_DIM.
# Measured (resnet_bn_digits, 2,049 coupled coordinates, 10 s): share 0.7 gave the joint bound 8.4-14.0x the attack
# but left the scalar mixed bound too little time (it stopped, 10.1-10.8 s in all); 0.5: joint 8.7 / 14.0 / 45x and
# mixed_scalar 13.9 / 18.0 / 10.9x (q = 0.3 / 0.6 / 0.9) in 9.1-9.3 s; 0.35: the joint bound not started
SDP_AUTO_DIM = 160  # "auto" adds the SDP certificate (§12.6, SCS) when the lifted problem has at most this many
# coordinates (seconds there); explicit method="sdp" runs SCS up to sdp.MAX_DIM (minutes at a few hundred coordinates)
# and the first-order solver (§12.6b) above it, up to sdp_fo.FO_MAX_DIM
SDP_FO_ITERS = 600  # Adam steps of the first-order SDP for method="sdp" above sdp.MAX_DIM
SDP_FO_AUTO_ITERS = 300  # "auto" runs the first-order SDP (§12.6b) above SDP_AUTO_DIM while its time limit lasts,
# at most this many Adam steps
PAIR_STAGES = ("pairs",)  # the "auto" stage not started when one pair bound is predicted past the limit (the mixed
# bounds leave such pairs out one by one instead, compose.pair_fits, named under "pair bounds left out for time")
SDP_FO_AUTO_MIN_SECONDS = 1.0  # ... and only when at least this much of the time limit is left
SDP_FO_IN_AUTO = False  # default of certify_chains(sdp_fo=None): off, because on the benchmark nets the first-order
# SDP is looser than the mixed bound (benchmarks/results/sdp_fo.json) and would spend the whole time limit in every
# auto call (the certified budget's search calls auto many times); True turns it on for every auto call


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


def unscale(v: float, k: int) -> float:
    """2^k v for a bound v computed on the rescaled chains (§12.1 scaling), rounded up; overflow refused."""
    v = float(v)
    if k == 0 or not math.isfinite(v) or v == 0.0:
        return v
    try:
        out = math.ldexp(v, k)
    except OverflowError:  # math.ldexp raises instead of returning inf
        out = math.inf
    if not math.isfinite(out):
        raise ProbPruneError(f"the certificate 2^{k} x {v:.6g} overflows float64; refusing")
    if out < 2.0 ** -1022:  # subnormal: ldexp may have rounded down
        out = math.nextafter(out, math.inf)
    return out


def predicted_pair_seconds(F: Chain) -> float:
    """Predicted seconds of one pair bound on F (TB): the largest compose.predicted_pair_seconds over neighbouring
    stages (A = M_{i+1}, B = M_i; the difference factors have the same shapes). A prediction: a stage it lets start
    may still run past the limit by up to one pair bound (the searches check the deadline, with the prediction of
    each pair's shapes, before each uncached pair bound)."""
    st = F.stages
    return max([compose_pair_seconds(st[i].n_out, st[i + 1].n_out, st[i].n_in) for i in range(len(st) - 1)],
               default=0.0)


SDP_SCS_COST = (160.0, 0.05)  # (a, b): "auto" starts the SCS SDP (§12.6, not interruptible) only when the
# predicted eigh256 x (a + b N^2) seconds (N lifted coordinates; eigh256 = compose._eigh256_seconds, the machine's
# speed) fit in what is left of the limit. Measured (UA, load 2, eigh256 8.7 ms): N = 33 / 65 / 113 / 129 / 145 took
# 1.5 / 1.3 / 6.0 / 9.2 / 10.8 s (predicted 1.8 / 3.2 / 6.9 / 8.6 / 10.5 s)


def predicted_sdp_seconds(N: int) -> float:
    """Predicted seconds of sdp_certificate (cvxpy + SCS + refinement) at N lifted coordinates (SDP_SCS_COST)."""
    from probprune.certificates.compose import _eigh256_seconds

    a, b = SDP_SCS_COST
    return _eigh256_seconds() * (a + b * float(N) ** 2)


TAIL_RESERVE_SECONDS = 0.25  # the limited stages of "auto" end this much before the time limit (at most a tenth of
# it): the work after the last of them (the fallback promotion of Statement 12.51's value, unscaling, the report)
# takes < 1 ms, but the last step a stage starts cannot be stopped inside and its predicted time is a model; the
# issue 19 benchmark saw one pair bound end 0.18 s past a 10 s limit with a 0.02 s reserve. The composed bound (the
# always-available fallback) runs first, outside the wall
AUTO_TIME_LIMIT = 30.0  # default soft budget of "auto" in seconds (None: unlimited); every benchmark net of issue 12
# finished all components within 16 s; chains with max-pool trees (§12.7) can spend minutes in pairs/mixed


def pool_pair_for(graph, pruned, method: str = "auto", time_limit: float | None = None
                  ) -> tuple[Chain, Chain] | None:
    """The pair lowered with every ReLU whose only consumer is a max pooling moved past it (Statement 12.64), for the
    joint bound on max-pool networks (``certify_chains(pool_pair=...)``); None where the graph has no such ReLU, the
    method does not use it ("joint" does; "auto" only with ``time_limit`` None or >= JOINT_LONG_MIN_SECONDS) or the
    lowering refuses."""
    from probprune.certificates.lower import lower_graph_pair, relu_pool_pairs

    uses = method == "joint" or (method == "auto" and (time_limit is None or time_limit >= JOINT_LONG_MIN_SECONDS))
    if not uses or not relu_pool_pairs(graph):
        return None
    try:
        return lower_graph_pair(graph, pruned, commute_relu_pool=True)
    except ProbPruneError:
        return None


def joint_auto_skip(F: Chain, seconds_left: float | None = None) -> str | None:
    """Why "auto" does not run the joint bound (§12.12) on the lowered chain F, or None where it does: max-pool blocks
    (the recursion compounds over every pool-tree level: LeNet-5 on digits 25-33x the attack against mixed's 9-11x,
    so auto does not spend its time limit on it), a coupled width above JOINT_MAX_DIM, or (``seconds_left`` given:
    the time limit) a recursion predicted to take more than JOINT_TIME_SHARE of the seconds left."""
    if F.lip_blocks:
        return ("not run: max-pool blocks (the joint recursion is loose through pool trees, §12.12; with at least "
                f"{JOINT_LONG_MIN_SECONDS:g} s of the time limit left it runs on the lowering with ReLU after max "
                "pooling, Statement 12.64)")
    try:  # the width refusal of joint_bound itself
        check_joint_dim(F)
    except ProbPruneError as exc:
        return f"not run: {exc}"
    if seconds_left is not None:
        need = predicted_joint_seconds(F)
        if need > JOINT_TIME_SHARE * seconds_left:
            return (f"not started: predicted {need:.1f} s without Adam steps (coupled width {coupled_width(F)}), more "
                    f"than {JOINT_TIME_SHARE:g} x the {max(seconds_left, 0.0):.1f} s of the time limit left")
    return None


def certify_chains(F: Chain, Fhat: Chain, method: str = "auto", radius: float = 1.0, center=None,
                   time_limit: float | None = AUTO_TIME_LIMIT, sdp_fo: bool | None = None,
                   scalar_if_mixed_fails: bool = False, clock_start: float | None = None,
                   joint: bool | None = None, joint_steps: int | None = None,
                   joint_e2e: int | None = None, joint_long: bool = False,
                   pool_pair: tuple[Chain, Chain] | None = None) -> TightCertificate:
    """Tight certificate for lowered chains (§12.1-§12.4). ``center`` None = the origin (the paper's ball); the
    norm-based methods (composed, pairs) need the origin-centred ball. ``time_limit`` (seconds, "auto" only; None =
    unlimited), counted from ``clock_start`` (a ``time.perf_counter()`` value, e.g. taken before the lowering, so
    that the limit covers it; None = now); a wall (issue 19 UA): the stages after the composed bound stop before a
    step predicted to end past clock_start + time_limit - TAIL_RESERVE_SECONDS (compose.StepClock: measured step
    rates of this call; pair bounds: compose.predicted_pair_seconds), and a stopped stage contributes nothing (the
    best completed bound is returned). Under "auto" the composed bound (its stage norms) always runs; every
    other stage runs under the deadline and is stopped at it (the propagator between stages and row chunks, the
    pair/segment/mixed searches between bounds), in the order of their cost on the benchmark's large CNNs (TB):
    the F_hat-only propagator, the mixed bound with single-norm slope products ("mixed_none") and with scalar pair
    bounds ("mixed_scalar", Statement 12.33), the full mixed bound (on max-pool chains before the scalar one, which
    then runs only if the full one was stopped: THEORY §12.9), pairs, then the coupled propagation (its
    propagator upgraded to F and the coupled channel) and the SDP; off the origin the coupled propagation comes
    before the mixed bounds. Right after the composed bound (at the origin, if the limit is not yet spent), the mixed
    bound without propagation (Statement 12.51, milliseconds) is computed: it is reported as "mixed_none" only if
    the propagated one does not finish. Stages skipped or stopped are named under the "skipped components" stage. Which
    components are computed then depends on the machine's speed; every reported number is a valid upper bound.
    ``sdp_fo`` ("auto" only; None = SDP_FO_IN_AUTO): add the first-order SDP (§12.6b) above SDP_AUTO_DIM lifted
    coordinates, for the rest of the time limit (at most SDP_FO_AUTO_ITERS steps). ``scalar_if_mixed_fails``
    ("auto" only): skip the cheap mixed variants and run the scalar one only after the full mixed bound and only if
    that did not finish (the full mode's pair bounds are min(scalar, diagonal) of the same factors, so where it
    finishes the cheap variants cannot be smaller, Statement 12.33); used by the certified budget's final
    certification, not by ``certify --bound auto``. ``joint`` ("auto" only): False skips the joint bound (§12.12;
    the certified budget passes it when its first probe found the mixed bound smaller), None = the default rule.
    ``joint_steps``: the joint bound's Adam steps per recursion step (None: JOINT_DIAG_STEPS under auto,
    JOINT_EXPLICIT_DIAG_STEPS for ``method="joint"``). ``joint_e2e``: the joint bound's end-to-end steps (Statements
    12.62-12.63; 0: none); None: auto's count under auto (JOINT_E2E_STEPS), the explicit method's otherwise.
    ``joint_long`` ("auto" only, with ``joint_e2e`` None): on chains without max-pool blocks where auto's count is 0
    (joint.e2e_steps_for: wide chains) and at least JOINT_LONG_MIN_SECONDS of the time limit are left, the joint
    bound runs up to JOINT_LONG_E2E_STEPS end-to-end steps of JOINT_LONG_E2E within its JOINT_TIME_SHARE of the time
    left (their number depends on the machine's speed; every value is a valid bound). probprune.certify passes it;
    the certified budget's probes do not (their values then do not depend on the time limit's size).
    ``pool_pair``: the same pair lowered with ReLU after max pooling (:func:`pool_pair_for`, Statement 12.64): on
    max-pool chains ``method="joint"`` runs on it instead of F, F_hat (the same error, a tighter recursion); "auto"
    uses it last, with the rest of the time limit, where at least JOINT_LONG_MIN_SECONDS of it are left (up to
    JOINT_LONG_E2E_STEPS end-to-end steps, stopped at JOINT_POOL_TIME_SHARE of the time left: the count depends on the
    machine's speed; every value is a valid bound)."""
    if time_limit is not None and not (math.isfinite(time_limit) and time_limit > 0):
        raise ProbPruneError(f"time_limit must be a positive number of seconds, got {time_limit!r}")
    if method not in TIGHT_METHODS:
        raise ProbPruneError(f"unknown method {method!r}; choose from {', '.join(TIGHT_METHODS)}")
    if not (math.isfinite(radius) and radius >= 0):
        raise ProbPruneError(f"radius must be finite and >= 0, got {radius!r}")
    c = np.zeros(F.n_in) if center is None else np.asarray(center, float).reshape(-1)
    if c.size != F.n_in:
        raise ProbPruneError(f"center has {c.size} entries, the network input has {F.n_in}")
    at_origin = not np.any(c)
    if F.scale_exp != Fhat.scale_exp:
        raise ProbPruneError("F and F_hat were lowered with different power-of-two scalings; lower them together "
                             "(lower_graph_pair)")
    if pool_pair is not None and not (len(pool_pair) == 2 and pool_pair[0].same_structure(pool_pair[1])
                                      and pool_pair[0].n_in == F.n_in and pool_pair[0].n_out == F.n_out):
        raise ProbPruneError("pool_pair must be the pair (F, F_hat) lowered with ReLU after max pooling "
                             "(pool_pair_for): same input and output sizes, chains of the same structure")
    comps: dict[str, float] = {}
    stages: list = []
    norms = None
    skipped: dict[str, str] = {}
    pair_skips: dict[str, str] = {}  # finished mixed bounds that left out pair bounds for time (named in the report)
    t0 = time.perf_counter() if clock_start is None else float(clock_start)
    auto = method == "auto"
    pair_cost: list = [None]  # predicted seconds of one pair bound (computed once, when first needed)
    steps: dict = {}  # measured loop-step rates shared by the stages (compose.StepClock): predictions for the wall
    wall = None if time_limit is None else t0 + time_limit - min(TAIL_RESERVE_SECONDS, time_limit / 10)

    def over_budget() -> bool:
        return wall is not None and time.perf_counter() >= wall

    def guarded(name: str, fn, limited: bool = True) -> bool:
        """Run one component; numerical-library failures (LinAlgError, FloatingPointError) never reach the user: under
        "auto" the component is skipped (named in ``skipped``), an explicit method refuses with ProbPruneError.
        ``limited`` False: no deadline (the composed bound; the scalar mixed fallback of ``scalar_if_mixed_fails``).
        Under "auto" a limited component is not started once the limit is reached."""
        limited = limited and auto and time_limit is not None
        if limited and over_budget():
            skipped[name] = f"time limit {time_limit} s reached"
            return False
        if limited and name in PAIR_STAGES:  # a pair bound cannot be stopped inside: do not start one that cannot end
            left = wall - time.perf_counter()
            if pair_cost[0] is None:
                pair_cost[0] = predicted_pair_seconds(F)
            if pair_cost[0] > left:
                skipped[name] = (f"not started: one pair bound is predicted to take {pair_cost[0]:.1f} s, "
                                 f"{max(left, 0.0):.1f} s of the time limit {time_limit} s left")
                return False
        try:
            with deadline(wall if limited else None, steps):
                fn()
            return True
        except TimeLimitReached:
            skipped[name] = f"stopped at the time limit {time_limit} s"
            return False
        except (np.linalg.LinAlgError, FloatingPointError, ArithmeticError) as exc:
            msg = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}"
            if not auto:
                raise ProbPruneError(f"method {name!r} failed numerically ({msg}); refusing") from None
            skipped[name] = msg
            return False

    if method == "sdp" and lifted_dim(F) > FO_MAX_DIM:  # refuse before any work
        raise ProbPruneError(f"sdp certificate: the lifted problem has {lifted_dim(F)} coordinates (input + hidden "
                             f"units of both networks), above max_dim={FO_MAX_DIM} (first-order solver, §12.6b); "
                             "use --bound mixed / auto")
    if method in ("auto", "composed", "pairs"):
        if not at_origin:
            if not auto:
                raise ProbPruneError(f"method {method!r} bounds the ball centred at the origin only; use "
                                     "'propagate' for a ball around a data point")
        else:
            def run_composed():
                nonlocal norms
                cr = certify_composed(F, Fhat, radius, pairs=(method == "pairs"))
                comps["composed_fwd"] = cr.fwd
                comps["composed_bwd"] = cr.bwd
                if method == "pairs":
                    comps["pairs"] = cr.pairs
                n = norms = cr.norms
                for i, s in enumerate(F.stages):
                    stages.append({"stage": s.name, "ops": list(s.ops), "norm_M": float(n.M[i]),
                                   "norm_Mhat": float(n.Mhat[i]), "norm_E": float(n.E[i]),
                                   "product_of_op_norms": float(n.factor_product[i]),
                                   "composition_gain": float(n.factor_product[i] / n.M[i]) if n.M[i] > 0
                                   else float("nan"), "bias_diff": float(n.bias_diff[i])})
            # the guaranteed component of "auto" (no deadline: stage_norms is not interruptible); "pairs" under auto
            # runs separately below
            guarded("composed", run_composed, limited=method != "auto")
    prop = None
    reg = Region(c[None, :], float(radius), "l2")

    def run_prop():
        nonlocal prop
        # "auto" and "mixed" start with F_hat's bounds only (Statement 12.32: what the mixed bound queries, a third
        # of the cost); "auto" upgrades the propagator for the coupled propagation and the SDP
        prop = CoupledPropagator(F, Fhat, reg, modes="hat" if method in ("auto", "mixed") else "all")

    def run_region():
        prop.upgrade()
        r = region_error_bound(F, Fhat, reg, prop)
        comps["propagate"] = float(r.eps[0])
        comps["propagate_coordinate"] = float(r.coordinate[0])
        comps["propagate_affine"] = float(r.affine[0])
        for i, info in enumerate(r.layer_info):
            if i < len(stages):
                stages[i].update({k: v for k, v in info.items()})
            else:
                stages.append({"stage": F.stages[i].name, **info})

    def note_skips(name: str, skips: list) -> None:
        if skips:
            pair_skips[name] = (f"{len(skips)} pair bound(s) left out (predicted to end past the time limit; single "
                                f"norms there), widest {max(skips, key=lambda ab: ab[0][1])}")

    def run_mixed_cheap(mode: str):
        def fn():
            with count_pair_skips() as skips:
                comps["mixed_" + mode] = lemma_a_mixed(F, Fhat, reg, prop, norms=norms, pair_bounds=mode).eps
            note_skips("mixed_" + mode, skips)
        return fn

    def run_mixed():
        with count_pair_skips() as skips:
            mx = lemma_a_mixed(F, Fhat, reg, prop, norms=norms)
        note_skips("mixed", skips)
        comps["mixed"] = mx.eps
        for i in range(min(len(stages), len(mx.terms))):
            stages[i].update({"mixed_term": mx.terms[i], "sup_v_bound": mx.V[i], "slope_product_bound": mx.Pi[i]})

    mixed_np: dict = {}  # Statement 12.51: the mixed bound without propagation, auto's fallback for "mixed_none"
    if auto and at_origin and norms is not None and not scalar_if_mixed_fails:
        def run_mixed_np():
            mixed_np["mixed_none"] = lemma_a_mixed(F, Fhat, reg, None, norms=norms, pair_bounds="none",
                                                   propagation=False).eps
        # under the deadline (0.004-0.14 s on the benchmark nets): with the limit already spent by the composed bound
        # auto returns the composed bound alone (tests/test_auto_time_limit_tb.py)
        guarded("mixed_none_np", run_mixed_np)
        skipped.pop("mixed_none_np", None)  # internal: only its value is used, below
    joint_info = None

    def joint_on(Fj: Chain, Fhj: Chain, e2e: int, stop, long: bool = False):
        """The joint bound (§12.12) on the pair (F, F_hat) itself or on its rewritten lowering (Statement 12.64), in
        F's power-of-two scale; ``long``: the end-to-end search with JOINT_LONG_E2E (the callers choose it, always on
        the rewritten one)."""
        nonlocal joint_info
        jr = joint_bound(Fj, Fhj, radius, norms=norms if Fj is F else None,
                         diag_steps=joint_steps if joint_steps is not None else
                         (JOINT_DIAG_STEPS if auto else JOINT_EXPLICIT_DIAG_STEPS),
                         adam_stop=stop, e2e_steps=e2e, e2e_stop=stop,
                         e2e_options=JOINT_LONG_E2E if long else None)
        v = math.ldexp(jr.eps, Fj.scale_exp - F.scale_exp)  # exact (a power of two) unless it leaves the range
        if jr.eps > 0 and not (0 < v < math.inf):
            raise ProbPruneError("joint bound: rescaling the rewritten lowering's value to F's scale under/overflows; "
                                 "refusing")
        comps["joint"] = v
        joint_info = {"stage": "joint S-procedure on the coupled chain (whole network, §12.12)"
                      + ("" if Fj is F else "; lowered with ReLU after max pooling (Statement 12.64)"),
                      "end_to_end_steps_at_most": int(e2e),
                      "end_to_end_search": "long (JOINT_LONG_E2E)" if long else "plain",
                      **{k: v for k, v in jr.__dict__.items() if k != "eps"}}

    if method == "joint" and not at_origin:
        raise ProbPruneError("method 'joint' bounds the ball centred at the origin only; use 'propagate' for a ball "
                             "around a data point")
    if (method == "joint" or (auto and norms is not None)) and at_origin:
        # under "auto" first after the composed bound (§12.12: on chains without max-pool blocks the smallest
        # component wherever its Adam steps finish), with JOINT_TIME_SHARE of the time left
        left = None if not (auto and time_limit is not None) else wall - time.perf_counter()

        Fj, Fhj = pool_pair if (F.lip_blocks and pool_pair is not None and not auto) else (F, Fhat)

        def run_joint():
            long = Fj is not F  # the rewritten max-pool lowering always searches with JOINT_LONG_E2E
            if joint_e2e is not None:
                e2e = max(0, int(joint_e2e))
            elif auto:
                e2e = e2e_steps_for(F, JOINT_E2E_STEPS)
                # wide chains: the long search where the caller asks for it and the time limit leaves room
                long = joint_long and e2e == 0 and left is not None and left >= JOINT_LONG_MIN_SECONDS
                e2e = JOINT_LONG_E2E_STEPS if long else e2e
            elif long:  # the rewritten max-pool lowering (Statement 12.64): its Adam converges slowly
                e2e = e2e_steps_for(Fj, JOINT_LONG_EXPLICIT_E2E_STEPS, JOINT_LONG_EXPLICIT_E2E_WORK)
            else:
                e2e = e2e_steps_for(Fj, JOINT_EXPLICIT_E2E_STEPS, JOINT_EXPLICIT_E2E_WORK)
                # the work budget cuts the float64 search short (a wide chain): the long float32 one instead
                long = e2e < JOINT_EXPLICIT_E2E_STEPS
                e2e = e2e_steps_for(Fj, JOINT_LONG_EXPLICIT_E2E_STEPS, JOINT_LONG_EXPLICIT_E2E_WORK) if long else e2e
                long = long and e2e > 0  # wider still: no end-to-end steps at all (reported as plain)
            stop = None if left is None else time.perf_counter() + JOINT_TIME_SHARE * left
            joint_on(Fj, Fhj, e2e, stop, long)
        why_not = joint_auto_skip(F, left) if auto else None
        if auto and joint is False:
            skipped["joint"] = "not run: the caller found the mixed bound smaller at its first probe"
        elif why_not is not None:
            skipped["joint"] = why_not
        else:
            try:
                guarded("joint", run_joint)
            except ProbPruneError as exc:
                if not auto:
                    raise
                skipped["joint"] = str(exc)
    if method in ("auto", "mixed", "propagate", "sdp"):
        guarded("propagate", run_prop)
    if method == "propagate" and prop is not None:
        guarded("propagate", run_region)
    if auto and prop is not None:
        if not at_origin:  # off the origin the coupled propagation is the main bound (composed/pairs do not apply)
            guarded("propagate", run_region)
        if scalar_if_mixed_fails or F.lip_blocks:
            # the full mixed bound first, the scalar variant only where it was stopped or refused: the certified
            # budget's final certification (scalar_if_mixed_fails; then without a time check) and max-pool chains
            # (after single norms: the scalar pair bounds lack the full ones' segments through the pools, Statement
            # 12.41; THEORY §12.9)
            if not scalar_if_mixed_fails:
                guarded("mixed_none", run_mixed_cheap("none"))
            guarded("mixed", run_mixed)
            if "mixed" in comps:
                skipped["mixed_scalar"] = ("not run: the full mixed bound finished (its pair bounds are <= the scalar "
                                           "ones; any it left out for time would not fit later either)")
            else:
                guarded("mixed_scalar", run_mixed_cheap("scalar"), limited=not scalar_if_mixed_fails)
        else:
            # single norms first (seconds on the 16x16 CNNs), then the scalar pair bounds, then the full searches
            # (Statement 12.33: each is a valid pair bound choice; where a later one finishes it is <= the earlier)
            guarded("mixed_none", run_mixed_cheap("none"))
            guarded("mixed_scalar", run_mixed_cheap("scalar"))
            guarded("mixed", run_mixed)
    if auto and prop is None:  # the mixed bounds need the propagator: name them with the reason
        why = skipped.get("propagate", "the propagator was not built")
        for name in (("mixed",) if scalar_if_mixed_fails else ("mixed_none", "mixed_scalar", "mixed")):
            skipped[name] = f"not run: no F_hat propagator ({why})"
    if method == "mixed" and prop is not None:
        guarded("mixed", run_mixed)
    if auto and at_origin and norms is not None:
        def run_pairs():
            comps["pairs"] = lemma_a_pairs(F, Fhat, radius, norms)
        guarded("pairs", run_pairs)
    if auto and at_origin and prop is not None:
        guarded("propagate", run_region)
    if auto and at_origin and F.lip_blocks and pool_pair is not None and joint is not False:
        left = None if time_limit is None else wall - time.perf_counter()
        if left is not None and left < JOINT_LONG_MIN_SECONDS:
            skipped["joint"] = (f"not run: max-pool blocks; on the lowering with ReLU after max pooling (Statement "
                                f"12.64) it runs with at least {JOINT_LONG_MIN_SECONDS:g} s of the time limit left after "
                                f"the other components, {max(left, 0.0):.1f} s were left")
        elif left is not None and (need := predicted_joint_seconds(pool_pair[0])) > JOINT_TIME_SHARE * left:
            skipped["joint"] = (f"not started on the lowering with ReLU after max pooling (Statement 12.64): predicted "
                                f"{need:.1f} s without Adam steps, more than {JOINT_TIME_SHARE:g} x the {left:.1f} s "
                                "of the time limit left")
        else:
            stop = None if left is None else time.perf_counter() + JOINT_POOL_TIME_SHARE * left
            steps_e2e = JOINT_LONG_E2E_STEPS if joint_e2e is None else max(0, int(joint_e2e))
            skipped.pop("joint", None)
            try:
                guarded("joint", lambda: joint_on(*pool_pair, steps_e2e, stop, long=True))
            except ProbPruneError as exc:
                skipped["joint"] = str(exc)
    sdp_info = None
    N = lifted_dim(F)
    use_scs = (method == "sdp" and N <= MAX_DIM) or (method == "auto" and N <= SDP_AUTO_DIM)
    fo_auto = SDP_FO_IN_AUTO if sdp_fo is None else bool(sdp_fo)
    use_fo = (method == "sdp" and MAX_DIM < N <= FO_MAX_DIM) or \
        (method == "auto" and fo_auto and SDP_AUTO_DIM < N <= FO_MAX_DIM)
    if prop is not None and prop.modes != "all" and (use_scs or use_fo):
        guarded("propagate", prop.upgrade)  # the SDPs read F's CROWN bounds too
    crown = crown_bounds(prop) if prop is not None and prop.modes == "all" and (use_scs or use_fo) else None
    if use_scs:
        def run_sdp():
            nonlocal sdp_info
            sc = sdp_certificate(F, Fhat, radius, None if at_origin else c, crown=crown)
            comps["sdp"] = sc.eps
            sdp_info = {"stage": "sdp (whole network, §12.6)", **{k: v for k, v in sc.__dict__.items() if k != "eps"}}
        left = None if not (auto and time_limit is not None) else wall - time.perf_counter()
        if left is not None and predicted_sdp_seconds(N) > left:  # SCS cannot be stopped inside (UA wall)
            skipped["sdp"] = (f"not started: the SCS solve is predicted to take {predicted_sdp_seconds(N):.1f} s, "
                              f"{max(left, 0.0):.1f} s of the time limit {time_limit} s left")
        else:
            guarded("sdp", run_sdp)
    elif use_fo:
        def run_sdp_fo():
            nonlocal sdp_info
            left = None if time_limit is None or method != "auto" else wall - time.perf_counter()
            sc = sdp_fo_certificate(F, Fhat, radius, None if at_origin else c, crown=crown, time_limit=left,
                                    iters=SDP_FO_AUTO_ITERS if method == "auto" else SDP_FO_ITERS)
            comps["sdp_fo"] = sc.eps
            sdp_info = {"stage": "sdp first-order (whole network, §12.6b)",
                        **{k: v for k, v in sc.__dict__.items() if k != "eps"}}
        if method == "auto" and time_limit is not None and wall - time.perf_counter() < SDP_FO_AUTO_MIN_SECONDS:
            skipped["sdp_fo"] = f"time limit {time_limit} s reached"
        else:
            try:
                guarded("sdp_fo", run_sdp_fo)
            except ProbPruneError as exc:  # memory refusal: auto names it and goes on; explicit sdp refuses
                if method != "auto":
                    raise
                skipped["sdp_fo"] = str(exc)
    if "mixed_none" not in comps and "mixed_none" in mixed_np:
        # the propagated mixed_none did not finish (or did not start): Statement 12.51's value (ms on every benchmark
        # net; equal to the propagated one on 8 of the 10 benchmark networks at q = 0.6, never below it)
        comps["mixed_none"] = mixed_np["mixed_none"]
        stages.append({"stage": "mixed_none without propagation (THEORY §12.11, Statement 12.51)",
                       "propagated_variant": skipped.pop("mixed_none", "not run")})
    comps = {k: unscale(v, F.scale_exp) for k, v in comps.items()}
    keys = [k for k in ("composed_fwd", "composed_bwd", "pairs", "mixed", "mixed_scalar", "mixed_none", "joint",
                        "propagate", "sdp", "sdp_fo")
            if k in comps]
    if not keys:
        raise ProbPruneError("no tight certificate could be computed ("
                             + "; ".join(f"{k}: {v}" for k, v in skipped.items()) + ")")
    best = min(keys, key=lambda k: comps[k])
    if skipped:
        stages.append({"stage": "skipped components", **skipped})
    if pair_skips:
        stages.append({"stage": "pair bounds left out for time", **pair_skips})
    if F.scale_exp:
        stages.append({"stage": "scaling", "scale_exp": int(F.scale_exp),
                       "note": "per-stage numbers are for the power-of-two rescaled chains (§12.1); eps is unscaled"})
    if joint_info is not None:
        stages = stages + [joint_info]
    if sdp_info is not None:
        stages = stages + [sdp_info]
    return TightCertificate(
        eps=float(comps[best]), method=best, components=comps, radius=float(radius), stages=tuple(stages),
        statement="THEORY.md §12 (composed Lemma A §12.1, pair bound §12.2, unrolling and mixed bound §12.3, "
                  "coupled propagation §12.4, cross-network SDP §12.6, first-order SDP §12.6b, "
                  "joint S-procedure §12.12)",
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
