"""S9.14 (THEORY §9.14): the exact fourth moment E||D||_F^4 of the product difference D = prod W - prod What for
small networks with identity activations whose layers are dense or convolutional (weight sharing), by a pairing
expansion over each layer's kernel entries, and the Cantelli / Markov thresholds of S9.12 (C) with S9.11's exact
second moment.

Layer k is sum_theta x_theta T_theta (T_theta the 0/1 operator of the unit kernel theta; entries i.i.d., symmetric,
What and E with disjoint supports). For four chains the expectation over one layer of prod_j x^(l_j)_(theta_j) is
sum over the three pairings sigma of [theta's equal in pairs] w_sigma(l) + [all four equal] w_diag(l), with
w_(12|34) = [l1=l2][l3=l4] m2(l1) m2(l3) (likewise for 13|24, 14|23) and w_diag = [all l equal] mu4(l) minus the valid
pairing weights (the all-equal case is counted once in each pairing). So E||D||_F^4 = sum over diagrams
(pi_1..pi_L) of W(pi) C(pi): W = sum over label tuples with an E in every chain of prod_k w_k(pi_k, l^k) (a flag DP),
C = the Frobenius closing sum_(a, a') R_L(a, a, a', a') of R_k = T_(pi_k)(R_(k-1)), R_0(c) = [c1 = c2][c3 = c4],
T_(12|34)(R) = K R K^T on the (12)(34) reshape with K = sum_theta T_theta (x) T_theta (likewise for the other
pairings), T_diag(R)(a) = sum_theta sum_c prod_j T_theta[a_j, c_j] R(c). The state is a sparse 4-index tensor; a dense
last layer is closed by formulas (d_out^2 T_A, d_out T_B, d_out T_C, d_out T_diag of the state before it).
"""
from __future__ import annotations

import itertools

import numpy as np
from scipy import sparse

from probprune.core.errors import ProbPruneError
from probprune.core.registry import METHODS

PAIRINGS = ("12|34", "13|24", "14|23", "diag")
#: largest number of nonzeros of an intermediate state (memory guard; the issue-20 conv family needs ~2e6)
MAX_STATE_NNZ = 20_000_000


def unit_kernel_maps(L):
    """The unit-kernel operators of a conv layer as maps: for every kernel entry theta = (o, i, u, v) the arrays
    (rows, cols) of the nonzeros (all 1) of T_theta (flattened (C, H, W) order, zero padding, stride, dilation)."""
    C, H, W = L.in_shape
    Co, Ho, Wo = L.out_shape
    kh, kw = L.kernel
    sh, sw = L.stride
    ph, pw = L.padding
    dh, dw = L.dilation
    ys, xs = np.meshgrid(np.arange(Ho), np.arange(Wo), indexing="ij")
    out = {}
    for i in range(C):
        for u in range(kh):
            for v in range(kw):
                yi, xi = sh * ys + u * dh - ph, sw * xs + v * dw - pw
                ok = (yi >= 0) & (yi < H) & (xi >= 0) & (xi < W)
                pix_out = (ys * Wo + xs)[ok]
                col = i * H * W + (yi * W + xi)[ok]
                for o in range(Co):
                    out[(o, i, u, v)] = (o * Ho * Wo + pix_out, col)
    return out, C * H * W, Co * Ho * Wo


def _kron_op(maps, d_out, d_in):
    """K = sum_theta T_theta (x) T_theta as a sparse (d_out^2 x d_in^2) matrix."""
    rows, cols = [], []
    for r, c in maps.values():
        rows.append((r[:, None] * d_out + r[None, :]).ravel())
        cols.append((c[:, None] * d_in + c[None, :]).ravel())
    r, c = np.concatenate(rows), np.concatenate(cols)
    return sparse.csr_matrix((np.ones(r.size), (r, c)), shape=(d_out * d_out, d_in * d_in))


_RESHAPE = {"12|34": ((0, 1), (2, 3)), "13|24": ((0, 2), (1, 3)), "14|23": ((0, 3), (1, 2))}


def _apply_pairing(R, d_in, d_out, K, pairing):
    """T_pairing(R) for R = (idx (4, n) int64, val (n,)) over d_in; returns the same over d_out."""
    idx, val = R
    (p, q), (r, s) = _RESHAPE[pairing]
    M = sparse.csr_matrix((val, (idx[p] * d_in + idx[q], idx[r] * d_in + idx[s])), shape=(d_in * d_in,) * 2)
    out = (K @ M @ K.T).tocoo()
    if out.nnz > MAX_STATE_NNZ:
        raise ProbPruneError(f"S9.14: intermediate state with {out.nnz} nonzeros exceeds {MAX_STATE_NNZ}")
    new = np.empty((4, out.nnz), np.int64)
    new[p], new[q] = np.divmod(out.row.astype(np.int64), d_out)
    new[r], new[s] = np.divmod(out.col.astype(np.int64), d_out)
    return new, out.data


def _apply_diag(R, maps, d_in, d_out):
    """T_diag(R)(a) = sum_theta sum_c prod_j T_theta[a_j, c_j] R(c). Every conv unit kernel theta = (o, i, u, v) is a
    partial injection c -> a (checked) that only reads input channel i and writes output channel o, and the maps of
    the same (i, u, v) differ only by the output channel's offset o * (H_out W_out): the entries of R whose four
    indices lie in one input channel are mapped once per (i, u, v) and copied to every output channel."""
    idx, val = R
    groups: dict = {}
    for (o, i, u, v), (r, c) in maps.items():
        if np.unique(c).size != c.size:
            raise ProbPruneError("S9.14: a unit kernel maps an input position to two outputs")
        groups.setdefault((i, u, v), []).append((o, r, c))
    n_o = max(o for o, _, _, _ in maps) + 1
    hw_out = d_out // n_o
    n_i = max(i for _, i, _, _ in maps) + 1
    hw_in = d_in // n_i
    ch = idx // hw_in
    same = (ch[0] == ch[1]) & (ch[0] == ch[2]) & (ch[0] == ch[3])
    acc_i, acc_v = [], []
    for (i, u, v), lst in groups.items():
        sel = same & (ch[0] == i)
        if not np.any(sel):
            continue
        sub, sv = idx[:, sel], val[sel]
        o0, r0, c0 = lst[0]
        f = -np.ones(d_in, np.int64)
        f[c0] = r0 - o0 * hw_out  # the output pixel
        a = f[sub]
        ok = np.all(a >= 0, axis=0)
        if not np.any(ok):
            continue
        a, sv = a[:, ok], sv[ok]
        for o, r, c in lst:
            if not (np.array_equal(c, c0) and np.array_equal(r - o * hw_out, r0 - o0 * hw_out)):
                raise ProbPruneError("S9.14: unit kernels of one (i, u, v) differ beyond the output channel")
            acc_i.append(a + o * hw_out)
            acc_v.append(sv)
    if not acc_i:
        return np.zeros((4, 0), np.int64), np.zeros(0)
    a = np.concatenate(acc_i, axis=1)
    v = np.concatenate(acc_v)
    key = ((a[0] * d_out + a[1]) * d_out + a[2]) * d_out + a[3]
    uk, inv = np.unique(key, return_inverse=True)
    vals = np.bincount(inv, weights=v)
    out = np.empty((4, uk.size), np.int64)
    rem = uk
    for j in (3, 2, 1, 0):
        rem, out[j] = np.divmod(rem, d_out)
    return out, vals


def _dense_closing(R, d_out):
    """Frobenius closing after a dense last layer d_out x d: the value for each pairing of that layer."""
    idx, val = R
    e12, e34, e13, e24, e14, e23 = (idx[0] == idx[1], idx[2] == idx[3], idx[0] == idx[2], idx[1] == idx[3],
                                    idx[0] == idx[3], idx[1] == idx[2])
    tA = float(val[e12 & e34].sum())
    tB = float(val[e13 & e24].sum())
    tC = float(val[e14 & e23].sum())
    tD = float(val[e12 & e34 & e13].sum())
    return {"12|34": d_out * d_out * tA, "13|24": d_out * tB, "14|23": d_out * tC, "diag": d_out * tD}


def _layer_weights(pairing, moments):
    """w(pairing, l) for the 16 label tuples l (bit j of the index = label of chain j; 1 = E): moments =
    (h2, e2, h4, e4) of the layer (THEORY §9.14)."""
    h2, e2, h4, e4 = moments
    m2, m4 = (h2, e2), (h4, e4)
    out = np.zeros(16)
    for t in range(16):
        l = [(t >> j) & 1 for j in range(4)]
        pw = {"12|34": m2[l[0]] * m2[l[2]] if (l[0] == l[1] and l[2] == l[3]) else 0.0,
              "13|24": m2[l[0]] * m2[l[1]] if (l[0] == l[2] and l[1] == l[3]) else 0.0,
              "14|23": m2[l[0]] * m2[l[1]] if (l[0] == l[3] and l[1] == l[2]) else 0.0}
        if pairing == "diag":
            out[t] = (m4[l[0]] if len(set(l)) == 1 else 0.0) - sum(pw.values())
        else:
            out[t] = pw[pairing]
    return out


def _diagram_weight(diagram, layer_moments):
    """W(pi) = sum over label tuples with an E in every chain of prod_k w_k(pi_k, l^k): a DP over the 16 flag tuples."""
    dp = np.zeros(16)
    dp[0] = 1.0
    for pi, mom in zip(diagram, layer_moments):
        w = _layer_weights(pi, mom)
        new = np.zeros(16)
        for f in range(16):
            if dp[f] == 0.0:
                continue
            for t in range(16):
                if w[t] != 0.0:
                    new[f | t] += dp[f] * w[t]
        dp = new
    return dp[15]


#: S9.14 is attempted only when every flattened layer input/output has at most this many entries (cost guard; the
#: issue-20 conv family has 128/256/64/10); larger nets get no S9.14 candidate (the other statements stand)
MAX_DIM = 256
#: and every conv layer's K has at most this many nonzeros (the issue-20 family: 294,912 and 36,864)
MAX_KRON_NNZ = 1_000_000
#: and every conv layer after the first has (flattened input) x (flattened output) <= this (the family: 256 x 64)
MAX_INOUT = 16_384
_CLOSINGS: dict = {}


def applies(spec) -> bool:
    """S9.14's hypotheses on the architecture: identity activations, dense or conv layers, no pooling, dense layers
    only at the end (this implementation: at most the last layer dense), and every flattened dimension <= MAX_DIM."""
    from probprune.theory.sharp import second_moment_applies

    if not second_moment_applies(spec):
        return False
    layers = list(spec.layers)
    if any(L.kind != "conv" for L in layers[:-1]):
        return False
    for L in layers:
        dims = (L.d_in, L.d_out) if L.kind != "conv" else (int(np.prod(L.in_shape)), int(np.prod(L.out_shape)))
        if max(dims) > MAX_DIM:
            return False
        if L.kind == "conv":  # nnz of K = sum_theta T_theta (x) T_theta: at most (#kernel entries) (H_out W_out)^2
            if int(np.prod(L.weight_shape)) * int(np.prod(L.out_shape[1:])) ** 2 > MAX_KRON_NNZ:
                return False
    for L in layers[1:]:  # a conv layer after the first acts on a state over its input: in x out bounds the cost
        if L.kind == "conv" and int(np.prod(L.in_shape)) * int(np.prod(L.out_shape)) > MAX_INOUT:
            return False
    return True


def _arch_key(spec):
    return tuple((L.kind, L.d_out, L.d_in, L.kernel, L.stride, L.padding, L.dilation, L.in_shape, L.out_shape)
                 for L in spec.layers)


def diagram_closings(spec) -> dict:
    """C(pi) for every diagram pi in PAIRINGS^L (label-independent, cached per architecture): the Frobenius closing of
    T_(pi_L) ... T_(pi_1)(R_0) (THEORY §9.14)."""
    if not applies(spec):
        raise ProbPruneError("S9.14 needs identity activations, conv layers (a dense layer only last), no pooling and "
                             f"flattened dimensions <= {MAX_DIM}")
    key = _arch_key(spec)
    if key in _CLOSINGS:
        return _CLOSINGS[key]
    ops = []
    for L in spec.layers:
        if L.kind == "conv":
            maps, d_in, d_out = unit_kernel_maps(L)
        else:
            maps, d_in, d_out = None, L.d_in, L.d_out
        ops.append((maps, d_in, d_out))
    last_dense = ops[-1][0] is None
    body = ops[:-1] if last_dense else ops
    kron = [_kron_op(m, do, di) for m, di, do in body]
    d0 = body[0][1] if body else ops[-1][1]
    ar = np.arange(d0, dtype=np.int64)
    i1, i3 = np.repeat(ar, d0), np.tile(ar, d0)
    R0 = (np.stack([i1, i1, i3, i3]), np.ones(d0 * d0))
    out: dict = {}

    def rec(k, R, diagram):
        if k == len(body):
            if last_dense:
                for pi, v in _dense_closing(R, ops[-1][2]).items():
                    out[diagram + (pi,)] = v
            else:
                idx, val = R
                out[diagram] = float(val[(idx[0] == idx[1]) & (idx[2] == idx[3])].sum())
            return
        maps, d_in, d_out = body[k]
        for pi in PAIRINGS:
            R2 = (_apply_diag(R, maps, d_in, d_out) if pi == "diag"
                  else _apply_pairing(R, d_in, d_out, kron[k], pi))
            rec(k + 1, R2, diagram + (pi,))

    rec(0, R0, ())
    _CLOSINGS[key] = out
    return out


def frobenius_fourth_moment_conv(spec, layer_moments) -> float:
    """E||D||_F^4 exactly (THEORY §9.14 S9.14) for a spec of conv layers (and a dense last layer) with identity
    activations and no pooling, layers independent, i.i.d. kernel entries per layer (symmetric, What and E with
    disjoint supports: threshold magnitude or Bernoulli random); ``layer_moments[k]`` = (E what^2, E e^2, E what^4,
    E e^4): sum over diagrams of W(pi) C(pi)."""
    if len(layer_moments) != spec.depth:
        raise ProbPruneError(f"need {spec.depth} layers of moments, got {len(layer_moments)}")
    return float(sum(_diagram_weight(pi, layer_moments) * c for pi, c in diagram_closings(spec).items() if c != 0.0))


def conv_fourth_moment_bound(spec, q, delta, method: str, law: str):
    """S9.14 (THEORY §9.14): P(err >= x) <= delta at x = sharp.frobenius_tail_threshold(E||D||_F^2, E||D||_F^4)
    (Markov on ||D||_F^2 and ||D||_F^4, Cantelli), E||D||_F^2 from S9.11, E||D||_F^4 from
    :func:`frobenius_fourth_moment_conv`; threshold magnitude or Bernoulli random pruning, q one fraction per layer.
    Returns (x, E||D||_F^2, E||D||_F^4)."""
    from probprune.theory import sharp
    from probprune.theory.trace_moments import entry_even_moments

    m = METHODS.get(method) if isinstance(method, str) else None
    if m is None or m.entry is None or m.rescaled:  # i.i.d. entries, What and E with disjoint supports
        raise ProbPruneError(f"S9.14 covers threshold magnitude and Bernoulli random pruning, not {method!r}")
    q = np.asarray(q, float).reshape(-1)
    if q.size != spec.depth:
        raise ProbPruneError(f"need one fraction per layer ({spec.depth}), got {q.size}")
    lm = [tuple(float(x) for x in entry_even_moments(method, law, L.half_width, q[k], 2))
          for k, L in enumerate(spec.layers)]
    m4 = frobenius_fourth_moment_conv(spec, lm)
    _, m2 = sharp.second_moment_bound(spec, method, law, delta, q=q)
    x = sharp.frobenius_tail_threshold(float(m2), m4, delta)
    return float(x), float(m2), m4
